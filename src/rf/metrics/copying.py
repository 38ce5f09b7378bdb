"""First-frame copying: how much the later segments of a video look like its first segment.

Streaming generators with attention sinks can fall back to their first frames: the content stops
evolving, or keeps returning to the opening shot. The score measures that directly in pixels:

    similarity(frame f) = 1 - min over frames r of the first segment of mean |x_f - x_r| / 2,

with x in [-1, 1] (so mean |x_f - x_r| / 2 is in [0, 1]), averaged over the frames of each segment. The
nearest frame of the first segment is taken, not its mean, so a video that loops or freezes on any of
its opening frames scores 1, and motion inside the first segment does not count as change. Range [0, 1]:
1 = every frame equals a frame of the first segment (a static video scores exactly 1); a flat video that
turns from black to white scores 0. It is a pixel distance, so camera motion over the same scene lowers
it as much as new content does: compare methods on the same prompts, where that evens out.

Frames are first area-downsampled to a shorter side of `side` (64) px: copying is about layout and
content, and the coarse frames ignore the pixel noise that would otherwise keep the score below 1.

Segments default to 12 frames, three latent frames of the Wan VAE (4 frames each). Wan videos have
1 + 4k frames (the first latent frame decodes to one frame), so a chunk-aligned split of 81 frames is
first_segment_frames=9, segment_frames=12. VBench has no such dimension; this one is ours.
"""

import torch
from torchmetrics import Metric

from rf.metrics._video import check_video, segment_slices, shrink


def first_frame_copying(
    video: torch.Tensor, segment_frames: int = 12, first_segment_frames: int | None = None, side: int = 64
) -> dict[str, torch.Tensor]:
    """video [B, 3, T, H, W] in [-1, 1] -> per-video values:

    copying [B] float32 in [0, 1]: the curve's mean over the later segments (1 = a copy of the first).
    curve [B, S] float32 in [0, 1]: each segment's similarity to the first; curve[:, 0] is 1.

    Segments: the first has first_segment_frames (default segment_frames), the rest segment_frames; a
    shorter last segment is kept. The video must have at least two segments.
    """
    check_video(video)
    segments = segment_slices(video.shape[2], segment_frames, first_segment_frames)
    if len(segments) < 2:
        raise ValueError(
            f"video shape {tuple(video.shape)} has a single segment of {segments[0].stop} frames; copying needs "
            f"T > first_segment_frames={first_segment_frames or segment_frames}"
        )
    small, _ = shrink(video.float(), side)
    frames = small.transpose(1, 2).flatten(2)  # [B, T, D], D = 3 * h * w
    reference = frames[:, segments[0]]  # [B, L, D]
    # p=1 cdist sums |a - b| directly (no matmul expansion), so identical frames are exactly 0 apart.
    distance = torch.cdist(frames, reference, p=1) / (2 * frames.shape[-1])  # [B, T, L], in [0, 1]
    similarity = 1 - distance.min(dim=-1).values  # [B, T]
    curve = torch.stack([similarity[:, s].mean(dim=1) for s in segments], dim=1)  # [B, S]
    return {"copying": curve[:, 1:].mean(dim=1), "curve": curve}


class FirstFrameCopying(Metric):
    """Mean over videos of `first_frame_copying`'s per-video score, in [0, 1] (lower = less copying).
    Arguments as `first_frame_copying`."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, segment_frames: int = 12, first_segment_frames: int | None = None, side: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.segment_frames, self.first_segment_frames, self.side = segment_frames, first_segment_frames, side
        self.add_state("total_copying", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total_videos", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, video: torch.Tensor) -> None:
        values = first_frame_copying(video, self.segment_frames, self.first_segment_frames, self.side)
        self.total_copying += values["copying"].sum().to(self.total_copying)
        self.total_videos += len(video)

    def compute(self) -> torch.Tensor:
        return self.total_copying / self.total_videos
