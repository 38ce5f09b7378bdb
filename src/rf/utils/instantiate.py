"""The one door to `hydra.utils.instantiate` (DESIGN.md: keep every instantiate behind one helper)."""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate as _instantiate
from omegaconf import DictConfig, OmegaConf

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def instantiate(cfg: DictConfig | dict | None, **kwargs) -> Any:
    """Build the object a `_target_` config describes; None stays None."""
    if cfg is None:
        return None
    return _instantiate(cfg, _convert_="all", **kwargs)


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """A dtype from a YAML string: diffusers silently falls back to fp32 when handed the string itself."""
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one of {sorted(DTYPES)}")
    return DTYPES[name]


def pick_device(name: str) -> torch.device:
    """`auto` is the GPU when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_dict(cfg: DictConfig | dict) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
