"""python -m rf.demo (make demo): the whole Reward Forcing chain on a laptop CPU, on the toy world.

1. train the toy teacher (a small bidirectional Wan, flow matching);
2. solve its ODE for a few dozen toy prompts (ODE pairs);
3. ODE-initialise the causal student on them;
4. distil it with Re-DMD (motion reward, EMA-Sink rollouts);
5. stream 30 s from the student, EMA-Sink cache, switching the prompt halfway without resetting
   the cache, and print where the mp4 and its contact sheet are.

Each step is the public command a user would type, so the demo is also their smoke test, and a
relaunch continues every step from its checkpoint instead of starting over. The sizes are for
2 CPU cores in about 10 minutes: the video shows the chain working, not the quality a GPU run
reaches (experiments/toy_re_dmd).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

FIRST = "a red circle moving fast to the right on a striped background"
SECOND = "a blue square and a yellow triangle moving slowly upwards on a dotted background"


def run(args: list[str]) -> None:
    print("\n$ python " + " ".join(args), flush=True)
    if subprocess.run([sys.executable, *args]).returncode:
        sys.exit("demo stopped: the step above failed (rerun `make demo` to continue from where it stopped)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-steps", type=int, default=900)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--ode-init-steps", type=int, default=300)
    parser.add_argument("--iterations", type=int, default=100, help="Re-DMD iterations")
    parser.add_argument("--seconds", type=int, default=30, help="length of the streamed video")
    args = parser.parse_args()
    runs = Path(os.environ.get("RF_RUNS", "runs"))
    start = time.time()

    run(["-m", "rf.train", "experiment=toy_teacher", f"trainer.max_steps={args.teacher_steps}"])
    run(["-m", "rf.make_ode_pairs", "experiment=toy_ode_pairs", f"num_pairs={args.pairs}", "ode_steps=24"])
    run(["-m", "rf.train", "experiment=toy_ode_init", f"trainer.max_steps={args.ode_init_steps}"])
    run(["-m", "rf.train", "experiment=toy_re_dmd", f"module.max_iterations={args.iterations}"])
    out = runs / "generate" / "demo.mp4"
    run([
        "-m", "rf.generate",
        f"ckpt={runs / 'toy_re_dmd' / 'checkpoints' / 'last.ckpt'}",
        f"seconds={args.seconds}",
        "sink=ema_sink",
        f'schedule=[{{at:0,prompt:"{FIRST}"}},{{at:{args.seconds / 2},prompt:"{SECOND}"}}]',
        f"out={out}",
    ])  # fmt: skip
    print(f"\ndemo done in {(time.time() - start) / 60:.1f} min: open {out} (contact sheet: {out.with_suffix('.png')})")


if __name__ == "__main__":
    main()
