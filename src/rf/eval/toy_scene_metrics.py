"""Whole-scene toy metrics (world v2): the asked background, a static background, one scene from the start.

Each works on the video tensor alone; the objects are found by colour (rf.eval.toy_tracking.nearest_colour)
and left out.

    background_accuracy fraction of frames whose background is classified as the asked type. The background is
                  pixels outside every palette colour's mask grown by BG_DILATE px (objects and their
                  rims); the class is the type of the nearest template (mean squared error over those pixels)
                  among the world's textures for every type x angle x period of the rules, with the type's
                  tint (rf.eval.toy_calibration). Frames with under MIN_BACKGROUND of the frame visible are
                  not scored.
    background_flow mean optical-flow magnitude (rf.utils.optical_flow, px/frame) over the pixels outside every
                  palette colour's mask grown by FLOW_DILATE px in both frames of the pair, after painting the
                  objects out (each such pixel takes its median over the frames where it is background): the
                  flow's coarse pyramid levels would otherwise carry the objects' motion into the flat parts of
                  the background (~0.5 px/frame on rendered clips; 0 once painted out). At most MAX_FLOW_PAIRS
                  pairs, evenly spread (a mean: a sample is enough).
    scene_change  does the first chunk (frames 0..chunk-1) belong to the scene of the rest? With D(i, j) the
                  mean absolute pixel difference of frames i and j (RGB in [0, 1]) and L = j - i:
                      numerator   = mean over i < chunk <= j of D(i, j)
                      denominator = mean over the same pairs of Dlater(j - i),
                                    Dlater(L) = mean over chunk <= i', i' + L < T of D(i', i' + L)
                      scene_change = (numerator + SCENE_EPS) / (denominator + SCENE_EPS)
                  Pairs whose lag has no later pair are dropped; Dlater averages over at most SCENE_STARTS start
                  frames i' (evenly spread). A stationary clip (constant motion over a static background, also a
                  frozen one) gives ~1 whatever its motion: each first-chunk pair is compared with later pairs of
                  the same time separation (on the torus the distance is periodic in the lag, so comparing
                  across lags would not do). Measured on 60 rendered 24-frame clips: 0.93-1.20; with the first
                  chunk drawn on another background 1.45-4.6. A first chunk from another scene on the same
                  background type differs only by its objects, as much as motion does, and may score ~1. The
                  mean absolute difference (not RMS) lets a change spread over the whole frame (the background)
                  weigh as much as its area, against the objects' large but local differences.
"""

from __future__ import annotations

import torch

from rf.eval.toy_calibration import calibration
from rf.eval.toy_tracking import NAN, TOLERANCE, dilate, mean_or_nan, nearest_colour
from rf.toy.rules import BACKGROUNDS
from rf.toy.world import ToyWorld
from rf.utils.optical_flow import optical_flow

BG_DILATE = 2  # px grown around every palette-coloured pixel before the background is classified
FLOW_DILATE = 2  # px grown around every palette-coloured pixel before the background flow is measured
MIN_BACKGROUND = 0.2  # fraction of the frame that must stay visible for its background to be classified
SCENE_EPS = 1e-3  # mean |difference| added to both sides of scene_change: a frozen clip scores 1, not 0/0
SCENE_STARTS = 64  # scene_change: start frames of the later pairs of each lag, at most (evenly spread)
MAX_FLOW_PAIRS = 64  # background_flow: pairs scored per video, evenly spread (a mean: a sample is enough)


def background_accuracy(video: torch.Tensor, background: str, index: torch.Tensor, world: ToyWorld) -> float:
    """Fraction of the scored frames of video [3, T, H, W] in [-1, 1] whose background is classified as
    `background` (`index`: nearest_colour(video)); NaN when no frame shows enough background."""
    cal = calibration(world)
    _, t, h, w = video.shape
    visible = (~dilate(index >= 0, BG_DILATE)).flatten(1).float()  # [T, H * W]
    frames = ((video.float() + 1) / 2).permute(1, 0, 2, 3).flatten(2)  # [T, 3, H * W]
    g = cal.backgrounds  # [K, 3, H * W]
    # sum_p u_p sum_c (f - g)^2 = sum u f^2 - 2 sum_c (u f_c) . g_c + u . sum_c g_c^2
    ff = (visible * (frames**2).sum(dim=1)).sum(dim=1, keepdim=True)  # [T, 1]
    fg = torch.einsum("tcp,kcp->tk", visible[:, None] * frames, g)
    gg = visible @ (g**2).sum(dim=1).T  # [T, K]
    n = visible.sum(dim=1)
    scored = n >= MIN_BACKGROUND * h * w
    if not scored.any():
        return NAN
    guess = cal.background_type[(ff - 2 * fg + gg).argmin(dim=1)]
    return mean_or_nan(guess[scored] == BACKGROUNDS.index(background))


