"""The Wan decoder's RMS norm, SiLU and causal time padding as one Triton kernel (fast.vae_norm_silu).

Each causal 3-D convolution of a Wan residual block reads

    p = [zeros ; cached frames ; SiLU(RMSNorm(x + bias))]        [B, C, 2 + T, H, W]

(diffusers' WanRMS_norm: F.normalize over the channels, times sqrt(C) and gamma; the two frames before x are the
previous chunk's, zeros at the stream's start). Compiled by Inductor, on an H200 (experiments/bench/results/
profile_h200_kv_only.md, its kernels read in Inductor's generated code): the norm kernel wrote its float32
pre-activation channels-first (it has two readers, the padding and the cache's copy, so Inductor keeps it rather than
compute it twice), a second kernel read it back transposed to write the padded frames, and the residual before it was
read channels-first: 1.0-3.0 ms per full-resolution norm. Here one program takes a block of pixels with all their
channels: it reads x (and the conv bias, which Inductor otherwise adds in the next kernel) once, reduces in float32,
and writes the padded frames once, channels-last, in x's dtype. The new cache is a view of p's last two frames
(residual_block_forward in rf.models.vae_forms), so the activation has one reader.

Measured on an H200 (experiments/bench/README.md): the decode's elementwise kernels 22.1 -> 15.9 ms of card time, a
steady chunk -7.2 ms, 95% CI [-9.3, -5.0], against variants=best as it was (results/bench_vae_norm.json). Alone, 885
us per full-resolution norm against 1,690 for Inductor's kernels and 1,083 for a copy of the same bytes; at 192 and 384
channels 55-60% of the copy's rate (results/vae_norm_kernel.json). Larger tiles or more warps ran no faster.

The function is diffusers' up to rounding: the sum of squares, the division and the SiLU in float32, rounded once
(eager PyTorch rounds the normalised value, its scaling and the SiLU to bf16 in turn; Inductor, like this kernel,
keeps float32 between them).

    x [B, C, T, H, W] (any strides with H and W dense together, e.g. channels-last, or a channel slice of a wider
    convolution's output); gamma [C]; bias [C] or None; cache [B, C, k, H, W] (k <= pad) or None
    -> [B, C, pad + T, H, W] channels-last-3d, x's dtype

On a CUDA device the kernel runs compiled; on a CPU it runs in Triton's interpreter (TRITON_INTERPRET=1 set before
Triton is imported), which is how the tests check it. Under torch.compile it is one opaque custom op,
rf::norm_silu_frames, whose output the compiled graph reads with the strides above.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU install without Triton: fast.vae_norm_silu is refused before any work
    triton = None

EPS = 1e-12  # F.normalize's: the norm is clamped from below before the division


def norm_silu_available() -> str | None:
    """None where the kernel can run; otherwise why not, and the fix."""
    if triton is None:
        return "fast.vae_norm_silu is a Triton kernel and Triton is not installed (it comes with PyTorch's CUDA builds)"
    return None


if triton is not None:

    @triton.jit
    def _norm_silu_kernel(
        x_ptr, bias_ptr, gamma_ptr, out_ptr, pixels, frames, plane,
        sx_b, sx_c, sx_t, sx_p, so_b, so_t, so_p, pad, scale, eps,
        C: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, HAS_BIAS: tl.constexpr,
        ROW_RECIPROCAL: tl.constexpr,
    ):  # fmt: skip
        """One program: BLOCK_P pixels (of B * T * H * W) x all C channels. The pixel p = (b, t, q), q = h * W + w.
        ROW_RECIPROCAL: the norm's division as one reciprocal a pixel and a multiplication, sqrt(C) * gamma once a
        channel (a float32 rounding or two apart; one bf16 unit at most in the output). Alone on an H200 8% faster at
        full resolution, 5% slower at 192 channels (results/vae_norm_kernel.json): off, as measured in the stream."""
        p = (tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)).to(tl.int64)
        p_mask = p < pixels
        b = p // (frames * plane)
        t = (p // plane) % frames
        q = p % plane
        c = tl.arange(0, BLOCK_C)
        c_mask = c < C
        mask = p_mask[:, None] & c_mask[None, :]
        x = tl.load(x_ptr + (b * sx_b + t * sx_t + q * sx_p)[:, None] + c[None, :] * sx_c, mask, other=0.0)
        x = x.to(tl.float32)
        if HAS_BIAS:  # the convolution's bias, which its output came without
            x += tl.load(bias_ptr + c, c_mask, other=0.0).to(tl.float32)[None, :]
        norm = tl.maximum(tl.sqrt(tl.sum(x * x, axis=1)), eps)  # F.normalize: x / max(|x|, eps)
        gamma = tl.load(gamma_ptr + c, c_mask, other=0.0).to(tl.float32)
        if ROW_RECIPROCAL:
            y = x * (1.0 / norm)[:, None] * (scale * gamma)[None, :]
        else:
            y = x / norm[:, None] * scale * gamma[None, :]
        y = y / (1.0 + tl.exp(-y))  # SiLU
        out = out_ptr + (b * so_b + (t + pad) * so_t + q * so_p)[:, None] + c[None, :]
        tl.store(out, y.to(out_ptr.dtype.element_ty), mask)


def _launch(x, gamma, bias, out, pad: int, scale: float, row_reciprocal: bool = False) -> None:
    """SiLU(RMSNorm(x + bias)) of x's frames into out[:, :, pad:] (channels-last-3d)."""
    why = norm_silu_available()
    if why is not None:
        raise RuntimeError(why)
    b, c, t, h, w = x.shape
    if x.stride(3) != w * x.stride(4):  # one pixel index for H and W
        x = x.contiguous(memory_format=torch.channels_last_3d)
    block_c = triton.next_power_of_2(c)
    block_p = max(1, 4096 // block_c)
    pixels = b * t * h * w
    _norm_silu_kernel[(triton.cdiv(pixels, block_p),)](
        x, gamma if bias is None else bias, gamma, out, pixels, t, h * w,
        x.stride(0), x.stride(1), x.stride(2), x.stride(4), out.stride(0), out.stride(2), out.stride(4), pad,
        scale, EPS, C=c, BLOCK_C=block_c, BLOCK_P=block_p, HAS_BIAS=bias is not None, ROW_RECIPROCAL=row_reciprocal,
        num_warps=4,
    )  # fmt: skip


@torch.library.custom_op("rf::norm_silu_frames", mutates_args=())
def norm_silu_frames(
    x: torch.Tensor, gamma: torch.Tensor, bias: torch.Tensor | None, cache: torch.Tensor | None, pad: int,
    scale: float,
) -> torch.Tensor:  # fmt: skip
    """[zeros ; cache's last frames ; SiLU(RMSNorm(x + bias))] [B, C, pad + T, H, W] channels-last: the module doc."""
    b, c, t, h, w = x.shape
    if gamma.numel() != c or (bias is not None and bias.numel() != c):
        raise ValueError(f"norm_silu_frames: x has {c} channels, gamma {gamma.numel()}"
                         + ("" if bias is None else f", bias {bias.numel()}"))  # fmt: skip
    out = torch.empty(b, c, pad + t, h, w, dtype=x.dtype, device=x.device, memory_format=torch.channels_last_3d)
    kept = 0 if cache is None else min(pad, cache.shape[2])
    if pad > kept:  # before the stream's first frames: the causal zero padding
        out[:, :, : pad - kept].zero_()
    if kept:
        out[:, :, pad - kept : pad].copy_(cache[:, :, cache.shape[2] - kept :])
    _launch(x, gamma.reshape(c), None if bias is None else bias.reshape(c), out, pad, scale)
    return out


@norm_silu_frames.register_fake
def _(x, gamma, bias, cache, pad, scale):
    b, c, t, h, w = x.shape
    return torch.empty(b, c, pad + t, h, w, dtype=x.dtype, device=x.device, memory_format=torch.channels_last_3d)
