"""Toy-world metrics that can fail (world v2): does a video show what its toy prompt asked for?

World v2 (rf.toy.world) draws 1-2 saturated objects of distinct colours over a dim static texture; objects
move at a constant velocity along one axis and wrap around the frame edges (a torus). Every metric works on
the video tensor alone, by colour, and is calibrated against the world itself (templates and expected areas
are rendered by the world, not typed in). Each is defined in the module docstring of the file that computes it:

    rf.eval.toy_tracking       the objects found by colour on the torus: masks, components, centres (Track)
    rf.eval.toy_calibration    expected areas, shape and background templates, rendered by the world
    rf.eval.toy_object_metrics per object of the prompt (by its colour; two objects of one colour are ambiguous
                               and left out): speed_ratio, cross_speed, motion_error, direction_agreement,
                               persistence, area_ratio, shape_accuracy
    rf.eval.toy_scene_metrics  per video: background_accuracy, background_flow, scene_change
    rf.eval.toy_references     reference clips: real (rendered), frozen, random walk, mirrored

Built for world v2: in v1 (bouncing edges, random tints and angles) the signed motion metrics count every
bounce as moving the wrong way and the background templates are untinted.

`score(video, prompt, world)` (this file) returns every metric (NaN where it cannot be measured: not a toy
prompt, object never present, ...); `reference_videos` / `reference_rows` make and score reference clips
(rendered, frozen, random walk, mirrored) with the same code. Everything is vectorised over frames: a
480-frame 32x32 video scores in a fraction of a second on one CPU thread.
"""

from __future__ import annotations

import math

import torch

from rf.eval.toy_calibration import calibration
from rf.eval.toy_object_metrics import integrity, motion_metrics, shape_accuracy
from rf.eval.toy_references import KINDS, reference_videos
from rf.eval.toy_scene_metrics import background_accuracy, background_flow, scene_change
from rf.eval.toy_tracking import NAN, TOLERANCE, mean_or_nan, median_or_nan, nearest_colour, track
from rf.toy.grammar import parse_prompt
from rf.toy.world import ToyWorld

METRICS = (
    "speed_ratio",
    "cross_speed",
    "motion_error",
    "direction_agreement",
    "persistence",
    "area_ratio",
    "shape_accuracy",
    "background_accuracy",
    "background_flow",
    "scene_change",
)


def _nanmean(values) -> float:
    """The mean of the values that are not NaN; NaN when none is (an average over objects or clips)."""
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else NAN


def score(
    video: torch.Tensor,
    prompt: str,
    world: ToyWorld,
    chunk_frames: int = 3,
    tolerance: float = TOLERANCE,
    flow: float | None = None,
) -> dict[str, float]:
    """video [3, T, H, W] in [-1, 1] and its toy prompt -> {metric: value} for every name in METRICS, NaN where
    it cannot be measured (a prompt outside the toy grammar: all NaN). Per-object metrics are averaged over the
    prompt's objects of distinct colours. `flow`: background_flow when already computed (score_batch)."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"video shape {tuple(video.shape)} must be [3, T, H, W]")
    try:
        objects, background = parse_prompt(prompt)
    except ValueError:
        return dict.fromkeys(METRICS, NAN)
    _, t, h, w = video.shape
    if (h, w) != (world.height, world.width):
        raise ValueError(f"video is {h}x{w} but the world draws {world.height}x{world.width}")
    cal = calibration(world)
    index = nearest_colour(video, tolerance)
    colours = [o[1] for o in objects]
    per_object: dict[str, list[float]] = {}
    for shape, colour, direction, speed, _ in objects:
        if colours.count(colour) > 1 or (shape, colour) not in cal.expected_area:
            continue  # ambiguous (two objects of a colour) or a colour this world never draws
        expected = cal.expected_area[shape, colour]
        tr = track(video, colour, expected, index, tolerance)
        values = motion_metrics(tr, direction, world.speed_px(speed, direction), h, w)
        values["persistence"] = mean_or_nan(integrity(tr, expected))
        values["area_ratio"] = median_or_nan(tr.area[tr.present] / expected)
        values["shape_accuracy"] = shape_accuracy(tr, shape, world)
        for k, v in values.items():
            per_object.setdefault(k, []).append(v)
    out = {k: _nanmean(per_object.get(k, [])) for k in METRICS[:7]}
    out["background_accuracy"] = background_accuracy(video, background, index, world)
    if flow is None:
        flow = background_flow(video[None], tolerance)[0].item()
    out["background_flow"] = flow
    out["scene_change"] = scene_change(video, chunk_frames)
    return out


def score_batch(
    videos: torch.Tensor, prompts: list[str], world: ToyWorld, chunk_frames: int = 3, tolerance: float = TOLERANCE
) -> list[dict[str, float]]:
    """videos [B, 3, T, H, W] in [-1, 1], one prompt each -> one score dict per video."""
    if videos.ndim != 5 or len(prompts) != len(videos):
        raise ValueError(f"videos {tuple(videos.shape)} must be [B, 3, T, H, W] with one prompt each")
    flows = background_flow(videos, tolerance)
    return [
        score(v, p, world, chunk_frames, tolerance, flow=f.item())
        for v, p, f in zip(videos, prompts, flows, strict=True)
    ]


def reference_rows(
    world: ToyWorld, prompts: list[str] | None, seeds: list[int], frames: int, kinds: tuple[str, ...] = KINDS
) -> dict[str, dict[str, float]]:
    """{kind: {metric: mean over the clips, NaNs left out}} for the reference kinds (see reference_videos)."""
    rows = {}
    for kind in kinds:
        videos, texts = reference_videos(world, prompts, seeds, frames, kind)
        scores = score_batch(videos, texts, world)
        rows[kind] = {m: _nanmean([s[m] for s in scores]) for m in METRICS}
    return rows
