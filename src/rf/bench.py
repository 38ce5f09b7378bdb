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

import copy
import json
import math
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from rf.diffusion.sampler import GeneratorNoise, StreamSampler
from rf.diffusion.schedule import chunks_for_seconds
from rf.models.cache import CacheConfig
from rf.models.fast_path import FastPath
from rf.models.loading import build_transformer
from rf.models.overlap import OverlappedDecoder
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
    after chunk i+1's passes are queued, so the card works on both."""

    def __init__(self, sampler, decoder, text, shape, device, seed: int, memory_limit: float | None):
        self.sampler, self.decoder, self.text, self.shape = sampler, decoder, text, shape
        self.device, self.seed, self.memory_limit = device, seed, memory_limit
        self.overlap = isinstance(decoder, OverlappedDecoder)

    def run(self, chunks: int, wall_limit: float = math.inf, desc: str = "", keep: int = 0) -> dict:
        """Stream `chunks` chunks; `keep` > 0 also returns the first `keep` chunks' latents and frames."""
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
                parts = [self.decoder.submit(piece) for piece in pieces]
                first_frame = first_frame or parts[0].done
                pending.append((lat, parts))
                if len(pending) > 1:
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


def build(cfg: DictConfig, device, dtype):
    """The full-size student (random weights), its Wan VAE (random), and a text of the right shape."""
    arch = to_dict(cfg.model.transformer)
    model = build_transformer(arch, None, causal=True, dtype=dtype).to(device).eval().requires_grad_(False)
    vae = to_dict(cfg.model.autoencoder)
    if "path" in vae:  # the Wan VAE: its published architecture with random weights, like the DiT
        vae["path"] = None
    autoencoder = instantiate(vae).to(device)
    text = instantiate(cfg.text)([cfg.prompt]).to(device, dtype)  # [1, Lt, text_dim]
    return arch, model, autoencoder, text


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).norm() / ref.norm().clamp_min(1e-12))


@torch.inference_mode()
def reference_of(kept: list, wan_vae, device) -> dict:
    """The plain path's first chunks, with their frames decoded in fp32 (the Wan VAE's weights upcast): the truth
    that bf16 decodes are measured against."""
    truth = copy.deepcopy(wan_vae).float().stream_decoder()
    return {"chunks": kept, "fp32_frames": [truth.decode(lat.to(device)).float().cpu() for lat, _ in kept]}


@torch.inference_mode()
def check(kept: list, reference: dict, decoder, device, exact: bool, tolerance: float) -> dict:
    """A variant against the plain path, piece by piece (relative errors per chunk):

    latents: the variant's first chunks against the plain path's, bf16 both: the DiT switches, under `tolerance`;
    frames:  the plain path's latents through the variant's decoder, against their fp32 decode: the decode
             switches, which pass when they stay as close to fp32 as the plain bf16 decode does (+10%). bf16
             rounding alone moves a random-weight Wan VAE's frames by ~1.7e-2, so no bf16 decode meets 1e-2 there.
    """
    plain = reference["chunks"]
    latents = [relative_error(a[0], b[0]) for a, b in zip(kept, plain, strict=True)]
    decoder.reset()
    decoded = [decoder.decode(lat.to(device)).float().cpu() for lat, _ in plain]
    frames = [relative_error(a, b) for a, b in zip(decoded, reference["fp32_frames"], strict=True)]
    plain_frames = [relative_error(b[1], t) for b, t in zip(plain, reference["fp32_frames"], strict=True)]
    passed = max(latents) < tolerance and all(f <= 1.1 * p + 1e-6 for f, p in zip(frames, plain_frames, strict=True))
    return {"latents_rel_error": latents, "frames_rel_error_vs_fp32": frames,
            "plain_bf16_frames_rel_error_vs_fp32": plain_frames, "max_latents_rel_error": max(latents),
            "max_frames_rel_error_vs_fp32": max(frames), "tolerance": tolerance if exact else None,
            "passed": passed if exact else None}  # fmt: skip


