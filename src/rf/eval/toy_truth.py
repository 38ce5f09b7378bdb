"""Toy-world ground truth: does the video show what its prompt asked for?

A toy prompt names every object's colour, shape, direction and speed class (rf.toy.world), and the world's
palette is saturated against a dim background, so each object can be found by colour alone:

    mask_c(t) = pixels whose nearest palette colour is c, within `tolerance` (RGB in [0, 1]), isolated pixels
                dropped (an opening: colour noise is not an object)
    present_c(t) = area of mask_c(t) >= min_area * H * W

Three checks, each per prompt span of the video's schedule (one span without a prompt switch):

- motion: the object's velocity from frame t to t+1 is our optical flow (rf.utils.optical_flow) averaged over
  mask_c(t); the flow of the frames' similarity to colour c, exp(-(|rgb - c| / 0.7)^2), rather than of their
  luma, in which a red object on bright stripes nearly disappears. It is compared with the asked velocity:
  the speed class in px/frame (SPEEDS * frame extent / fps) along the asked axis, with the asked sign at
  first. Objects bounce off the frame edges, so the expected sign flips when the object reverses within reach
  of the wall it is heading to (its mask's leading edge closer than the asked speed + 2 px); those wall pairs
  are not scored. A reversal away from the walls is not a bounce: the pairs after it count as moving the wrong
  way until the object next meets a wall. While an object is hidden (mask under half its median area: behind
  another object) it is assumed to follow the asked motion, bounces included, and is not scored. Objects that
  change speed class ("while speeding up") are not scored between 1 s and 2 s into their span (the change
  happens at an unknown frame there). `motion_error` is the median over scored pairs of |v - v_asked|
  (px/frame); `direction_agreement` the fraction of scored pairs moving the asked way at >= a quarter of the
  asked speed. On rendered toy clips written to mp4 and read back, the motion error is ~0.1 px/frame and the
  direction agreement ~0.99 (tests/unit/test_eval_toy_truth.py). Colours shared by two objects of the prompt
  are left out of the motion check (their flows mix).
- persistence: the fraction of (object colour, segment) where the colour is present in at least half of the
  segment's frames, for the prompt in force (after `grace` frames past a switch).
- adherence after a prompt switch: per segment after switch + grace, the fraction of the new prompt's colours
  present, times (1 + the fraction of the old prompt's colours that the new one lacks which are gone) / 2:
  1 = the new objects and only they, 0.5 = the new objects beside the old ones, 0 = no new object.

Curves over segments: `toy_presence` (fraction of the active prompt's colours present) and `toy_motion_error`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rf.toy.grammar import parse_prompt
from rf.toy.rules import COLOURS, DIRECTIONS, SPEEDS
from rf.utils.optical_flow import optical_flow

PALETTE = list(COLOURS)
_OTHER = {"slow": "fast", "fast": "slow"}
WALL_MARGIN = 2.0  # px beyond the asked speed where a bounce may happen within the next frame pair
SIMILARITY_SCALE = 0.7  # RGB distance at which a pixel's similarity to the object's colour falls to 1/e
OCCLUDED = 0.5  # a mask below this fraction of its median area is (partly) hidden: its flow is not trusted
_AGREE = 0.25  # a pair moves "the asked way" at >= this fraction of the asked speed


def is_toy_prompt(prompt: str) -> bool:
    try:
        parse_prompt(prompt)
    except ValueError:
        return False
    return True


def colour_masks(video: torch.Tensor, tolerance: float = 0.3) -> torch.Tensor:
    """video [3, T, H, W] in [-1, 1] -> soft masks [K, T, H, W] in [0, 1], K = len(PALETTE): 1 - distance /
    tolerance for the pixels whose nearest palette colour is that one (RGB in [0, 1]), else 0."""
    rgb = ((video.float() + 1) / 2).permute(1, 2, 3, 0)  # [T, H, W, 3] in [0, 1]
    palette = torch.tensor([COLOURS[c] for c in PALETTE], dtype=rgb.dtype)  # [K, 3]
    distance = (rgb[..., None, :] - palette).norm(dim=-1)  # [T, H, W, K]
    nearest, index = distance.min(dim=-1)
    soft = (1 - nearest / tolerance).clamp(min=0)  # [T, H, W]
    masks = torch.stack([torch.where(index == k, soft, 0.0) for k in range(len(PALETTE))])  # [K, T, H, W]
    # Objects are blobs: an opening (pixels with >= 5 of their 3x3 neighbourhood in the colour, grown back by one
    # pixel within the colour) drops the isolated pixels that colour noise puts in every colour.
    binary = (masks > 0).float().flatten(0, 1)[:, None]  # [K * T, 1, H, W]
    count = F.conv2d(F.pad(binary, (1, 1, 1, 1)), torch.ones(1, 1, 3, 3))
    keep = (F.max_pool2d((count >= 5).float(), 3, stride=1, padding=1) > 0) & (binary > 0)
    return masks * keep.view(masks.shape)


def _spans(schedule: list[tuple[int, str]], frames: int) -> list[tuple[int, int, str]]:
    """[(first frame, prompt), ...] -> [(start, stop, prompt), ...] covering [0, frames)."""
    starts = [f for f, _ in schedule] + [frames]
    return [(starts[i], min(starts[i + 1], frames), p) for i, (_, p) in enumerate(schedule) if starts[i] < frames]


def _motion(layer, velocity, start, words, fps) -> list[tuple[int, float, bool]]:
    """Scored frame pairs of one object colour over its span. layer [T, H, W] soft mask of the span's frames,
    velocity [T-1, 2] measured (x, y) px/frame, start the span's first frame in the video
    -> [(pair index in the video, |v - v_asked| px/frame, agrees)]."""
    _, _, direction, speed, changes = words
    dx, dy = DIRECTIONS[direction]
    axis, sign = (0, dx) if dx else (1, dy)  # axis 0 = x (columns), 1 = y (rows)
    frames, h, w = layer.shape
    extent = w if axis == 0 else h
    area = layer.flatten(1).sum(dim=1)  # [T]
    full = area[area > 0].median().item() if (area > 0).any() else 0.0
    centre, half, out = None, 0.0, []
    for t in range(frames - 1):
        changing = changes and fps <= t < 2 * fps  # the speed class changes at an unknown frame in here
        s = SPEEDS[_OTHER[speed] if changes and t >= 2 * fps else speed] * extent / fps
        reach = max(SPEEDS.values()) * extent / fps if changing else s
        if area[t] < OCCLUDED * full or area[t + 1] == 0:
            # hidden (or mostly): follow the asked motion, bouncing, until it shows again
            if centre is not None:
                centre += sign * s
                if not half <= centre <= extent - half:
                    centre, sign = (2 * (extent - half) - centre, -sign) if sign > 0 else (2 * half - centre, -sign)
            continue
        coords = (layer[t] > 0).sum(dim=axis).nonzero()[:, 0]  # occupied columns (axis x) or rows (axis y)
        lo, hi = coords.min().item(), coords.max().item() + 1
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        along = velocity[t, axis].item()
        if (extent - hi if sign > 0 else lo) <= reach + WALL_MARGIN:
            if along * sign < 0:
                sign = -sign  # reversed at the wall it was heading to: a bounce
            continue
        if changing:
            continue
        asked = torch.zeros(2)
        asked[axis] = sign * s
        out.append((start + t, (velocity[t] - asked).norm().item(), along * sign > _AGREE * s))
    return out


def _velocity(video: torch.Tensor, colour: str, layer: torch.Tensor) -> torch.Tensor:
    """video [3, T, H, W] in [-1, 1], soft mask layer [T, H, W] of `colour` -> the object's velocity per frame
    pair [T-1, 2] (x, y) px/frame: the optical flow of the frames' similarity to the colour, averaged over the
    mask of the first frame of the pair; zero where the mask is empty."""
    rgb = ((video.float() + 1) / 2).permute(1, 2, 3, 0)  # [T, H, W, 3]
    similarity = torch.exp(-(((rgb - torch.tensor(COLOURS[colour])).norm(dim=-1) / SIMILARITY_SCALE) ** 2))
    flow = optical_flow((2 * similarity - 1)[None, None].expand(1, 3, -1, -1, -1), levels=3)[0]  # [T-1, 2, H, W]
    m = (layer[:-1] > 0).float()[:, None]  # [T-1, 1, H, W]
    return (flow * m).flatten(2).sum(dim=2) / m.flatten(2).sum(dim=2).clamp(min=1)


def _nanmean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def toy_truth(
    video: torch.Tensor,
    fps: float,
    schedule: list[tuple[int, str]],
    segment_frames: int,
    min_area: float = 0.005,
    tolerance: float = 0.3,
    grace_frames: int = 8,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """video [3, T, H, W] in [-1, 1]; schedule [(first frame, toy prompt), ...] starting at frame 0
    -> (values {toy_motion_error, toy_direction_agreement, toy_persistence, toy_adherence}, NaN where
    nothing could be checked; curves {toy_presence, toy_motion_error}, one value per segment)."""
    _, frames, h, w = video.shape
    masks = colour_masks(video, tolerance)  # [K, T, H, W]
    present = masks.flatten(2).sum(dim=2) >= min_area * h * w  # [K, T]
    segments = [(s, min(frames, s + segment_frames)) for s in range(0, frames, segment_frames)]

    errors, agreements, persistence, adherence = [], [], [], []
    seg_presence = [math.nan] * len(segments)
    seg_errors: list[list[float]] = [[] for _ in segments]
    spans = _spans(schedule, frames)
    for i, (start, stop, prompt) in enumerate(spans):
        objects, _ = parse_prompt(prompt)
        colours = sorted({o[1] for o in objects})
        index = [PALETTE.index(c) for c in colours]
        for c in colours:
            same = [o for o in objects if o[1] == c]
            if len(same) == 1 and stop - start > 1:
                layer = masks[PALETTE.index(c), start:stop]
                pairs = _motion(layer, _velocity(video[:, start:stop], c, layer), start, same[0], fps)
                errors.append(_median([e for _, e, _ in pairs]))
                agreements.append(sum(a for _, _, a in pairs) / len(pairs) if pairs else math.nan)
                for t, e, _ in pairs:
                    seg_errors[t // segment_frames].append(e)
        old = [] if i == 0 else [PALETTE.index(c) for c in {o[1] for o in parse_prompt(spans[i - 1][2])[0]}]
        gone = [k for k in old if k not in index]
        for j, (s0, s1) in enumerate(segments):
            lo, hi = max(s0, start if i == 0 else start + grace_frames), min(s1, stop)
            if s0 < start or s0 >= stop or hi <= lo:
                continue
            seen = present[index, lo:hi].float().mean(dim=1) >= 0.5  # [colours]
            persistence += seen.tolist()
            seg_presence[j] = seen.float().mean().item()
            if i > 0:
                left = (present[gone, lo:hi].float().mean(dim=1) < 0.5).float().mean().item() if gone else 1.0
                adherence.append(seen.float().mean().item() * (1 + left) / 2)
    values = {
        "toy_motion_error": _nanmean(errors),
        "toy_direction_agreement": _nanmean(agreements),
        "toy_persistence": sum(persistence) / len(persistence) if persistence else math.nan,
        "toy_adherence": sum(adherence) / len(adherence) if adherence else math.nan,
    }
    curves = {"toy_presence": seg_presence, "toy_motion_error": [_median(e) for e in seg_errors]}
    return values, curves


def _median(values: list[float]) -> float:
    return torch.tensor(values).median().item() if values else math.nan
