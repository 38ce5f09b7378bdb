"""Helpers shared by the video metrics: input checks, resizing for the flow, and frame segments."""

import torch
import torch.nn.functional as F


def check_video(video: torch.Tensor, min_frames: int = 1) -> None:
    """Raise ValueError unless video is [B, 3, T, H, W] with T >= min_frames."""
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"video shape {tuple(video.shape)} must be [B, 3, T, H, W] (RGB in [-1, 1])")
    if video.shape[2] < min_frames:
        raise ValueError(f"video shape {tuple(video.shape)} has T={video.shape[2]} frames; needs T >= {min_frames}")


def shrink(video: torch.Tensor, max_short_side: int) -> tuple[torch.Tensor, float]:
    """Area-downsample [B, 3, T, H, W] so its shorter side is <= max_short_side -> (video, scale <= 1).
    Lengths measured on the result (flow in px/frame) are in input pixels once divided by scale."""
    h, w = video.shape[-2:]
    if min(h, w) <= max_short_side:
        return video, 1.0
    scale = max_short_side / min(h, w)
    size = (video.shape[2], round(h * scale), round(w * scale))
    return F.interpolate(video, size=size, mode="area"), scale


def segment_slices(frames: int, segment_frames: int, first_segment_frames: int | None = None) -> list[slice]:
    """Consecutive segments covering [0, frames): the first of first_segment_frames (default segment_frames),
    then segment_frames each; a shorter last segment is kept as it is."""
    first = segment_frames if first_segment_frames is None else first_segment_frames
    if segment_frames < 1 or first < 1:
        raise ValueError(f"segment_frames={segment_frames} and first_segment_frames={first} must be >= 1")
    starts = [0, *range(first, frames, segment_frames)] if frames > first else [0]
    return [slice(s, min(frames, s + (first if s == 0 else segment_frames))) for s in starts]
