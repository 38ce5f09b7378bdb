"""Prompt schedules: which prompt conditions which chunk of a stream.

Users write switches in seconds ({at: 15, prompt: "..."}); the sampler wants chunk indices.
Chunk i starts at video frame `num_frames(i * chunk_frames)` (Wan: the first latent frame is one
video frame, every later one four), and a switch at time T takes effect at the first chunk that
starts at or after T.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PromptSwitch:
    at: float  # seconds into the stream
    prompt: str


def parse_schedule(schedule: Sequence[dict] | None, prompt: str | None) -> list[PromptSwitch]:
    """`schedule` [{at, prompt}, ...] or else a single `prompt` -> validated switches, first at 0 s."""
    if schedule is None:
        if not prompt or not str(prompt).strip():
            raise ValueError('prompt is empty: give prompt="..." or a schedule [{at: 0, prompt: ...}, ...]')
        return [PromptSwitch(0.0, str(prompt))]
    if len(schedule) == 0:
        raise ValueError('schedule is empty: give at least [{at: 0, prompt: "..."}]')
    switches = []
    for item in schedule:
        if "at" not in item or "prompt" not in item:
            raise ValueError(f"schedule entry {dict(item)} needs both 'at' (seconds) and 'prompt'")
        if not str(item["prompt"]).strip():
            raise ValueError(f"schedule entry at {item['at']} s has an empty prompt")
        switches.append(PromptSwitch(float(item["at"]), str(item["prompt"])))
    times = [s.at for s in switches]
    if times[0] != 0 or any(b <= a for a, b in zip(times, times[1:], strict=False)):
        raise ValueError(f"schedule times {times}: need strictly increasing seconds starting at 0")
    return switches


def switches_to_chunks(
    switches: list[PromptSwitch],
    fps: float,
    chunk_frames: int,
    num_frames: Callable[[int], int],
    num_chunks: int,
) -> list[tuple[int, str]]:
    """-> [(first chunk, prompt), ...] for StreamSampler; a switch past the end of the stream is an error."""
    starts = [num_frames(i * chunk_frames) / fps if i else 0.0 for i in range(num_chunks)]
    out: list[tuple[int, str]] = []
    for sw in switches:
        chunk = next((i for i, s in enumerate(starts) if s >= sw.at - 1e-9), None)
        if chunk is None:
            raise ValueError(f"prompt switch at {sw.at} s is past the end of the {starts[-1]:.1f} s stream")
        if out and out[-1][0] == chunk:
            raise ValueError(f"prompt switches at {out[-1][1]!r} and {sw.at} s fall in the same chunk: space them out")
        out.append((chunk, sw.prompt))
    return out


def chunks_for_seconds(seconds: float, fps: float, temporal_factor: int, chunk_frames: int) -> int:
    """Chunks a stream of `seconds` needs: Wan's VAE makes 1 + 4 (F - 1) video frames of F latent frames."""
    video_frames = seconds * fps
    latent = math.ceil((video_frames - 1) / temporal_factor) + 1 if temporal_factor > 1 else math.ceil(video_frames)
    return math.ceil(latent / chunk_frames)
