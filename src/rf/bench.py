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
The timing itself (CUDA-event clock, the timed stream, latency windows, the roofline counts) is rf.fast.timing.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from rf.bench_table import table
from rf.diffusion.sampler import StreamSampler
from rf.diffusion.schedule import chunks_for_seconds
from rf.fast.card import ClockMonitor, identity
from rf.fast.fast_path import FastPath
from rf.fast.in_place import applied_after, undone
from rf.fast.recompiles import RecompileLimitWatch, graphs_compiled
from rf.fast.timing import Stream, dit_flops, matmul_tflops, windows
from rf.models.cache import CacheConfig
from rf.models.loading import load_transformer
from rf.stream import build_decoder, build_sampler, fp8_calibrator
from rf.utils.cli import entry
from rf.utils.files import atomic_write
from rf.utils.instantiate import check_dtype, instantiate, pick_device, resolve_dtype, to_dict
from rf.utils.stop import Stop
from rf.utils.video import check_frame_size


def build(cfg: DictConfig, device, dtype):
    """The full-size student (random weights), its Wan VAE (random), and a text of the right shape."""
    arch = to_dict(cfg.model.transformer)
    model, autoencoder = build_models(cfg, device, dtype)
    text = instantiate(cfg.text)([cfg.prompt]).to(device, dtype)  # [1, Lt, text_dim]
    return arch, model, autoencoder, text


def build_models(cfg: DictConfig, device, dtype):
    """The student and its VAE with random weights drawn from cfg.seed: a second build has the same weights."""
    torch.manual_seed(cfg.seed)
    model = load_transformer(to_dict(cfg.model.transformer), None, causal=True, dtype=dtype)[0]
    model = model.to(device).eval().requires_grad_(False)
    vae = to_dict(cfg.model.autoencoder)
    if "path" in vae:  # the Wan VAE: its published architecture with random weights, like the DiT
        vae["path"] = None
    return model, instantiate(vae).to(device)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).norm() / ref.norm().clamp_min(1e-12))


@torch.inference_mode()
def reference_of(kept: list, wan_vae, device) -> dict:
    """The plain path's first chunks, with their frames decoded in fp32 (the Wan VAE's weights upcast): the truth
    that bf16 decodes are measured against."""
    truth = copy.deepcopy(wan_vae).float().stream_decoder()
    fp32 = [truth.decode(lat.to(device)).float().cpu() for lat, _ in kept]
    plain = [relative_error(frames, t) for (_, frames), t in zip(kept, fp32, strict=True)]  # plain bf16's own
    return {"chunks": kept, "fp32_frames": fp32, "plain_frames_error": plain}


