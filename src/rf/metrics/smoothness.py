"""Temporal flicker and motion smoothness, VBench-style scores in [0, 1] (1 = no flicker / perfectly smooth).

Temporal flickering (Vchitect/VBench, vbench/temporal_flickering.py): the mean absolute difference of
consecutive frames over all pixels and channels, in grey levels, and score = (255 - mean) / 255. VBench
runs it only on videos it has judged static, so that any change is flicker. Here the same formula on
[-1, 1] frames, score = 1 - mean |x_{t+1} - x_t| / 2, over the whole frame by default (VBench's
formula: on a moving video it also counts motion), or, with `static_threshold` (px/frame), only over
the pixels our Lucas-Kanade flow finds moving slower than that, which isolates flicker in any video.
Frames are not quantised to 8 bits as VBench's decoded mp4s are.

Motion smoothness (vbench/motion_smoothness.py): VBench drops the odd frames, re-creates each from its
two even neighbours with the AMT frame interpolation network, and scores (255 - mean |interpolated -
real|) / 255 over the odd frames. Here the interpolator is weightless: the LK flow F from even frame
t-1 to t+1 (frames area-downsampled to `flow_side` first), and, assuming constant motion,

    predicted_t(p) = (x_{t-1}(p - F(p) / 2) + x_{t+1}(p + F(p) / 2)) / 2,

score = 1 - mean |predicted_t - x_t| / 2 over the odd frames that have two even neighbours. A static
video scores exactly 1; a constant translation close to 1; jitter, stutter and flicker lower it. LK is
a weaker interpolator than AMT, so our scores run lower than VBench's on real motion.
"""

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from rf.metrics._video import check_video, shrink
from rf.utils.optical_flow import flow_magnitude, optical_flow


def _flow(video: torch.Tensor, flow_side: int, levels: int) -> torch.Tensor:
    """video [B, 3, T, H, W] -> flow [B, T-1, 2, H, W] in input px/frame, computed at shorter side flow_side."""
    small, scale = shrink(video, flow_side)
    flow = optical_flow(small, levels=levels)  # [B, T-1, 2, h, w]
    if scale == 1.0:
        return flow
    b, n = flow.shape[:2]
    flow = F.interpolate(flow.flatten(0, 1), size=video.shape[-2:], mode="bilinear", align_corners=False)
    return flow.view(b, n, 2, *video.shape[-2:]) / scale


def _sample(frames: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """frames [N, C, H, W] sampled at p + displacement(p) [N, 2, H, W] (x, y in px), bicubic, borders clamped."""
    n, _, h, w = frames.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=frames.device, dtype=frames.dtype),
        torch.arange(w, device=frames.device, dtype=frames.dtype),
        indexing="ij",
    )
    x, y = xs + displacement[:, 0], ys + displacement[:, 1]  # [N, H, W]
    # align_corners=False: pixel i sits at normalised (2i + 1) / size - 1. Bicubic, as in the flow's own
    # warp: bilinear would blur every subpixel shift and read as a prediction error.
    grid = torch.stack([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1], dim=-1)  # [N, H, W, 2]
    return F.grid_sample(frames, grid, mode="bicubic", padding_mode="border", align_corners=False)


def temporal_flicker(
    video: torch.Tensor, static_threshold: float | None = None, flow_side: int = 128, levels: int = 4
) -> torch.Tensor:
    """video [B, 3, T, H, W] in [-1, 1] -> flicker score [B] float32 in [0, 1], 1 = consecutive frames equal.

    static_threshold: None scores the whole frame (VBench); a value in px/frame keeps only pixels whose
    LK flow is slower, and a video with no such pixel scores NaN.
    """
    check_video(video, min_frames=2)
    video = video.float()
    change = (video[:, :, 1:] - video[:, :, :-1]).abs().mean(dim=1)  # [B, T-1, H, W], channel mean
    if static_threshold is None:
        return 1 - change.mean(dim=(1, 2, 3)) / 2
    static = (flow_magnitude(_flow(video, flow_side, levels)) < static_threshold).float()  # [B, T-1, H, W]
    return 1 - (change * static).sum(dim=(1, 2, 3)) / static.sum(dim=(1, 2, 3)) / 2


def motion_smoothness(video: torch.Tensor, flow_side: int = 128, levels: int = 4) -> torch.Tensor:
    """video [B, 3, T, H, W] in [-1, 1], T >= 3 -> smoothness [B] float32 in [0, 1], 1 = each odd frame is
    exactly the constant-motion interpolation of its even neighbours."""
    check_video(video, min_frames=3)
    video = video.float()
    even = video[:, :, 0::2]  # [B, 3, E, H, W]
    b, _, e, h, w = even.shape
    flow = _flow(even, flow_side, levels).flatten(0, 1)  # [B * (E-1), 2, H, W], even frame k -> k + 1
    before = even[:, :, :-1].transpose(1, 2).flatten(0, 1)  # [B * (E-1), 3, H, W]
    after = even[:, :, 1:].transpose(1, 2).flatten(0, 1)
    predicted = (_sample(before, -flow / 2) + _sample(after, flow / 2)) / 2
    # The odd frames between two even ones: 1, 3, ..., 2E - 3 (a last odd frame with no right neighbour drops).
    real = video[:, :, 1 : 2 * e - 2 : 2].transpose(1, 2).flatten(0, 1)  # [B * (E-1), 3, H, W]
    error = (predicted - real).abs().view(b, e - 1, -1).mean(dim=(1, 2))  # [B]
    return 1 - error / 2


class _MeanScore(Metric):
    """Mean over videos of a per-video score [B]."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total_score", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total_videos", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def _accumulate(self, scores: torch.Tensor) -> None:
        self.total_score += scores.sum().to(self.total_score)
        self.total_videos += len(scores)

    def compute(self) -> torch.Tensor:
        return self.total_score / self.total_videos


class TemporalFlicker(_MeanScore):
    """Mean `temporal_flicker` score over videos, in [0, 1]. Arguments as `temporal_flicker`."""

    def __init__(self, static_threshold: float | None = None, flow_side: int = 128, levels: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.static_threshold, self.flow_side, self.levels = static_threshold, flow_side, levels

    def update(self, video: torch.Tensor) -> None:
        self._accumulate(temporal_flicker(video, self.static_threshold, self.flow_side, self.levels))


class MotionSmoothness(_MeanScore):
    """Mean `motion_smoothness` score over videos, in [0, 1]. Arguments as `motion_smoothness`."""

    def __init__(self, flow_side: int = 128, levels: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.flow_side, self.levels = flow_side, levels

    def update(self, video: torch.Tensor) -> None:
        self._accumulate(motion_smoothness(video, self.flow_side, self.levels))
