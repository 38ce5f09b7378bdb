"""Reference clips for the toy metrics: what a toy prompt looks like done right, and the nulls that must fail.

Every reference is drawn by the world itself from the scene of a prompt (or of a seed), so the metrics are
read against the same scenes: `real` (the rendered clip), `frozen` (its first frame held), `random_walk`
(each object from its rendered start, steps of its asked speed in uniformly random directions, seeded) and
`mirrored` (every object moving the opposite way). rf.eval.toy_metrics.reference_rows scores them.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import torch

from rf.toy.world import ToyWorld

KINDS = ("real", "frozen", "random_walk", "mirrored")
_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def reference_videos(
    world: ToyWorld, prompts: list[str] | None, seeds: list[int], frames: int, kind: str
) -> tuple[torch.Tensor, list[str]]:
    """Reference clips scored against the prompts of the rendered scenes -> (videos [B, 3, F, H, W], prompts).
    Scenes: world.scene_from_prompt(prompt, seed) for zip(prompts, seeds), or world.sample_scene(seed) when
    prompts is None. kind: real (rendered), frozen (the first rendered frame repeated), random_walk (each object
    from its rendered start, steps of its asked speed in uniformly random directions, seeded), mirrored (the same
    scene with every object moving the opposite way)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    if prompts is None:
        scenes = [world.sample_scene(seed) for seed in seeds]
    else:
        scenes = [world.scene_from_prompt(p, seed) for p, seed in zip(prompts, seeds, strict=True)]
    videos = []
    for scene, seed in zip(scenes, seeds, strict=True):
        if kind == "mirrored":
            objects = tuple(replace(o, direction=_OPPOSITE[o.direction]) for o in scene.objects)
            videos.append(world.render(replace(scene, objects=objects), frames).video)
            continue
        clip = world.render(scene, frames)
        if kind == "real":
            videos.append(clip.video)
        elif kind == "frozen":
            videos.append(clip.video[:, :1].repeat(1, frames, 1, 1))
        else:
            rng = random.Random(f"toy-random-walk-{seed}")
            speeds = [world.speed_px(o.speed, o.direction) for o in scene.objects]
            angles = torch.tensor([[rng.uniform(0, 2 * math.pi) for _ in speeds] for _ in range(frames - 1)])
            steps = torch.stack([angles.cos(), angles.sin()], dim=-1) * torch.tensor(speeds)[None, :, None]
            steps = torch.cat([torch.zeros(1, len(speeds), 2), steps])  # [F, N, 2]
            videos.append(world.render_along(scene, clip.positions[:1].double() + steps.double().cumsum(dim=0)))
    return torch.stack(videos), [s.prompt() for s in scenes]
