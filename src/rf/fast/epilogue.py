"""The FFN's bias and tanh-GELU computed in the up-projection's matmul epilogue (cuBLASLt): one kernel, not two.

Wan's feed-forward is Linear(dim -> ffn_dim) -> GELU(tanh) -> Linear(ffn_dim -> dim). Compiled, the GELU is a
kernel of its own that reads and writes the [tokens, ffn_dim] activation once more: 8.7 ms of a 0.29-s steady
chunk on an H100 (experiments/bench/profile_chunk.py). Profiled on variants=best's DiT: card time 218.7 -> 211.9 ms
a chunk; in the stream, with fast.norm_rope, -7.7 ms a chunk (experiments/bench/README.md).
`torch._addmm_activation(bias, x, w.t(), use_gelu=True)` applies bias and GELU to the accumulator before it is
written; Inductor keeps it as the one call it is.

Its GELU is the tanh approximation on CUDA (cuBLASLt's epilogue, and ATen's fallback after the product), the
function Wan uses, but the exact erf GELU on the CPU: so the swap keeps the plain path on any device but CUDA.
Computed in the epilogue from the fp32 accumulator, the GELU input is not rounded to bf16 first (a rounding
fewer than the plain path; the bench's bf16 check measures the difference).

The swap puts a new module in each block's place, holding the same Linear. It used to change the module's class in
place, which torch 2.11's Dynamo does not guard: blocks compiled before the swap (the bench's variants share one
model) kept running the old GELU with no recompilation, and the bench measured the old GELU under the new name.
"""

from __future__ import annotations

import torch
from diffusers.models.activations import GELU
from torch import nn


class EpilogueGELU(GELU):
    """diffusers' GELU(approximate="tanh") with the same parameters (proj), its product and GELU fused on CUDA."""

    @classmethod
    def holding(cls, act: GELU) -> EpilogueGELU:
        """An EpilogueGELU around `act`'s own Linear (no new weights are allocated)."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.proj, new.approximate, new.training = act.proj, act.approximate, act.training
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., dim_in] -> gelu_tanh(x @ proj.weight^T + proj.bias) [..., dim_out]."""
        proj = self.proj
        if not (x.is_cuda and self.approximate == "tanh" and type(proj) is nn.Linear and proj.bias is not None):
            return super().forward(x)  # the CPU (erf in _addmm_activation there), or an fp8 / bias-free proj
        y = torch._addmm_activation(proj.bias, x.reshape(-1, x.shape[-1]), proj.weight.t(), use_gelu=True)
        return y.view(*x.shape[:-1], y.shape[-1])


def gelu_epilogue(model: nn.Module) -> int:
    """Put an EpilogueGELU in place of every block's FFN activation, holding the same Linear (the parameters and
    their state-dict names unchanged); returns how many. A new module, not a new class for the old one: compiled
    blocks then recompile (see the module doc)."""
    swapped = 0
    for block in model.blocks:
        act = block.ffn.net[0]
        if type(act) is GELU and act.approximate == "tanh":
            block.ffn.net[0] = EpilogueGELU.holding(act)
            swapped += 1
    return swapped
