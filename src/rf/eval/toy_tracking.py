"""Finding and following the toy objects in a video, by colour, on the torus (world v2).

World v2 (rf.toy.world) draws 1-2 saturated objects of distinct colours over a dim static texture; objects
move at a constant velocity along one axis and wrap around the frame edges (a torus). So an object is found
from the video tensor alone, by its colour; the toy metrics (rf.eval.toy_metrics) are all built on this:

    mask_c(t)   pixels whose nearest palette colour (rf.toy.rules.COLOURS) is c, within `tolerance` (RGB
                distance in [0, 1]; the anti-aliased rim of an object, mostly background, falls outside)
    components  8-connected components of mask_c(t) ON THE TORUS (a component may wrap across the edges);
                components under MIN_COMPONENT px are specks and are ignored everywhere
    object(t)   the largest component; present when its area >= PRESENT x the expected area
    centre(t)   circular mean per axis (the torus) of object(t) grown by one pixel, each pixel weighted by
                its similarity to c, clamp(1 - |rgb - c| / SOFT_SCALE, 0, 1): anti-aliased rim pixels count
                in part, which keeps sub-pixel motion visible

Also here: the mask operations the other metric files share (growing a mask, centring masks on the torus)
and the reductions to one float that give NaN when there is nothing to reduce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rf.toy.rules import COLOURS

PALETTE = list(COLOURS)
TOLERANCE = 0.3  # RGB distance (in [0, 1]) within which a pixel takes its nearest palette colour, as toy_truth
SOFT_SCALE = 0.8  # RGB distance where a pixel's weight in the centroid falls to 0 (palette colours are >= 0.75 apart)
MIN_COMPONENT = 3  # px: smaller components of a colour are specks (colour noise), not objects
PRESENT = 0.25  # the object is present when its largest component has >= this x the expected area
NAN = math.nan


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


def dilate(mask: torch.Tensor, radius: int, wrap: bool = True) -> torch.Tensor:
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


def centre_masks(masks: torch.Tensor) -> torch.Tensor:
    """Boolean masks [T, H, W] -> the same masks rolled on the torus so that their circular centroid is on the
    pixel nearest the frame centre."""
    t, h, w = masks.shape
    centre = _circular_mean(masks.float()).nan_to_num(0)
    shift = torch.round(centre - torch.tensor([w / 2, h / 2])).long()  # [T, 2]
    ys = torch.remainder(torch.arange(h)[None, :, None] + shift[:, 1, None, None], h)
    xs = torch.remainder(torch.arange(w)[None, None, :] + shift[:, 0, None, None], w)
    return masks[torch.arange(t)[:, None, None], ys, xs]


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
    centre = _circular_mean(similarity * dilate(component, 1))
    return Track(count=count, area=area, present=present, centre=centre, mask=component)


def mean_or_nan(x: torch.Tensor) -> float:
    """The mean of a tensor as a float; NaN when it is empty (nothing was measured)."""
    return x.float().mean().item() if x.numel() else NAN


def median_or_nan(x: torch.Tensor) -> float:
    """The median of a tensor as a float; NaN when it is empty (nothing was measured)."""
    return x.float().median().item() if x.numel() else NAN
