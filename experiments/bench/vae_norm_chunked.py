"""Is there room left in the decoder's norm kernel at 192 and 384 channels? rf.fast.vae_norm's kernel holds a pixel's
channels in one power-of-two block (192 -> 256 lanes, a quarter idle) and ran at 55-60% of a copy's rate there
(results/vae_norm_kernel.json). The form here, written for this comparison only, walks the channels in chunks of
CHUNK_C with no idle lanes: one pass sums the squares, a second reads the chunks again (from L1/L2) to normalise and
write them. Both against PyTorch's copy of the same bytes, the shipped kernel at its shipped tile.

    python experiments/bench/vae_norm_chunked.py OUTDIR        (one GPU; writes OUTDIR/vae_norm_chunked.json)
"""

import json
import sys
from functools import partial
from pathlib import Path

import torch
import triton
import triton.language as tl
from vae_norm_kernel import SHAPES, inputs, record, run, timed  # experiments/bench/vae_norm_kernel.py, beside it

from rf.fast.vae_norm import EPS


@triton.jit
def _chunked_kernel(
    x_ptr, bias_ptr, gamma_ptr, out_ptr, pixels, frames, plane, sx_b, sx_c, sx_t, sx_p, so_b, so_t, so_p, pad, scale,
    eps, C: tl.constexpr, CHUNK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    p = (tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)).to(tl.int64)
    p_mask = p < pixels
    b, t, q = p // (frames * plane), (p // plane) % frames, p % plane
    x_row = (b * sx_b + t * sx_t + q * sx_p)[:, None]
    o_row = (b * so_b + (t + pad) * so_t + q * so_p)[:, None]
    ss = tl.zeros([BLOCK_P], tl.float32)
    for i in tl.static_range(C // CHUNK_C):
        c = i * CHUNK_C + tl.arange(0, CHUNK_C)
        x = tl.load(x_ptr + x_row + c[None, :] * sx_c, p_mask[:, None], other=0.0).to(tl.float32)
        x += tl.load(bias_ptr + c).to(tl.float32)[None, :]
        ss += tl.sum(x * x, axis=1)
    norm = tl.maximum(tl.sqrt(ss), eps)
    for i in tl.static_range(C // CHUNK_C):
        c = i * CHUNK_C + tl.arange(0, CHUNK_C)
        x = tl.load(x_ptr + x_row + c[None, :] * sx_c, p_mask[:, None], other=0.0).to(tl.float32)
        x += tl.load(bias_ptr + c).to(tl.float32)[None, :]
        y = x / norm[:, None] * scale * tl.load(gamma_ptr + c).to(tl.float32)[None, :]
        y = y / (1.0 + tl.exp(-y))
        tl.store(out_ptr + o_row + c[None, :], y.to(out_ptr.dtype.element_ty), p_mask[:, None])


def chunked(x, gamma, bias, out, chunk, block_p, warps):
    b, c, t, h, w = x.shape
    pixels = b * t * h * w
    _chunked_kernel[(triton.cdiv(pixels, block_p),)](
        x, bias, gamma, out, pixels, t, h * w, x.stride(0), x.stride(1), x.stride(2), x.stride(4), out.stride(0),
        out.stride(2), out.stride(4), 2, c**0.5, EPS, C=c, CHUNK_C=chunk, BLOCK_P=block_p, num_warps=warps,
    )  # fmt: skip


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": {}}
    for name, (c, wide, h, w) in SHAPES.items():
        x, gamma, bias, out, moved = inputs(c, wide, h, w)
        rows = {}
        record(rows, name, "copy", timed(partial(out[:, :, 2:].copy_, x)), moved)
        record(rows, name, "shipped", timed(partial(run, x, gamma, bias, out, 4096, 4, False)), moved)
        reference = out[:, :, 2:].clone()
        for chunk in (32, 64):
            for block_p, warps in ((32, 4), (64, 4), (64, 8), (128, 8)):
                us = timed(partial(chunked, x, gamma, bias, out, chunk, block_p, warps))
                diff = (out[:, :, 2:].float() - reference.float()).abs().max().item()
                record(rows, name, f"chunks of {chunk}, {block_p} pixels, {warps} warps", us, moved,
                       largest_difference=diff)  # fmt: skip
        results["shapes"][name] = rows
    (out_dir / "vae_norm_chunked.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
