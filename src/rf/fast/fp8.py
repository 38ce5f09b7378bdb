"""FP8 matmuls for the DiT's Linear layers: an opt-in approximation for the benchmark.

Not part of the exact fast path: the model computes a different (quantised) function, and the bench
reports how far its output is from the exact path's. `fp8_linears(model)` swaps the nn.Linear layers
inside the transformer blocks for `Fp8Linear`; everything outside the blocks (patch embedding,
condition embedder, proj_out) keeps its dtype.

Quantisation, float8_e4m3fn (largest finite value 448) with float32 scales:

- weight [N, K]: once, per output channel (row): scale_w [N, 1] = amax over K / 448;
  or (weights="tensorwise") one scale for the whole weight, scale_w = amax over N and K / 448;
- activation [M, K], by `scales`:
  rowwise     at every call, per token (row): scale_x [M, 1] = amax over K / 448;
  tensorwise  at every call, one scale for the whole input, scale_x = amax over M and K / 448, given to every row
              (coarser for tokens far below the largest);
  calibrated  one scale fixed before the stream: scale_x = margin * the largest amax seen while `calibration(model)`
              streamed a few chunks, / 448. At run time the input is only divided and cast (no reduction); an input
              beyond the calibrated range saturates at +-448 * scale_x.
  The rowwise quantisation costs the approximate path about as much card time as the FP8 matmuls save; tensorwise,
  which Inductor splits into an amax pass and a cast pass, costs 2.8 ms a chunk more on an H100
  (experiments/bench/README.md);
- y [M, N] = (x_fp8 * scale_x) @ (w_fp8 * scale_w)^T + bias, accumulated in float32. With calibrated inputs and
  tensorwise weights both scales are single numbers: cuBLAS's plain (tensorwise) FP8 matmul, the fastest at the
  DiT's shapes (experiments/bench/fp8_matmuls.py).

On CUDA GPUs of compute capability 8.9 or more (Ada, Hopper) the product is `torch._scaled_mm`, whose
CUDA checks for rowwise scaling are: first operand row-major [M, K], second column-major [K, N] (the
transpose of a row-major [N, K] weight), scale_a [M, 1] and scale_b [1, N] float32, contiguous (or both
[1, 1]: tensorwise); K and N multiples of 16; a bias only with a bf16 or fp16 output. Elsewhere a reference
path dequantises to float32 and multiplies: the same quantised function, so its error can be tested on CPU (where
torch 2.13 also has a `_scaled_mm`, which the tests use to check this module's call against the reference path).

Inference only. Swap after the model has its final dtype and device: `.to(dtype)` afterwards would
also cast the fp8 weights and their scales (float8 counts as a floating-point dtype).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


QUANTIZE = {"rowwise": quantize_rowwise, "tensorwise": quantize_tensorwise}  # an input's scale, found at each call
SCALES = (*QUANTIZE, "calibrated")  # how an input is scaled
WEIGHT_SCALES = ("rowwise", "tensorwise")  # how a weight is scaled, once
CALIBRATION_MARGIN = 2.0  # a calibrated scale leaves room for inputs up to twice the largest seen: e4m3's normal
#                           numbers span 2^-6 to 448 with the same relative precision, so the margin costs one of
#                           their 15 binades at the bottom, where the flushed-to-subnormal values are


def check_scales(scales: str, weights: str = "rowwise", names: tuple[str, str] = ("fp8 scales", "fp8 weights")) -> None:
    """Refuse an unknown way of scaling, naming the setting (`names`: what the caller calls scales and weights)."""
    if scales not in SCALES:
        raise ValueError(f"{names[0]}={scales!r}: choose one of {', '.join(SCALES)}")
    if weights not in WEIGHT_SCALES:
        raise ValueError(f"{names[1]}={weights!r}: choose one of {', '.join(WEIGHT_SCALES)}")


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
    """x_fp8 [M, K], x_scale [M, 1], w_fp8 [N, K], w_scale [N, 1], bias [N] -> [M, N] by `torch._scaled_mm`
    (rowwise scaling); with x_scale and w_scale both [1, 1], its tensorwise scaling."""
    fuse_bias = bias is not None and out_dtype != torch.float32  # _scaled_mm takes no bias with a float32 output
    y = torch._scaled_mm(
        x_fp8.contiguous(),  # row-major [M, K]
        w_fp8.t(),  # column-major [K, N]
        scale_a=x_scale,  # [M, 1] or [1, 1]
        scale_b=w_scale.t(),  # [1, N] or [1, 1]
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
    weight_scale: [out_features, 1] float32 (weights="tensorwise": one value in every row)
    bias:         [out_features] in the original Linear's dtype, or None
    scales:       how the input is scaled: per token (rowwise) or with one scale (tensorwise) at each call, or with
                  one scale fixed by `calibration` (calibrated: input_scale [1, 1] float32)
    weights:      how the weight was scaled: rowwise or tensorwise
    """

    def __init__(self, weight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None,
                 scales: str = "rowwise", weights: str = "rowwise"):  # fmt: skip
        super().__init__()
        check_scales(scales, weights)
        self.scales, self.weights = scales, weights
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("weight_scale", weight_scale)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        # scales="calibrated": the input's fixed scale, and the largest |input| seen while calibrating
        self.register_buffer("input_scale", torch.ones(1, 1, device=weight.device))  # [1, 1] float32
        self.register_buffer("input_amax", torch.zeros((), device=weight.device))  # [] float32
        self.observing = False  # inside `calibration`: record the input's amax
        self.calibrated = False  # input_scale holds a calibrated scale

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, scales: str = "rowwise", weights: str = "rowwise") -> Fp8Linear:
        check_scales(scales, weights)
        weight, scale = QUANTIZE[weights](linear.weight)  # [N, K] fp8, [N, 1] float32
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(weight, scale, bias, scales, weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in_features] -> [..., out_features], in x's dtype."""
        x2 = x.reshape(-1, self.in_features)  # [M, K]
        w_scale = self.weight_scale  # [N, 1]
        if self.observing:  # calibrating: compute with per-token scales, keep the largest |x|
            torch.maximum(self.input_amax, x2.abs().amax().float(), out=self.input_amax)
            x_fp8, x_scale = quantize_rowwise(x2)
        elif self.scales == "calibrated":  # a division and a cast: no reduction at run time
            if not self.calibrated:
                raise RuntimeError("an Fp8Linear with scales=calibrated has no input scale yet: stream a few "
                                   "chunks under rf.fast.fp8.calibration(model) first (FastPath.prepare_model "
                                   "does)")  # fmt: skip
            x_fp8 = (x2.float() / self.input_scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
            if self.weights == "tensorwise":  # one scale each side: the tensorwise FP8 matmul
                x_scale, w_scale = self.input_scale, self.weight_scale[:1]  # [1, 1], [1, 1]
            else:
                x_scale = self.input_scale.expand(x2.shape[0], 1).contiguous()  # [M, 1]
        else:
            x_fp8, x_scale = QUANTIZE[self.scales](x2)  # [M, K], [M, 1]
        mm = fp8_mm if scaled_mm_supported(x.device) else fp8_mm_reference
        y = mm(x_fp8, x_scale, self.weight, w_scale, self.bias, x.dtype)  # [M, N]
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"scales={self.scales}, weights={self.weights}")  # fmt: skip


