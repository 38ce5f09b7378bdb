"""Toy-world metrics that can fail (world v2): does a video show what its toy prompt asked for?

World v2 (rf.toy.world) draws 1-2 saturated objects of distinct colours over a dim static texture; objects
move at a constant velocity along one axis and wrap around the frame edges (a torus). Every check below
works on the video tensor alone, by colour, and is calibrated against the world itself (templates and
expected areas are rendered by the world, not typed in):

Tracking, per object of the prompt (by its colour; two objects of one colour are ambiguous and left out):
    mask_c(t)   pixels whose nearest palette colour (rf.toy.world.COLOURS) is c, within `tolerance` (RGB
                distance in [0, 1]; the anti-aliased rim of an object, mostly background, falls outside)
    components  8-connected components of mask_c(t) ON THE TORUS (a component may wrap across the edges);
                components under MIN_COMPONENT px are specks and are ignored everywhere
    object(t)   the largest component; present when its area >= PRESENT x the expected area
    centre(t)   circular mean per axis (the torus) of object(t) grown by one pixel, each pixel weighted by
                its similarity to c, clamp(1 - |rgb - c| / SOFT_SCALE, 0, 1): anti-aliased rim pixels count
                in part, which keeps sub-pixel motion visible
    v(t)        the torus-minimal displacement centre(t + 1) - centre(t), for pairs where both are present

Motion, against the asked velocity s d (s px/frame from ToyWorld.speed_px, d the unit axis vector):
    speed_ratio          mean over pairs of (v . d) / s: 1 as asked, 0 frozen, -1 the opposite way
    cross_speed          mean |v x d| (the component across the asked axis), px/frame
    motion_error         median |v - s d|, px/frame
    direction_agreement  fraction of pairs with v . d > AGREE * s (signed: the world never bounces)

Integrity:
    persistence   fraction of frames where mask_c forms exactly one component, of area within PLAUSIBLE
                  (0.5-2x) of the expected area: lost, split, duplicated or swollen objects all fail
    area_ratio    median over present frames of area(object) / expected area
    expected area the mask area of the shape rendered by the world at its mean size (rules.size), in that
                  colour, averaged over the backgrounds and 4 sub-pixel positions (`calibration`). Rendered
                  objects span 0.60-1.40 of it (sizes 0.34-0.44 of the side, and the sub-pixel position)
    shape_accuracy fraction of present frames whose object mask, centred, has its best IoU with a template of
                  the asked shape; templates: the world's circle, square and triangle at 4 sizes across
                  rules.size, masked the same way, centred the same way, matched at integer shifts of +-1 px

Scene:
    background_accuracy fraction of frames whose background is classified as the asked type. The background is
                  pixels outside every palette colour's mask grown by BG_DILATE px (objects and their
                  rims); the class is the type of the nearest template (mean squared error over those pixels)
                  among the world's textures for every type x angle x period of the rules, with the type's
                  tint. v2 textures have no phase (fixed per type and angle), so none is searched. Frames with
                  under MIN_BACKGROUND of the frame visible are not scored.
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

Built for world v2: in v1 (bouncing edges, random tints and angles) the signed motion metrics count every
bounce as moving the wrong way and the background templates are untinted.

`score(video, prompt, world)` returns every metric (NaN where it cannot be measured: not a toy prompt, object
never present, ...); `reference_videos` / `reference_rows` make and score reference clips (rendered, frozen,
random walk, mirrored) with the same code. Everything is vectorised over frames: a 480-frame 32x32 video
scores in a fraction of a second on one CPU thread.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from rf.toy.grammar import parse_prompt
from rf.toy.rules import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, TINTS
from rf.toy.scene import ObjectSpec, SceneSpec
from rf.toy.world import ToyWorld
from rf.utils.optical_flow import optical_flow

PALETTE = list(COLOURS)
TOLERANCE = 0.3  # RGB distance (in [0, 1]) within which a pixel takes its nearest palette colour, as toy_truth
SOFT_SCALE = 0.8  # RGB distance where a pixel's weight in the centroid falls to 0 (palette colours are >= 0.75 apart)
MIN_COMPONENT = 3  # px: smaller components of a colour are specks (colour noise), not objects
PRESENT = 0.25  # the object is present when its largest component has >= this x the expected area
PLAUSIBLE = (0.5, 2.0)  # persistence: one component with area in this range x the expected area
AGREE = 0.5  # direction agreement: v . d > AGREE * asked speed
BG_DILATE = 2  # px grown around every palette-coloured pixel before the background is classified
FLOW_DILATE = 2  # px grown around every palette-coloured pixel before the background flow is measured
MIN_BACKGROUND = 0.2  # fraction of the frame that must stay visible for its background to be classified
SCENE_EPS = 1e-3  # mean |difference| added to both sides of scene_change: a frozen clip scores 1, not 0/0
SCENE_STARTS = 64  # scene_change: start frames of the later pairs of each lag, at most (evenly spread)
TEMPLATE_SIZES = 4  # template sizes across rules.size for the shape classifier
MAX_FLOW_PAIRS = 64  # background_flow: pairs scored per video, evenly spread (a mean: a sample is enough)

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
KINDS = ("real", "frozen", "random_walk", "mirrored")
_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
NAN = math.nan


# ---------------------------------------------------------------------------------------------------- masks


def _rgb(video: torch.Tensor) -> torch.Tensor:
    """[3, T, H, W] in [-1, 1] -> [T, H, W, 3] in [0, 1]."""
    return ((video.float() + 1) / 2).permute(1, 2, 3, 0)


def nearest_colour(video: torch.Tensor, tolerance: float = TOLERANCE) -> torch.Tensor:
    """video [3, T, H, W] in [-1, 1] -> [T, H, W] long: index in PALETTE of each pixel's nearest palette colour,
    -1 where it is farther than `tolerance` (RGB in [0, 1]) from every palette colour."""
    palette = torch.tensor([COLOURS[c] for c in PALETTE])
    distance = torch.cdist(_rgb(video).reshape(-1, 3), palette)  # [T * H * W, K]
    nearest, index = distance.min(dim=1)
    index = torch.where(nearest <= tolerance, index, -1)
    return index.view(video.shape[1:])


def _dilate(mask: torch.Tensor, radius: int, wrap: bool = True) -> torch.Tensor:
    """Grow a boolean mask [T, H, W] by `radius` px (a square, 8-neighbourhood), on the torus if wrap."""
    if radius <= 0:
        return mask
    x = mask.float()[:, None]
    x = F.pad(x, (radius,) * 4, mode="circular" if wrap else "constant")
    return F.max_pool2d(x, 2 * radius + 1, stride=1)[:, 0] > 0


def torus_components(mask: torch.Tensor, max_iterations: int | None = None) -> torch.Tensor:
    """8-connected components of a boolean mask [T, H, W] on the torus (a component may wrap across the frame
    edges) -> labels [T, H, W] long: 0 outside the mask, else 1 + the flat index of the component's last pixel.
    Label propagation (a max over the 3x3 neighbourhood, within the mask) until nothing changes."""
    t, h, w = mask.shape
    index = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, h, w)
    keep = mask.float()[:, None]
    labels = index[:, None] * keep  # [T, 1, H, W]; float32 holds these integers exactly
    for _ in range(max_iterations or h * w):
        grown = F.max_pool2d(F.pad(labels, (1, 1, 1, 1), mode="circular"), 3, stride=1) * keep
        if torch.equal(grown, labels):
            break
        labels = grown
    return labels[:, 0].long()


def _circular_mean(weights: torch.Tensor) -> torch.Tensor:
    """weights [T, H, W] >= 0 -> centres [T, 2] (x, y) in pixels on the torus (pixel i has centre i + 0.5);
    NaN where a frame's weights are all zero."""
    _, h, w = weights.shape
    out = []
    for axis, n in ((2, w), (1, h)):
        angle = 2 * math.pi * (torch.arange(n, dtype=torch.float32) + 0.5) / n
        profile = weights.sum(dim=3 - axis)  # [T, n]: summed over the other axis
        c, s = profile @ torch.cos(angle), profile @ torch.sin(angle)
        mean = torch.remainder(torch.atan2(s, c), 2 * math.pi) * n / (2 * math.pi)
        out.append(torch.where(profile.sum(dim=1) > 0, mean, NAN))
    return torch.stack(out, dim=1)


