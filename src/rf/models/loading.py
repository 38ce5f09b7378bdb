"""Weights in: original-format Wan state dicts, rf Lightning checkpoints, diffusers folders.

The original -> diffusers renaming table is diffusers' own (`convert_wan_transformer_to_diffusers`,
the code behind `WanTransformer3DModel.from_single_file`); this module only feeds it plain tensors.
Checkpoints are read with `torch.load(weights_only=True)`: tensors and plain containers, never
arbitrary pickles. Folders load with `local_files_only=True`: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

from rf.models.causal_wan import CausalWanTransformer3DModel

# Where rf's LightningModules keep the weights a streaming student can start from, in order of preference.
STUDENT_PREFIXES = ("generator.", "transformer.")


def convert_original_wan(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original Wan names (`blocks.0.self_attn.q.weight`) -> diffusers (`blocks.0.attn1.to_q.weight`)."""
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


def load_lightning_weights(
    model: torch.nn.Module, ckpt_path, prefixes: tuple[str, ...] = STUDENT_PREFIXES, use_ema: bool = False
) -> str:
    """Load a transformer from an rf Lightning checkpoint; returns the prefix it was found under.

    use_ema: take the generator EMA (callbacks/generator_ema.py) instead of the raw weights.
    """
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt={ckpt_path}: no such checkpoint file")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", {})
    if use_ema:
        shadow = ckpt.get("callbacks", {}).get("GeneratorEMA", {}).get("shadow")
        if shadow is None:
            raise ValueError(f"ckpt={ckpt_path} holds no generator EMA (it starts at start_iteration): use_ema=false")
        state, prefixes = {"ema." + k: v for k, v in shadow.items()}, ("ema.",)
    for prefix in prefixes:
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not sub:
            continue
        own = model.state_dict()
        wrong = [k for k, v in sub.items() if k in own and own[k].shape != v.shape]
        if wrong:
            k = wrong[0]
            raise ValueError(
                f"ckpt={ckpt_path} holds another model size: {prefix}{k} is {tuple(sub[k].shape)}, "
                f"the configured model has {tuple(own[k].shape)}; pick the matching model= config"
            )
        missing, unexpected = model.load_state_dict(sub, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"ckpt={ckpt_path} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        return prefix
    raise ValueError(f"ckpt={ckpt_path} holds no transformer weights (looked for {', '.join(prefixes)}*)")


def build_transformer(arch: dict, init: str | None = None, causal: bool = False, prefixes=STUDENT_PREFIXES):
    """A Wan transformer of architecture `arch` (WanTransformer3DModel kwargs), bidirectional or causal.

    init: None (random), a diffusers folder (`from_pretrained`, local files only), or an rf
    Lightning checkpoint (weights found under the first of `prefixes` it holds).
    """
    cls = CausalWanTransformer3DModel if causal else WanTransformer3DModel
    if init is not None and Path(init).is_dir():
        return cls.from_pretrained(init, local_files_only=True)
    model = cls(**arch)
    if init is not None:
        load_lightning_weights(model, init, prefixes)
    return model
