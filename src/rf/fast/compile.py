"""The exact fast path's first switch: the causal blocks under `torch.compile`.

Each `CausalWanBlock` is a pure function of its inputs (the model commits its K/V to the cache), so
it compiles without graph breaks. Blocks share one compiled graph per input shape: parameters are
graph inputs (Dynamo inlines built-in nn.Modules), so 30 blocks cost one compilation, not 30. A stream
meets few shapes: the chunk's first passes before the window fills (context 0, 3, 6 ... frames) and
then one steady shape for as long as it runs (`full` keeps growing and keeps recompiling: do not
compile it).
"""

from __future__ import annotations

import torch


def compile_blocks(model: torch.nn.Module, mode: str | None = None, options: dict | None = None) -> torch.nn.Module:
    """Compile every transformer block of `model` in place; returns the model. Blocks already compiled are
    left as they are (a second compile would start a fresh cache and compile everything again).

    mode: Inductor's mode (fast.autotune: max-autotune-no-cudagraphs); options: Inductor's config for these
    blocks alone (fast.kernel_tuning: {"coordinate_descent_tuning": True}). torch.compile takes one or the other."""
    for block in model.blocks:
        if block._compiled_call_impl is None:
            block.compile(dynamic=False, **({"options": options} if options else {"mode": mode}))
    return model