@torch.inference_mode()
def check(kept: list, reference: dict, decoder, device, exact: bool, tolerance: float) -> dict:
    """A variant against the plain path, piece by piece (relative errors per chunk):

    latents: the variant's first chunks against the plain path's, bf16 both: the DiT switches, under `tolerance`;
    frames:  the plain path's latents through the variant's decoder, against their fp32 decode: the decode
             switches, which pass when they stay as close to fp32 as the plain bf16 decode does (+10%). bf16
             rounding alone moves a random-weight Wan VAE's frames by 1.7-2.3e-2, so no bf16 decode meets 1e-2 there.
    """
    plain = reference["chunks"]
    latents = [relative_error(a[0], b[0]) for a, b in zip(kept, plain, strict=True)]
    decoder.reset()
    decoded = [decoder.decode(lat.to(device)).float().cpu() for lat, _ in plain]
    frames = [relative_error(a, b) for a, b in zip(decoded, reference["fp32_frames"], strict=True)]
    plain_frames = reference["plain_frames_error"]
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
    applied: dict = field(default_factory=dict)  # what earlier variants' switches left in the model (rf.fast.in_place)

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

    def run_variant(self, fast: FastPath, policies: list[str], name: str, own_sampler: dict | None = None) -> dict:
        """Every policy of one variant: warm-up (+ the check's chunks), clips, the long stream. `own_sampler`: the
        variant's own sampler keys (e.g. fewer denoising_steps), over cfg.sampler; a changed schedule makes the
        variant approximate (its check reports the deviation from the plain 4-step latents, and passes nothing)."""
        cfg, device, sink = self.cfg, self.device, to_dict(self.cfg.sink)
        base, own_sampler = to_dict(cfg.sampler), own_sampler or {}
        changed = {k: v for k, v in own_sampler.items() if base[k] != v}
        sampler_cfg = {**base, **own_sampler}
        # fp8_scales=calibrated: the FP8 input scales from a stream of the same text with other noise than the timed
        cache = CacheConfig(**{**sink, "policy": policies[-1]})
        calibrate = fp8_calibrator(self.text, self.shape, sampler_cfg, cache, fast, seed=cfg.seed + 1)
        out = {}
        undo = undone(self.applied, fast)
        if undo:  # an earlier variant's switches are in the model for good: this one gets a fresh model and VAE
            out["fresh_model"] = f"without {', '.join(undo)}"
            print(f"variant {name}: a fresh model and VAE (the shared ones hold {', '.join(undo)})", flush=True)
            self.fresh_models()
        self.applied = applied_after(self.applied, fast)
        runner = fast.prepare_model(self.model, calibrate)  # in place: later variants share what it applies
        # the stream's sampler and decoder as rf.stream builds them; a decoder of conf/decoder/ (TAEHV) with random
        # weights (path: null), like everything here
        decoder = build_decoder(fast, self.wan_vae, cfg, device, path=None)
        approximate = fast.approximate or bool(changed)
        out.update(fast=fast.describe(), approximate=approximate, policies={})
        if changed:
            out["sampler"] = changed
        for policy in policies:
            sampler = build_sampler(runner, CacheConfig(**{**sink, "policy": policy}), sampler_cfg, fast)
            limit = cfg.memory_limit if policy == "full" else None
            timed = Stream(sampler, decoder, self.text, self.shape, device, cfg.seed, limit)
            keep = cfg.check_chunks if policy == cfg.check_policy else 0
            with torch.inference_mode():
                first = timed.run(max(cfg.warmup_chunks, cfg.check_chunks), desc=f"{name} {policy} warm-up", keep=keep)
                # a second stream: what a new stream meets after a reset (the fill stages' CUDA graphs are captured
                # at their second call; under torch 2.11 the decoder's first chunk after a reset compiled again
                # before rf.models.vae_forms.upsample3d_forward)
                timed.run(self.clip_chunks, desc=f"{name} {policy} warm-up, a second stream")
                compiled = graphs_compiled()
                clips = [timed.run(self.clip_chunks, desc=f"{name} {policy} clip") for _ in range(cfg.repeats)]
                wall = cfg.full_max_seconds if policy == "full" else math.inf
                with ClockMonitor(device) as card:  # the clock the card held through the timed stream
                    long = timed.run(self.stream_chunks, wall_limit=wall, desc=f"{name} {policy} stream")
                compiled = graphs_compiled() - compiled
            if first["kept"]:
                self.reference = self.reference or reference_of(first["kept"], self.wan_vae, device)
                out["check"] = check(first["kept"], self.reference, decoder, device, not approximate, cfg.tolerance)
            out["policies"][policy] = self.summarize(policy, clips, long, sampler, overlapped=fast.overlap)
            out["policies"][policy]["graphs_compiled_while_timed"] = compiled  # 0: the timed runs ran warm
            out["policies"][policy]["card"] = card.summary()
        return out

    def fresh_models(self) -> None:
        """Build the model and VAE again (the same weights: cfg.seed); nothing compiled for the old ones is kept."""
        self.model = self.wan_vae = None
        torch._dynamo.reset()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.model, self.wan_vae = build_models(self.cfg, self.device, resolve_dtype(self.cfg.model.dtype))
        self.applied = {}

    def summarize(self, policy: str, clips: list[dict], long: dict, sampler: StreamSampler, overlapped: bool) -> dict:
        cfg, chunk = self.cfg, self.cfg.sink.chunk_frames
        span = cfg.sink.attention_frames if policy != "full" else self.clip_chunks * chunk
        # forwards per steady chunk: the denoising passes + the clean cache pass. The fused cache pass runs inside
        # the first denoising pass (one forward fewer) over both chunks' queries: the same FLOPs as two passes
        passes = len(sampler.timesteps) + sampler.own_cache_pass
        work = len(sampler.timesteps) + (sampler.cache_pass != "reuse")  # chunk-sized passes' worth of FLOPs
        per_chunk = work * dit_flops(self.arch, chunk * self.tokens, span * self.tokens, 512)
        steady = slice(1, None) if len(long["dit_s"]) > 1 else slice(None)  # chunk 0 has no cache pass before it
        dit_s = statistics.median(long["dit_s"][steady])
        chunk_s = statistics.median(long["latency_s"][steady])  # a warm steady chunk, DiT and decode
        cache = sampler.cache_config
        return {
            # the protocol other streaming papers are asked for: what attends, end to end beside DiT only
            "attention_frames": span,  # latent frames a steady chunk's queries see (with itself); full: the clip
            "sink_frames": cache.sink_frames if cache.has_sink else 0,
            "chunk_frames": chunk,
            "video_frames_per_steady_chunk": self.frames_per_chunk,
            "steady_fps": self.frames_per_chunk / chunk_s,  # warm, VAE in
            # warm, the DiT alone (the VAE left out); with overlap the DiT's time holds the wait for the decode of the
            # chunk before it (None: not separable; the same switches without overlap give it)
            "steady_dit_only_fps": None if overlapped else self.frames_per_chunk / dit_s,
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
            "steady_chunk_dit_s": dit_s,
            "steady_chunk_decode_s": statistics.median(
                t - d for t, d in zip(long["latency_s"][steady], long["dit_s"][steady], strict=True)
            ),
            "dit_tflop_per_steady_chunk": per_chunk / 1e12,
            "dit_passes_per_steady_chunk": passes,
            "clip_runs": [
                {k: v for k, v in c.items() if k not in ("latency_s", "dit_s", "memory_gib", "kept")} for c in clips
            ],  # fmt: skip
            "stream_latency_s": long["latency_s"],
            "stream_memory_gib": long["memory_gib"],
        }