def fp8_linears(
    model: nn.Module, include: tuple[str, ...] = BLOCK_PARTS, scales: str = "rowwise", weights: str = "rowwise"
) -> int:
    """Replace, in place, the nn.Linear layers of `model.blocks` under the block parts named in `include`
    with `Fp8Linear` (its input scaled as `scales` says, its weight as `weights` says); returns how many were swapped.

    A Wan block's Linear layers: attn1 and attn2 each have to_q, to_k, to_v, to_out.0 (and attn2 the
    add_k_proj / add_v_proj of image conditioning, when built); ffn has net.0.proj and net.2.
    `torch._scaled_mm` needs in_features and out_features to be multiples of 16: if any selected layer's
    are not, this raises a ValueError naming them all and swaps nothing (a partial swap would make a
    different approximation than the one asked for).
    Layers swapped before (rf.bench's variants share one model) take the new `scales`, which only change how the
    input is quantised at each call; their weights cannot be quantised again, so another `weights` is refused.
    """
    check_scales(scales, weights)
    unknown = set(include) - set(BLOCK_PARTS)
    if unknown:
        raise ValueError(f"include: unknown block parts {sorted(unknown)}; choose from {BLOCK_PARTS}")

    targets, swapped = [], []  # (parent module, attribute name, full name, Linear); Fp8Linear already there
    for i, block in enumerate(model.blocks):
        for part in include:
            for name, module in getattr(block, part).named_modules():
                if isinstance(module, nn.Linear):
                    parent_name, _, attr = f"{part}.{name}".rpartition(".")
                    targets.append((block.get_submodule(parent_name), attr, f"blocks.{i}.{part}.{name}", module))
                elif isinstance(module, Fp8Linear):
                    swapped.append(module)

    bad = [f"{name} ({m.in_features} -> {m.out_features})" for _, _, name, m in targets if _misaligned(m)]
    if bad:
        raise ValueError(f"fp8 needs in/out features that are multiples of 16; not so for: {', '.join(bad)}")
    other = sorted({m.weights for m in swapped} - {weights})
    if other:
        raise ValueError(f"fp8 weights={weights}: the blocks' weights are already FP8 with weights={other[0]} and "
                         "cannot be quantised again; build a fresh model (rf.bench: a separate call)")  # fmt: skip

    for layer in swapped:
        layer.scales, layer.calibrated = scales, False
    for parent, attr, _, linear in targets:
        setattr(parent, attr, Fp8Linear.from_linear(linear, scales, weights))
    return len(targets)


