"""The approximate path's levers on the toy world, where quality can be measured (the shipped toy student,
rf.eval.toy_metrics): fewer denoising steps and FP8 matmuls, each paired against the exact 4-step stream.

    bash experiments/bench/steps_toy.sh OUTDIR [NAME ...]   # the runs of RUNS, or those named (CPU, ~7 min each)
    python experiments/bench/steps_toy.py OUTDIR            # the table of the runs in OUTDIR, paired against four
    python experiments/bench/steps_toy.py --runs            # NAME and its overrides a line (what steps_toy.sh reads)

Each run streams the same prompts from the same noise seeds (experiments/toy_world/evaluate.py students); a
prompt's value is the mean over its seeds, and each difference is the mean over prompts with a 95% percentile
bootstrap interval (evaluate.paired). Reference rows (real clips, a frozen object, a random walk, the mirrored
direction) come from the same scoring code. FP8 runs on the CPU through rf.fast.fp8's reference path: the same
quantised function as the GPU's FP8 matmuls, with the accumulation in float32.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "toy_world"))
from evaluate import STUDENT_BARS, paired  # noqa: E402  (experiments/toy_world/evaluate.py, a script)

FOUR = "sampler.denoising_steps=[1000,750,500,250]"
FP8 = "fast.fp8=true fast.static_cache=true"  # the static cache: the fast path's, which FP8 runs on there
RUNS = {  # name -> Hydra overrides of the generate config (steps_toy.sh streams these); four is the reference
    "four": FOUR,
    "three": "sampler.denoising_steps=[1000,667,333]",
    "two": "sampler.denoising_steps=[1000,500]",
    "fp8_calibrated_tw": f"{FOUR} {FP8} fast.fp8_scales=calibrated fast.fp8_weights=tensorwise",  # fast=approximate's
    "fp8_rowwise": f"{FOUR} {FP8}",  # per-token input scales, per-row weights
}
METRICS = ["direction_agreement", "speed_ratio", "motion_error", "persistence_last10s", "background_flow",
           "scene_change"]  # fmt: skip
REFERENCES = ["real", "frozen", "random_walk"]


def per_prompt(run: dict, metric: str, seeds: int) -> list[float]:
    rows = run["per_video"]  # prompt-major: prompt j's seeds are rows j*seeds .. j*seeds+seeds-1
    return [sum(r[metric] for r in rows[j : j + seeds]) / seeds for j in range(0, len(rows), seeds)]


def main() -> None:
    if sys.argv[1] == "--runs":  # for steps_toy.sh: NAME OVERRIDE OVERRIDE ... per line
        print("\n".join(f"{name} {overrides}" for name, overrides in RUNS.items()))
        return
    out = Path(sys.argv[1])
    results = {name: json.loads((out / f"{name}.json").read_text()) for name in RUNS if (out / f"{name}.json").exists()}
    names, others = list(results), [n for n in results if n != "four"]
    seeds = results["four"]["seeds"]
    runs = {name: r["runs"][name] for name, r in results.items()}
    bars = {m: f"{op} {v}" for m, op, v in STUDENT_BARS}
    columns = ["metric (bar)", *names, *(f"{n} - four" for n in others), *REFERENCES]
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for m in METRICS:
        cells = [f"{runs[n]['means']['single'][m]:.3f}" for n in names]
        base = per_prompt(runs["four"], m, seeds)
        for n in others:
            d = paired(base, per_prompt(runs[n], m, seeds))
            cells.append(f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
        refs = results["four"]["references"]
        cells += [f"{refs[r]['single'].get(m, float('nan')):.3f}" for r in REFERENCES]
        lines.append(f"| {m} ({bars.get(m, '-')}) | " + " | ".join(cells) + " |")
    met = [f"{sum(b['met'] for b in runs[n]['bars'])}/{len(runs[n]['bars'])}" for n in names]
    lines.append("| student bars met | " + " | ".join(met) + " |" + " |" * (len(others) + len(REFERENCES)))
    prompts = len(runs["four"]["per_video"]) // seeds
    lines += ["", f"{prompts} held-out single-object prompts x {seeds} seeds, {results['four']['seconds']:.0f}-s "
              "EMA-Sink streams; overrides: " + "; ".join(f"{n} `{RUNS[n]}`" for n in names)]  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
