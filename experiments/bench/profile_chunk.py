"""Where a steady chunk's time goes on the exact path: a per-kernel profile of the DiT and of the Wan VAE decode,
and the FP8 matmuls against bf16 at the DiT's own shapes.

    python experiments/bench/profile_chunk.py OUTDIR [--dit exact,exact_fused_pass,...] [--vae exact,conv3d,...]
                                                     [--no-fp8]   (one H100)

DiT: the full-size student (random weights), `ema_sink`, each named configuration built on a fresh model (an
attention kernel is fixed when the blocks are compiled); a stream is warmed up for 8 chunks, then 4 steady chunks
(each with the previous chunk's cache pass) are profiled with torch.profiler. CUDA graphs are off here (the exact
path's `graphs` changes nothing measurable in the steady state, `experiments/bench/README.md`) so that every kernel
is named; their static cache is on.
VAE: the streaming Wan decoder with the exact path's switches (channels-last, conv2d, compile), 4 steady
3-latent-frame chunks (12 frames, 480x832) after 6 warm ones.
Kernels are grouped (attention, matmul, convolution, Triton = Inductor's fused elementwise/reduction kernels,
eager elementwise, copies) and the busy time of the card is compared with the wall time of the profiled chunks:
the difference is the card waiting for the host.
FP8: the FP8 matmuls against bf16 at each Linear shape of a block (experiments/bench/fp8_matmuls.py).

Writes OUTDIR/profile.json and OUTDIR/profile.md (the tables).
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch._inductor.config
from fp8_matmuls import fp8_matmuls, fp8_table  # experiments/bench/fp8_matmuls.py, beside this script
from hydra import compose, initialize_config_dir
from profile_configs import DIT, VAE  # experiments/bench/profile_configs.py: the configurations by name

from rf.bench import build
from rf.diffusion.sampler import GeneratorNoise
from rf.fast.fast_path import FastPath
from rf.fast.timing import dit_flops
from rf.models.cache import CacheConfig
from rf.stream import build_sampler, fp8_calibrator
from rf.utils.cli import CONF_DIR
from rf.utils.instantiate import instantiate, resolve_dtype, to_dict

WARM, PROFILED = 8, 4
TRITON = "triton (fused elementwise / reductions)"  # Inductor's generated kernels


def category(name: str) -> str:
    """A device kernel's group, from its name (cuDNN's attention kernels say sdpa/flash; its convolutions fprop).
    Inductor's kernels are named after the ops they fuse (`_to_copy`, `cat`, ...): they are Triton, not copies."""
    n = name.lower()
    if n.startswith("triton") and not n.startswith("triton_tem"):
        return TRITON
    if any(s in n for s in ("memcpy", "memset", "copy")):
        return "copies"
    if any(s in n for s in ("flash", "fmha", "sdpa", "attention")):
        return "attention"
    if any(s in n for s in ("fprop", "dgrad", "implicit", "winograd", "conv")):
        return "conv"
    if "triton_tem" in n or any(s in n for s in ("gemm", "nvjet", "cutlass", "cublas", "wgmma", "xmma", "f8f8")):
        return "matmul"
    if any(s in n for s in ("elementwise", "reduce", "cat", "index", "gelu", "norm", "softmax", "commit")):
        return "eager elementwise"
    return "other"


