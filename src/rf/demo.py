"""python -m rf.demo (make demo): Reward Forcing on the toy world, on a laptop CPU, in a few minutes.

1. Stream 30 s from the shipped toy student (src/rf/toy/weights; its MODEL_CARD.md says how it was trained)
   with the EMA-Sink cache, switching between two single-object prompts halfway without resetting the
   cache. Print where the mp4 and its contact sheet are, and the toy metrics
   of each prompt's span (rf.eval.toy_metrics, on the exact frames) beside the same metrics of rendered
   real clips, a frozen object and a random walk for the same prompts, computed by the same code.
2. Run every stage briefly from the shipped weights, each the public command a user would type: a teacher
   fine-tune, ODE pairs, ODE init, Re-DMD with the prompt-aware toy_motion reward; then stream again from
   the fine-tuned student. The quality comes from the GPU-trained weights: the CPU steps show each stage
   running, they are far too short to change it.

`--scratch` (make demo-scratch): the chain from random weights at CPU size, a smoke test of every stage; at
that size the stream shows the chain running, not quality.

A relaunch continues every training step from its checkpoint instead of starting over.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

FIRST = "a red circle moving fast to the right on a striped background"
SECOND = "a yellow square moving slowly upwards on a dotted background"
SCRATCH_SECOND = "a blue square and a yellow triangle moving slowly upwards on a dotted background"
SHOWN = ("speed_ratio", "direction_agreement", "persistence", "area_ratio", "shape_accuracy",
         "background_accuracy", "background_flow", "scene_change")  # fmt: skip


def run(args: list[str]) -> None:
    print("\n$ python " + " ".join(args), flush=True)
    if subprocess.run([sys.executable, *args]).returncode:
        sys.exit("demo stopped: the step above failed (rerun `make demo` to continue from where it stopped)")


def stream(ckpt: str, seconds: int, out: Path, second: str = SECOND, model: str = "toy_large", extra=()) -> None:
    run([
        "-m", "rf.generate", f"model={model}", f"ckpt={ckpt}", f"seconds={seconds}", "sink=ema_sink",
        f'schedule=[{{at:0,prompt:"{FIRST}"}},{{at:{seconds / 2},prompt:"{second}"}}]',
        f"out={out}", f"frames_out={out.with_suffix('.frames.pt')}", *extra,
    ])  # fmt: skip


def report(frames_file: Path, seconds: int) -> None:
    """The toy metrics of each prompt's span of the stream, beside real, frozen and random-walk rows."""
    import torch

    from rf.eval.toy_metrics import score
    from rf.eval.toy_references import reference_videos
    from rf.toy.world import ToyWorld

    world = ToyWorld()  # world v2, the shipped weights' world
    video = torch.load(frames_file).float() / 127.5 - 1  # [3, T, H, W] in [-1, 1]
    half = video.shape[1] // 2
    spans = [(FIRST, video[:, :half]), (SECOND, video[:, half:])]
    rows = [(f"stream, prompt {i + 1}", score(v, p, world)) for i, (p, v) in enumerate(spans)]
    for kind in ("real", "frozen", "random_walk"):
        clips, _ = reference_videos(world, [FIRST, SECOND], [0, 0], half, kind)
        values = [score(c, p, world) for c, p in zip(clips, [FIRST, SECOND], strict=True)]
        rows.append((f"{kind} (reference)", {k: sum(v[k] for v in values) / 2 for k in SHOWN}))
    print(f"\ntoy metrics of the {seconds}-s stream, per prompt span (rf.eval.toy_metrics; reference rows: the same")
    print("prompts rendered by the toy world, frozen at their first frame, and moved by a random walk):\n")
    print("| " + " | ".join(["row", *SHOWN]) + " |")
    print("|" + "---|" * (len(SHOWN) + 1))
    for name, values in rows:
        cells = ["nan" if math.isnan(values[k]) else f"{values[k]:.2f}" for k in SHOWN]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(
        "\nRead it against the reference rows: a speed ratio near 1 and direction agreement near the real row"
        "\nmean the object moves the asked way at the asked speed (frozen: 0; random walk: ~0 and ~0.33);"
        "\npersistence, shape and background accuracy say the asked object stays on the asked background."
        "\nWhat the shipped weights meet and miss: src/rf/toy/weights/MODEL_CARD.md."
    )


