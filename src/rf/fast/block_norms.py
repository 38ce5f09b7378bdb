"""The DiT block's layer norms with their residual sums and modulation as one Triton kernel each (fast.block_norms).

A Wan block (rf.models.causal_wan.CausalWanBlock) around its three attention / FFN calls computes, per pass,

    y1 = LN(x) * (1 + scale_msa) + shift_msa                              norm1, before the self-attention
    x1 = x + attn * gate_msa          y2 = LN(x1) * w2 + b2               norm2 (affine), before the cross-attention
    x2 = x1 + cross                   y3 = LN(x2) * (1 + scale_ffn) + shift_ffn        norm3, before the FFN

(LN: layer norm over the channels in float32, eps 1e-6; shift, scale, gate: float32 [B, F, 1, D], one row per
frame; x1, x2 rounded to x's dtype, as the plain path's type_as). Compiled by Inductor (results/profile_tuning.md,
an H200 under the stream's load), the three norms took 24-27 us a call each for 29-58 MB, 1.1-2.3 TB/s, and Inductor
recomputes x1 and x2 in the kernels that read them rather than store them. Here one program takes one token's row
(all D channels in registers): it reads x (and the update), writes the residual and the normed row once each, and
does the mean and variance in two passes over the registers (no E[x^2] - E[x]^2 cancellation).

The function is the plain path's, rounding for rounding: the residual in float32 rounded once to x's dtype
(bf16 x + bf16 update * float32 gate, or bf16 + bf16), the norm, its affine or modulation in float32 from the
rounded residual, rounded once. Only the order of the sums differs (a float32 rounding or two).

    x, update [B, N, D] (N = frames * tokens per frame; rows contiguous); gate, shift, scale [B, F, 1, D] float32
    (any strides with D dense: chunks of the block's [B, F, 6, D] modulation); weight, bias [D]
    -> ada_norm: y [B, N, D]; residual_ada_norm: (x + update [* gate], y), in x's dtype

On a CUDA device the kernel runs compiled; on a CPU it runs in Triton's interpreter (TRITON_INTERPRET=1 set before
Triton is imported), which is how the tests check it. Under torch.compile each is one opaque custom op,
rf::ada_norm and rf::residual_ada_norm. Inference only (no backward): the fast path's.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU install without Triton: fast.block_norms is refused before any work
    triton = None


def block_norms_available() -> str | None:
    """None where the kernel can run; otherwise why not, and the fix."""
    if triton is None:
        return "fast.block_norms is a Triton kernel and Triton is not installed (it comes with PyTorch's CUDA builds)"
    return None


if triton is not None:

    @triton.jit
    def _ada_norm_kernel(
        x_ptr, u_ptr, g_ptr, w_ptr, b_ptr, shift_ptr, scale_ptr, r_ptr, y_ptr,
        tokens, per_frame, sm_b, sm_f, eps,
        D: tl.constexpr, BLOCK_D: tl.constexpr, UPDATE: tl.constexpr, GATE: tl.constexpr, AFFINE: tl.constexpr,
        MODULATE: tl.constexpr,
    ):  # fmt: skip
        """One program: one row (token) of B * N; its frame f = (row % N) // per_frame picks the modulation row."""
        row = tl.program_id(0).to(tl.int64)
        mod = (row // tokens) * sm_b + ((row % tokens) // per_frame) * sm_f  # the gate/shift/scale row's offset
        d = tl.arange(0, BLOCK_D)
        mask = d < D
        x = tl.load(x_ptr + row * D + d, mask, other=0.0)
        if UPDATE:
            u = tl.load(u_ptr + row * D + d, mask, other=0.0).to(tl.float32)
            if GATE:
                u = u * tl.load(g_ptr + mod + d, mask, other=0.0)
            x = (x.to(tl.float32) + u).to(x_ptr.dtype.element_ty)  # the residual, rounded as the plain path's
            tl.store(r_ptr + row * D + d, x, mask)
        x = x.to(tl.float32)
        mean = tl.sum(x, axis=0) / D
        centred = tl.where(mask, x - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / D + eps)  # biased variance, as F.layer_norm
        y = centred * rstd
        if AFFINE:
            weight = tl.load(w_ptr + d, mask, other=0.0).to(tl.float32)
            y = y * weight + tl.load(b_ptr + d, mask, other=0.0).to(tl.float32)
        if MODULATE:
            scale = tl.load(scale_ptr + mod + d, mask, other=0.0)
            y = y * (1.0 + scale) + tl.load(shift_ptr + mod + d, mask, other=0.0)
        tl.store(y_ptr + row * D + d, y.to(y_ptr.dtype.element_ty), mask)


def _modulation_row(t: torch.Tensor | None, b: int, frames: int, d: int, name: str) -> tuple[int, int]:
    """The (batch, frame) strides of a [B, F, 1, D] float32 modulation row, its channels dense; (0, 0) for None."""
    if t is None:
        return 0, 0
    if t.dtype != torch.float32 or t.shape != (b, frames, 1, d) or t.stride(3) != 1:
        raise ValueError(f"ada_norm: {name} must be float32 [{b}, {frames}, 1, {d}] with its channels dense; "
                         f"got {t.dtype} {tuple(t.shape)} strides {t.stride()}")  # fmt: skip
    return t.stride(0), t.stride(1)


def _launch(x, update, gate, weight, bias, shift, scale, frames: int, eps: float, residual, y) -> None:
    why = block_norms_available()
    if why is not None:
        raise RuntimeError(why)
    b, n, d = x.shape
    if n % frames:
        raise ValueError(f"ada_norm: {n} tokens are not {frames} frames of equal size")
    strides = {_modulation_row(t, b, frames, d, k) for k, t in (("gate", gate), ("shift", shift), ("scale", scale))
               if t is not None}  # fmt: skip
    if len(strides) > 1:
        raise ValueError(f"ada_norm: gate, shift and scale must share their strides (chunks of one tensor): {strides}")
    sm_b, sm_f = strides.pop() if strides else (0, 0)
    _ada_norm_kernel[(b * n,)](
        x, x if update is None else update, x if gate is None else gate, x if weight is None else weight,
        x if bias is None else bias, x if shift is None else shift, x if scale is None else scale,
        x if residual is None else residual, y, n, n // frames, sm_b, sm_f, eps,
        D=d, BLOCK_D=triton.next_power_of_2(d), UPDATE=update is not None, GATE=gate is not None,
        AFFINE=weight is not None, MODULATE=shift is not None, num_warps=4 if d <= 2048 else 8,
    )  # fmt: skip


@torch.library.custom_op("rf::ada_norm", mutates_args=())
def ada_norm(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, shift: torch.Tensor | None,
    scale: torch.Tensor | None, frames: int, eps: float,
) -> torch.Tensor:  # fmt: skip
    """LN(x) (* weight + bias) (* (1 + scale) + shift) [B, N, D] in x's dtype: the module doc's norm1."""
    x = x.contiguous()
    y = torch.empty_like(x)
    _launch(x, None, None, weight, bias, shift, scale, frames, eps, None, y)
    return y


@ada_norm.register_fake
def _(x, weight, bias, shift, scale, frames, eps):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("rf::residual_ada_norm", mutates_args=())
def residual_ada_norm(
    x: torch.Tensor, update: torch.Tensor, gate: torch.Tensor | None, weight: torch.Tensor | None,
    bias: torch.Tensor | None, shift: torch.Tensor | None, scale: torch.Tensor | None, frames: int, eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(r, LN(r) (* weight + bias) (* (1 + scale) + shift)), r = x + update (* gate), in x's dtype: norm2, norm3."""
    x, update = x.contiguous(), update.contiguous()
    residual, y = torch.empty_like(x), torch.empty_like(x)
    _launch(x, update, gate, weight, bias, shift, scale, frames, eps, residual, y)
    return residual, y


@residual_ada_norm.register_fake
def _(x, update, gate, weight, bias, shift, scale, frames, eps):
    like = torch.empty_like(x, memory_format=torch.contiguous_format)
    return like, torch.empty_like(like)


def use_block_norms(model: torch.nn.Module) -> int:
    """Mark every block to compute its norms with the kernels (CausalWanBlock.forward reads the mark); returns how
    many. The blocks' norms must be Wan's: norm1 and norm3 layer norms without affine, norm2 one with (diffusers'
    cross_attn_norm=True), all with one eps."""
    why = block_norms_available()
    if why is not None:
        raise RuntimeError(why)
    for block in model.blocks:
        norms = (block.norm1, block.norm2, block.norm3)
        if not all(isinstance(n, torch.nn.LayerNorm) for n in norms):
            raise ValueError("fast.block_norms fuses Wan's layer norms; this model's blocks have "
                             f"{', '.join(type(n).__name__ for n in norms)} (cross_attn_norm=false has no norm2: "
                             "set fast.block_norms=false)")  # fmt: skip
        if block.norm1.weight is not None or block.norm3.weight is not None or block.norm2.weight is None:
            raise ValueError("fast.block_norms expects norm1 and norm3 without affine parameters and norm2 with "
                             "them (Wan's); set fast.block_norms=false")  # fmt: skip
        if len({n.eps for n in norms}) != 1:
            raise ValueError(f"fast.block_norms expects one eps for the three norms, got {[n.eps for n in norms]}")
        block.rf_block_norms = True
    return len(model.blocks)