def kernels_of(prof) -> list[dict]:
    """The device events of a finished profiler: [{name, ts, dur}] in microseconds, from its Chrome trace."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text())["traceEvents"]
    return [
        {"name": e["name"], "ts": float(e["ts"]), "dur": float(e["dur"])}
        for e in events
        if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")
    ]


def summarize(kernels: list[dict], chunks: int, wall_s: float, top: int = 30) -> dict:
    """Per chunk: time by category and by kernel, the card's busy time (union of kernel intervals) and the wall."""
    by_cat, by_name = defaultdict(float), defaultdict(lambda: [0.0, 0])
    for k in kernels:
        by_cat[category(k["name"])] += k["dur"]
        by_name[k["name"]][0] += k["dur"]
        by_name[k["name"]][1] += 1
    busy, end = 0.0, -1.0
    for k in sorted(kernels, key=lambda k: k["ts"]):  # union of [ts, ts + dur)
        start, stop = max(k["ts"], end), k["ts"] + k["dur"]
        busy += max(0.0, stop - start)
        end = max(end, stop)
    total = sum(k["dur"] for k in kernels)
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]
    return {
        "chunks": chunks,
        "wall_ms_per_chunk": 1e3 * wall_s / chunks,
        "busy_ms_per_chunk": busy / 1e3 / chunks,
        "kernel_ms_per_chunk": total / 1e3 / chunks,
        "kernels_per_chunk": len(kernels) / chunks,
        "by_category_ms_per_chunk": {c: t / 1e3 / chunks for c, t in sorted(by_cat.items(), key=lambda kv: -kv[1])},
        "top_kernels": [
            {
                "name": name[:160],
                "category": category(name),
                "ms_per_chunk": t / 1e3 / chunks,
                "calls_per_chunk": n / chunks,
                "mean_us": t / n,
            }
            for name, (t, n) in ranked
        ],  # fmt: skip
    }


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def profiled(fn, chunks: int, trace: Path | None = None) -> dict:
    """Run fn() (the profiled chunks' work) under torch.profiler; the GPU synchronised before and after."""
    from torch.profiler import ProfilerActivity, profile

    sync()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        fn()
        sync()
        wall = time.perf_counter() - t0
    kernels = kernels_of(prof)
    if trace is not None:
        with gzip.open(trace, "wt") as f:
            json.dump(kernels, f)
    return summarize(kernels, chunks, wall)