def shipped() -> list[str]:
    from rf.toy.shipped import SAMPLER_SHIFT, shipped_path

    runs = Path(os.environ.get("RF_RUNS", "runs"))
    teacher = shipped_path("shipped:teacher", "toy_large")
    out = runs / "generate" / "demo.mp4"
    stream("shipped", 30, out)
    report(out.with_suffix(".frames.pt"), 30)

    print("\nEvery stage, briefly, from the shipped weights (the CPU steps show the stages run; quality comes")
    print("from the GPU-trained weights):")
    shift = f"sampler.shift={SAMPLER_SHIFT}"  # the schedule the shipped student was distilled for
    common = ["model=toy_large", "logger.tensorboard=false"]
    run(["-m", "rf.train", "experiment=toy_teacher", *common, "name=demo_teacher", f"module.init_ckpt={teacher}",
         "trainer.max_steps=12", "data.batch_size=4", "data.frames=9"])  # fmt: skip
    fine_teacher = runs / "demo_teacher" / "checkpoints" / "last.ckpt"
    pairs = runs / "demo_ode_pairs"
    run(["-m", "rf.make_ode_pairs", "experiment=toy_ode_pairs", "model=toy_large", f"teacher_ckpt={fine_teacher}",
         "num_pairs=8", "ode_steps=8", "latent_frames=9", "batch_size=4", "shard_size=8", f"out={pairs}",
         shift])  # fmt: skip
    run(["-m", "rf.train", "experiment=toy_ode_init", *common, "name=demo_ode_init",
         f"module.teacher_ckpt={fine_teacher}", f"data.folder={pairs}", "trainer.max_steps=8",
         "data.batch_size=4", shift])  # fmt: skip
    student = teacher.with_name("student.safetensors")
    run(["-m", "rf.train", "experiment=toy_re_dmd", *common, "name=demo_re_dmd", f"module.teacher_ckpt={teacher}",
         f"module.student_ckpt={student}", "module.max_iterations=4", "module.generator_every=2",
         "module.latent_frames=9", "data.batch_size=2", "callbacks.video_log=null", shift])  # fmt: skip
    again = runs / "generate" / "demo_finetuned.mp4"
    stream(str(runs / "demo_re_dmd" / "checkpoints" / "last.ckpt"), 20, again, extra=[shift])
    report(again.with_suffix(".frames.pt"), 20)
    print(f"\nvideos: {out} and, after the CPU steps, {again} (contact sheets: the .png beside each)")


def scratch(args) -> None:
    runs = Path(os.environ.get("RF_RUNS", "runs"))
    run(["-m", "rf.train", "experiment=toy_teacher", f"trainer.max_steps={args.teacher_steps}"])
    run(["-m", "rf.make_ode_pairs", "experiment=toy_ode_pairs", f"num_pairs={args.pairs}", "ode_steps=24"])
    run(["-m", "rf.train", "experiment=toy_ode_init", f"trainer.max_steps={args.ode_init_steps}"])
    run(["-m", "rf.train", "experiment=toy_re_dmd", f"module.max_iterations={args.iterations}"])
    out = runs / "generate" / "demo_scratch.mp4"
    stream(str(runs / "toy_re_dmd" / "checkpoints" / "last.ckpt"), args.seconds, out, SCRATCH_SECOND, "toy")
    print(f"\nvideo: {out} (contact sheet: {out.with_suffix('.png')}); from scratch at CPU size it shows the chain")
    print("running, not quality: `make demo` streams the GPU-trained shipped weights.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scratch", action="store_true", help="the chain from random weights (make demo-scratch)")
    parser.add_argument("--teacher-steps", type=int, default=900, help="--scratch: teacher steps")
    parser.add_argument("--pairs", type=int, default=64, help="--scratch: ODE pairs")
    parser.add_argument("--ode-init-steps", type=int, default=300, help="--scratch: ODE-init steps")
    parser.add_argument("--iterations", type=int, default=100, help="--scratch: Re-DMD iterations")
    parser.add_argument("--seconds", type=int, default=30, help="--scratch: length of the streamed video")
    args = parser.parse_args()
    start = time.time()
    scratch(args) if args.scratch else shipped()
    print(f"\ndemo done in {(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
