"""Toy weights that ship with rf (src/rf/toy/weights, MODEL_CARD.md there): `ckpt=shipped`.

    ckpt=shipped            the shipped student of the configured toy model (model=toy_large)
    ckpt=shipped:teacher    its teacher

The files are fp16 safetensors; each is checked against its `.sha256` before it is used, so a damaged
or half-downloaded clone stops with one line instead of streaming garbage.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"
SHIPPED = {"toy_large": ("student", "teacher")}  # model config name -> the weights shipped for it


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
