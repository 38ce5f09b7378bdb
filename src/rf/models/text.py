"""The text-encoder interface the rest of rf relies on.

Wan conditions on umT5-XXL embeddings padded with zeros to a fixed length (512 tokens); the toy
text encoder (`rf.toy.text.ToyTextEncoder`) mimics that with a word-level vocabulary. Anything that
satisfies `TextEncoder` can condition the transformer (`model.text_encoder` in the configs).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class TextEncoder(Protocol):
    dim: int  # embedding width, = the transformer's text_dim
    max_length: int  # tokens per prompt; rows past a prompt's end are zero

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        """prompts -> embeddings [B, max_length, dim]."""
        ...
