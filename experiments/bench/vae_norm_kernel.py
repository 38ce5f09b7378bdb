"""The decoder's norm-SiLU-padding kernel (rf.fast.vae_norm) alone at the Wan decoder's shapes, in several tile
configurations, its division per element or as one reciprocal a pixel (ROW_RECIPROCAL): microseconds a call and the
bandwidth it reaches (bytes read and written once), beside Inductor's kernels for the same function and PyTorch's
copy of the same bytes.

    python experiments/bench/vae_norm_kernel.py OUTDIR        (one GPU; writes OUTDIR/vae_norm_kernel.json)

Shapes (12 frames, 832x480 video): the full-resolution block's 96 channels read as a slice of the 128-filter
convolution's output (fast.vae_min_out=128), 192 channels at 240x416, 384 at 120x208. Each configuration is a number
of elements per program (pixels x the channel block) and warps; rf.fast.vae_norm uses 4096 and 4.
"""

import json
import statistics
import sys
from functools import partial
from pathlib import Path

import torch
import triton

from rf.fast.vae_norm import EPS, _norm_silu_kernel

SHAPES = {"96 of 128 at 480x832": (96, 128, 480, 832), "192 at 240x416": (192, 192, 240, 416),
          "384 at 120x208": (384, 384, 120, 208)}  # fmt: skip
CONFIGS = [(2048, 4), (4096, 4), (4096, 8), (8192, 4), (8192, 8), (16384, 8)]


def run(x, gamma, bias, out, elements, warps, reciprocal):
    b, c, t, h, w = x.shape
    block_c = triton.next_power_of_2(c)
    block_p = max(1, elements // block_c)
    pixels = b * t * h * w
    _norm_silu_kernel[(triton.cdiv(pixels, block_p),)](
        x, bias, gamma, out, pixels, t, h * w, x.stride(0), x.stride(1), x.stride(2), x.stride(4), out.stride(0),
        out.stride(2), out.stride(4), 2, c**0.5, EPS, C=c, BLOCK_C=block_c, BLOCK_P=block_p, HAS_BIAS=True,
        ROW_RECIPROCAL=reciprocal, num_warps=warps,
    )  # fmt: skip


@torch.compile(dynamic=False)
def compiled(x, bias, gamma, cache, scale):
    """The same function as diffusers' layers compute it (WanRMS_norm, SiLU, causal_frames' concatenation)."""
    y = torch.nn.functional.normalize((x + bias.view(1, -1, 1, 1, 1)).float(), dim=1).to(x.dtype)
    y = torch.nn.functional.silu(y * scale * gamma.view(1, -1, 1, 1, 1))
    return torch.cat([cache, y], dim=2)


def timed(fn) -> float:
    """Median microseconds of fn() over 20 calls after 3, by CUDA events."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    return statistics.median(times)


def inputs(c: int, wide: int, h: int, w: int):
    """x: the first c of `wide` channels of a channels-last convolution output [1, wide, 12, h, w] (strided where
    wide > c), gamma and bias [c], out [1, c, 14, h, w] channels-last; and the bytes the kernel reads and writes
    once."""
    conv = torch.randn(1, wide, 12, h, w, device="cuda", dtype=torch.bfloat16)
    x = conv.contiguous(memory_format=torch.channels_last_3d)[:, :c]
    gamma = torch.rand(c, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(c, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(1, c, 14, h, w, device="cuda", dtype=torch.bfloat16, memory_format=torch.channels_last_3d)
    return x, gamma, bias, out, x.numel() * 2 + out[:, :, 2:].numel() * 2


def record(rows: dict, shape: str, key: str, us: float, moved: int, **more) -> None:
    """One row: microseconds and the bandwidth of `moved` bytes, printed as it comes."""
    rows[key] = {"us": us, "tb_per_s": moved / us / 1e6, **more}
    extra = "".join(f"  ({k} {v:.1e})" for k, v in more.items())
    print(f"{shape:24s} {key:36s}: {us:8.1f} us  {moved / us / 1e6:.2f} TB/s{extra}", flush=True)


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": {}}
    for name, (c, wide, h, w) in SHAPES.items():
        x, gamma, bias, out, moved = inputs(c, wide, h, w)  # moved: read once, written once
        rows = {}
        cache = torch.randn(1, c, 2, h, w, device="cuda", dtype=torch.bfloat16)
        cache = cache.contiguous(memory_format=torch.channels_last_3d)
        # what the kernel replaces, alone; then the same bytes moved by PyTorch's copy: the reference
        record(rows, name, "inductor", timed(partial(compiled, x, bias, gamma, cache, c**0.5)), moved)
        record(rows, name, "copy", timed(partial(out[:, :, 2:].copy_, x)), moved)
        outputs = {}
        for reciprocal in (False, True):
            for elements, warps in CONFIGS:
                key = f"{'reciprocal' if reciprocal else 'division'}, {elements} elements, {warps} warps"
                record(rows, name, key, timed(partial(run, x, gamma, bias, out, elements, warps, reciprocal)), moved)
            outputs[reciprocal] = out[:, :, 2:].clone()
        diff = (outputs[True].float() - outputs[False].float()).abs().max().item()
        rows["reciprocal vs division, largest difference"] = diff
        print(f"{name:24s} reciprocal vs division: largest difference {diff:.2e}", flush=True)
        results["shapes"][name] = rows
    (out_dir / "vae_norm_kernel.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
