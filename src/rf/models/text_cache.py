"""Prompt embeddings on disk, and a TextEncoder that reads them back.

Wan's umT5-XXL weighs 11 GB; a training GPU should hold the student, teacher and critic, not it.
`python -m rf.encode_prompts` encodes a prompt file once; training conditions on the stored embeddings
through `CachedTextEncoder`, which satisfies the TextEncoder protocol (rf.models.text).

A cache folder holds the embeddings of one text encoder:

    encoder.json                   {"version": 1, "identity": ..., "dim": D, "max_length": L, "dtype": "bfloat16"}
    ab/ab12...ef.safetensors       one prompt: "tokens" [n, D], its n <= L real tokens, and metadata
                                   {"prompt": the exact string, "sha256": of the tensor's bytes}

A file is named by sha256(identity + "\\n" + prompt), so one encoder's embedding is never read as another's.
Only the real tokens are stored (trailing zero rows dropped) and reads re-pad with zeros: lossless, since
the encoders give exact zeros there. Each file is written under a temp name, fsynced and renamed into
place, so a reader sees a whole entry or none; a damaged one fails its checksum and is reported (or, when
an encoder is at hand, re-encoded).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from itertools import chain
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from rf.models.text import TextEncoder, short
from rf.utils.files import atomic_write, read_versioned_json
from rf.utils.instantiate import resolve_dtype

# Wan2.1's default negative prompt, verbatim: `sample_neg_prompt` in Wan-Video/Wan2.1
# wan/configs/shared_config.py, the `negative_prompt` of Self Forcing's and Reward Forcing's configs.
# diffusers' WanPipeline example passes its English translation ("Bright tones, overexposed, static, ...").
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)

VERSION = 1
META = "encoder.json"
STRAY = re.compile(r".+\.\d+\.tmp")  # `<file>.<pid>.tmp`: a write that a killed process never renamed


def fill_command(folder: Path) -> str:
    return f"`python -m rf.encode_prompts prompts=FILE cache={folder}` with the model= whose text encoder made it"


class CorruptEntryError(ValueError):
    """A cache file that does not read back as it was written."""


def _digest(tokens: torch.Tensor) -> str:
    return hashlib.sha256(tokens.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def encoder_identity(encoder: TextEncoder) -> str:
    """Who made an embedding: the encoder's own `identity`, else a hash of its class, settings and tensors."""
    own = getattr(encoder, "identity", None)
    if own is not None:
        return str(own)
    if not isinstance(encoder, torch.nn.Module):
        raise ValueError(f"{type(encoder).__name__} has no `identity`: give it a string that changes with its outputs")
    # plain public settings too: the toy's word -> row index changes its output without changing a tensor
    settings = {
        k: v
        for k, v in vars(encoder).items()
        if not k.startswith("_") and k != "training" and isinstance(v, (int, float, str, bool, list, tuple, dict))
    }
    h = hashlib.sha256(f"{type(encoder).__qualname__} {json.dumps(settings, default=str)}".encode())
    for name, t in chain(encoder.named_parameters(), encoder.named_buffers()):  # non-persistent buffers included
        h.update(f"\n{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{type(encoder).__name__}:{h.hexdigest()}"


def _own_dtype(encoder: TextEncoder) -> torch.dtype:
    if isinstance(encoder, torch.nn.Module):
        for t in chain(encoder.parameters(), encoder.buffers()):
            if t.is_floating_point():
                return t.dtype
    return torch.float32


class EmbeddingCache:
    """A folder of per-prompt embeddings of one text encoder (see the module docstring for the layout).

    `meta` (a writer: identity, dim, max_length, dtype) creates the folder's encoder.json or must match it;
    None (a reader) takes it from encoder.json.
    """

    def __init__(self, folder: str | Path, meta: dict | None = None):
        self.folder = Path(folder)
        stored = self._read_meta()
        if meta is None:
            if stored is None:
                raise FileNotFoundError(
                    f"{self.folder} holds no prompt embeddings: fill it with {fill_command(folder)}"
                )
            meta = stored
        else:
            meta = {"version": VERSION, **meta, "dtype": str(resolve_dtype(meta["dtype"])).removeprefix("torch.")}
            if stored is None:
                if not self.folder.parent.is_dir():
                    raise FileNotFoundError(f"{self.folder.parent} does not exist: create it or pick another cache")
                self.folder.mkdir(exist_ok=True)
                atomic_write(self.folder / META, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
            else:
                for key in sorted(stored.keys() | meta.keys()):
                    if stored.get(key) != meta.get(key):
                        raise ValueError(
                            f"cache {self.folder} holds embeddings with {key}={stored.get(key)!r}, this text encoder "
                            f"has {meta.get(key)!r}: use another cache folder (one per text encoder and dtype)"
                        )
        self.meta = meta
        self.identity, self.dim, self.max_length = meta["identity"], meta["dim"], meta["max_length"]
        self.dtype = resolve_dtype(meta["dtype"])

    def _read_meta(self) -> dict | None:
        path = self.folder / META
        meta = read_versioned_json(path, VERSION, f"delete {self.folder} and fill it again")
        if meta is None:
            return None
        missing = [k for k in ("identity", "dim", "max_length", "dtype") if k not in meta]
        if missing:
            raise ValueError(
                f"{path} lacks {', '.join(missing)}: not a text-embedding cache of rf; delete {self.folder} and fill "
                "it again"
            )
        return meta

    def path(self, prompt: str) -> Path:
        key = hashlib.sha256(f"{self.identity}\n{prompt}".encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.safetensors"  # 256 subfolders: no folder of a million files

    def __contains__(self, prompt: str) -> bool:
        return self.path(prompt).is_file()

    def get(self, prompt: str) -> torch.Tensor | None:
        """The stored tokens [n, D] of a prompt, None if absent; CorruptEntryError if damaged."""
        path = self.path(prompt)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta, tokens = f.metadata() or {}, f.get_tensor("tokens")
        except (SafetensorError, OSError) as err:
            raise CorruptEntryError(f"{path} (prompt {short(prompt)}) is corrupted: {err}") from err
        problem = None
        if meta.get("prompt") != prompt:
            problem = f"it holds prompt {short(str(meta.get('prompt')))}"
        elif tokens.ndim != 2 or tokens.shape[1] != self.dim or len(tokens) > self.max_length:
            problem = f"tokens of shape {tuple(tokens.shape)}, expected [n <= {self.max_length}, {self.dim}]"
        elif tokens.dtype != self.dtype:
            problem = f"tokens of dtype {tokens.dtype}, expected {self.dtype}"
        elif _digest(tokens) != meta.get("sha256"):
            problem = "it fails its sha256 check"
        if problem:
            raise CorruptEntryError(f"{path} (prompt {short(prompt)}) is corrupted: {problem}")
        return tokens

    def put(self, prompt: str, embedding: torch.Tensor) -> Path:
        """Store a prompt's embedding [L', D] (zero-padded or not) as its real tokens, atomically."""
        if embedding.ndim != 2 or embedding.shape[1] != self.dim or len(embedding) > self.max_length:
            raise ValueError(
                f"embedding of shape {tuple(embedding.shape)}: expected [<= {self.max_length}, {self.dim}]"
            )
        e = embedding.detach().to("cpu", self.dtype)
        # trimmed after the cast, so a row that rounds to zero is zero both here and in the re-padded read
        rows = e.ne(0).any(dim=1).nonzero()
        tokens = e[: int(rows[-1]) + 1 if len(rows) else 0].contiguous()  # [n, D]
        path = self.path(prompt)
        path.parent.mkdir(exist_ok=True)
        metadata = {"prompt": prompt, "sha256": _digest(tokens)}
        atomic_write(path, lambda tmp: save_file({"tokens": tokens}, str(tmp), metadata=metadata))
        return path

    def remove_strays(self) -> int:
        """Delete temp files that killed writers left behind; returns how many."""
        strays = [p for p in self.folder.rglob("*.tmp") if STRAY.fullmatch(p.name)]
        for p in strays:
            p.unlink(missing_ok=True)
        return len(strays)


class CachedTextEncoder(torch.nn.Module):
    """A TextEncoder over an EmbeddingCache: [B, max_length, dim], zeros past each prompt's tokens.

    Without `encoder` it only reads (training: the giant stays off the GPU) and a missing prompt is an
    error naming it and the command that fills the cache. With `encoder` a miss (or a damaged entry) is
    encoded and stored. `dtype` is the storage dtype of a new cache (default: the encoder's own).
    `negative()` is the CFG negative prompt's embedding (Wan's default; None: all zeros, the empty condition).
    """

    def __init__(
        self,
        cache: str | Path,
        encoder: TextEncoder | None = None,
        negative_prompt: str | None = WAN_NEGATIVE_PROMPT,
        dtype: str | torch.dtype | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        if encoder is None:
            self.cache = EmbeddingCache(cache)
        else:
            store = resolve_dtype(dtype) if dtype is not None else _own_dtype(encoder)
            meta = {"identity": encoder_identity(encoder), "dim": encoder.dim, "max_length": encoder.max_length}
            self.cache = EmbeddingCache(cache, {**meta, "dtype": store})
        if dtype is not None and resolve_dtype(dtype) != self.cache.dtype:
            raise ValueError(f"dtype={dtype}, but cache {self.cache.folder} holds {self.cache.dtype}")
        self.dim, self.max_length = self.cache.dim, self.cache.max_length
        self.negative_prompt = negative_prompt
        self._negative: torch.Tensor | None = None
        self.register_buffer("anchor", torch.empty(0), persistent=False)  # follows .to(device); outputs go there

    def _read(self, prompt: str) -> torch.Tensor | None:
        try:
            return self.cache.get(prompt)
        except CorruptEntryError as err:
            if self.encoder is None:
                raise CorruptEntryError(f"{err}: delete it and refill with {fill_command(self.cache.folder)}") from err
            warnings.warn(f"{err}: encoding it again", stacklevel=3)
            return None

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> [B, max_length, dim] in the cache's dtype, on this module's device."""
        if isinstance(prompts, str) or not prompts:
            raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r}")
        out = torch.zeros(len(prompts), self.max_length, self.dim, dtype=self.cache.dtype)  # [B, L, D]
        todo: dict[str, list[int]] = {}  # prompt -> its rows in the batch
        for b, prompt in enumerate(prompts):
            tokens = self._read(prompt)  # [n, D]
            if tokens is None:
                todo.setdefault(prompt, []).append(b)
            else:
                out[b, : len(tokens)] = tokens
        if todo and self.encoder is None:
            raise FileNotFoundError(
                f"{len(todo)} of {len(prompts)} prompts are not in the text-embedding cache {self.cache.folder}, "
                f"e.g. {short(next(iter(todo)))}: add them to a prompt file and fill the cache with "
                f"{fill_command(self.cache.folder)}"
            )
        if todo:
            fresh = self.encoder(list(todo))  # [b, L, D]
            for (prompt, rows), embedding in zip(todo.items(), fresh, strict=True):
                self.cache.put(prompt, embedding)
                out[rows] = embedding.to("cpu", self.cache.dtype)  # what a later read gives back, bit for bit
        return out.to(self.anchor.device)

    def negative(self) -> torch.Tensor:
        """The negative prompt's embedding [1, max_length, dim]: read (or encoded) once, then kept in memory."""
        if self._negative is None:
            if self.negative_prompt is None:
                self._negative = torch.zeros(1, self.max_length, self.dim, dtype=self.cache.dtype)
            else:
                self._negative = self([self.negative_prompt]).cpu()
        return self._negative.to(self.anchor.device)
