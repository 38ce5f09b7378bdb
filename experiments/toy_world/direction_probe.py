"""Does a toy teacher read the direction words? Its flow-matching loss on real clips, by noise level, with the
prompt as written, with the direction swapped (left <-> right, up <-> down) and with the empty prompt.

    python experiments/toy_world/direction_probe.py CKPT [--overrides "model.world.start_jitter=0.1"]

A teacher that ignores the direction scores the same loss with the swapped prompt; one that uses it scores
a higher loss there. Same clips, same noise for every prompt; the gap is printed per noise level s.
"""

from __future__ import annotations

import argparse
import json

import torch
from omegaconf import OmegaConf

from rf.diffusion.flow import add_noise, flow_target
from rf.models.loading import load_transformer
from rf.toy.world import ToyWorld
from rf.utils.instantiate import instantiate, pick_device

SWAP = {"to the left": "to the right", "to the right": "to the left", "upwards": "downwards", "downwards": "upwards"}


def swapped(prompt: str) -> str:
    for a, b in SWAP.items():
        if a in prompt:
            return prompt.replace(a, b)
    raise ValueError(f"no direction in {prompt!r}")


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt")
    ap.add_argument("--model", default="toy_large")
    ap.add_argument("--overrides", default="")
    ap.add_argument("--clips", type=int, default=128)
    ap.add_argument("--frames", type=int, default=21)
    ap.add_argument("--levels", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import evaluate  # noqa: PLC0415 (this folder's evaluate.py: the same config loading)

    cfg = evaluate.load_cfg(args.model, args.overrides.split())
    v = cfg.model.video
    world = ToyWorld(height=v.height, width=v.width, fps=v.fps, **OmegaConf.to_container(cfg.model.world))
    device = pick_device("auto")
    arch = OmegaConf.to_container(cfg.model.transformer, resolve=True)
    model = load_transformer(arch, args.ckpt, causal=False)[0].to(device).eval()
    ae, te = instantiate(cfg.model.autoencoder).to(device), instantiate(cfg.model.text_encoder).to(device)
    scenes = [world.sample_scene(evaluate.HELD_OUT + i, objects=1) for i in range(args.clips)]
    x0 = ae.encode(torch.stack([world.render(s, args.frames).video for s in scenes]).to(device))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(device)
    prompts = [s.prompt() for s in scenes]
    texts = {"as written": te(prompts), "direction swapped": te([swapped(p) for p in prompts])}
    texts["empty"] = torch.zeros_like(texts["as written"])
    rows = []
    for s in args.levels:
        xt = add_noise(x0, noise, torch.tensor(s))
        t = torch.full((len(prompts),), s * 1000.0, device=device)
        loss = {k: (model(xt, t, text.to(device)).sample - flow_target(x0, noise)).square().mean().item()
                for k, text in texts.items()}  # fmt: skip
        rows.append({"s": s, **loss})
        print(f"s={s}: " + "  ".join(f"{k} {x:.5f}" for k, x in loss.items())
              + f"  swap gap {loss['direction swapped'] - loss['as written']:+.5f}", flush=True)  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