def timed_chunks(step, n: int) -> list[float]:
    """n calls of step(), each timed with the GPU synchronised (seconds)."""
    times = []
    for _ in range(n):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def dit_profile(cfg, name: str, switches: dict, out: Path, device: torch.device, dtype: torch.dtype) -> dict:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    arch, model, autoencoder, text = build(cfg, device, dtype)
    if device.type == "cpu":  # the CPU smoke run (model=toy): no cuDNN there
        switches = {**switches, "attention": "math"}
    switches = dict(switches)
    pdl = switches.pop("pdl", False)  # an Inductor setting, not a FastPath one
    if not hasattr(torch._inductor.config.triton, "enable_pdl"):
        if pdl:
            raise ValueError(f"{name}: Inductor's Programmatic Dependent Launch (triton.enable_pdl) is not in torch "
                             f"{torch.__version__}; profile it with a torch that has it")  # fmt: skip
    else:
        torch._inductor.config.triton.enable_pdl = pdl
    fast = FastPath(**switches)
    cache = CacheConfig(**{**to_dict(cfg.sink), "policy": "ema_sink"})
    f = autoencoder.spatial_factor
    h, w = cfg.model.video.height // f, cfg.model.video.width // f
    calibrate = fp8_calibrator(text, (1, autoencoder.latent_channels, 0, h, w), cfg.sampler, cache, fast, seed=1)
    runner = fast.prepare_model(model, calibrate)  # fp8_scales=calibrated: scales from a stream of other noise
    sampler = build_sampler(runner, cache, cfg.sampler, fast)
    chunks = WARM + PROFILED + 8
    shape = (1, autoencoder.latent_channels, chunks * cfg.sink.chunk_frames, h, w)
    with torch.inference_mode():
        stream = sampler.stream([(0, text)], shape, GeneratorNoise(0, device))
        t0 = time.perf_counter()
        for _ in range(WARM):
            next(stream)
        sync()
        warm_s = time.perf_counter() - t0
        result = profiled(lambda: [next(stream) for _ in range(PROFILED)], PROFILED, out / f"kernels_{name}.json.gz")
        steady = timed_chunks(lambda: next(stream), 8)
    tokens = (h // arch["patch_size"][1]) * (w // arch["patch_size"][2])
    span = cfg.sink.attention_frames * tokens
    q = cfg.sink.chunk_frames * tokens
    # chunk-sized passes of FLOPs per steady chunk: the denoising passes + the cache pass (fused or not; none reused)
    work = len(sampler.timesteps) + (sampler.cache_pass != "reuse")
    flops = {"linear": work * dit_flops(arch, q, 0, 0), "attention": work * (dit_flops(arch, q, span, 512)
                                                                              - dit_flops(arch, q, 0, 0))}  # fmt: skip
    result.update(
        switches=fast.describe(),
        warmup_s=warm_s,
        steady_chunk_s_unprofiled=statistics.median(steady),
        tflop_per_chunk=flops["linear"] / 1e12 + flops["attention"] / 1e12,
        linear_tflop_per_chunk=flops["linear"] / 1e12,
        attention_tflop_per_chunk=flops["attention"] / 1e12,
        graph_breaks={k[:120]: n for k, n in torch._dynamo.utils.counters["graph_break"].items()},
    )
    cats = result["by_category_ms_per_chunk"]
    result["attention_tflops"] = flops["attention"] / 1e9 / cats.get("attention", float("nan"))
    result["matmul_tflops"] = flops["linear"] / 1e9 / cats.get("matmul", float("nan"))
    del model, runner, sampler
    torch.cuda.empty_cache()
    return result


def vae_profile(cfg, name: str, out: Path, device: torch.device, dtype: torch.dtype) -> dict:
    torch._dynamo.reset()
    vae = to_dict(cfg.model.autoencoder)
    if "path" in vae:  # the Wan VAE: its published architecture with random weights, as rf.bench builds it
        vae["path"] = None
    torch.manual_seed(0)  # the same random weights for every configuration (before 2026-11-28, each drew its own)
    autoencoder = instantiate(vae).to(device)
    reference = copy.deepcopy(autoencoder).float()  # the plain decoder in fp32: what the frames are checked against
    switches = dict(VAE[name])
    torch.backends.cudnn.benchmark = switches.pop("cudnn_benchmark", False)
    autoencoder.speed_up(**switches)
    decoder = autoencoder.stream_decoder()
    f = autoencoder.spatial_factor
    h, w = cfg.model.video.height // f, cfg.model.video.width // f
    gen = torch.Generator(device).manual_seed(0)
    latents = torch.randn(1, autoencoder.latent_channels, 3 * 12, h, w, device=device, generator=gen, dtype=dtype)
    chunks = iter(latents.split(3, dim=2))
    with torch.inference_mode():
        decoder.reset()
        for _ in range(6):
            decoder.decode(next(chunks))
        result = profiled(lambda: [decoder.decode(next(chunks)) for _ in range(PROFILED)], PROFILED,
                          out / f"kernels_vae_{name}.json.gz")  # fmt: skip
        result["steady_chunk_s_unprofiled"] = statistics.median(timed_chunks(lambda: decoder.decode(next(chunks)), 2))
        # the first 3 chunks (9 + 12 + 12 frames) against the fp32 plain decoder: how far bf16 and the switches are
        decoder.reset()
        fast = torch.cat([decoder.decode(c) for c in latents[:, :, :9].split(3, dim=2)], dim=2).float()
        ref_decoder = reference.stream_decoder()
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # fp32 convolutions, not TF32
            ref = torch.cat([ref_decoder.decode(c.float()) for c in latents[:, :, :9].split(3, dim=2)], dim=2)
        result["frames_rel_error_vs_fp32"] = ((fast - ref).norm() / ref.norm()).item()
    del reference
    return result


def markdown(results: dict) -> str:
    lines = [f"device: {results['device']}, torch {results['torch']}", ""]
    dits = results.get("dit", {})
    if dits:
        lines += ["| DiT config | steady chunk (unprofiled) | profiled wall / card busy / kernel sum (ms) | kernels |"
                  " attention / matmul / triton / eager / copies (ms) | attention / matmul TFLOP/s | graph breaks |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, r in dits.items():
            if "error" in r:
                lines.append(f"| {name} | failed: {r['error'][:100]} |")
                continue
            c = r["by_category_ms_per_chunk"]
            parts = [c.get(k, 0.0) for k in ("attention", "matmul", TRITON, "eager elementwise", "copies")]
            lines.append(
                f"| {name} | {1e3 * r['steady_chunk_s_unprofiled']:.1f} ms | {r['wall_ms_per_chunk']:.1f} / "
                f"{r['busy_ms_per_chunk']:.1f} / {r['kernel_ms_per_chunk']:.1f} | {r['kernels_per_chunk']:.0f} | "
                + " / ".join(f"{p:.1f}" for p in parts)
                + f" | {r['attention_tflops']:.0f} / {r['matmul_tflops']:.0f} | {sum(r['graph_breaks'].values())} |"
            )
    vaes = {k: v for k, v in results.items() if k == "vae" or k.startswith("vae_")}  # "vae": the exact switches
    for name, r in [*dits.items(), *vaes.items()]:
        if "top_kernels" not in r:
            continue
        lines += ["", f"### {name}: top kernels per steady chunk", "", "| kernel | category | ms | calls | mean us |",
                  "|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| `{k['name'][:90]}` | {k['category']} | {k['ms_per_chunk']:.2f} | {k['calls_per_chunk']:.0f} | "
                  f"{k['mean_us']:.0f} |" for k in r["top_kernels"][:20]]  # fmt: skip
    if vaes:
        lines += ["", "| VAE | steady chunk (unprofiled) | wall / busy (ms) | by category (ms) | frames vs fp32 |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for name, v in vaes.items():
            parts = ", ".join(f"{k} {t:.1f}" for k, t in v["by_category_ms_per_chunk"].items())
            error = f"{v['frames_rel_error_vs_fp32']:.1e}" if "frames_rel_error_vs_fp32" in v else "-"
            lines.append(f"| {name} | {1e3 * v['steady_chunk_s_unprofiled']:.1f} ms | {v['wall_ms_per_chunk']:.1f} / "
                         f"{v['busy_ms_per_chunk']:.1f} | {parts} | {error} |")  # fmt: skip
    if "fp8" in results:
        lines += ["", *fp8_table(results["fp8"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dit", default=",".join(DIT), help=f"comma-separated, from {', '.join(DIT)}")
    ap.add_argument("--vae", default="exact", help=f"comma-separated, from {', '.join(VAE)} ('' for none)")
    ap.add_argument("--no-fp8", action="store_true")
    ap.add_argument("overrides", nargs="*", help="rf.bench config overrides (model=toy: a CPU smoke run)")
    args = ap.parse_intermixed_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with initialize_config_dir(CONF_DIR, version_base=None):
        cfg = compose("bench", overrides=args.overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_dtype(cfg.model.dtype)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    results = {"device": name, "torch": torch.__version__, "dit": {}}

    def save():
        (args.out / "profile.json").write_text(json.dumps(results, indent=1))
        (args.out / "profile.md").write_text(markdown(results))

    def dit(name):
        print(f"DiT {name}", flush=True)
        try:
            results["dit"][name] = dit_profile(cfg, name, DIT[name], args.out, device, dtype)
        except Exception as e:  # one failing configuration must not lose the others
            results["dit"][name] = {"error": f"{type(e).__name__}: {e}"}
        save()

    # quickest first, each saved as it comes: a call cut by its time limit keeps what was measured
    names = [n for n in args.dit.split(",") if n]
    if not args.no_fp8 and device.type == "cuda":
        print("FP8", flush=True)
        results["fp8"] = fp8_matmuls()
        save()
    for name in names[:1]:
        dit(name)
    for name in [n for n in args.vae.split(",") if n]:
        print(f"VAE {name}", flush=True)
        results["vae" if name == "exact" else f"vae_{name}"] = vae_profile(cfg, name, args.out, device, dtype)
        save()
    for name in names[1:]:
        dit(name)
    print(markdown(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
