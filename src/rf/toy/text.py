"""A frozen word-level text encoder for the toy world, shaped like the umT5 wrapper.

Each word gets a fixed random embedding plus a sinusoidal position code, then one fixed random mixing
layer sees the word, the word before it and the whole prompt: the word before binds a colour to its
shape ("red circle"), the whole prompt gives every token context as a bidirectional encoder would.
Everything is a buffer drawn from a seeded generator, so the encoder is frozen and identical in every
process. Output is [B, max_length, dim] with exact zeros past each prompt, like umT5 embeddings as
diffusers' Wan pipeline pads them.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from rf.toy.grammar import VOCABULARY, parse_prompt, split_words

PAD, UNK = "<pad>", "<unk>"
# The toy grammar in one line, for the error a prompt outside it gets (rf.toy.grammar.parse_prompt is the grammar).
GRAMMAR = (
    "toy prompts read 'a <colour> <shape> [and a <colour> <shape>] moving <slowly|fast> <to the left|to the right|"
    "upwards|downwards> [and a ... moving ...] on a <pattern> background', e.g. 'a red circle moving fast to the "
    "right on a striped background'"
)


def is_toy_encoder(cfg) -> bool:
    """Whether a text-encoder config (a `_target_` mapping) builds the toy encoder, which knows only toy words."""
    return cfg is not None and str(cfg.get("_target_", "")).endswith("ToyTextEncoder")


def check_toy_prompts(prompts: list[str], strict: bool, source: str) -> None:
    """Prompts for a toy model must be toy-grammar prompts: the toy encoder maps every other word to <unk>, so
    a prompt outside the grammar streams a video of something else, silently.

    strict: refuse the first such prompt with the grammar's summary (ValueError); else warn once per prompt,
    naming its unknown words (or, all words known, what the grammar expected).
    """
    for prompt in dict.fromkeys(prompts):
        try:
            parse_prompt(prompt)
            continue
        except ValueError as err:
            unknown = sorted(set(split_words(prompt)) - set(VOCABULARY))
            problem = f"unknown words {unknown}" if unknown else str(err).split(": ", 1)[-1]
        if strict:
            raise ValueError(
                f"{source}: prompt {prompt!r} is outside the toy grammar ({problem}); {GRAMMAR}; "
                "or strict_prompts=false to stream it anyway"
            )
        warnings.warn(
            f"{source}: prompt {prompt!r} is outside the toy grammar, {problem}: streamed anyway", stacklevel=2
        )


def sinusoid(length: int, dim: int) -> torch.Tensor:
    """Transformer position code: [length, dim], sin on even channels, cos on odd."""
    position = torch.arange(length, dtype=torch.float32)[:, None]  # [L, 1]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # [D/2]
    code = torch.zeros(length, dim)
    code[:, 0::2] = torch.sin(position * frequency)
    code[:, 1::2] = torch.cos(position * frequency)
    return code


class ToyTextEncoder(torch.nn.Module):
    """Frozen word-level encoder over the toy grammar's vocabulary."""

    def __init__(self, vocabulary: list[str] | None = None, dim: int = 64, max_length: int = 40, seed: int = 0):
        super().__init__()
        words = [w.lower() for w in (VOCABULARY if vocabulary is None else vocabulary)]
        if not words or len(set(words)) != len(words):
            raise ValueError(f"vocabulary must be non-empty with no repeated words, got {words}")
        if dim < 2 or dim % 2:
            raise ValueError(f"dim {dim} must be even and >= 2 (the position code pairs sin and cos)")
        if max_length < 1:
            raise ValueError(f"max_length {max_length} must be >= 1")
        self.dim, self.max_length = dim, max_length
        self.index = {w: i for i, w in enumerate([PAD, UNK, *words])}
        self._warned: set[str] = set()
        generator = torch.Generator().manual_seed(seed)
        # Not persistent: they are regenerated from the seed, so checkpoints need not carry them.
        table = torch.randn(len(self.index), dim, generator=generator)
        mix = torch.randn(3 * dim, dim, generator=generator) / math.sqrt(3 * dim)  # keeps tanh off saturation
        self.register_buffer("table", table, persistent=False)  # [V, D]
        self.register_buffer("mix", mix, persistent=False)  # [3 D, D]
        self.register_buffer("position", sinusoid(max_length, dim), persistent=False)  # [L, D]

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> ids [B, L] (long) and mask [B, L] (bool), padded to max_length."""
        if isinstance(prompts, str) or not prompts:
            raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r}")
        ids = torch.zeros(len(prompts), self.max_length, dtype=torch.long)
        mask = torch.zeros(len(prompts), self.max_length, dtype=torch.bool)
        for b, prompt in enumerate(prompts):
            words = split_words(prompt)
            if not words:
                raise ValueError(f"prompt {b} is empty ({prompt!r}): every prompt needs at least one word")
            if len(words) > self.max_length:
                message = f"prompt {b} has {len(words)} words, truncated to max_length={self.max_length}"
                warnings.warn(f"{message}: {prompt!r}", stacklevel=2)
                words = words[: self.max_length]
            for word in set(words) - self.index.keys() - self._warned:
                warnings.warn(f"word {word!r} is not in the toy vocabulary, encoded as {UNK}", stacklevel=2)
                self._warned.add(word)
            ids[b, : len(words)] = torch.tensor([self.index.get(w, self.index[UNK]) for w in words])
            mask[b, : len(words)] = True
        return ids, mask

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> [B, max_length, dim] float32, zero past each prompt's last word."""
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.table.device), mask.to(self.table.device)[..., None]  # [B, L], [B, L, 1]
        x = (self.table[ids] + self.position) * mask  # [B, L, D], padding zeroed so it adds no context
        previous = F.pad(x[:, :-1], (0, 0, 1, 0))  # [B, L, D] the word before each word
        context = x.sum(1, keepdim=True) / mask.sum(1, keepdim=True)  # [B, 1, D] mean over the prompt
        h = torch.tanh(torch.cat([x, previous, context.expand_as(x)], dim=-1) @ self.mix)  # [B, L, D]
        return h.masked_fill(~mask, 0.0)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        return self(prompts)
