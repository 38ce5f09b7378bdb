"""Timing a stream on the device, and what the card and the DiT could do: the measuring half of rf.bench.

Clock     timestamps of device work: CUDA events on a GPU (exact when the host runs ahead of the card,
          as with overlapped decoding), the host clock on a CPU
Stream    one timed stream through a StreamSampler and a stream decoder: per-chunk latency (call ->
          frames decoded), the DiT's share, the first frame, memory; optionally the first chunks kept
windows   p50 / p99 chunk latency and memory in windows of video at given minutes
roofline  matmul_tflops (the card's measured rate), dit_flops (one DiT pass, counted)
median_seconds  one function's median time, for the kernel benches
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import nullcontext

import torch
from tqdm import tqdm

from rf.diffusion.sampler import GeneratorNoise


def sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def median_seconds(fn, repeats: int = 20, warm: int = 3) -> float:
    """Median seconds of fn() over `repeats` calls after `warm` more: CUDA events around each call on a GPU (the
    card's time for what fn queues), the host clock on a CPU. For the kernel benches in experiments/bench."""
    for _ in range(warm):
        fn()
    times, cuda = [], torch.cuda.is_available()
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int = 8192, repeats: int = 20) -> float:
    """The card's measured matmul rate: median over `repeats` of an n^3 product."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for _ in range(repeats + 3):
        t0 = sync(device)
        a @ b
        times.append(sync(device) - t0)
    return 2 * n**3 / statistics.median(times[3:]) / 1e12


def dit_flops(arch: dict, query_tokens: int, key_tokens: int, text_tokens: int) -> float:
    """FLOPs of one DiT pass: projections, FFN, self-attention over the cached keys, cross-attention."""
    d, f, layers = arch["num_attention_heads"] * arch["attention_head_dim"], arch["ffn_dim"], arch["num_layers"]
    linear = 2 * query_tokens * (4 * d * d + 2 * d * d + 2 * d * f)  # self q,k,v,o; cross q,o; FFN
    attention = 4 * query_tokens * (key_tokens + text_tokens) * d  # QK^T and AV, self + cross
    return layers * (linear + attention)


class Clock:
    """Timestamps of work on the device: CUDA events where there is a GPU (exact even when the host is
    ahead of the card, as it is with overlapped decoding), the host clock on a CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self, stream=None):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(stream)
        return event

    def seconds(self, a, b) -> float:
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a

    def wait(self, mark) -> None:
        if self.cuda:
            mark.synchronize()


