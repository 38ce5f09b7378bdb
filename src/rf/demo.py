"""python -m rf.demo (make demo): the whole story on a laptop CPU, on the toy world.

1. train the toy teacher (a small bidirectional Wan, flow matching) for a few minutes;
2. stream 30 s of video from a student initialised with its weights, EMA-Sink cache,
   switching the prompt halfway without resetting the cache;
3. print where the mp4 and its contact sheet are.

Each step is the public command a user would type, so the demo is also their smoke test.
Relaunching continues the teacher from its checkpoint instead of starting over.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

FIRST = "a red circle moving fast to the right on a striped background"
SECOND = "a blue square and a yellow triangle moving slowly upwards on a dotted background"


def run(args: list[str]) -> None:
    print("\n$ python " + " ".join(args), flush=True)
    result = subprocess.run([sys.executable, *args])
    if result.returncode:
        sys.exit(result.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-steps", type=int, default=1200, help="flow-matching steps of the toy teacher")
    parser.add_argument("--seconds", type=int, default=30, help="length of the streamed video")
    args = parser.parse_args()
    runs = Path(os.environ.get("RF_RUNS", "runs"))

    run(["-m", "rf.train", "experiment=toy_teacher", f"trainer.max_steps={args.teacher_steps}"])
    half = args.seconds / 2
    run([
        "-m", "rf.generate",
        f"ckpt={runs / 'toy_teacher' / 'checkpoints' / 'last.ckpt'}",
        f"seconds={args.seconds}",
        "sink=ema_sink",
        f'schedule=[{{at:0,prompt:"{FIRST}"}},{{at:{half},prompt:"{SECOND}"}}]',
        f"out={runs / 'generate' / 'demo.mp4'}",
    ])  # fmt: skip
    print(f"\ndemo done: open {runs / 'generate' / 'demo.mp4'} (and demo.png beside it)")


if __name__ == "__main__":
    main()