def variant_fast(cfg: DictConfig, name: str, variant: DictConfig) -> FastPath:
    """A variant's switches. `fast: {preset: exact, ...}` starts them from a preset (conf/fast/NAME.yaml, composed
    into cfg.presets by conf/bench.yaml: plain, exact or approximate) and the variant's own keys override it, so a
    row that is fast=exact stays fast=exact when the preset changes; without `preset` they start from plain."""
    fast = to_dict(variant.get("fast") or {})
    preset = fast.pop("preset", None)
    if preset is not None and preset not in cfg.presets:
        raise ValueError(f"variants.{name}.fast.preset={preset}: the presets are {', '.join(cfg.presets)} "
                         f"(conf/fast/), e.g. variants.{name}.fast.preset=exact")  # fmt: skip
    try:
        return FastPath(**{**(to_dict(cfg.presets[preset]) if preset else {}), **fast})
    except TypeError as e:  # a misspelt switch
        raise ValueError(f"variants.{name}.fast: {e} (rf.fast.fast_path.FastPath lists the switches)") from e


def sampler_keys(cfg: DictConfig, name: str, variant: DictConfig) -> dict:
    """A variant's own `sampler:` keys (conf/sampler/default.yaml's, e.g. denoising_steps), checked before any
    variant runs: a misspelt key would otherwise fail only when its variant's turn comes."""
    keys = to_dict(variant.get("sampler") or {})
    unknown = sorted(set(keys) - set(cfg.sampler))
    if unknown:
        raise ValueError(
            f"variants.{name}.sampler has {', '.join(unknown)}: a variant may set only the sampler's own keys "
            f"({', '.join(cfg.sampler)}), e.g. variants.{name}.sampler.denoising_steps=[1000,667,333]"
        )
    return keys


