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


def pick_device(name: str, key: str = "device") -> torch.device:
    """`auto` is the GPU when there is one; a device this machine lacks is refused before any work."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{key}={name} is not a device: use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{key}={name}: this machine has no CUDA GPU (or no driver for it): use {key}=cpu or auto")
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"{key}={name}: this machine has {count} CUDA GPU{'s' * (count > 1)} (cuda:0 to cuda:{count - 1}): "
                f"pick one of those (CUDA_VISIBLE_DEVICES renumbers them from 0)"
            )
    elif device.type != "cpu" and not _backend_available(device.type):
        raise ValueError(f"{key}={name}: this machine has no {device.type} device: use {key}=cpu or auto")
    return device


def _backend_available(kind: str) -> bool:
    backend = getattr(torch.backends, kind, None) or getattr(torch, kind, None)
    available = getattr(backend, "is_available", None)
    return bool(available and available())


def check_dtype(device: torch.device, dtype: torch.dtype, key: str = "dtype", fp8: bool = False) -> None:
    """Refuse, before any work, a dtype the device cannot compute in: bf16 on a GPU before Ampere, FP8 matmuls
    (fast.fp8) on a GPU before Ada / Hopper (compute capability 8.9). On the CPU both run (bf16 emulated)."""
    if device.type != "cuda":
        return
    name = torch.cuda.get_device_name(device)
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"{key}=bfloat16: {name} cannot compute in bf16 (it needs compute capability 8.0, Ampere or newer): "
            f"use {key}=float16 or float32 on this GPU"
        )
    capability = torch.cuda.get_device_capability(device)
    if fp8 and capability < (8, 9):
        raise ValueError(
            f"fast.fp8=true: {name} (compute capability {capability[0]}.{capability[1]}) has no FP8 matmuls "
            "(they need 8.9, Ada or Hopper): use fast.fp8=false"
        )


def to_dict(cfg: DictConfig | dict) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