@dataclass
class Setup:
    """What every variant of one bench call shares: the model, its VAE and text, and the stream's sizes."""

    cfg: DictConfig
    device: torch.device
    arch: dict
    model: torch.nn.Module
    wan_vae: torch.nn.Module
    text: torch.Tensor
    shape: tuple  # (B, C, 0, h, w): latent frames are set per run
    tokens: int  # tokens per latent frame
    fps: int
    frames_per_chunk: int  # video frames of a steady chunk
    clip_chunks: int
    stream_chunks: int
    reference: dict | None = None  # the plain path's first chunks (reference_of), for every variant's check

    @classmethod
    def build(cls, cfg: DictConfig, device: torch.device, dtype: torch.dtype) -> Setup:
        arch, model, wan_vae, text = build(cfg, device, dtype)
        h, w, fps = cfg.model.video.height, cfg.model.video.width, cfg.model.video.fps
        f, chunk = wan_vae.spatial_factor, cfg.sink.chunk_frames
        check_frame_size(h, w, f, arch["patch_size"][1])
        return cls(
            cfg, device, arch, model, wan_vae, text,
            shape=(1, wan_vae.latent_channels, 0, h // f, w // f),
            tokens=(h // f // arch["patch_size"][1]) * (w // f // arch["patch_size"][2]),
            fps=fps,
            frames_per_chunk=wan_vae.num_frames(chunk + 1) - wan_vae.num_frames(1),
            clip_chunks=chunks_for_seconds(cfg.clip_seconds, fps, wan_vae.temporal_factor, chunk),  # 5 s: 7 chunks
            stream_chunks=chunks_for_seconds(cfg.stream_seconds, fps, wan_vae.temporal_factor, chunk),
        )  # fmt: skip

    def run_variant(self, fast: FastPath, policies: list[str], name: str) -> dict:
        """Every policy of one variant: warm-up (+ the check's chunks), clips, the long stream."""
        cfg, device, sink = self.cfg, self.device, to_dict(self.cfg.sink)
        runner = fast.prepare_model(self.model)  # in place and cumulative: list variants plain first
        autoencoder = self.wan_vae
        if fast.decoder == "taehv":  # random weights, like everything here
            autoencoder = instantiate({**to_dict(cfg.taehv), "path": None}).to(device)
        decoder = fast.prepare_decoder(autoencoder, device)
        out = {"fast": fast.describe(), "approximate": fast.approximate, "policies": {}}
        for policy in policies:
            sampler = StreamSampler(runner, CacheConfig(**{**sink, "policy": policy}), **to_dict(cfg.sampler),
                                    **fast.sampler_kwargs())  # fmt: skip
            limit = cfg.memory_limit if policy == "full" else None
            timed = Stream(sampler, decoder, self.text, self.shape, device, cfg.seed, limit)
            keep = cfg.check_chunks if policy == cfg.check_policy else 0
            with torch.inference_mode():
                first = timed.run(max(cfg.warmup_chunks, cfg.check_chunks), desc=f"{name} {policy} warm-up", keep=keep)
                clips = [timed.run(self.clip_chunks, desc=f"{name} {policy} clip") for _ in range(cfg.repeats)]
                wall = cfg.full_max_seconds if policy == "full" else math.inf
                long = timed.run(self.stream_chunks, wall_limit=wall, desc=f"{name} {policy} stream")
            if first["kept"]:
                self.reference = self.reference or reference_of(first["kept"], self.wan_vae, device)
                out["check"] = check(first["kept"], self.reference, decoder, device, not fast.approximate,
                                     cfg.tolerance)  # fmt: skip
            out["policies"][policy] = self.summarize(policy, clips, long, sampler)
        return out

    def summarize(self, policy: str, clips: list[dict], long: dict, sampler: StreamSampler) -> dict:
        cfg, chunk = self.cfg, self.cfg.sink.chunk_frames
        span = cfg.sink.attention_frames if policy != "full" else self.clip_chunks * chunk
        passes = len(sampler.timesteps) + (sampler.cache_pass == "clean")
        per_chunk = passes * dit_flops(self.arch, chunk * self.tokens, span * self.tokens, 512)
        steady = slice(1, None) if len(long["dit_s"]) > 1 else slice(None)  # chunk 0 has no cache pass before it
        return {
            "clip_fps": statistics.median(c["fps"] for c in clips),
            "clip_first_frame_s": statistics.median(c["first_frame_s"] for c in clips),  # call -> frame 0 decoded
            "clip_first_frames_s": statistics.median(c["first_frames_s"] for c in clips),  # call -> chunk 0 decoded
            "clip_peak_memory_gib": clips[0]["peak_memory_gib"],
            "stream_fps": long["fps"],
            "stream_seconds_of_video": long["frames"] / self.fps,
            "stream_stopped": long["stopped"],
            "latency": windows(long, list(cfg.minutes), self.fps, self.frames_per_chunk, cfg.window_seconds),
            "stream_peak_memory_gib": long["peak_memory_gib"],
            # where a steady chunk's time goes: the DiT (cache pass + denoising passes) and the decode after it
            "steady_chunk_dit_s": statistics.median(long["dit_s"][steady]),
            "steady_chunk_decode_s": statistics.median(
                t - d for t, d in zip(long["latency_s"][steady], long["dit_s"][steady], strict=True)
            ),
            "dit_tflop_per_steady_chunk": per_chunk / 1e12,
            "clip_runs": [
                {k: v for k, v in c.items() if k not in ("latency_s", "dit_s", "memory_gib", "kept")} for c in clips
            ],  # fmt: skip
            "stream_latency_s": long["latency_s"],
            "stream_memory_gib": long["memory_gib"],
        }


@entry("bench")
def main(cfg: DictConfig) -> Path:
    device, dtype = pick_device(cfg.device), resolve_dtype(cfg.model.dtype)
    if device.type == "cpu" and cfg.model.name != "toy":
        raise ValueError(
            f"model={cfg.model.name} on the CPU would take hours: the full-size bench needs a GPU; "
            "`make bench ARGS='model=toy'` runs the CPU smoke mode"
        )
    variants = {name: (FastPath(**to_dict(v.fast)), list(v.policies)) for name, v in cfg.variants.items()}
    setup = Setup.build(cfg, device, dtype)
    results = {
        "method": {
            "what": "full-size causal Wan student, random weights, StreamSampler + streaming VAE decode",
            "warmup": f"{cfg.warmup_chunks} chunks per policy before timing (compilation and graph capture here)",
            "clip": f"{cfg.clip_seconds}-s clip from a cold cache, median of {cfg.repeats} runs, call -> last frame",
            "timing": "CUDA events: call -> each chunk's frames decoded; the host waits for every chunk's frames "
            "(with overlap: for chunk i's after chunk i+1's passes are queued)",
            "latency": f"per chunk, with the previous chunk's cache pass; p50/p99 over {cfg.window_seconds}-s windows",
            "check": f"first {cfg.check_chunks} chunks of each variant vs the plain path, same seed: latents "
            f"(under {cfg.tolerance}) and the plain latents' frames against their fp32 decode (as close as plain bf16)",
        },
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "settings": OmegaConf.to_container(cfg, resolve=True),
        "matmul_tflops": matmul_tflops(device, dtype) if device.type == "cuda" else None,
        "variants": {},
    }
    out_path = Path(cfg.out)
    failed = []
    for name, (fast, policies) in variants.items():
        if device.type != "cuda" and fast.gpu_only():
            results["variants"][name] = {"skipped": f"{', '.join(fast.gpu_only())} need a CUDA device"}
            print(f"variant {name} skipped: {results['variants'][name]['skipped']}")
            continue
        try:
            results["variants"][name] = setup.run_variant(fast, policies, name)
        except (RuntimeError, ValueError, AssertionError) as e:  # one broken switch must not lose the others
            results["variants"][name] = {"error": f"{type(e).__name__}: {e}"}
            failed.append(name)
            print(f"variant {name} failed: {type(e).__name__}: {e}")
        write_json(results, out_path)  # after every variant: a crash keeps what was measured

    plain = results["variants"].get(cfg.baseline_variant, {}).get("policies", {}).get(cfg.baseline_policy)
    if plain:  # the Self Forcing-style configuration: every number is also reported as a speedup over it
        for v in results["variants"].values():
            for r in v.get("policies", {}).values():
                r["clip_speedup"] = r["clip_fps"] / plain["clip_fps"]
    write_json(results, out_path)
    print(table(results))
    print(f"wrote {out_path}")
    if failed:
        raise RuntimeError(f"variants {', '.join(failed)} failed (their errors are in {out_path})")
    return out_path


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)


def table(results: dict) -> str:
    rows = [f"device: {results['device']}  matmul: {results['matmul_tflops'] or float('nan'):.0f} TFLOP/s",
            "| variant | policy | clip FPS | x plain | first frame / chunk (s) | stream FPS | video s | p50 start | "
            "p50 last | "
            "DiT / VAE (s) | peak GiB | check: latents / frames vs fp32 | stop |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, v in results["variants"].items():
        c = v.get("check")
        verdict = (
            "-"
            if c is None
            else (
                f"{c['max_latents_rel_error']:.1e} / {c['max_frames_rel_error_vs_fp32']:.1e}"
                + {True: " ok", False: " FAIL", None: ""}[c["passed"]]
            )
        )
        if "error" in v:
            rows.append(f"| {name} | - | failed: {v['error'][:80]} |")
        for policy, r in v.get("policies", {}).items():
            lat = list(r["latency"].values())
            p50 = [f"{x['p50_s']:.3f}" for x in (lat[0], lat[-1])] if lat else ["-", "-"]
            peak = r["stream_peak_memory_gib"]
            peak = "-" if peak is None else f"{peak:.1f}"
            speedup = f"{r['clip_speedup']:.2f}" if "clip_speedup" in r else "-"
            rows.append(
                f"| {name} | {policy} | {r['clip_fps']:.1f} | {speedup} | "
                f"{r['clip_first_frame_s']:.3f} / {r['clip_first_frames_s']:.3f} | "
                f"{r['stream_fps']:.1f} | {r['stream_seconds_of_video']:.0f} | {p50[0]} | {p50[1]} | "
                f"{r['steady_chunk_dit_s']:.3f} / {r['steady_chunk_decode_s']:.3f} | {peak} | {verdict} | "
                f"{r['stream_stopped'] or ''} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
