"""The self-attention KV cache of the streaming student and its four policies (PAPER.md §2).

Per transformer block the cache holds the clean keys and values of past frames, split into

    sink   : S frames kept for the whole stream       (policies `sink`, `ema_sink`)
    window : the most recent frames, oldest first     (every policy)

and a new chunk attends to [sink ; window ; itself]. The attention span W counts all three,
so the window holds at most W - S - chunk frames (`full` never evicts).

    full      no eviction: Self Forcing's cache, memory grows with the stream
    window    sliding window, frames leaving it are dropped
    sink      the first chunk stays as a static sink (StreamingLLM / LongLive)
    ema_sink  frames leaving the window are fused into the sink by an exponential moving
              average, slot by slot (Reward Forcing):  S <- alpha S + (1 - alpha) E

Which frame goes where is decided once, by `plan_commit`, for both implementations of the cache:
KVCache here (growing tensors; training and the plain path) and rf.fast.static_cache.StaticKVCache
(preallocated buffers; the fast path). Both apply the rule through `ema_fuse` and satisfy `StreamCache`,
the interface the model and the sampler use.

Keys are stored after the q/k RMSNorm and BEFORE RoPE; the model applies RoPE at attention
time with frame positions counted from 0 over [sink ; window ; current chunk], so a stream has
no length limit and the current chunk always sits at the same positions.
Everything here is plain tensor code: no model, no Lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch

POLICIES = ("full", "window", "sink", "ema_sink")


@dataclass(frozen=True)
class CacheConfig:
    policy: str = "ema_sink"
    sink_frames: int = 3  # S, latent frames
    attention_frames: int = 9  # W, latent frames, including the sink and the current chunk
    chunk_frames: int = 3
    alpha: float = 0.99  # EMA-Sink decay: the released code hard-codes 0.999, the paper's ablation picks 0.99

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"sink={self.policy!r} is not a cache policy: choose one of {', '.join(POLICIES)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"sink.alpha={self.alpha} is outside [0, 1]")
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames={self.chunk_frames}: need at least 1 latent frame per chunk")
        uses_sink = self.policy in ("sink", "ema_sink")
        if uses_sink and self.sink_frames < 1:
            raise ValueError(f"sink.sink_frames={self.sink_frames}: policy {self.policy!r} needs at least 1")
        if self.policy != "full" and self.window_capacity < 0:
            raise ValueError(
                f"sink.attention_frames={self.attention_frames} leaves no room for "
                f"{self.sink_frames if uses_sink else 0} sink + {self.chunk_frames} chunk frames: "
                "make it at least their sum"
            )

    @property
    def has_sink(self) -> bool:
        return self.policy in ("sink", "ema_sink")

    @property
    def fill_chunks(self) -> int:
        """Chunks a stream takes to fill the attention span (its fill stages); the next one is steady."""
        return -(-self.attention_frames // self.chunk_frames)

    @property
    def window_capacity(self) -> int | None:
        """Past frames the window keeps besides the sink; None means unbounded (`full`)."""
        if self.policy == "full":
            return None
        return self.attention_frames - self.chunk_frames - (self.sink_frames if self.has_sink else 0)


class Fill(NamedTuple):
    """How full a cache is: everything the plan of the next commit depends on."""

    sink_len: int = 0  # sink frames held (reaches S, then stays)
    window_len: int = 0  # window frames held (reaches the window capacity, then stays)
    sink_slot: int = 0  # next sink slot an evicted frame fuses into (ema_sink)


class Step(NamedTuple):
    """What one committed frame does: fill a sink slot, or enter the window, pushing its oldest frame out."""

    to_sink: int | None = None  # the sink slot the frame fills (while the sink fills), else None: the window
    evicts: bool = False  # the window is full: its oldest frame leaves (the frame itself when the window is 0 long)
    fuse_into: int | None = None  # ema_sink: the sink slot the leaving frame is fused into (else it is dropped)


def plan_commit(config: CacheConfig, fill: Fill, frames: int) -> tuple[list[Step], Fill]:
    """The policy, frame by frame, for a commit of `frames` frames -> (one Step per frame, the fill after).

    The sink fills first (sink, ema_sink); then frames enter the window; once it holds its capacity every
    new frame pushes the oldest out, which ema_sink fuses into the sink slot by slot, rolling over the S
    slots (so chunks need not be sink-sized), and window / sink drop. `full` never evicts.
    """
    sink = config.sink_frames if config.has_sink else 0
    capacity = config.window_capacity
    steps = []
    for _ in range(frames):
        if fill.sink_len < sink:
            steps.append(Step(to_sink=fill.sink_len))
            fill = fill._replace(sink_len=fill.sink_len + 1)
        elif capacity is None or fill.window_len < capacity:
            steps.append(Step())
            fill = fill._replace(window_len=fill.window_len + 1)
        elif config.policy == "ema_sink":
            steps.append(Step(evicts=True, fuse_into=fill.sink_slot))
            fill = fill._replace(sink_slot=(fill.sink_slot + 1) % sink)
        else:
            steps.append(Step(evicts=True))
    return steps, fill


def ema_fuse(sink: torch.Tensor, leaving: torch.Tensor, alpha: float) -> torch.Tensor:
    """EMA-Sink, PAPER.md §2: S <- alpha S + (1 - alpha) E, for one sink slot's K or V and the frame leaving."""
    return alpha * sink + (1 - alpha) * leaving


