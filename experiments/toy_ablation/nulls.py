"""Reference rows for the world-v1 results (toy_ablation, toy_re_dmd): the same toy_truth scorer on rendered
real clips, on frozen objects and on random walks of the same evaluation prompts and length.

    python experiments/toy_ablation/nulls.py [--prompts 8] [--seconds 60]

The prompts are `make eval`'s toy prompts for toy models at the time (world v1, seeds from TOY_PROMPT_SEED);
scored as `make eval` scored the students (rf.eval.toy_truth on 2-s segments), but on the tensors, not on mp4.
"""

import argparse

import torch

from rf.eval.inputs import TOY_PROMPT_SEED
from rf.eval.toy_references import reference_videos
from rf.eval.toy_truth import toy_truth
from rf.toy.world import ToyWorld


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    world = ToyWorld(32, 32, 8, max_objects=2, preset="v1")
    prompts = [world.sample_scene(TOY_PROMPT_SEED + i).prompt() for i in range(args.prompts)]
    frames = int(args.seconds * world.fps)
    keys = ("toy_motion_error", "toy_direction_agreement", "toy_persistence")
    print("| reference (world v1, toy_truth) | " + " | ".join(keys) + " |")
    print("|---|---|---|---|")
    for kind in ("real", "frozen", "random_walk", "mirrored"):
        videos, _ = reference_videos(world, prompts, list(range(len(prompts))), frames, kind)
        rows = [toy_truth(v, world.fps, [(0, p)], 2 * world.fps)[0] for v, p in zip(videos, prompts, strict=True)]
        means = [torch.tensor([r[k] for r in rows]).nanmean().item() for k in keys]
        print(f"| {kind} | " + " | ".join(f"{m:.2f}" for m in means) + " |", flush=True)


if __name__ == "__main__":
    main()
