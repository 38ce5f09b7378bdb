"""Decode on a second CUDA stream: chunk i's VAE decode runs while chunk i+1 is denoised.

StreamSampler yields a chunk as soon as its last denoising pass is queued; the decode of that chunk
then goes to a side stream, which waits only for the chunk's latents. The main stream moves on to the
cache pass and the next chunk at once, so the two overlap on the GPU wherever the kernels of one leave
room for the other (launch gaps, memory-bound kernels, tails of waves). The result is the same frames:
only the order of work on the card changes.

high_priority (fast.decode_priority): the side stream at CUDA's high priority, so that the decode's kernels are
scheduled first whenever both streams have work waiting. A chunk's frames, the first one's above all, then come
about as soon as they would without the overlap, while the DiT still fills what the decode leaves of the card.
"""

from __future__ import annotations

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


class OverlappedDecoder:
    """A stream decoder (reset / decode) whose decode runs on a side stream: submit() returns at once."""

    overlapped = True  # rf.models.vae.StreamDecoder: the timed stream (rf.fast.timing) submits, then waits

    def __init__(self, decoder, device: torch.device, high_priority: bool = False):
        if device.type != "cuda":
            raise ValueError(f"overlapping the decode needs a CUDA device, not {device}: leave overlap=false")
        self.decoder = decoder
        # priority: CUDA's lowest number is the highest priority (torch.cuda.Stream(priority=-1)); 0 is the default
        self.side = torch.cuda.Stream(device, priority=-1 if high_priority else 0)

    def reset(self) -> None:
        torch.cuda.current_stream().wait_stream(self.side)  # no decode of the last stream still running
        self.decoder.reset()

    def submit(self, latents: torch.Tensor) -> PendingFrames:
        """Queue the decode of latents [B, C, f, h, w] behind the work that produces them."""
        main = torch.cuda.current_stream()
        self.side.wait_stream(main)
        latents.record_stream(self.side)  # the allocator must not reuse them before the side stream is done
        with torch.cuda.stream(self.side):
            frames = self.decoder.decode(latents)
            done = torch.cuda.Event(enable_timing=True)
            done.record(self.side)
        return PendingFrames(frames, done)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.submit(latents).wait()