class Context(NamedTuple):
    """[sink ; window] of one block, flattened to tokens: k, v [B, L, H, D], keys before RoPE."""

    k: torch.Tensor
    v: torch.Tensor
    rotated = False  # the keys carry no RoPE yet: attention rotates them (rf.models.attention)


Rope = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # frame positions [F] -> cos, sin [1, F*T, 1, D]


class StreamCache(Protocol):
    """What the model (rf.models.causal_wan) and the sampler ask of a stream's KV cache.

    KVCache below and rf.fast.static_cache.StaticKVCache implement it, with the same policy (plan_commit)."""

    config: CacheConfig
    evicted_frames: int  # frames that have left the window so far

    def prepare(self, batch: int, tokens: int, heads: int, head_dim: int, dtype, device, rope: Rope,
                frames: int = 0) -> None:  # fmt: skip
        """Called by every forward before the blocks: the shapes of this stream and the frames of this forward
        (a static cache allocates here)."""

    def context(self, block: int) -> Context | None:
        """[sink ; window] K/V of a block (its `rotated` says whether RoPE is applied), None while empty; after
        the block's commit, with the committed chunk in it (the fused cache pass reads it there: rf.models.fused)."""

    def commit(self, block: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Add one block's chunk K/V [B, f, T, H, D] (before RoPE) and apply the policy."""

    def end_write(self, frames: int) -> None:
        """Every block has committed a chunk of `frames` frames."""

    @property
    def context_frames(self) -> int:
        """Frames a new chunk sees before itself: its RoPE frame offset."""

    def context_frames_after(self, frames: int) -> int:
        """context_frames once a chunk of `frames` frames is committed (the fused cache pass's next chunk)."""

    @property
    def window_frames(self) -> int:
        """Frames in the window (the sampler re-caches that many after a prompt switch)."""

    def sink_drift(self) -> float:
        """||S_K - S0_K|| / ||S0_K|| in the first block: how far the sink has moved from the first chunk."""

    def drop_window(self) -> None:
        """Forget the window, keep the sink: used to re-cache the window under a new prompt."""

    def nbytes(self) -> int:
        """Memory held by the cache's tensors."""


class BlockCache:
    """K and V of one transformer block, kept as [B, frames, tokens per frame, heads, head dim]."""

    def __init__(self, config: CacheConfig):
        self.config = config
        self.sink_k: torch.Tensor | None = None  # [B, S, T, H, D], None until the first chunk arrives
        self.sink_v: torch.Tensor | None = None
        self.win_k: torch.Tensor | None = None  # [B, Fw, T, H, D]
        self.win_v: torch.Tensor | None = None
        self.fill = Fill()  # the plan's view of this block's cache (plan_commit)
        self.evicted_frames = 0
        self.track_drift = False  # keep the first sink's keys, to measure how far the sink moves
        self.first_sink_k: torch.Tensor | None = None

    @property
    def sink_len(self) -> int:
        return 0 if self.sink_k is None else self.sink_k.shape[1]

    @property
    def window_len(self) -> int:
        return 0 if self.win_k is None else self.win_k.shape[1]

    def context(self) -> Context | None:
        """[sink ; window] flattened to tokens: Context([B, L, H, D], [B, L, H, D]), or None when empty."""
        ks = [t for t in (self.sink_k, self.win_k) if t is not None]
        if not ks:
            return None
        vs = [t for t in (self.sink_v, self.win_v) if t is not None]
        k = torch.cat(ks, dim=1) if len(ks) > 1 else ks[0]
        v = torch.cat(vs, dim=1) if len(vs) > 1 else vs[0]
        return Context(k.flatten(1, 2), v.flatten(1, 2))

    def commit(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Append a chunk's clean K/V ([B, f, T, H, D], detached) and apply the policy (plan_commit)."""
        steps, self.fill = plan_commit(self.config, self.fill, k.shape[1])
        take = sum(step.to_sink is not None for step in steps)  # the sink fills from the chunk's first frames
        if take:
            self.sink_k, self.sink_v = _cat(self.sink_k, k[:, :take]), _cat(self.sink_v, v[:, :take])
            k, v = k[:, take:], v[:, take:]
            if self.track_drift and self.sink_len == self.config.sink_frames:
                self.first_sink_k = self.sink_k.clone()
        if k.shape[1] == 0:
            return
        self.win_k, self.win_v = _cat(self.win_k, k), _cat(self.win_v, v)
        leaving = [step for step in steps if step.evicts]  # in order: the window's oldest frames
        if not leaving:
            return
        n_out = len(leaving)
        out_k, out_v = self.win_k[:, :n_out], self.win_v[:, :n_out]
        # .clone() so the kept window does not pin the whole pre-eviction buffer in memory
        self.win_k, self.win_v = self.win_k[:, n_out:].clone(), self.win_v[:, n_out:].clone()
        self.evicted_frames += n_out
        if any(step.fuse_into is not None for step in leaving):
            self._fuse(out_k, out_v, [step.fuse_into for step in leaving])

    def _fuse(self, out_k: torch.Tensor, out_v: torch.Tensor, slots: list[int]) -> None:
        """EMA-Sink (ema_fuse): evicted frame j fuses into sink slot slots[j], K and V alike."""
        a = self.config.alpha
        sink_k, sink_v = self.sink_k.clone(), self.sink_v.clone()
        for j, s in enumerate(slots):
            sink_k[:, s] = ema_fuse(sink_k[:, s], out_k[:, j], a)
            sink_v[:, s] = ema_fuse(sink_v[:, s], out_v[:, j], a)
        self.sink_k, self.sink_v = sink_k, sink_v

    def drop_window(self) -> None:
        self.win_k = self.win_v = None
        self.fill = self.fill._replace(window_len=0)

    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for t in (self.sink_k, self.sink_v, self.win_k, self.win_v) if t is not None
        )


def _cat(a: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
    return b if a is None else torch.cat([a, b], dim=1)


class KVCache:
    """One BlockCache per transformer block, advanced together by the model's cache-writing pass (a StreamCache)."""

    def __init__(self, config: CacheConfig, num_blocks: int):
        self.config = config
        self.blocks = [BlockCache(config) for _ in range(num_blocks)]
        self.blocks[0].track_drift = True

    def prepare(self, batch: int, tokens: int, heads: int, head_dim: int, dtype, device, rope: Rope,
                frames: int = 0) -> None:  # fmt: skip
        """Nothing to allocate: the tensors grow with the commits."""

    def context(self, block: int) -> Context | None:
        return self.blocks[block].context()

    def commit(self, block: int, k: torch.Tensor, v: torch.Tensor) -> None:
        self.blocks[block].commit(k, v)

    def end_write(self, frames: int) -> None:
        """Every block has committed the chunk: nothing left to do (each BlockCache moved with its commit)."""

    @property
    def context_frames(self) -> int:
        """Frames a new chunk sees before itself: its RoPE frame offset."""
        b = self.blocks[0]
        return b.sink_len + b.window_len

    def context_frames_after(self, frames: int) -> int:
        _, fill = plan_commit(self.config, self.blocks[0].fill, frames)
        return fill.sink_len + fill.window_len

    @property
    def window_frames(self) -> int:
        return self.blocks[0].window_len

    @property
    def evicted_frames(self) -> int:
        return self.blocks[0].evicted_frames

    def sink_drift(self) -> float:
        """||S_K - S0_K|| / ||S0_K|| in the first block: how far the sink has moved from the first chunk."""
        b = self.blocks[0]
        if b.first_sink_k is None:
            return 0.0
        return float(
            (b.sink_k.float() - b.first_sink_k.float()).norm() / b.first_sink_k.float().norm().clamp_min(1e-12)
        )

    def drop_window(self) -> None:
        """Forget the window, keep the sink: used to re-cache the window under a new prompt."""
        for b in self.blocks:
            b.drop_window()

    def nbytes(self) -> int:
        return sum(b.nbytes() for b in self.blocks)
