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

Keys are stored after the q/k RMSNorm and BEFORE RoPE; the model applies RoPE at attention
time with frame positions counted from 0 over [sink ; window ; current chunk], so a stream has
no length limit and the current chunk always sits at the same positions.
Everything here is plain tensor code: no model, no Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    def window_capacity(self) -> int | None:
        """Past frames the window keeps besides the sink; None means unbounded (`full`)."""
        if self.policy == "full":
            return None
        return self.attention_frames - self.chunk_frames - (self.sink_frames if self.has_sink else 0)


class BlockCache:
    """K and V of one transformer block, kept as [B, frames, tokens per frame, heads, head dim]."""

    def __init__(self, config: CacheConfig):
        self.config = config
        self.sink_k: torch.Tensor | None = None  # [B, S, T, H, D], None until the first chunk arrives
        self.sink_v: torch.Tensor | None = None
        self.win_k: torch.Tensor | None = None  # [B, Fw, T, H, D]
        self.win_v: torch.Tensor | None = None
        self.slot = 0  # next sink slot an evicted frame fuses into
        self.evicted_frames = 0
        self.track_drift = False  # keep the first sink's keys, to measure how far the sink moves
        self.first_sink_k: torch.Tensor | None = None

    @property
    def sink_len(self) -> int:
        return 0 if self.sink_k is None else self.sink_k.shape[1]

    @property
    def window_len(self) -> int:
        return 0 if self.win_k is None else self.win_k.shape[1]

    def context(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """[sink ; window] flattened to tokens: ([B, L, H, D], [B, L, H, D]), or None when empty."""
        ks = [t for t in (self.sink_k, self.win_k) if t is not None]
        if not ks:
            return None
        vs = [t for t in (self.sink_v, self.win_v) if t is not None]
        k = torch.cat(ks, dim=1) if len(ks) > 1 else ks[0]
        v = torch.cat(vs, dim=1) if len(vs) > 1 else vs[0]
        return k.flatten(1, 2), v.flatten(1, 2)

    def commit(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Append a chunk's clean K/V ([B, f, T, H, D], detached) and apply the policy."""
        cfg = self.config
        if cfg.has_sink and self.sink_len < cfg.sink_frames:
            take = min(cfg.sink_frames - self.sink_len, k.shape[1])
            self.sink_k = _cat(self.sink_k, k[:, :take])
            self.sink_v = _cat(self.sink_v, v[:, :take])
            k, v = k[:, take:], v[:, take:]
            if self.track_drift and self.sink_len == cfg.sink_frames:
                self.first_sink_k = self.sink_k.clone()
        if k.shape[1] == 0:
            return
        self.win_k, self.win_v = _cat(self.win_k, k), _cat(self.win_v, v)
        capacity = cfg.window_capacity
        if capacity is None or self.window_len <= capacity:
            return
        n_out = self.window_len - capacity
        out_k, out_v = self.win_k[:, :n_out], self.win_v[:, :n_out]
        # .clone() so the kept window does not pin the whole pre-eviction buffer in memory
        self.win_k, self.win_v = self.win_k[:, n_out:].clone(), self.win_v[:, n_out:].clone()
        self.evicted_frames += n_out
        if cfg.policy == "ema_sink":
            self._fuse(out_k, out_v)

    def _fuse(self, out_k: torch.Tensor, out_v: torch.Tensor) -> None:
        """EMA-Sink, PAPER.md §2: S_K <- alpha S_K + (1 - alpha) K_evicted, slot-aligned, V likewise.

        Evicted frame j of a chunk meets sink slot j (a rolling slot pointer generalises this to
        chunks that are not sink-sized).
        """
        a = self.config.alpha
        sink_k, sink_v = self.sink_k.clone(), self.sink_v.clone()
        for j in range(out_k.shape[1]):
            s = self.slot
            sink_k[:, s] = a * sink_k[:, s] + (1 - a) * out_k[:, j]
            sink_v[:, s] = a * sink_v[:, s] + (1 - a) * out_v[:, j]
            self.slot = (s + 1) % self.config.sink_frames
        self.sink_k, self.sink_v = sink_k, sink_v

    def drop_window(self) -> None:
        self.win_k = self.win_v = None

    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for t in (self.sink_k, self.sink_v, self.win_k, self.win_v) if t is not None
        )


def _cat(a: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
    return b if a is None else torch.cat([a, b], dim=1)


class KVCache:
    """One BlockCache per transformer block, advanced together by the model's cache-writing pass."""

    def __init__(self, config: CacheConfig, num_blocks: int):
        self.config = config
        self.blocks = [BlockCache(config) for _ in range(num_blocks)]
        self.blocks[0].track_drift = True

    rotates_context = False  # the context is returned before RoPE: attention rotates it (rf.models.attention)

    def context(self, block: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self.blocks[block].context()

    def commit(self, block: int, k: torch.Tensor, v: torch.Tensor) -> None:
        self.blocks[block].commit(k, v)

    def end_write(self, frames: int) -> None:
        """Every block has committed the chunk (the static cache moves its host-side state here)."""

    @property
    def context_frames(self) -> int:
        """Frames a new chunk sees before itself: its RoPE frame offset."""
        b = self.blocks[0]
        return b.sink_len + b.window_len

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