def paint_out_objects(video: torch.Tensor, busy: torch.Tensor) -> torch.Tensor:
    """video [3, T, H, W], busy [T, H, W] bool (object pixels, grown) -> the video with every busy pixel replaced
    by that pixel's median over the frames where it is not busy (the static background, where it ever shows),
    else by the median of all visible values."""
    x = video.float().masked_fill(busy[None], NAN)  # [3, T, H, W]
    fill = x.nanmedian(dim=1).values  # [3, H, W]
    overall = x.flatten(1).nanmedian(dim=1).values.nan_to_num(0)  # [3]
    fill = torch.where(fill.isnan(), overall[:, None, None], fill)
    return torch.where(busy[None], fill[:, None], video.float())


def background_flow(
    videos: torch.Tensor, tolerance: float = TOLERANCE, max_pairs: int | None = MAX_FLOW_PAIRS, per_pair: bool = False
) -> torch.Tensor:
    """videos [B, 3, T, H, W] in [-1, 1] -> [B] mean optical-flow magnitude (px/frame) over the pixels away from
    every palette-coloured pixel (grown by FLOW_DILATE px), in both frames of each pair; at most `max_pairs`
    pairs, evenly spread. The objects are painted out first (paint_out_objects): otherwise their motion leaks
    into the flat background through the coarse levels of the flow's pyramid (~0.5 px/frame on rendered clips).
    per_pair: [B, P] instead, the mean of each pair on its own (where in a stream the flow is)."""
    b, _, t, h, w = videos.shape
    if t < 2:
        return torch.full((b,), NAN)
    starts = torch.arange(t - 1)
    if max_pairs is not None and t - 1 > max_pairs:
        starts = torch.linspace(0, t - 2, max_pairs).round().long()
    frames = torch.stack([starts, starts + 1], dim=1).flatten()  # [2P]: the pairs' frames
    clean, free = [], []
    for video in videos:
        busy = dilate(nearest_colour(video, tolerance) >= 0, FLOW_DILATE)  # [T, H, W]
        clean.append(paint_out_objects(video, busy)[:, frames].view(3, len(starts), 2, h, w))
        free.append(~busy[frames].view(len(starts), 2, h, w).any(dim=1))  # [P, H, W]
    pairs = torch.stack(clean).permute(0, 2, 1, 3, 4, 5).flatten(0, 1)  # [B * P, 3, 2, H, W]
    speed = optical_flow(pairs)[:, 0].norm(dim=1).view(b, len(starts), h, w)
    free = torch.stack(free).float()  # [B, P, H, W]
    dims = (2, 3) if per_pair else (1, 2, 3)
    return (speed * free).sum(dim=dims) / free.sum(dim=dims)  # NaN when nothing is free


def scene_change(video: torch.Tensor, chunk_frames: int = 3, starts: int = SCENE_STARTS) -> float:
    """(mean distance of the first chunk's frames to the later ones + eps) / (mean distance of later pairs of
    the same time separation + eps); see the module docstring. The later pairs of each lag start at up to
    `starts` frames evenly spread over [chunk, T - 2] (all of them in clips that short)."""
    t, c = video.shape[1], chunk_frames
    if t < c + 2:
        return NAN
    x = ((video.float() + 1) / 2).transpose(0, 1).flatten(1)  # [T, 3 * H * W]
    first = torch.cdist(x[:c], x, p=1) / x.shape[1]  # [c, T]: D(i, j), mean |difference|
    begin = torch.arange(c, t - 1)
    if len(begin) > starts:
        begin = torch.linspace(c, t - 2, starts).round().long().unique()
    later = torch.cdist(x[begin], x, p=1) / x.shape[1]  # [S, T]: D(s, j)
    lag = torch.arange(t)[None] - begin[:, None]  # [S, T]: j - s
    valid = lag > 0
    sums = torch.zeros(t).index_add_(0, lag[valid], later[valid])
    counts = torch.zeros(t).index_add_(0, lag[valid], torch.ones(int(valid.sum())))
    typical = sums / counts  # [T]: Dlater(L), NaN for lags without a later pair
    i, j = torch.meshgrid(torch.arange(c), torch.arange(c, t), indexing="ij")
    pair_lag = (j - i).flatten()
    keep = counts[pair_lag] > 0
    if not keep.any():
        return NAN
    numerator = first[i.flatten(), j.flatten()][keep].mean()
    denominator = typical[pair_lag][keep].mean()
    return ((numerator + SCENE_EPS) / (denominator + SCENE_EPS)).item()
