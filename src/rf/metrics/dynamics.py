"""Dynamic degree (VBench's rule, on our Lucas-Kanade flow) and mean flow magnitude.

VBench's `dynamic_degree` (Vchitect/VBench, vbench/dynamic_degree.py and vbench/core/dynamic_degree.py):
frames are first taken at ~8 fps (every round(fps / 8)-th frame, at least every frame); for each pair of
consecutive frames, RAFT flow (20 iterations), and the mean of the largest int(0.05 * H * W) flow magnitudes;
a pair "moves" when that exceeds `thres = 6.0 * min(H, W) / 256` px/frame; the video is dynamic when at
least `count_num = round(4 * F / 16)` pairs move, F the number of (sampled) frames. The benchmark score is
the fraction of dynamic videos. Everything here follows that rule, with Python's round (half to even) as
in VBench, except:

- the flow is our weightless pyramidal Lucas-Kanade (`rf.utils.optical_flow`), not RAFT: it needs no
  download and runs anywhere, but it is less accurate on large motions, occlusions and flat regions, so
  the numbers are VBench-like, not VBench's. Compare our methods with each other, not with the paper.
- frames whose shorter side is above `flow_side` (128) px are area-downsampled first, and the flow is
  scaled back to input pixels: LK with 4 levels follows ~16 px/frame, and the threshold is a fixed 2.3 %
  of the shorter side, so the decision does not depend on the resolution the flow is computed at.
- videos come as tensors: pass `fps` to get VBench's 8-fps sampling, or leave it None to use every frame.

Mean flow magnitude (over all pixels and frame pairs, input px/frame) is reported next to it: dynamic
degree saturates at 0 or 1 per video, the mean shows how much moves.
"""

import torch
from torchmetrics import Metric

from rf.metrics._video import check_video, shrink
from rf.utils.optical_flow import flow_magnitude, optical_flow

VBENCH_FPS = 8.0  # VBench samples frames at about this rate before the flow
TOP_FRACTION = 0.05  # VBench: mean of the top 5 % flow magnitudes per frame pair
THRESHOLD_PER_256 = 6.0  # VBench: px/frame on a frame whose shorter side is 256 px
PAIRS_PER_16_FRAMES = 4  # VBench: moving pairs needed per 16 frames


def vbench_rule(height: int, width: int, frames: int) -> tuple[float, int]:
    """VBench's (threshold in px/frame, moving pairs needed) for F frames of H x W."""
    return THRESHOLD_PER_256 * min(height, width) / 256, round(PAIRS_PER_16_FRAMES * frames / 16)


def dynamics(
    video: torch.Tensor, fps: float | None = None, flow_side: int = 128, levels: int = 4
) -> dict[str, torch.Tensor]:
    """video [B, 3, T, H, W] in [-1, 1] -> per-video values, each [B] float32:

    dynamic: 1.0 if VBench's rule calls the video dynamic, else 0.0.
    moving_pairs: frame pairs whose top-5 % mean flow exceeds the threshold.
    top_flow: that top-5 % mean, averaged over frame pairs, px/frame (input pixels, after fps sampling).
    mean_flow: flow magnitude averaged over all pixels and frame pairs, px/frame, >= 0.

    fps: the video's frame rate; given, frames are first sampled every round(fps / 8) as VBench does.
    flow_side: the flow runs on frames area-downsampled to this shorter side (if larger).
    """
    check_video(video, min_frames=2)
    if fps is not None:
        if not fps > 0:
            raise ValueError(f"fps={fps} must be > 0")
        video = video[:, :, :: max(1, round(fps / VBENCH_FPS))]
        check_video(video, min_frames=2)
    _, _, frames, height, width = video.shape
    threshold, needed = vbench_rule(height, width, frames)

    small, scale = shrink(video.float(), flow_side)
    speed = flow_magnitude(optical_flow(small, levels=levels)) / scale  # [B, F-1, h, w] input px/frame
    speed = speed.flatten(2)  # [B, F-1, h * w]
    k = max(1, int(TOP_FRACTION * speed.shape[-1]))
    pair_top = speed.topk(k, dim=-1).values.mean(dim=-1)  # [B, F-1]
    moving = (pair_top > threshold).sum(dim=1)  # [B]
    return {
        "dynamic": (moving >= needed).float(),
        "moving_pairs": moving.float(),
        "top_flow": pair_top.mean(dim=1),
        "mean_flow": speed.mean(dim=(1, 2)),
    }


class DynamicDegree(Metric):
    """Fraction of dynamic videos (VBench's dynamic degree, in [0, 1]; the paper reports it x 100) and the
    mean over videos of their mean flow magnitude (px/frame). Arguments as `dynamics`."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, fps: float | None = None, flow_side: int = 128, levels: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.fps, self.flow_side, self.levels = fps, flow_side, levels
        self.add_state("total_dynamic", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total_mean_flow", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total_videos", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, video: torch.Tensor) -> None:
        values = dynamics(video, fps=self.fps, flow_side=self.flow_side, levels=self.levels)
        self.total_dynamic += values["dynamic"].sum().to(self.total_dynamic)
        self.total_mean_flow += values["mean_flow"].sum().to(self.total_mean_flow)
        self.total_videos += len(video)

    def compute(self) -> dict[str, torch.Tensor]:
        return {
            "dynamic_degree": self.total_dynamic / self.total_videos,
            "mean_flow": self.total_mean_flow / self.total_videos,
        }
