"""Decode on a second CUDA stream: chunk i's VAE decode runs while chunk i+1 is denoised.

StreamSampler yields a chunk as soon as its last denoising pass is queued; the decode of that chunk
then goes to a side stream, which waits only for the chunk's latents. The main stream moves on to the
cache pass and the next chunk at once, so the two overlap on the GPU wherever the kernels of one leave
room for the other (launch gaps, memory-bound kernels, tails of waves). The result is the same frames:
only the order of work on the card changes.

priority: which of the two goes first whenever both streams have work waiting.
    None      both at CUDA's default priority
    "decode"  (fast.decode_priority) the side stream at CUDA's high priority, the decode's kernels scheduled first. A
              chunk's frames, the first one's above all, then come about as soon as they would without the overlap,
              while the DiT fills what the decode leaves of the card.
    "dit"     (fast.dit_priority) the other way round: the DiT runs on a stream of its own at high priority
              (main_stream()) and the decode fills what the DiT's kernels leave of the card: the tails of their
              waves, where a kernel's last CTAs hold a few of the 132 SMs. The stream's first chunk decodes on the
              DiT's stream, in line (its first frame as soon as without the overlap).
lag: how many chunks the decode may trail the denoising (rf.fast.timing.Stream asks for chunk i's frames once chunk
    i + lag's passes are queued). With the DiT first, a lag of 1 leaves the DiT's stream empty while the host waits
    for a decode that the DiT kept waiting; 2 keeps a chunk of DiT work queued behind it.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch


@dataclass
class PendingFrames:
    """Frames being decoded on the side stream; `done` completes when they are ready."""

    frames: torch.Tensor  # [B, 3, T, H, W]
    done: torch.cuda.Event

    def wait(self) -> torch.Tensor:
        """The frames, safe to use on the current stream (which is made to wait for the decode)."""
        torch.cuda.current_stream().wait_event(self.done)
        self.frames.record_stream(torch.cuda.current_stream())
        return self.frames


PRIORITIES = (None, "decode", "dit")


class OverlappedDecoder:
    """A stream decoder (reset / decode) whose decode runs on a side stream: submit() returns at once."""

    overlapped = True  # rf.models.vae.StreamDecoder: the timed stream (rf.fast.timing) submits, then waits

    def __init__(self, decoder, device: torch.device, priority: str | None = None, lag: int = 1):
        if device.type != "cuda":
            raise ValueError(f"overlapping the decode needs a CUDA device, not {device}: leave overlap=false")
        if priority not in PRIORITIES:
            raise ValueError(f"priority={priority!r}: choose one of {', '.join(map(str, PRIORITIES))}")
        if lag < 1:
            raise ValueError(f"lag={lag}: the decode of chunk i is waited for after chunk i + lag is queued, lag >= 1")
        self.decoder, self.priority, self.lag = decoder, priority, lag
        # CUDA's lower number is the higher priority (torch.cuda.Stream(priority=-1)); 0 is the default stream's
        self.side = torch.cuda.Stream(device, priority=-1 if priority == "decode" else 0)
        self.main = torch.cuda.Stream(device, priority=-1) if priority == "dit" else None

    def main_stream(self):
        """Where the stream's DiT passes should be queued: the high-priority stream with priority="dit"."""
        return torch.cuda.stream(self.main) if self.main is not None else nullcontext()

    def reset(self) -> None:
        torch.cuda.current_stream().wait_stream(self.side)  # no decode of the last stream still running
        self.decoder.reset()

    def submit(self, latents: torch.Tensor, first: bool = False) -> PendingFrames:
        """Queue the decode of latents [B, C, f, h, w] behind the work that produces them. first: the stream's
        first chunk, decoded in line on the current stream when the DiT goes first."""
        main = torch.cuda.current_stream()
        stream = main if first and self.priority == "dit" else self.side
        if stream is self.side:
            self.side.wait_stream(main)
            latents.record_stream(self.side)  # the allocator must not reuse them before the side stream is done
        with torch.cuda.stream(stream):
            frames = self.decoder.decode(latents)
            done = torch.cuda.Event(enable_timing=True)
            done.record(stream)
        return PendingFrames(frames, done)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.submit(latents).wait()
