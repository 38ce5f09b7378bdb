"""FP8 matmuls for the DiT's Linear layers: an opt-in approximation for the benchmark.

Not part of the exact fast path: the model computes a different (quantised) function, and the bench
reports how far its output is from the exact path's. `fp8_linears(model)` swaps the nn.Linear layers
inside the transformer blocks for `Fp8Linear`; everything outside the blocks (patch embedding,
condition embedder, proj_out) keeps its dtype.

Quantisation, float8_e4m3fn (largest finite value 448) with float32 scales:

- weight [N, K]: once, per output channel (row): scale_w [N, 1] = amax over K / 448;
- activation [M, K]: at every call, per token (row): scale_x [M, 1] = amax over K / 448 (scales="rowwise");
  or one scale for the whole input, scale_x = amax over M and K / 448, given to every row (scales="tensorwise":
  coarser for tokens far below the largest). The rowwise quantisation costs the approximate path about as much card
  time as the FP8 matmuls save; tensorwise, which Inductor splits into an amax pass and a cast pass, costs 2.8 ms a
  chunk more on an H100 (experiments/bench/README.md);
- y [M, N] = (x_fp8 * scale_x) @ (w_fp8 * scale_w)^T + bias, accumulated in float32.

On CUDA GPUs of compute capability 8.9 or more (Ada, Hopper) the product is `torch._scaled_mm`, whose
CUDA checks for rowwise scaling are: first operand row-major [M, K], second column-major [K, N] (the
transpose of a row-major [N, K] weight), scale_a [M, 1] and scale_b [1, N] float32; K and N multiples
of 16; a bias only with a bf16 or fp16 output. Elsewhere a reference path dequantises to float32 and
multiplies: the same quantised function, so its error can be tested on CPU (where torch 2.13 also has a
`_scaled_mm`, which the tests use to check this module's call against the reference path).

Inference only. Swap after the model has its final dtype and device: `.to(dtype)` afterwards would
also cast the fp8 weights and their scales (float8 counts as a floating-point dtype).
"""

from __future__ import annotations

import torch
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448.0
BLOCK_PARTS = ("attn1", "attn2", "ffn")  # a block's submodules that hold its Linear layers


def quantize_rowwise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (x_fp8 [M, K] float8_e4m3fn, scale [M, 1] float32) with x ~= x_fp8 * scale."""
    amax = x.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12)  # [M, 1]
    scale = amax / FP8_MAX
    x_fp8 = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return x_fp8, scale


def quantize_tensorwise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (x_fp8 [M, K] float8_e4m3fn, scale [M, 1] float32, one value in every row) with x ~= x_fp8 * scale.
    The one scale is given per row because the weight's scales are per row: torch._scaled_mm takes both or neither."""
    amax = x.abs().amax().float().clamp(min=1e-12)  # []
    scale = amax / FP8_MAX
    x_fp8 = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return x_fp8, scale.expand(x.shape[0], 1).contiguous()


QUANTIZE = {"rowwise": quantize_rowwise, "tensorwise": quantize_tensorwise}  # how an input is scaled at each call
SCALES = tuple(QUANTIZE)


def check_scales(scales: str) -> None:
    if scales not in QUANTIZE:
        raise ValueError(f"fp8 scales={scales!r}: choose one of {', '.join(SCALES)}")


