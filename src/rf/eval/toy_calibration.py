"""What a toy world's objects and backgrounds look like to the toy metrics, rendered by the world itself.

The toy metrics (rf.eval.toy_metrics) compare a video with what its world draws, never with typed-in numbers.
`calibration(world)` renders, once per world size and rule set (cached):

    expected area        the mask area (rf.eval.toy_tracking) of each shape in each colour of the rules,
                         rendered at its mean size (rules.size), averaged over the backgrounds and 4 sub-pixel
                         positions. Rendered objects span 0.60-1.40 of it (sizes 0.34-0.44 of the side, and
                         the sub-pixel position)
    shape templates      the world's circle, square and triangle at TEMPLATE_SIZES sizes across rules.size and
                         the same 4 sub-pixel positions, masked the same way, centred the same way
                         (centre_masks), each at every integer shift of +-1 px
    background templates the world's texture for every type x angle x period of the rules, with the type's
                         tint (v2 textures have no phase: fixed per type and angle, so none is searched)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from rf.eval.toy_tracking import centre_masks, track
from rf.toy import draw
from rf.toy.rules import BACKGROUNDS, SHAPES, TINTS
from rf.toy.scene import ObjectSpec, SceneSpec
from rf.toy.world import ToyWorld

TEMPLATE_SIZES = 4  # template sizes across rules.size for the shape classifier


@dataclass
class Calibration:
    expected_area: dict  # (shape, colour) -> px
    templates: torch.Tensor  # [S * P, H * W] float 0/1: shape templates, centred, at every +-1 px shift
    template_shape: torch.Tensor  # [S * P] long index into SHAPES
    backgrounds: torch.Tensor  # [B, 3, H * W] in [0, 1]
    background_type: torch.Tensor  # [B] long index into BACKGROUNDS


_CALIBRATIONS: dict = {}


def _scene(world: ToyWorld, shape: str, colour: str, size: float, background: str, angle: float = 0.0) -> SceneSpec:
    rules = world.rules
    tint = TINTS[rules.tints[background]] if rules.tints is not None else (1.0, 1.0, 1.0)
    period = sum(rules.texture_period) / 2
    return SceneSpec((ObjectSpec(shape, colour, "right", "slow", size),), background, tint, period, angle)


def calibration(world: ToyWorld) -> Calibration:
    """Expected areas, shape templates and background templates of a world, rendered by the world (cached)."""
    key = (world.height, world.width, repr(world.rules))
    if key in _CALIBRATIONS:
        return _CALIBRATIONS[key]
    rules, h, w = world.rules, world.height, world.width
    offsets = torch.tensor([[0.0, 0.0], [0.25, 0.5], [0.5, 0.25], [0.75, 0.75]])
    positions = (torch.tensor([w / 2, h / 2]) + offsets)[:, None]  # [P, 1, 2]
    mean_size = sum(rules.size) / 2
    expected = {}
    for shape in SHAPES:
        for colour in rules.colours:
            areas = []
            for background in BACKGROUNDS:
                video = world.render_along(_scene(world, shape, colour, mean_size, background), positions)
                areas.append(track(video, colour, 0.0).area.float().mean())
            expected[shape, colour] = torch.stack(areas).mean().item()
    # Shape templates: masks of each shape in one colour on one background, at 4 sizes and 4 sub-pixel offsets.
    colour = rules.colours[0]
    sizes = torch.linspace(rules.size[0], rules.size[1], TEMPLATE_SIZES).tolist()
    masks, labels = [], []
    for k, shape in enumerate(SHAPES):
        for size in sizes:
            video = world.render_along(_scene(world, shape, colour, size, "gradient"), positions)
            masks.append(centre_masks(track(video, colour, 0.0).mask))
            labels += [k] * len(positions)
    masks = torch.cat(masks)  # [S * P, H, W]
    shifted = torch.stack([masks.roll((dy, dx), (1, 2)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dim=1)
    templates = shifted.flatten(0, 1).flatten(1).float()
    template_shape = torch.tensor(labels).repeat_interleave(9)
    # Background templates: every type x angle x period the rules can draw, with the type's tint.
    angles = rules.texture_angles if rules.texture_angles is not None else tuple(range(0, 180, 15))
    lo, hi = rules.texture_period
    periods = [lo] if lo == hi else torch.linspace(lo, hi, 5).tolist()
    backgrounds, types = [], []
    for k, background in enumerate(BACKGROUNDS):
        for angle in angles:
            for period in periods:
                scene = _scene(world, "circle", colour, 0.3, background, math.radians(angle))
                scene = replace(scene, texture_period=period)
                backgrounds.append(draw.background(scene, h, w).float().flatten(1))  # the texture only, no object
                types.append(k)
    result = Calibration(expected, templates, template_shape, torch.stack(backgrounds), torch.tensor(types))
    _CALIBRATIONS[key] = result
    return result
