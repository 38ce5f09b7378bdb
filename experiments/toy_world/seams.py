"""Where does a student's background flow come from: inside its 3-frame chunks, or at the seams between them?

    python experiments/toy_world/seams.py src/rf/toy/weights/student.safetensors --seconds 6

Streams 4 held-out single-object prompts with EMA-Sink (the shipped student's shift), takes each frame pair's
background flow (rf.eval.toy_metrics.background_flow, per_pair) and prints the mean of the pairs inside a chunk
and of those that cross a chunk seam, then the first pairs in order.
"""

from __future__ import annotations

import argparse

import torch
from hydra import compose, initialize_config_dir

from rf.diffusion.sampler import GeneratorNoise
from rf.eval import toy_metrics
from rf.stream import Streamer
from rf.toy.shipped import SAMPLER_SHIFT
from rf.toy.world import ToyWorld
from rf.utils.cli import CONF_DIR

PROMPTS_SEED = 3_000_000_019  # the regression test's held-out scenes


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--shift", type=float, default=SAMPLER_SHIFT)
    args = ap.parse_args()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("generate", overrides=["model=toy_large", "sink=ema_sink", f"sampler.shift={args.shift}"])
    world = ToyWorld(cfg.model.video.height, cfg.model.video.width, cfg.model.video.fps)
    prompts = [world.sample_scene(PROMPTS_SEED + i, objects=1).prompt() for i in range(4)]
    streamer = Streamer.from_config(cfg, ckpt=args.ckpt, device=torch.device("cpu"))  # rf.stream: the one builder
    sampler, ae, text_encoder = streamer.sampler, streamer.autoencoder, streamer.text_encoder
    chunk = streamer.cache.chunk_frames
    frames = chunk * max(2, round(args.seconds * cfg.model.video.fps / chunk))
    latents = sampler.rollout([(0, text_encoder(prompts))], (4, ae.latent_channels, frames, 16, 16),
                              GeneratorNoise(0, torch.device("cpu")))  # fmt: skip
    video = ae.decode(latents).clamp(-1, 1)  # [4, 3, T, H, W]
    flow = toy_metrics.background_flow(video, max_pairs=None, per_pair=True).mean(0)  # [T - 1] px/frame
    seam = (torch.arange(1, frames) % chunk) == 0  # pair (i, i + 1) crosses a seam when frame i + 1 starts a chunk
    print(f"background flow (px/frame): inside chunks {flow[~seam].mean():.3f}, across seams {flow[seam].mean():.3f},"
          f" first seam {flow[seam][0]:.3f}")  # fmt: skip
    print("pairs in order: " + " ".join(f"{x:.2f}" for x in flow[:24].tolist()))


if __name__ == "__main__":
    main()
