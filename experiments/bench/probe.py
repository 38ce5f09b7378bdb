"""Where the exact path's time could still go: the Wan VAE decode and the attention kernels, one piece at a time.

    python experiments/bench/probe.py OUT.json      (one H100; random weights; ~3 min)

VAE: a steady 3-latent chunk (12 frames, 480x832) decoded by the streaming decoder under each decode switch,
the time (median of 5) and the relative error of the frames against the plain bf16 decode and against fp32.
Attention: one self-attention call of the student's steady chunk (4,680 queries over 14,040 keys, 12 heads of
128) and one cross-attention call (512 text keys) with each SDPA backend, time and whether it ran at all.
"""

import copy
import json
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from rf.models.vae import WanVideoAutoencoder


def timed(fn, repeats=5):
    times = []
    for _ in range(repeats + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]), out


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def vae_probe(results):
    torch.manual_seed(0)
    base = WanVideoAutoencoder.from_pretrained(None, "float32").cuda()
    z = torch.randn(1, 16, 4, 60, 104, device="cuda")

    def stream(ae, dtype):
        def go():
            d = ae.stream_decoder()
            d.decode(z[:, :, :1].to(dtype))
            return d.decode(z[:, :, 1:].to(dtype))  # the steady chunk: 12 frames

        return go

    t, fp32 = timed(stream(base, torch.float32), repeats=2)
    results["vae"] = {"fp32": {"seconds_incl_first_frame": t}}
    plain16 = None
    for name, cl, bench, comp in [
        ("plain", False, False, False),
        ("cudnn_benchmark", False, True, False),
        ("channels_last", True, False, False),
        ("channels_last+benchmark", True, True, False),
        ("compile", False, False, True),
        ("compile+channels_last", True, False, True),
    ]:
        torch.backends.cudnn.benchmark = bench
        ae = copy.deepcopy(base).to(torch.bfloat16)
        ae.speed_up(channels_last=cl, compile=comp)
        try:
            t0 = time.perf_counter()
            stream(ae, torch.bfloat16)()
            first = time.perf_counter() - t0
            t, out = timed(stream(ae, torch.bfloat16))
        except Exception as e:  # a switch that does not run is a result too
            results["vae"][name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            continue
        plain16 = out if plain16 is None else plain16
        results["vae"][name] = {
            "seconds_incl_first_frame": t,
            "first_call_s": first,
            "rel_error_vs_plain_bf16": rel(out, plain16),
            "rel_error_vs_fp32": rel(out, fp32),
        }
        print(name, results["vae"][name], flush=True)
    torch.backends.cudnn.benchmark = False


def attention_probe(results):
    results["attention"] = {}
    for label, keys in [("self 4680x14040", 14040), ("cross 4680x512", 512)]:
        # diffusers' dispatch hands SDPA [B, H, L, D] views of [B, L, H, D] tensors
        q = torch.randn(1, 4680, 12, 128, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
        k = torch.randn(1, keys, 12, 128, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
        v = torch.randn(1, keys, 12, 128, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
        flops = 4 * 4680 * keys * 12 * 128
        ref = None
        for name, backend in [
            ("flash", SDPBackend.FLASH_ATTENTION),
            ("cudnn", SDPBackend.CUDNN_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION),
        ]:
            for layout in ("transposed", "contiguous"):
                args = (q, k, v) if layout == "transposed" else (q.contiguous(), k.contiguous(), v.contiguous())
                with warnings.catch_warnings(record=True) as caught, sdpa_kernel([backend]):
                    warnings.simplefilter("always")
                    try:
                        t, out = timed(lambda a=args: F.scaled_dot_product_attention(*a), repeats=20)
                        ref = out if ref is None else ref
                        entry = {"ms": t * 1e3, "tflops": flops / t / 1e12, "rel_error_vs_flash": rel(out, ref)}
                    except RuntimeError as e:
                        entry = {"error": str(e)[:200], "why": [str(w.message)[:300] for w in caught][:4]}
                results["attention"][f"{label} {name} {layout}"] = entry
                print(label, name, layout, entry, flush=True)


if __name__ == "__main__":
    results = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
    }
    attention_probe(results)
    vae_probe(results)
    with open(sys.argv[1], "w") as f:
        json.dump(results, f, indent=1)