@entry("bench")
def main(cfg: DictConfig) -> Path:
    device, dtype = pick_device(cfg.device), resolve_dtype(cfg.model.dtype)
    check_dtype(device, dtype, key="model.dtype")
    if device.type == "cpu" and cfg.model.name != "toy":
        raise ValueError(
            f"model={cfg.model.name} on the CPU would take hours: the full-size bench needs a GPU; "
            "`make bench ARGS='model=toy'` runs the CPU smoke mode"
        )
    variants = {name: (variant_fast(cfg, name, v), list(v.policies), sampler_keys(cfg, name, v))
                for name, v in cfg.variants.items()}  # fmt: skip
    setup = Setup.build(cfg, device, dtype)
    results = {
        "method": {
            "what": "full-size causal Wan student, random weights, StreamSampler + streaming VAE decode",
            "warmup": f"a stream of {cfg.warmup_chunks} chunks and a second of the clip's length per policy before "
            "timing (compilation and graph capture here; graphs_compiled_while_timed counts what still compiled)",
            "clip": f"{cfg.clip_seconds}-s clip from a cold cache, median of {cfg.repeats} runs, call -> last frame",
            "timing": "CUDA events: call -> each chunk's frames decoded; the host waits for every chunk's frames "
            "(with overlap: for chunk i's after chunk i+1's passes are queued)",
            "latency": f"per chunk, with the previous chunk's cache pass; p50/p99 over {cfg.window_seconds}-s windows",
            "check": f"first {cfg.check_chunks} chunks of each variant vs the plain path, same seed: latents "
            f"(under {cfg.tolerance}) and the plain latents' frames against their fp32 decode (as close as plain bf16)",
        },
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "card": identity(device),  # which card of a host, its power limit (each stream's clock: policies' "card")
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "settings": OmegaConf.to_container(cfg, resolve=True),
        "matmul_tflops": matmul_tflops(device, dtype) if device.type == "cuda" else None,
        "variants": {},
    }
    out_path = Path(cfg.out)
    failed = []
    with Stop() as stop:  # SIGINT / SIGTERM: the variant in hand is measured, the others are not
        for name, (fast, policies, own_sampler) in variants.items():
            if stop.requested:
                results["stopped"] = f"{stop.signal.name} after {len(results['variants'])} of {len(variants)} variants"
                write_json(results, out_path)
                stop.exit(f"{out_path} holds {len(results['variants'])} of {len(variants)} variants (its \"stopped\" "
                          "says so)", then="measure them all with")  # fmt: skip
            if device.type != "cuda" and fast.gpu_only():
                results["variants"][name] = {"skipped": f"{', '.join(fast.gpu_only())} need a CUDA device"}
                print(f"variant {name} skipped: {results['variants'][name]['skipped']}")
                continue
            began = time.perf_counter()
            try:
                with RecompileLimitWatch() as watch:  # a function run eagerly from here on makes the variant slower
                    results["variants"][name] = setup.run_variant(fast, policies, name, own_sampler)
                if watch.hits:
                    results["variants"][name]["recompile_limit_hits"] = watch.hits
                    print(f"variant {name}: torch.compile hit its recompile limit in {'; '.join(watch.hits)}: part "
                          "of it ran eagerly, its numbers are not the variant's own; measure it in a call of its "
                          "own")  # fmt: skip
            # one broken switch must not lose the others; ImportError: a kernel the variant names is not installed
            except (RuntimeError, ValueError, AssertionError, ImportError) as e:
                results["variants"][name] = {"error": f"{type(e).__name__}: {e}"}
                failed.append(name)
                print(f"variant {name} failed: {type(e).__name__}: {e}")
            # what the variant took, compilation, warm-up and check included: what a device call must leave it
            results["variants"][name]["wall_s"] = round(time.perf_counter() - began, 1)
            print(f"variant {name}: {results['variants'][name]['wall_s']:.0f} s", flush=True)
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
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(results, indent=1)), fsync=False)


if __name__ == "__main__":
    main()
