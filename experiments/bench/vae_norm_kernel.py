"""The decoder's norm-SiLU-padding kernel (rf.fast.vae_norm) alone at the Wan decoder's shapes, in several tiles:
microseconds a call and the bandwidth it reaches (bytes read and written once), beside Inductor's kernels for the same
function and PyTorch's copy of the same bytes, and its largest difference from Inductor's output.

    python experiments/bench/vae_norm_kernel.py OUTDIR        (one GPU; writes OUTDIR/vae_norm_kernel.json)

Shapes (12 frames, 832x480 video): the full-resolution block's 96 channels read as a slice of the 128-filter
convolution's output (fast.vae_min_out=128), 192 channels at 240x416, 384 at 120x208. Each tile is a number of pixels
per program and warps (the channels walked in chunks of rf.fast.vae_norm.chunk_width); the kernel uses 32 and 4.
This form's output is committed as results/vae_norm_kernel_chunks.json (an H200, 2026-11-28).
results/vae_norm_kernel.json and results/vae_norm_chunked.json came from earlier forms of the kernel and of this
script (commits 609e086 and d48d2da): one power-of-two block of all the channels, then the chunks beside it.
"""

import json
import statistics
import sys
from functools import partial
from pathlib import Path

import torch

from rf.fast.vae_norm import _launch

SHAPES = {"96 of 128 at 480x832": (96, 128, 480, 832), "192 at 240x416": (192, 192, 240, 416),
          "384 at 120x208": (384, 384, 120, 208)}  # fmt: skip
TILES = [(16, 4), (32, 4), (64, 4), (64, 8), (128, 8)]


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
        for block_p, warps in TILES:
            us = timed(partial(_launch, x, gamma, bias, out, 2, c**0.5, block_p, warps))
            record(rows, name, f"{block_p} pixels, {warps} warps", us, moved)
        ref = compiled(x, bias, gamma, cache, c**0.5)[:, :, 2:].float()
        rows["largest_difference_from_inductor"] = (out[:, :, 2:].float() - ref).abs().max().item()
        print(f"{name:24s} largest difference from Inductor's: {rows['largest_difference_from_inductor']:.2e}")
        results["shapes"][name] = rows
    (out_dir / "vae_norm_kernel.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