def scaled_mm_supported(device: torch.device) -> bool:
    """Whether `Fp8Linear` multiplies with `torch._scaled_mm` on this device (else the reference path)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def fp8_mm(
    x_fp8: torch.Tensor,
    x_scale: torch.Tensor,
    w_fp8: torch.Tensor,
    w_scale: torch.Tensor,
    bias: torch.Tensor | None,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """x_fp8 [M, K], x_scale [M, 1], w_fp8 [N, K], w_scale [N, 1], bias [N] -> [M, N] by `torch._scaled_mm`."""
    fuse_bias = bias is not None and out_dtype != torch.float32  # _scaled_mm takes no bias with a float32 output
    y = torch._scaled_mm(
        x_fp8.contiguous(),  # row-major [M, K]
        w_fp8.t(),  # column-major [K, N]
        scale_a=x_scale,  # [M, 1]
        scale_b=w_scale.t(),  # [1, N]
        bias=bias.to(out_dtype) if fuse_bias else None,
        out_dtype=out_dtype,
    )
    if bias is not None and not fuse_bias:
        y = y + bias
    return y


def fp8_mm_reference(
    x_fp8: torch.Tensor,
    x_scale: torch.Tensor,
    w_fp8: torch.Tensor,
    w_scale: torch.Tensor,
    bias: torch.Tensor | None,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """`fp8_mm`'s function on any device: dequantise to float32, multiply, add the bias, cast."""
    y = (x_fp8.float() * x_scale) @ (w_fp8.float() * w_scale).t()  # [M, N] float32
    if bias is not None:
        y = y + bias.float()
    return y.to(out_dtype)


class Fp8Linear(nn.Module):
    """An nn.Linear computed in fp8: the weight quantised once, the input at each call (see the module doc).

    weight:       [out_features, in_features] float8_e4m3fn (a buffer; the dequantised weight is
                  weight.float() * weight_scale)
    weight_scale: [out_features, 1] float32
    bias:         [out_features] in the original Linear's dtype, or None
    scales:       how the input is scaled at each call: rowwise (per token) or tensorwise (one scale)
    """

    def __init__(self, weight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None,
                 scales: str = "rowwise"):  # fmt: skip
        super().__init__()
        check_scales(scales)
        self.scales = scales
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("weight_scale", weight_scale)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, scales: str = "rowwise") -> Fp8Linear:
        weight, scale = quantize_rowwise(linear.weight)  # [N, K] fp8, [N, 1] float32
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(weight, scale, bias, scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in_features] -> [..., out_features], in x's dtype."""
        x_fp8, x_scale = QUANTIZE[self.scales](x.reshape(-1, self.in_features))  # [M, K], [M, 1]
        mm = fp8_mm if scaled_mm_supported(x.device) else fp8_mm_reference
        y = mm(x_fp8, x_scale, self.weight, self.weight_scale, self.bias, x.dtype)  # [M, N]
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"scales={self.scales}")  # fmt: skip


def fp8_linears(model: nn.Module, include: tuple[str, ...] = BLOCK_PARTS, scales: str = "rowwise") -> int:
    """Replace, in place, the nn.Linear layers of `model.blocks` under the block parts named in `include`
    with `Fp8Linear` (its input scaled as `scales` says); returns how many were swapped.

    A Wan block's Linear layers: attn1 and attn2 each have to_q, to_k, to_v, to_out.0 (and attn2 the
    add_k_proj / add_v_proj of image conditioning, when built); ffn has net.0.proj and net.2.
    `torch._scaled_mm` needs in_features and out_features to be multiples of 16: if any selected layer's
    are not, this raises a ValueError naming them all and swaps nothing (a partial swap would make a
    different approximation than the one asked for).
    """
    check_scales(scales)
    unknown = set(include) - set(BLOCK_PARTS)
    if unknown:
        raise ValueError(f"include: unknown block parts {sorted(unknown)}; choose from {BLOCK_PARTS}")

    targets = []  # (parent module, attribute name, full name, Linear)
    for i, block in enumerate(model.blocks):
        for part in include:
            for name, module in getattr(block, part).named_modules():
                if isinstance(module, nn.Linear):
                    parent_name, _, attr = f"{part}.{name}".rpartition(".")
                    targets.append((block.get_submodule(parent_name), attr, f"blocks.{i}.{part}.{name}", module))

    bad = [f"{name} ({m.in_features} -> {m.out_features})" for _, _, name, m in targets if _misaligned(m)]
    if bad:
        raise ValueError(f"fp8 needs in/out features that are multiples of 16; not so for: {', '.join(bad)}")

    for parent, attr, _, linear in targets:
        setattr(parent, attr, Fp8Linear.from_linear(linear, scales))
    return len(targets)


def _misaligned(linear: nn.Linear) -> bool:
    return linear.in_features % 16 != 0 or linear.out_features % 16 != 0
