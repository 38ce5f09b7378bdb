"""Contact sheet of the students' 60-s streams (the `.NAME.pt` frames `evaluate.py students --sheets` keeps).

    python experiments/toy_world/sheet.py results/students_eval.json ode_init dmd_s0 re_dmd_s0 --out sheet.png

One row per (run, prompt): the first `--prompts` prompts of each run in turn, 16 frames evenly across the stream.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from rf.utils.video import contact_sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_json", type=Path)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    for name in args.runs:
        frames = torch.load(args.eval_json.with_suffix(f".{name}.pt")).float()  # [P, 3, T, H, W] in [-1, 1]
        for video in frames[: args.prompts]:
            rows.append(contact_sheet(video, columns=args.frames, max_frames=args.frames))  # [H, 16 W, 3]
    Image.fromarray(torch.cat(rows).numpy()).resize((16 * 32 * 3, len(rows) * 32 * 3), Image.NEAREST).save(args.out)
    print(f"wrote {args.out}: rows {', '.join(f'{n} x {args.prompts}' for n in args.runs)}")


if __name__ == "__main__":
    main()