def _wrap(d: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Displacements [..., 2] (x, y) -> the shortest ones on the torus."""
    size = torch.tensor([w, h], dtype=d.dtype)
    return torch.remainder(d + size / 2, size) - size / 2


@dataclass
class Track:
    """One colour through a video. All [T]: components (>= MIN_COMPONENT px) of the colour, area of the largest
    (px), present (largest >= PRESENT x expected), centre [T, 2] (x, y) px (NaN where absent), and the largest
    component's mask [T, H, W]."""

    count: torch.Tensor
    area: torch.Tensor
    present: torch.Tensor
    centre: torch.Tensor
    mask: torch.Tensor


def track(
    video: torch.Tensor,
    colour: str,
    expected_area: float,
    index: torch.Tensor | None = None,
    tolerance: float = TOLERANCE,
) -> Track:
    """Follow the object of `colour` through video [3, T, H, W] in [-1, 1] (`index`: nearest_colour(video),
    when already computed)."""
    _, t, h, w = video.shape
    if index is None:
        index = nearest_colour(video, tolerance)
    mask = index == PALETTE.index(colour)  # [T, H, W]
    labels = torus_components(mask).flatten(1)  # [T, H * W]
    sizes = torch.zeros(t, h * w + 1).scatter_add_(1, labels, torch.ones_like(labels, dtype=torch.float32))
    sizes[:, 0] = 0
    count = (sizes >= MIN_COMPONENT).sum(dim=1)
    area, largest = sizes.max(dim=1)
    present = area >= max(MIN_COMPONENT, PRESENT * expected_area)
    component = (labels == largest[:, None]).view(t, h, w) & present[:, None, None]
    # Centroid: the component grown by one pixel (its anti-aliased rim), each pixel weighted by its similarity.
    similarity = (1 - (_rgb(video) - torch.tensor(COLOURS[colour])).norm(dim=-1) / SOFT_SCALE).clamp(min=0)
    centre = _circular_mean(similarity * _dilate(component, 1))
    return Track(count=count, area=area, present=present, centre=centre, mask=component)


# ------------------------------------------------------------------------------------------ world references


@dataclass
class _Calibration:
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


def _centre_masks(masks: torch.Tensor) -> torch.Tensor:
    """Boolean masks [T, H, W] -> the same masks rolled on the torus so that their circular centroid is on the
    pixel nearest the frame centre."""
    t, h, w = masks.shape
    centre = _circular_mean(masks.float()).nan_to_num(0)
    shift = torch.round(centre - torch.tensor([w / 2, h / 2])).long()  # [T, 2]
    ys = torch.remainder(torch.arange(h)[None, :, None] + shift[:, 1, None, None], h)
    xs = torch.remainder(torch.arange(w)[None, None, :] + shift[:, 0, None, None], w)
    return masks[torch.arange(t)[:, None, None], ys, xs]


def calibration(world: ToyWorld) -> _Calibration:
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
            masks.append(_centre_masks(track(video, colour, 0.0).mask))
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
        tint = TINTS[rules.tints[background]] if rules.tints is not None else (1.0, 1.0, 1.0)
        for angle in angles:
            for period in periods:
                objects = _scene(world, "circle", colour, 0.3, background).objects  # unused: background only
                spec = SceneSpec(objects, background, tint, period, math.radians(angle))
                backgrounds.append(world._background(spec).float().flatten(1))
                types.append(k)
    result = _Calibration(expected, templates, template_shape, torch.stack(backgrounds), torch.tensor(types))
    _CALIBRATIONS[key] = result
    return result


# ---------------------------------------------------------------------------------------------- the metrics


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else NAN


def _mean(x: torch.Tensor) -> float:
    return x.float().mean().item() if x.numel() else NAN


def _median(x: torch.Tensor) -> float:
    return x.float().median().item() if x.numel() else NAN


def motion_metrics(tr: Track, direction: str, speed_px: float, h: int, w: int) -> dict[str, float]:
    """The four motion metrics of one object's track against the asked direction and speed (px/frame)."""
    pairs = tr.present[:-1] & tr.present[1:]
    v = _wrap(tr.centre[1:] - tr.centre[:-1], h, w)[pairs]  # [P, 2]
    d = torch.tensor(DIRECTIONS[direction], dtype=torch.float32)
    along = v @ d
    across = (v - along[:, None] * d).norm(dim=1)
    return {
        "speed_ratio": _mean(along / speed_px),
        "cross_speed": _mean(across),
        "motion_error": _median((v - speed_px * d).norm(dim=1)),
        "direction_agreement": _mean(along > AGREE * speed_px),
    }


def integrity(tr: Track, expected_area: float, plausible: tuple[float, float] = PLAUSIBLE) -> torch.Tensor:
    """[T] bool: exactly one component of the colour, of area within `plausible` x expected."""
    ratio = tr.area / expected_area
    return (tr.count == 1) & (ratio >= plausible[0]) & (ratio <= plausible[1])


def shape_accuracy(tr: Track, shape: str, world: ToyWorld) -> float:
    cal = calibration(world)
    masks = _centre_masks(tr.mask[tr.present]).flatten(1).float()  # [P, H * W]
    if not len(masks):
        return NAN
    inter = masks @ cal.templates.T  # [P, S * 9]
    iou = inter / (masks.sum(dim=1, keepdim=True) + cal.templates.sum(dim=1) - inter)
    guess = cal.template_shape[iou.argmax(dim=1)]
    return _mean(guess == SHAPES.index(shape))


def background_accuracy(video: torch.Tensor, background: str, index: torch.Tensor, world: ToyWorld) -> float:
    cal = calibration(world)
    _, t, h, w = video.shape
    visible = (~_dilate(index >= 0, BG_DILATE)).flatten(1).float()  # [T, H * W]
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
    return _mean(guess[scored] == BACKGROUNDS.index(background))


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
        busy = _dilate(nearest_colour(video, tolerance) >= 0, FLOW_DILATE)  # [T, H, W]
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
        values["persistence"] = _mean(integrity(tr, expected))
        values["area_ratio"] = _median(tr.area[tr.present] / expected)
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


# ------------------------------------------------------------------------------------------ reference clips


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