def _misaligned(linear: nn.Linear) -> bool:
    return linear.in_features % 16 != 0 or linear.out_features % 16 != 0


@contextmanager
def calibration(model: nn.Module, margin: float = CALIBRATION_MARGIN) -> Iterator[list[Fp8Linear]]:
    """Fix the input scales of `model`'s Fp8Linear layers with scales="calibrated" from what runs inside:

        with calibration(model):
            ...stream a few chunks through model...      (FastPath.prepare_model calls its `calibrate` here)

    Inside, each such layer computes with per-token scales and keeps the largest |input| it sees; compiled blocks run
    their Python code (torch.compiler's force_eager stance), so that the amax is recorded. On a clean exit each layer's
    input_scale becomes margin * amax / 448 and is used from then on. A layer that saw no input is an error (its
    scale would be a guess), naming the layer. On an exception the scales are left as they were.
    """
    layers = {name: m for name, m in model.named_modules() if isinstance(m, Fp8Linear) and m.scales == "calibrated"}
    if not layers:
        raise ValueError("calibration: the model has no Fp8Linear with scales=calibrated (fp8_linears(model, "
                         "scales='calibrated'))")  # fmt: skip
    for layer in layers.values():
        layer.input_amax.zero_()
        layer.observing = True
    try:
        with torch.compiler.set_stance("force_eager"):
            yield list(layers.values())
    finally:
        for layer in layers.values():
            layer.observing = False
    unseen = [name for name, m in layers.items() if not m.input_amax.item() > 0]
    if unseen:
        raise ValueError(f"calibration: {len(unseen)} FP8 layers saw no input (or only zeros), e.g. {unseen[0]}: "
                         "stream at least one chunk through the model inside `calibration`")  # fmt: skip
    for layer in layers.values():
        layer.input_scale.fill_(margin * layer.input_amax.item() / FP8_MAX)
        layer.calibrated = True
