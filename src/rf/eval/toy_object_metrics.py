"""Per-object toy metrics (world v2): does each tracked object move, persist and look as its prompt asked?

Each works on one object's `Track` (rf.eval.toy_tracking: found by its colour, on the torus) and on the
world's calibration (rf.eval.toy_calibration: expected areas and shape templates rendered by the world).

Motion, against the asked velocity s d (s px/frame from ToyWorld.speed_px, d the unit axis vector), with
v(t) the torus-minimal displacement centre(t + 1) - centre(t), for pairs where both are present:
    speed_ratio          mean over pairs of (v . d) / s: 1 as asked, 0 frozen, -1 the opposite way
    cross_speed          mean |v x d| (the component across the asked axis), px/frame
    motion_error         median |v - s d|, px/frame
    direction_agreement  fraction of pairs with v . d > AGREE * s (signed: the world never bounces)

Integrity:
    persistence   fraction of frames where mask_c forms exactly one component, of area within PLAUSIBLE
                  (0.5-2x) of the expected area: lost, split, duplicated or swollen objects all fail
    area_ratio    median over present frames of area(object) / expected area
    shape_accuracy fraction of present frames whose object mask, centred, has its best IoU with a template of
                  the asked shape (the world's circle, square and triangle at 4 sizes, shifted +-1 px)

rf.eval.toy_metrics.score computes persistence and area_ratio from `integrity` and the track's areas.
"""

from __future__ import annotations

import torch

from rf.eval.toy_calibration import calibration
from rf.eval.toy_tracking import NAN, Track, centre_masks, mean_or_nan, median_or_nan
from rf.toy.rules import DIRECTIONS, SHAPES
from rf.toy.world import ToyWorld

PLAUSIBLE = (0.5, 2.0)  # persistence: one component with area in this range x the expected area
AGREE = 0.5  # direction agreement: v . d > AGREE * asked speed


def _wrap(d: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Displacements [..., 2] (x, y) -> the shortest ones on the torus."""
    size = torch.tensor([w, h], dtype=d.dtype)
    return torch.remainder(d + size / 2, size) - size / 2


def motion_metrics(tr: Track, direction: str, speed_px: float, h: int, w: int) -> dict[str, float]:
    """The four motion metrics of one object's track against the asked direction and speed (px/frame)."""
    pairs = tr.present[:-1] & tr.present[1:]
    v = _wrap(tr.centre[1:] - tr.centre[:-1], h, w)[pairs]  # [P, 2]
    d = torch.tensor(DIRECTIONS[direction], dtype=torch.float32)
    along = v @ d
    across = (v - along[:, None] * d).norm(dim=1)
    return {
        "speed_ratio": mean_or_nan(along / speed_px),
        "cross_speed": mean_or_nan(across),
        "motion_error": median_or_nan((v - speed_px * d).norm(dim=1)),
        "direction_agreement": mean_or_nan(along > AGREE * speed_px),
    }


def integrity(tr: Track, expected_area: float, plausible: tuple[float, float] = PLAUSIBLE) -> torch.Tensor:
    """[T] bool: exactly one component of the colour, of area within `plausible` x expected."""
    ratio = tr.area / expected_area
    return (tr.count == 1) & (ratio >= plausible[0]) & (ratio <= plausible[1])


def shape_accuracy(tr: Track, shape: str, world: ToyWorld) -> float:
    """Fraction of the present frames whose centred object mask is closest (IoU) to a template of `shape`."""
    cal = calibration(world)
    masks = centre_masks(tr.mask[tr.present]).flatten(1).float()  # [P, H * W]
    if not len(masks):
        return NAN
    inter = masks @ cal.templates.T  # [P, S * 9]
    iou = inter / (masks.sum(dim=1, keepdim=True) + cal.templates.sum(dim=1) - inter)
    guess = cal.template_shape[iou.argmax(dim=1)]
    return mean_or_nan(guess == SHAPES.index(shape))
