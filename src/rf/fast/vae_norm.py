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
steady chunk -7.2 ms, 95% CI [-9.3, -5.0], against variants=best as it was (results/bench_vae_norm.json), with the
channels in one power-of-two block. Walking them in chunks that divide C (no idle lanes, the form here): the 28 norms
8.7 -> 6.3 ms of card time a chunk (results/profile_vae_norm_chunks.md); alone 647 us per full-resolution norm against
1,682 for Inductor's kernels and 1,061 for a copy of the same bytes, 327 / 535 / 230 at 192 channels, 198 / 278 / 119
at 384 (results/vae_norm_kernel_chunks.json).

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
        C: tl.constexpr, CHUNK_C: tl.constexpr, BLOCK_P: tl.constexpr, HAS_BIAS: tl.constexpr,
    ):  # fmt: skip
        """One program: BLOCK_P pixels (of B * T * H * W), the pixel p = (b, t, q), q = h * W + w; their C channels
        walked in chunks of CHUNK_C, twice: the squares summed, then each chunk read again (from L1/L2) to normalise
        and write. Chunks that divide C leave no lane idle: 18-25% faster alone on an H200 than one power-of-two
        block of all the channels (results/vae_norm_chunked.json)."""
        p = (tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)).to(tl.int64)
        p_mask = p < pixels
        b, t, q = p // (frames * plane), (p // plane) % frames, p % plane
        x_row = (b * sx_b + t * sx_t + q * sx_p)[:, None]
        o_row = (b * so_b + (t + pad) * so_t + q * so_p)[:, None]
        squares = tl.zeros([BLOCK_P], tl.float32)
        for i in tl.static_range((C + CHUNK_C - 1) // CHUNK_C):
            c = i * CHUNK_C + tl.arange(0, CHUNK_C)
            x = tl.load(x_ptr + x_row + c[None, :] * sx_c, p_mask[:, None] & (c < C)[None, :], other=0.0)
            x = x.to(tl.float32)
            if HAS_BIAS:
                x += tl.load(bias_ptr + c, c < C, other=0.0).to(tl.float32)[None, :]
            squares += tl.sum(x * x, axis=1)
        norm = tl.maximum(tl.sqrt(squares), eps)  # F.normalize: x / max(|x|, eps)
        for i in tl.static_range((C + CHUNK_C - 1) // CHUNK_C):
            c = i * CHUNK_C + tl.arange(0, CHUNK_C)
            mask = p_mask[:, None] & (c < C)[None, :]
            x = tl.load(x_ptr + x_row + c[None, :] * sx_c, mask, other=0.0).to(tl.float32)
            if HAS_BIAS:
                x += tl.load(bias_ptr + c, c < C, other=0.0).to(tl.float32)[None, :]
            gamma = tl.load(gamma_ptr + c, c < C, other=0.0).to(tl.float32)
            y = x / norm[:, None] * scale * gamma[None, :]
            y = y / (1.0 + tl.exp(-y))  # SiLU
            tl.store(out_ptr + o_row + c[None, :], y.to(out_ptr.dtype.element_ty), mask)


def chunk_width(channels: int) -> int:
    """The widest chunk of 64, 32, 16 or 8 channels that divides `channels` (no lane idle); else one masked
    power-of-two chunk of them all."""
    for width in (64, 32, 16, 8):
        if channels % width == 0:
            return width
    return triton.next_power_of_2(channels)


def _launch(x, gamma, bias, out, pad: int, scale: float, block_p: int = 32, warps: int = 4) -> None:
    """SiLU(RMSNorm(x + bias)) of x's frames into out[:, :, pad:] (channels-last-3d); block_p, warps: the tile."""
    why = norm_silu_available()
    if why is not None:
        raise RuntimeError(why)
    b, c, t, h, w = x.shape
    if x.stride(3) != w * x.stride(4):  # one pixel index for H and W
        x = x.contiguous(memory_format=torch.channels_last_3d)
    pixels = b * t * h * w
    _norm_silu_kernel[(triton.cdiv(pixels, block_p),)](
        x, gamma if bias is None else bias, gamma, out, pixels, t, h * w,
        x.stride(0), x.stride(1), x.stride(2), x.stride(4), out.stride(0), out.stride(2), out.stride(4), pad,
        scale, EPS, C=c, CHUNK_C=chunk_width(c), BLOCK_P=block_p, HAS_BIAS=bias is not None, num_warps=warps,
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
