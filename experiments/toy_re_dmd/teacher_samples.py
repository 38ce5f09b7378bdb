"""Contact sheet of toy-teacher samples next to real toy clips of the same prompts (a quality check).

python experiments/toy_re_dmd/teacher_samples.py runs/toy_gpu/toy_teacher/checkpoints/last.ckpt out.png
"""

from __future__ import annotations

import argparse

import torch
from PIL import Image

from rf.diffusion.ode import cfg_velocity, euler_solve, sigma_grid
from rf.lit.teacher import TeacherModule
from rf.toy.world import ToyWorld
from rf.utils.instantiate import pick_device
from rf.utils.video import contact_sheet


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--frames", type=int, default=21)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=48)
    args = ap.parse_args()
    device = pick_device("auto")
    ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    module = TeacherModule(**ckpt["hyper_parameters"])
    module.load_state_dict(ckpt["state_dict"])
    module = module.to(device).eval()
    world = ToyWorld(32, 32, 8)
    clips = [world.sample(10**7 + i, args.frames) for i in range(args.n)]
    text = module.text_encoder([c.prompt for c in clips]).to(device)
    ae = module.autoencoder
    shape = (args.n, ae.latent_channels, args.frames, 32 // ae.spatial_factor, 32 // ae.spatial_factor)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    velocity = cfg_velocity(module.transformer, text, torch.zeros_like(text), args.guidance)
    x0, _ = euler_solve(velocity, noise, sigma_grid(args.steps, 5.0))
    video = ae.decode(x0.float()).cpu()
    rows = []
    for i, clip in enumerate(clips):  # sample row, then the real clip of the same prompt
        rows += [contact_sheet(v, columns=11, max_frames=11) for v in (video[i], clip.video)]
    grid = torch.cat(rows).numpy()
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(args.out)
    for i, clip in enumerate(clips):
        print(f"row {2 * i}: {clip.prompt}")


if __name__ == "__main__":
    main()
