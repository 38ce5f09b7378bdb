"""Ship trained toy weights: one fp16 safetensors file per model, its sha256, and a model card.

    python experiments/toy_world/export.py --runs runs/toy_world --out src/rf/toy/weights --model toy_large \
        --shift 3 --cfg 3 teacher=CKPT ode_init=CKPT student=CKPT:ema

Each file holds the transformer alone under diffusers' names (the loaders read it like any checkpoint:
`ckpt=`, `teacher_ckpt=`, `student_ckpt=`); `:ema` exports the EMA weights (a teacher's `transformer_ema`, the
generator EMA of a distillation checkpoint).
`MODEL_CARD.md` gives, per file, the sha256, the source checkpoint, the commit, the command
(experiments/toy_world/run.sh) and the bar numbers measured by experiments/toy_world/evaluate.py
(teacher_eval.json, students_eval.json in --runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
from pathlib import Path

import torch
from safetensors.torch import save_file

from rf.models.loading import STUDENT_PREFIXES, TEACHER_ATTRIBUTE, read_state_dict


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bar_lines(bars: list[dict]) -> list[str]:
    return [f"  - {b['metric']} {b['bar']}: {b['value']:.3f} ({'met' if b['met'] else 'MISSED'})" for b in bars]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="NAME=CKPT[:ema]")
    ap.add_argument("--runs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="toy_large")
    ap.add_argument("--shift", type=float, default=None, help="the sampler time shift the weights were made for")
    ap.add_argument("--cfg", type=float, default=None, help="the teacher guidance used downstream")
    ap.add_argument("--student-run", default=None, help="the students_eval.json run whose bars the student's card "
                    "gives (default: the first re_dmd run that is not _raw)")  # fmt: skip
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(args.runs)
    evals = {n: json.loads((runs / f"{n}_eval.json").read_text()) for n in ("teacher", "students")
             if (runs / f"{n}_eval.json").is_file()}  # fmt: skip
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    card = [
        "# Shipped toy weights (world v2)",
        "",
        f"Model config `model={args.model}`; sampler time shift {args.shift}, teacher guidance {args.cfg}.",
        f"Trained by `bash experiments/toy_world/run.sh` at commit `{commit}`; numbers from",
        "`experiments/toy_world/evaluate.py` (held-out prompts, 4 noise seeds each; experiments/toy_world/README.md).",
        "",
    ]
    for spec in args.models:
        name, ckpt = spec.split("=", 1)
        use_ema = ckpt.endswith(":ema")
        ckpt = ckpt.removesuffix(":ema")
        prefixes = (f"{TEACHER_ATTRIBUTE}.",) if name == "teacher" else STUDENT_PREFIXES
        if name == "teacher" and use_ema:  # the teacher's EMA is a submodule of its own (rf.lit.teacher)
            prefixes, use_ema = (f"{TEACHER_ATTRIBUTE}_ema.",), False
        state, found = read_state_dict(ckpt, prefixes, use_ema)
        state = {k: v.to(torch.float16).contiguous() for k, v in state.items()}
        path = out / f"{name}.safetensors"
        save_file(state, str(path), metadata={"source": Path(ckpt).name, "weights": found, "model": args.model,
                                               "shift": str(args.shift), "cfg": str(args.cfg)})  # fmt: skip
        digest = sha256(path)
        (out / f"{name}.safetensors.sha256").write_text(f"{digest}  {path.name}\n")
        params = sum(v.numel() for v in state.values())
        card += [f"## {name}", "", f"- file `{path.name}`, sha256 `{digest}`, {params / 1e6:.2f}M parameters, fp16",
                 f"- from `{ckpt}` ({found})"]  # fmt: skip
        if name == "teacher" and "teacher" in evals:
            best = evals["teacher"]["best"]
            setting = next(
                s for s in evals["teacher"]["settings"] if s["cfg"] == best["cfg"] and s["shift"] == best["shift"]
            )
            card += [f"- teacher bars at cfg {best['cfg']}, shift {best['shift']} (single-object split):"]
            card += bar_lines(setting["bars"])
        key = {"ode_init": "ode_init", "student": args.student_run}.get(name)
        if name != "teacher" and "students" in evals:
            run_names = evals["students"]["runs"]
            key = key or next((r for r in run_names if r.startswith("re_dmd") and not r.endswith("_raw")), None)
            if key in run_names:
                card += [f"- ODE-init/student bars as `{key}` (60-s EMA-Sink streams, single-object split):"]
                card += bar_lines(run_names[key]["bars"])
        card.append("")
        print(f"{path}: {params / 1e6:.2f}M parameters, sha256 {digest[:12]}...")
    (out / "MODEL_CARD.md").write_text("\n".join(card))


if __name__ == "__main__":
    main()
