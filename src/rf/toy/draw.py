"""Drawing a toy scene: where its objects are at any frame, and the pixels of the frames.

Pure functions of a scene and the frame size, used by `rf.toy.world.ToyWorld` (which adds its size, frame
rate and edges). Objects move in closed form (`trajectory`), so any frame of an endless clip costs the same;
each object is a signed-distance shape with a one-pixel anti-aliased edge (`coverage`) drawn in order over a
static dim texture (`background`). Everything is float64 until `paint` returns the frames.

Edges: `wrap` (world v2) keeps the centres unwrapped (they leave the frame) and draws each object at its
centre modulo the frame, on the torus; otherwise (v1) objects bounce off the frame edges.
"""

from __future__ import annotations

import math

import torch

from rf.toy.rules import COLOURS, DIRECTIONS, SPEEDS
from rf.toy.scene import ObjectSpec, SceneSpec

_OTHER_SPEED = {"slow": "fast", "fast": "slow"}


def radius(obj: ObjectSpec, height: int, width: int) -> float:
    """The object's radius in px (its size is a diameter, a fraction of the shorter frame side)."""
    return obj.size * min(height, width) / 2


def trajectory(obj: ObjectSpec, t: torch.Tensor, height: int, width: int, fps: int, wrap: bool) -> torch.Tensor:
    """Centres at frames t: [T] -> [T, 2] pixels (x, y). Closed form, so any frame costs the same. When edges
    wrap, the centres are unwrapped (they leave the frame; the object is drawn at the centre mod the frame)."""
    r = radius(obj, height, width)
    extent = torch.tensor([width, height], dtype=torch.float64)
    dx, dy = DIRECTIONS[obj.direction]
    axis, sign = (0, dx) if dx else (1, dy)
    v0, v1 = (SPEEDS[s] * extent[axis].item() / fps for s in (obj.speed, _OTHER_SPEED[obj.speed]))
    c = obj.change_speed_at
    travelled = v0 * t if c is None else v0 * t.clamp(max=c) + v1 * (t - c).clamp(min=0)  # [T]
    if wrap:
        centre = (torch.tensor(obj.start, dtype=torch.float64) * extent).repeat(len(t), 1)  # [T, 2]
        centre[:, axis] += sign * travelled
        return centre
    span = extent - 2 * r  # the centre stays in [r, extent - r]: the object bounces when its edge hits
    centre = (r + torch.tensor(obj.start, dtype=torch.float64) * span).repeat(len(t), 1)  # [T, 2]
    # Bouncing between 0 and L is a triangle wave of the unbounded distance along the axis.
    length = span[axis].item()
    unfolded = obj.start[axis] * length + sign * travelled
    centre[:, axis] = r + length - ((unfolded % (2 * length)) - length).abs()
    return centre


def coverage(obj: ObjectSpec, centres: torch.Tensor, height: int, width: int, wrap: bool) -> torch.Tensor:
    """How much of each pixel the object covers: centres [F, 2] -> [F, H, W] in [0, 1]."""
    xs = torch.arange(width, dtype=torch.float64) + 0.5  # [W] pixel centres
    ys = torch.arange(height, dtype=torch.float64)[:, None] + 0.5  # [H, 1]
    x, y = xs - centres[:, 0, None, None], ys - centres[:, 1, None, None]  # [F, 1, W], [F, H, 1]
    if wrap:  # offsets on the torus: the nearest copy of the centre
        x = torch.remainder(x + width / 2, width) - width / 2
        y = torch.remainder(y + height / 2, height) - height / 2
    r = radius(obj, height, width)
    if obj.shape == "circle":
        sdf = torch.sqrt(x**2 + y**2) - r
    elif obj.shape == "square":
        sdf = torch.maximum(x.abs(), y.abs()) - r
    else:  # triangle filling the square's box, apex up: base y = r, sides through (0, -r) and (+-r, r)
        sdf = torch.maximum(y - r, (2 * x.abs() - y - r) / math.sqrt(5))
    # A one-pixel ramp across the edge: cheap anti-aliasing that keeps sub-pixel motion visible.
    return (0.5 - sdf).clamp(0, 1)


def background(scene: SceneSpec, height: int, width: int) -> torch.Tensor:
    """Static dim texture: [3, H, W] in [0, 0.35], in shorter-side units so it looks alike at any size."""
    side = min(height, width)
    x = (torch.arange(width, dtype=torch.float64) + 0.5) / side  # [W]
    y = (torch.arange(height, dtype=torch.float64)[:, None] + 0.5) / side  # [H, 1]
    period, cos, sin = scene.texture_period, math.cos(scene.texture_angle), math.sin(scene.texture_angle)
    if scene.background == "striped":
        pattern = (0.5 + 1.5 * torch.sin(2 * math.pi * (x * cos + y * sin) / period)).clamp(0, 1)
    elif scene.background == "checkered":
        pattern = ((x / period).floor() + (y / period).floor()) % 2
    elif scene.background == "dotted":  # dots half a period across on a square grid
        u, v = (x / period) % 1 - 0.5, (y / period) % 1 - 0.5  # offsets from the nearest dot, in periods
        distance = torch.sqrt(u**2 + v**2) * period * side  # pixels
        pattern = (0.5 + 0.25 * period * side - distance).clamp(0, 1)
    else:  # gradient through the frame centre
        along = (x - width / side / 2) * cos + (y - height / side / 2) * sin
        pattern = (0.5 + along).clamp(0, 1)
    pattern = pattern.expand(height, width)
    tint = torch.tensor(scene.tint, dtype=torch.float64)[:, None, None]
    return tint * (0.1 + 0.25 * pattern)


def paint(scene: SceneSpec, positions: torch.Tensor, height: int, width: int, wrap: bool) -> torch.Tensor:
    """The scene's objects at centres positions [F, N_obj, 2] px (x, y), float64, drawn in order over its
    background -> video [3, F, H, W] float32 in [-1, 1]."""
    video = background(scene, height, width)[:, None].repeat(1, len(positions), 1, 1)  # [3, F, H, W]
    for i, obj in enumerate(scene.objects):
        cover = coverage(obj, positions[:, i], height, width, wrap)  # [F, H, W]
        colour = torch.tensor(COLOURS[obj.colour], dtype=torch.float64)[:, None, None, None]
        video = video + cover * (colour - video)
    return (2 * video - 1).float()