class Stream:
    """One timed stream: per-chunk latency, memory and frames, as the chunks come out of the decoder.

    Without overlap every chunk is decoded and waited for before the next one is asked for. With an
    OverlappedDecoder the decode of chunk i is queued on a side stream and the host waits for it only
    after chunk i + lag's passes are queued (the decoder's `lag`, 1 by default), so the card works on both; the
    passes go to the decoder's main_stream() (its high-priority stream when the DiT goes first)."""

    def __init__(self, sampler, decoder, text, shape, device, seed: int, memory_limit: float | None):
        self.sampler, self.decoder, self.text, self.shape = sampler, decoder, text, shape
        self.device, self.seed, self.memory_limit = device, seed, memory_limit
        self.overlap = decoder.overlapped  # rf.models.vae.StreamDecoder: an OverlappedDecoder submits
        self.lag = getattr(decoder, "lag", 1)  # chunks its decode may trail the denoising

    def run(self, chunks: int, wall_limit: float = math.inf, desc: str = "", keep: int = 0) -> dict:
        """Stream `chunks` chunks; `keep` > 0 also returns the first `keep` chunks' latents and frames."""
        with getattr(self.decoder, "main_stream", nullcontext)():  # where the DiT's passes are queued
            return self._run(chunks, wall_limit, desc, keep)

    def _run(self, chunks: int, wall_limit: float, desc: str, keep: int) -> dict:
        shape = (*self.shape[:2], chunks * self.sampler.chunk_frames, *self.shape[3:])
        self.decoder.reset()
        clock = Clock(self.device)
        ready, done, memory, frames, stopped, kept = [], [], [], 0, None, []
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        sync(self.device)
        start, wall0 = clock.mark(), time.perf_counter()
        bar = tqdm(total=chunks, unit="chunk", desc=desc, leave=False)
        pending = []  # (latents, [PendingFrames]) decoding on the side stream
        first_frame = None  # the first decoded frame's mark

        def finish(latents, parts: list) -> None:
            nonlocal frames
            if self.overlap:
                clock.wait(parts[-1].done)
                done.append(parts[-1].done)
                parts = [part.frames for part in parts]
            else:
                done.append(clock.mark())
                clock.wait(done[-1])
            out = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
            frames += out.shape[2]
            if len(kept) < keep:
                kept.append((latents.float().cpu(), out.float().cpu()))
            bar.update(1)

        for chunk in self.sampler.stream([(0, self.text)], shape, GeneratorNoise(self.seed, self.device)):
            ready.append(clock.mark())  # the chunk's passes are queued up to here
            # the stream's first latent frame is decoded on its own (the decoders are causal: same frames) to
            # time the first frame; the rest of a chunk is decoded at once
            lat = chunk.latents
            pieces = [lat[:, :, :1], lat[:, :, 1:]] if chunk.index == 0 and lat.shape[2] > 1 else [lat]
            if self.overlap:
                parts = [self.decoder.submit(piece, first=chunk.index == 0) for piece in pieces]
                first_frame = first_frame or parts[0].done
                pending.append((lat, parts))
                if len(pending) > self.lag:
                    finish(*pending.pop(0))
            else:
                parts = []
                for piece in pieces:
                    parts.append(self.decoder.decode(piece))
                    first_frame = first_frame or clock.mark()
                finish(lat, parts)
            if self.device.type == "cuda":
                memory.append(torch.cuda.memory_allocated(self.device) / 2**30)
                total = torch.cuda.get_device_properties(self.device).total_memory / 2**30
                if self.memory_limit is not None and memory[-1] > self.memory_limit * total:
                    stopped = f"memory {memory[-1]:.1f} GiB > {self.memory_limit:.0%} of the card"
                    break
            if time.perf_counter() - wall0 > wall_limit:
                stopped = f"wall-clock limit {wall_limit:.0f} s"
                break
        for item in pending:
            finish(*item)
        sync(self.device)
        bar.close()
        peak = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None
        times = [clock.seconds(start, d) for d in done]  # chunk i's frames ready, from the call
        latency = [times[0]] + [b - a for a, b in zip(times, times[1:], strict=False)]
        marks = [clock.seconds(start, r) for r in ready]
        if self.overlap:  # main-stream time from one chunk's latents to the next: the DiT's share
            dit = [marks[0]] + [b - a for a, b in zip(marks, marks[1:], strict=False)]
        else:  # from the previous chunk's frames to this chunk's latents: previous cache pass + this denoising
            dit = [m - t for m, t in zip(marks, [0.0] + times, strict=False)]
        seconds = times[-1]
        return {"chunks": len(latency), "frames": frames, "seconds": seconds, "fps": frames / seconds,
                "first_frame_s": clock.seconds(start, first_frame), "first_frames_s": latency[0],
                "latency_s": latency, "dit_s": dit, "memory_gib": memory,
                "peak_memory_gib": peak, "stopped": stopped, "kept": kept}  # fmt: skip


def windows(run: dict, minutes: list[float], fps: float, frames_per_chunk: int, window_s: float = 10.0) -> dict:
    """p50 / p99 chunk latency and memory in `window_s` of video after each point (start: after chunk 0)."""
    chunk_seconds = frames_per_chunk / fps
    out = {}
    for label, at in [("start", 0.0)] + [(f"{m:g}min", 60.0 * m) for m in minutes]:
        first = max(1, round(at / chunk_seconds))  # chunk 0 has no cache pass before it: not a steady chunk
        last = first + max(1, round(window_s / chunk_seconds))
        lat = run["latency_s"][first:last]
        if len(lat) < last - first:
            continue  # the stream stopped before this point
        q = sorted(lat)
        entry_ = {"p50_s": statistics.median(lat), "p99_s": q[min(len(q) - 1, math.ceil(0.99 * len(q)) - 1)]}
        if run["memory_gib"]:
            entry_["memory_gib"] = run["memory_gib"][last - 1]
        out[label] = entry_
    return out
