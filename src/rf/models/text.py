"""The text-encoder interface the rest of rf relies on.

Wan conditions on umT5-XXL embeddings padded with zeros to a fixed length (512 tokens); the toy
text encoder (`rf.toy.text.ToyTextEncoder`) mimics that with a word-level vocabulary. Anything that
satisfies `TextEncoder` can condition the transformer (`model.text_encoder` in the configs).

`UMT5TextEncoder` is the real one, loaded from a local Wan2.1 diffusers folder. At 11 GB it is meant to
run once over a prompt file (`python -m rf.encode_prompts`), not beside training: training reads the
embeddings back through `rf.models.text_cache.CachedTextEncoder`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from rf.utils.instantiate import resolve_dtype


@runtime_checkable
class TextEncoder(Protocol):
    dim: int  # embedding width, = the transformer's text_dim
    max_length: int  # tokens per prompt; rows past a prompt's end are zero

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        """prompts -> embeddings [B, max_length, dim]."""
        ...


def short(prompt: str, n: int = 80) -> str:
    """A prompt for an error message: quoted, cut to n characters."""
    return repr(prompt) if len(prompt) <= n else repr(prompt[:n]) + "..."


WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")  # either one: the fast tokenizer or its sentencepiece source


def check_wan_folder(path: Path) -> None:
    """Raise one error listing what a Wan diffusers folder lacks for the text encoder, before any weight loads."""
    te, tok = path / "text_encoder", path / "tokenizer"
    missing = []
    if not (te / "config.json").is_file():
        missing.append("text_encoder/config.json")
    weights = [te / name for name in WEIGHTS if (te / name).is_file()]
    if not weights:
        missing.append(" or ".join(f"text_encoder/{name}" for name in WEIGHTS))
    elif weights[0].name.endswith(".index.json"):
        shards = sorted(set(json.loads(weights[0].read_text())["weight_map"].values()))
        missing += [f"text_encoder/{s}" for s in shards if not (te / s).is_file()]
    if not (tok / "tokenizer_config.json").is_file():
        missing.append("tokenizer/tokenizer_config.json")
    if not any((tok / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(f"tokenizer/{name}" for name in TOKENIZER_FILES))
    if missing:
        raise FileNotFoundError(
            f"{path} is not a complete Wan2.1 diffusers folder for the text encoder: missing {', '.join(missing)} "
            "(expected: text_encoder/config.json, text_encoder/model.safetensors or its sharded index, "
            "tokenizer/tokenizer_config.json, tokenizer/tokenizer.json or spiece.model)"
        )


def folder_identity(path: Path, dtype: torch.dtype, max_length: int) -> str:
    """A cheap fingerprint of the encoder: config and tokenizer bytes, weight file names and sizes, dtype, length.

    Hashing 11 GB of weights on every start would cost a minute; a changed checkpoint changes its sizes or its
    index in practice, and the cache (rf.models.text_cache) only needs to tell one encoder from another.
    """
    h = hashlib.sha256(f"umt5 {dtype} {max_length}".encode())
    for folder in ("text_encoder", "tokenizer"):
        for file in sorted((path / folder).iterdir()):
            if not file.is_file():
                continue
            h.update(f"\n{folder}/{file.name} {file.stat().st_size}\n".encode())
            if file.suffix in (".json", ".model"):
                h.update(file.read_bytes())
    return f"UMT5TextEncoder:{h.hexdigest()}"


class UMT5TextEncoder(torch.nn.Module):
    """Wan2.1's frozen umT5-XXL encoder from a diffusers folder, encoding exactly as diffusers' WanPipeline.

    `path` holds `text_encoder/` (transformers UMT5EncoderModel) and `tokenizer/`. Prompts are cleaned
    (diffusers' `prompt_clean`), tokenized with padding/truncation to `max_length`, encoded with the attention
    mask, and every row past a prompt's last token (its EOS) is set to exactly zero
    (WanPipeline._get_t5_prompt_embeds). Nothing is downloaded: the files must be on disk.
    """

    def __init__(self, path: str | Path, dtype: str | torch.dtype = "bf16", max_length: int = 512):
        super().__init__()
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean  # heavy imports, only when umT5 is used
        from transformers import AutoTokenizer, UMT5EncoderModel

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"text encoder folder {path} does not exist (a Wan2.1 diffusers folder)")
        check_wan_folder(path)
        if max_length < 1:
            raise ValueError(f"max_length {max_length} must be >= 1")
        model_type = json.loads((path / "text_encoder" / "config.json").read_text()).get("model_type")
        if model_type != "umt5":
            raise ValueError(f"{path}/text_encoder/config.json has model_type={model_type!r}, expected 'umt5'")
        torch_dtype = resolve_dtype(dtype)  # transformers, like diffusers, must get a torch.dtype, not its name
        self.clean = prompt_clean
        self.tokenizer = AutoTokenizer.from_pretrained(
            path / "tokenizer", local_files_only=True, trust_remote_code=False
        )
        self.model = UMT5EncoderModel.from_pretrained(
            path / "text_encoder", dtype=torch_dtype, local_files_only=True, trust_remote_code=False
        )
        self.model.requires_grad_(False).eval()
        self.dim, self.max_length = self.model.config.d_model, max_length
        self.identity = folder_identity(path, torch_dtype, max_length)

    def train(self, mode: bool = True):
        # frozen: Lightning's module.train() must not switch on umT5's dropout (dropout_rate 0.1 in its config)
        return super().train(False)

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> ids [B, L] and attention mask [B, L], right-padded; warns for each truncated prompt."""
        if isinstance(prompts, str) or not prompts:
            raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r}")
        cleaned = [self.clean(p) for p in prompts]
        full = self.tokenizer(cleaned, add_special_tokens=True)["input_ids"]
        for b, ids in enumerate(full):
            if len(ids) > self.max_length:
                warnings.warn(
                    f"prompt {b} has {len(ids)} tokens: {len(ids) - self.max_length} dropped past "
                    f"max_length={self.max_length}: {short(prompts[b])}",
                    stacklevel=2,
                )
        tokens = self.tokenizer(
            cleaned,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return tokens.input_ids, tokens.attention_mask

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> [B, max_length, dim] in the model's dtype, exactly zero past each prompt's last token."""
        ids, mask = self.tokenize(prompts)
        device = self.model.device
        h = self.model(ids.to(device), attention_mask=mask.to(device)).last_hidden_state  # [B, L, D]
        # diffusers cuts each row to its length and pads with new zeros; masked_fill is the same, in one op
        return h.masked_fill(mask.to(device)[..., None] == 0, 0.0)
