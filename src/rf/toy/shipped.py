"""Toy weights that ship with rf (src/rf/toy/weights, MODEL_CARD.md there): `ckpt=shipped`.

    ckpt=shipped            the shipped student of the configured toy model (model=toy_large)
    ckpt=shipped:teacher    its teacher

The files are fp16 safetensors; each is checked against its `.sha256` before it is used, so a damaged
or half-downloaded clone stops with one line instead of streaming garbage. The student was distilled for one
sampler time shift (`SAMPLER_SHIFT`, the teacher's ODE-pair shift): `use_shipped` sets `sampler.shift` to it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"
SHIPPED = {"toy_large": ("student", "teacher")}  # model config name -> the weights shipped for it
SAMPLER_SHIFT = 3.0  # the student's 4-step schedule was distilled at this shift (MODEL_CARD.md)


def is_shipped(ckpt) -> bool:
    return isinstance(ckpt, str) and (ckpt == "shipped" or ckpt.startswith("shipped:"))


def shipped_path(ckpt: str, model_name: str) -> Path:
    """'shipped' or 'shipped:KIND' for model `model_name` -> the checked file."""
    kind = ckpt.partition(":")[2] or "student"
    if model_name not in SHIPPED:
        raise ValueError(f"ckpt={ckpt}: rf ships weights for model={' or '.join(SHIPPED)} only, not model={model_name}")
    if kind not in SHIPPED[model_name]:
        raise ValueError(f"ckpt={ckpt}: the shipped kinds are {', '.join(SHIPPED[model_name])}")
    path = WEIGHTS / f"{kind}.safetensors"
    digest_file = path.with_name(path.name + ".sha256")
    if not path.is_file() or not digest_file.is_file():
        raise FileNotFoundError(f"ckpt={ckpt}: {path} or its .sha256 is missing; restore them with git checkout")
    expected = digest_file.read_text().split()[0]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != expected:
        raise ValueError(f"ckpt={ckpt}: {path} does not match its sha256 (damaged?); restore it with git checkout")
    return path


def use_shipped(cfg) -> Path:
    """A generate / eval config with ckpt=shipped[:KIND] -> the checked file; sets cfg.sampler.shift to the
    shift the shipped student was distilled for (another shift streams it off its 4-step schedule)."""
    path = shipped_path(cfg.ckpt, cfg.model.name)
    if "sampler" in cfg and cfg.sampler.shift != SAMPLER_SHIFT:
        print(f"sampler.shift={SAMPLER_SHIFT}: the shift the shipped toy weights were distilled for "
              f"(not {cfg.sampler.shift}; give ckpt={path} to stream them at another)")  # fmt: skip
        cfg.sampler.shift = SAMPLER_SHIFT
    return path
