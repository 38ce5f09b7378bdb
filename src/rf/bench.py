"""python -m rf.bench (make bench): how fast the streaming student streams, measured and written down.

The Wan2.1-1.3B student with random weights (speed does not depend on weight values), 832x480, 3-frame
chunks, 4 denoising passes + the cache pass, and the streaming Wan VAE decode, all through the one
StreamSampler that training and generation use. For every cache policy:

    clip     FPS of a 5-s clip from a cold cache (call -> last frame decoded), median of `repeats`
    first    time to the first decoded frames (call -> chunk 0 decoded, GPU synchronised)
    stream   FPS of a long stream, per-chunk latency p50 / p99 in 10-s windows at its start and after
             each of `minutes`, memory allocated at those points and its peak

`full` (no eviction: the Self Forcing-style baseline) is stopped when its memory passes
`memory_limit` of the card or its stream passes `full_max_seconds`. The JSON holds the device, the
versions, every setting, the method and every number; the last lines printed are a table.
A roofline counts the DiT's FLOPs per chunk against the card's measured bf16 matmul rate.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from rf.diffusion.sampler import GeneratorNoise, StreamSampler
from rf.diffusion.schedule import chunks_for_seconds
from rf.models.cache import CacheConfig
from rf.models.compile import compile_blocks
from rf.models.loading import build_transformer
from rf.utils.cli import entry
from rf.utils.instantiate import instantiate, pick_device, resolve_dtype, to_dict
from rf.utils.video import check_frame_size


def sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


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


class Stream:
    """One timed stream: per-chunk latency, memory and frames, as the chunks come out of the decoder."""

    def __init__(self, sampler, decoder, text, shape, device, seed: int, memory_limit: float | None):
        self.sampler, self.decoder, self.text, self.shape = sampler, decoder, text, shape
        self.device, self.seed, self.memory_limit = device, seed, memory_limit

    def run(self, chunks: int, wall_limit: float = math.inf, desc: str = "") -> dict:
        shape = (*self.shape[:2], chunks * self.sampler.chunk_frames, *self.shape[3:])
        self.decoder.reset()
        latency, denoise, memory, frames, stopped = [], [], [], 0, None
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        start = last = sync(self.device)
        bar = tqdm(total=chunks, unit="chunk", desc=desc, leave=False)
        stream = self.sampler.stream([(0, self.text)], shape, GeneratorNoise(self.seed, self.device))
        for chunk in stream:
            denoise.append(sync(self.device) - last)  # previous cache pass + this chunk's denoising passes
            frames += self.decoder.decode(chunk.latents).shape[2]
            now = sync(self.device)
            latency.append(now - last)
            last = now
            bar.update(1)
            if self.device.type == "cuda":
                memory.append(torch.cuda.memory_allocated(self.device) / 2**30)
                total = torch.cuda.get_device_properties(self.device).total_memory / 2**30
                if self.memory_limit is not None and memory[-1] > self.memory_limit * total:
                    stopped = f"memory {memory[-1]:.1f} GiB > {self.memory_limit:.0%} of the card"
                    break
            if now - start > wall_limit:
                stopped = f"wall-clock limit {wall_limit:.0f} s"
                break
        bar.close()
        peak = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None
        seconds = last - start
        return {"chunks": len(latency), "frames": frames, "seconds": seconds, "fps": frames / seconds,
                "first_frames_s": latency[0], "latency_s": latency, "dit_s": denoise, "memory_gib": memory,
                "peak_memory_gib": peak, "stopped": stopped}  # fmt: skip


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


@entry("bench")
def main(cfg: DictConfig) -> Path:
    device, dtype = pick_device(cfg.device), resolve_dtype(cfg.model.dtype)
    if device.type == "cpu" and cfg.model.name != "toy":
        raise ValueError(
            f"model={cfg.model.name} on the CPU would take hours: the full-size bench needs a GPU; "
            "`make bench ARGS='model=toy'` runs the CPU smoke mode"
        )
    arch = to_dict(cfg.model.transformer)
    model = build_transformer(arch, None, causal=True, dtype=dtype).to(device).eval().requires_grad_(False)
    if cfg.compile:
        compile_blocks(model)  # rf.models.compile: blocks are pure, 30 of them share a compiled graph per shape
    vae = to_dict(cfg.model.autoencoder)
    if "path" in vae:  # the Wan VAE: its published architecture with random weights, like the DiT
        vae["path"] = None
    autoencoder = instantiate(vae).to(device)
    text = instantiate(cfg.text)([cfg.prompt]).to(device, dtype)  # [1, Lt, text_dim]
    h, w, fps = cfg.model.video.height, cfg.model.video.width, cfg.model.video.fps
    f = autoencoder.spatial_factor
    check_frame_size(h, w, f, arch["patch_size"][1])
    shape = (1, autoencoder.latent_channels, 0, h // f, w // f)
    sink = to_dict(cfg.sink)
    chunk = sink["chunk_frames"]
    frames_per_chunk = autoencoder.num_frames(chunk + 1) - autoencoder.num_frames(1)  # steady-state chunk
    clip_chunks = chunks_for_seconds(cfg.clip_seconds, fps, autoencoder.temporal_factor, chunk)  # 5 s: 7 chunks
    stream_chunks = chunks_for_seconds(cfg.stream_seconds, fps, autoencoder.temporal_factor, chunk)

    # Roofline: DiT FLOPs of a steady-state chunk (its attention span depends on the policy)
    tokens = (h // f // arch["patch_size"][1]) * (w // f // arch["patch_size"][2])
    rate = matmul_tflops(device, dtype) if device.type == "cuda" else None

    results = {
        "method": {
            "what": "full-size causal Wan student, random weights, StreamSampler + streaming VAE decode",
            "warmup": f"{cfg.warmup_chunks} chunks per policy before timing",
            "clip": f"{cfg.clip_seconds}-s clip from a cold cache, median of {cfg.repeats} runs, call -> last frame",
            "timing": "wall clock, torch.cuda.synchronize after every decoded chunk",
            "latency": f"per chunk, with the previous chunk's cache pass; p50/p99 over {cfg.window_seconds}-s windows",
        },
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "settings": OmegaConf.to_container(cfg, resolve=True),
        "matmul_tflops": rate,
        "policies": {},
    }
    for policy in cfg.policies:
        sampler = StreamSampler(model, CacheConfig(**{**sink, "policy": policy}), **to_dict(cfg.sampler))
        limit = cfg.memory_limit if policy == "full" else None
        timed = Stream(sampler, autoencoder.stream_decoder(), text, shape, device, cfg.seed, limit)
        with torch.inference_mode():
            timed.run(cfg.warmup_chunks, desc=f"{policy} warm-up")
            clips = [timed.run(clip_chunks, desc=f"{policy} clip") for _ in range(cfg.repeats)]
            wall = cfg.full_max_seconds if policy == "full" else math.inf
            long = timed.run(stream_chunks, wall_limit=wall, desc=f"{policy} stream")
        span = {"full": None, "window": sink["attention_frames"], "sink": sink["attention_frames"]}
        span = span.get(policy, sink["attention_frames"])
        context = (span or clip_chunks * chunk) - chunk  # frames of keys besides the chunk itself
        per_chunk = (len(sampler.timesteps) + 1) * dit_flops(arch, chunk * tokens, (context + chunk) * tokens, 512)
        results["policies"][policy] = {
            "clip_fps": statistics.median(c["fps"] for c in clips),
            "clip_first_frames_s": statistics.median(c["first_frames_s"] for c in clips),
            "clip_peak_memory_gib": clips[0]["peak_memory_gib"],
            "stream_fps": long["fps"],
            "stream_seconds_of_video": long["frames"] / fps,
            "stream_stopped": long["stopped"],
            "latency": windows(long, list(cfg.minutes), fps, frames_per_chunk, cfg.window_seconds),
            "stream_peak_memory_gib": long["peak_memory_gib"],
            # where a steady chunk's time goes: the DiT (cache pass + 4 denoising passes) and the VAE decode
            "steady_chunk_dit_s": statistics.median(long["dit_s"][1:] or long["dit_s"]),
            "steady_chunk_decode_s": statistics.median(
                [t - d for t, d in zip(long["latency_s"][1:], long["dit_s"][1:], strict=True)] or [0.0]
            ),
            "dit_tflop_per_steady_chunk": per_chunk / 1e12,
            "clip_runs": [{k: v for k, v in c.items() if k not in ("latency_s", "dit_s", "memory_gib")} for c in clips],
            "stream_latency_s": long["latency_s"],
            "stream_memory_gib": long["memory_gib"],
        }

    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out)
    print(table(results))
    print(f"wrote {out}")
    return out


def table(results: dict) -> str:
    rows = [f"device: {results['device']}  matmul: {results['matmul_tflops'] or float('nan'):.0f} TFLOP/s",
            "| policy | clip FPS | first frames (s) | stream FPS | video s | p50 start | p50 last | DiT / VAE (s) | "
            "peak GiB | stop |",
            "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for policy, r in results["policies"].items():
        lat = list(r["latency"].values())
        p50 = [f"{x['p50_s']:.3f}" for x in (lat[0], lat[-1])] if lat else ["-", "-"]
        peak = r["stream_peak_memory_gib"]
        peak = "-" if peak is None else f"{peak:.1f}"
        rows.append(
            f"| {policy} | {r['clip_fps']:.1f} | {r['clip_first_frames_s']:.3f} | {r['stream_fps']:.1f} | "
            f"{r['stream_seconds_of_video']:.0f} | {p50[0]} | {p50[1]} | "
            f"{r['steady_chunk_dit_s']:.3f} / {r['steady_chunk_decode_s']:.3f} | {peak} | "
            f"{r['stream_stopped'] or ''} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
