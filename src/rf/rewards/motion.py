"""A motion reward that needs no weights: how fast the moving things move, from classical optical flow.

Raw score of a video: for each pair of consecutive frames, the mean of the largest `top_fraction` of
flow magnitudes (the moving things, not the static background, which would drown a small object in
zeros; VBench's dynamic degree takes a top quantile for the same reason), averaged over frame pairs.

Unit: percent of the frame diagonal per frame, so a clip scores the same at any resolution (e.g. 2
px/frame on a 32x32 frame, diagonal 45.3 px, is 4.4). It is per frame, not per second: the same motion
sampled at a higher fps scores lower. Frames whose shorter side is above 128 px are first area-downsampled
to 128: the flow's pyramid is built for motions up to ~8 px/frame, and the unit does not change.

The reward is the raw score z-scored with a mean and std calibrated on typical videos (`calibrate`, or
`python experiments/toy_re_dmd/calibrate_motion.py` for the toy world).
"""

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from rf.utils.optical_flow import flow_magnitude, optical_flow

_MAX_SIDE = 128


class MotionReward(torch.nn.Module):
    name = "motion"

    def __init__(self, mean: float = 0.0, std: float = 1.0, levels: int = 3, top_fraction: float = 0.05):
        super().__init__()
        if not std > 0:
            raise ValueError(f"std={std} must be > 0 (the spread of raw motion scores, see calibrate)")
        if not 0 < top_fraction <= 1:
            raise ValueError(f"top_fraction={top_fraction} must be in (0, 1]")
        self.mean, self.std, self.levels, self.top_fraction = mean, std, levels, top_fraction

    @torch.no_grad()
    def score(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 3, T, H, W] in [-1, 1] -> raw motion score [B] float32, in % of the frame diagonal
        per frame; NaN for a sample with non-finite values."""
        if video.ndim != 5:
            raise ValueError(f"video shape {tuple(video.shape)} must be [B, 3, T, H, W]")
        video = video.float()
        h, w = video.shape[-2:]
        if min(h, w) > _MAX_SIDE:
            h, w = round(h * _MAX_SIDE / min(h, w)), round(w * _MAX_SIDE / min(h, w))
            video = F.interpolate(video, size=(video.shape[2], h, w), mode="area")
        finite = torch.isfinite(video).flatten(1).all(dim=1)  # [B]
        # A non-finite sample gets NaN below; zeros keep it from touching the flow of the others.
        video = torch.where(finite.view(-1, 1, 1, 1, 1), video, torch.zeros_like(video))
        speed = flow_magnitude(optical_flow(video, levels=self.levels)).flatten(2)  # [B, T-1, H * W]
        k = max(1, round(self.top_fraction * h * w))
        moving = speed.topk(k, dim=-1).values.mean(dim=-1)  # [B, T-1]
        diagonal = (h**2 + w**2) ** 0.5
        score = moving.mean(dim=1) / (diagonal / 100)
        return torch.where(finite, score, torch.full_like(score, float("nan")))

    @torch.no_grad()
    def forward(self, video: torch.Tensor, prompts: list[str] | None = None) -> torch.Tensor:
        """video [B, 3, T, H, W] in [-1, 1] -> reward [B] float32: (score - mean) / std. Prompts are unused:
        motion is judged the same whatever was asked for."""
        return (self.score(video) - self.mean) / self.std


def calibrate(videos: Iterable[torch.Tensor], levels: int = 3, top_fraction: float = 0.05) -> tuple[float, float]:
    """Mean and std of the raw motion scores over videos: batches [B, 3, T, H, W] or clips [3, T, H, W].
    Pass the levels and top_fraction the reward will use; samples that score NaN are left out."""
    reward = MotionReward(levels=levels, top_fraction=top_fraction)
    scores = torch.cat([reward.score(v if v.ndim == 5 else v[None]) for v in videos])
    scores = scores[torch.isfinite(scores)]
    if len(scores) < 2:
        raise ValueError(f"calibrate got {len(scores)} scorable videos; it needs at least 2 for a std")
    return scores.mean().item(), scores.std().item()
