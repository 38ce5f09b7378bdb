"""Drift: how much a long video's imaging quality changes over time.

The paper's long-video table reports "drift" as the standard deviation of VBench's imaging quality over
the 2-second segments of a 60-s video (30 segments). VBench-Long (Vchitect/VBench,
vbench/long_eval/utils.py, split_video_into_clips) cuts a video into fps * 2 frames per clip, and when
frames are left over adds one more clip made of the last fps * 2 frames (borrowing from the clip before);
a video shorter than one clip is one clip. Imaging quality (vbench/imaging_quality.py) is MUSIQ on every
frame, its scores (0-100) averaged over the clip's frames. Here: the same split, each frame scored by a
pluggable `scorer`, the frame scores averaged per segment, and the population standard deviation
(numpy's default; the paper does not say which) over segments taken per video.

The scorer is any callable frames [N, 3, H, W] in [-1, 1] -> scores [N]: a MUSIQ wrapper, or the
weightless proxy shipped here, `LaplacianSharpness`. The proxy is not MUSIQ: it sees only sharpness
(blur lowers it), reads noise and grain as sharpness, and its scale is its own, so its drift is
comparable between our methods but not with the paper's numbers.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from rf.metrics._video import check_video

_LUMA = (0.299, 0.587, 0.114)  # Rec. 601, as the optical flow uses
Scorer = Callable[[torch.Tensor], torch.Tensor]


class LaplacianSharpness:
    """Weightless imaging-quality proxy: frames [N, 3, H, W] in [-1, 1] -> [N] float32 in [0, 100).

    v = variance of the 4-neighbour Laplacian of the luma in grey levels (0-255), over the interior
    pixels (no padding, so frame borders add no fake edges); score = 100 * v / (v + half_point). The
    saturating map puts the score on MUSIQ's 0-100 scale: v = half_point (default 100, the usual "blurry"
    cut-off of the variance-of-Laplacian test) scores 50, v = 900 scores 90, a flat frame 0. Frames whose
    longer side is above max_side are area-downsampled to it first, as VBench resizes for MUSIQ (its
    'longer' mode, 512): the variance of the Laplacian grows with resolution.
    """

    def __init__(self, half_point: float = 100.0, max_side: int = 512):
        if not half_point > 0 or max_side < 3:
            raise ValueError(f"half_point={half_point} must be > 0 and max_side={max_side} >= 3")
        self.half_point, self.max_side = half_point, max_side

    def variance(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [N, 3, H, W] in [-1, 1] -> variance of the Laplacian [N], in grey levels squared."""
        if frames.ndim != 4 or frames.shape[1] != 3 or min(frames.shape[-2:]) < 3:
            raise ValueError(f"frames shape {tuple(frames.shape)} must be [N, 3, H, W] with H, W >= 3")
        frames = frames.float()
        h, w = frames.shape[-2:]
        if max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
            frames = F.interpolate(frames, size=(round(h * scale), round(w * scale)), mode="area")
        weights = torch.tensor(_LUMA, device=frames.device).view(1, 3, 1, 1)
        grey = ((frames * weights).sum(dim=1, keepdim=True) + 1) * 127.5  # [N, 1, H, W] in [0, 255]
        kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=frames.device)
        laplacian = F.conv2d(grey, kernel.view(1, 1, 3, 3))  # [N, 1, H-2, W-2]
        return laplacian.flatten(1).var(dim=1, correction=0)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        v = self.variance(frames)
        return 100 * v / (v + self.half_point)


def drift_segments(frames: int, segment_frames: int) -> list[slice]:
    """VBench-Long's split of F frames: whole segments, plus the last segment_frames frames if any are left."""
    if segment_frames < 1:
        raise ValueError(f"segment_frames={segment_frames} must be >= 1")
    if frames <= segment_frames:
        return [slice(0, frames)]
    segments = [slice(s, s + segment_frames) for s in range(0, frames - segment_frames + 1, segment_frames)]
    if frames % segment_frames:
        segments.append(slice(frames - segment_frames, frames))
    return segments


def _segment_frames(segment_frames: int | None, fps: float | None, seconds_per_segment: float) -> int:
    if segment_frames is not None:
        return segment_frames
    if fps is None or not fps > 0 or not seconds_per_segment > 0:
        raise ValueError(f"give segment_frames, or fps={fps} and seconds_per_segment={seconds_per_segment}, both > 0")
    return max(1, round(fps * seconds_per_segment))


def drift(
    video: torch.Tensor,
    scorer: Scorer | None = None,
    segment_frames: int | None = None,
    fps: float | None = None,
    seconds_per_segment: float = 2.0,
    batch_frames: int = 64,
) -> dict[str, torch.Tensor]:
    """video [B, 3, T, H, W] in [-1, 1] -> per-video values (units of the scorer; default LaplacianSharpness):

    drift [B] float32 >= 0: population std of the segment scores (0 for a single segment).
    quality [B] float32: mean of the segment scores.
    segment_scores [B, S] float32: each segment's mean frame score.

    Segments have segment_frames frames, or round(fps * seconds_per_segment). The scorer sees at most
    batch_frames frames per call, to bound its memory on minute-long videos.
    """
    check_video(video)
    scorer = LaplacianSharpness() if scorer is None else scorer
    segments = drift_segments(video.shape[2], _segment_frames(segment_frames, fps, seconds_per_segment))
    frames = video.transpose(1, 2).flatten(0, 1)  # [B * T, 3, H, W]
    scores = torch.cat([scorer(chunk).float().reshape(-1) for chunk in frames.split(batch_frames)])
    if scores.shape != (len(frames),):
        raise ValueError(f"scorer returned {scores.numel()} scores for {len(frames)} frames; it must return [N]")
    scores = scores.view(video.shape[0], video.shape[2])  # [B, T]
    segment_scores = torch.stack([scores[:, s].mean(dim=1) for s in segments], dim=1)  # [B, S]
    return {
        "drift": segment_scores.std(dim=1, correction=0),
        "quality": segment_scores.mean(dim=1),
        "segment_scores": segment_scores,
    }


class Drift(Metric):
    """Means over videos of `drift`'s drift and quality (units of the scorer). Arguments as `drift`."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        scorer: Scorer | None = None,
        segment_frames: int | None = None,
        fps: float | None = None,
        seconds_per_segment: float = 2.0,
        batch_frames: int = 64,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _segment_frames(segment_frames, fps, seconds_per_segment)  # fail at construction, not at the first video
        self.scorer = LaplacianSharpness() if scorer is None else scorer
        self.segment_frames, self.fps, self.seconds_per_segment = segment_frames, fps, seconds_per_segment
        self.batch_frames = batch_frames
        self.add_state("total_drift", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total_quality", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total_videos", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, video: torch.Tensor) -> None:
        values = drift(video, self.scorer, self.segment_frames, self.fps, self.seconds_per_segment, self.batch_frames)
        self.total_drift += values["drift"].sum().to(self.total_drift)
        self.total_quality += values["quality"].sum().to(self.total_quality)
        self.total_videos += len(video)

    def compute(self) -> dict[str, torch.Tensor]:
        return {"drift": self.total_drift / self.total_videos, "quality": self.total_quality / self.total_videos}
