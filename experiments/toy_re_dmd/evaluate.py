"""Motion of long streams from distilled toy students: the numbers behind README.md.

For each checkpoint: stream `--seconds` of video for `--prompts` held-out toy prompts (fixed seeds,
the same for every checkpoint) through rf's StreamSampler, decode, and score each video with the
raw motion score of rf.rewards.motion (percent of the frame diagonal per frame; real toy clips
average 3.36) over the whole stream and over its first and last 5 seconds. Also counts non-finite
values. Writes one JSON with every number and prints a table.

    python experiments/toy_re_dmd/evaluate.py --model toy_large --out results.json \
        dmd=runs/toy_dmd/checkpoints/last.ckpt re_dmd=runs/toy_re_dmd/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rf.diffusion.sampler import GeneratorNoise
from rf.lit.prompts import PromptDataModule
from rf.rewards.motion import MotionReward
from rf.stream import Streamer
from rf.utils.cli import CONF_DIR
from rf.utils.instantiate import pick_device


@torch.no_grad()
def evaluate(cfg, ckpt: str, prompts: list[str], seconds: float, use_ema: bool, device, batch: int) -> dict:
    streamer = Streamer.from_config(cfg, ckpt=ckpt, device=device, use_ema=use_ema)  # rf.stream: the one builder
    sampler, ae, text_encoder, sink = streamer.sampler, streamer.autoencoder, streamer.text_encoder, streamer.cache
    fps = cfg.model.video.fps
    frames = int(seconds * fps) // sink.chunk_frames * sink.chunk_frames
    reward = MotionReward()
    scores, first5, last5, nonfinite = [], [], [], 0
    for i in range(0, len(prompts), batch):
        p = prompts[i : i + batch]
        text = text_encoder(p).to(device)
        latents = sampler.rollout(
            [(0, text)], streamer.latent_shape(frames, len(p)), GeneratorNoise(10_000 + i, device)
        )
        video = ae.decode(latents.float())  # [b, 3, T, H, W]
        nonfinite += int((~torch.isfinite(video)).any(dim=(1, 2, 3, 4)).sum())
        scores += reward.score(video).tolist()
        first5 += reward.score(video[:, :, : 5 * fps]).tolist()
        last5 += reward.score(video[:, :, -5 * fps :]).tolist()
    t = torch.tensor(scores)
    return {
        "ckpt": ckpt, "use_ema": use_ema, "sink": OmegaConf.to_container(cfg.sink), "seconds": frames / fps,
        "videos": len(scores), "nonfinite_videos": nonfinite,
        "motion_mean": t.mean().item(), "motion_std": t.std().item(),
        "motion_first_5s": torch.tensor(first5).mean().item(), "motion_last_5s": torch.tensor(last5).mean().item(),
        "per_video": scores,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="NAME=CHECKPOINT")
    ap.add_argument("--model", default="toy")
    ap.add_argument("--sink", default="ema_sink")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--use-ema", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="toy_re_dmd_eval.json")
    args = ap.parse_args()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("generate", overrides=[f"model={args.model}", f"sink={args.sink}"])
    # held-out prompts: another seed than any training stream (seed 0)
    prompts = [PromptDataModule(seed=7).prompt_of(i) for i in range(args.prompts)]
    device = pick_device(args.device)
    results = {}
    for spec in args.runs:
        name, ckpt = spec.split("=", 1)
        results[name] = evaluate(cfg, ckpt, prompts, args.seconds, args.use_ema, device, args.batch)
    Path(args.out).write_text(json.dumps({"prompts": prompts, "results": results}, indent=1))
    print("| run | videos | seconds | motion (mean ± std) | first 5 s | last 5 s | non-finite |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['videos']} | {r['seconds']:.0f} | {r['motion_mean']:.2f} ± {r['motion_std']:.2f} | "
              f"{r['motion_first_5s']:.2f} | {r['motion_last_5s']:.2f} | {r['nonfinite_videos']} |")  # fmt: skip


if __name__ == "__main__":
    main()
