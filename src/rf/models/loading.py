"""Weights in, weights out: original-format Wan state dicts onto diffusers names.

The renaming table is diffusers' own (`convert_wan_transformer_to_diffusers`, the code behind
`WanTransformer3DModel.from_single_file`); this module only feeds it plain tensors.
"""

from __future__ import annotations

import torch
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers


def convert_original_wan(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original Wan names (`blocks.0.self_attn.q.weight`) -> diffusers names (`blocks.0.attn1.to_q.weight`)."""
    return convert_wan_transformer_to_diffusers(dict(state_dict))


def load_original_wan(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load an original-format Wan state dict into a diffusers-named model; every key must match."""
    converted = convert_original_wan(state_dict)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"original Wan checkpoint does not fit {type(model).__name__}: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
