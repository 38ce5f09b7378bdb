"""StaticKVCache: the bounded cache policies in preallocated buffers, for the exact fast path.

rf.models.cache keeps [sink ; window] as tensors that grow by concatenation and shrink by slicing:
simple, and what training uses. Streaming inference wants fixed addresses instead, so that a chunk
step can be captured once as a CUDA graph and replayed for as long as the stream runs (rf.fast.graphs).
This cache computes the same function with, per transformer block,

    k_raw [B, S + Wc, T, H, D]   keys before RoPE   (what EMA-Sink fuses)
    k_rot [B, S + Wc, T, H, D]   the same keys rotated to their current positions
    v     [B, S + Wc, T, H, D]

slots 0..S-1 holding the sink and slots S..S+Wc-1 a ring buffer for the window (Wc = the policy's
window capacity). A commit writes the chunk's frames one by one, as the policy's plan says
(rf.models.cache.plan_commit, the same plan the plain cache follows):

    sink not full   -> next sink slot
    window not full -> next ring slot
    window full     -> the oldest frame (at the ring pointer) leaves: fused into the sink slot by slot
                       (ema_sink, rf.models.cache.ema_fuse) or dropped (window, sink); the new
                       frame takes its ring slot

then re-rotates the context once: ring slot r holds the frame of age (r - oldest) mod Wc, at position
S + that age, so the positions seen by attention are the plain cache's [sink ; window oldest first].
Attention reads the rotated context as it is (no RoPE over cached keys in each pass) and appends the
chunk's own keys.

In place (fast.kv_in_place): k_rot and v get f more slots, room for a pass's own f frames right after
the n context frames. Each pass writes its chunk's rotated keys and values there and attention reads
[context ; chunk] from the buffers as one view, instead of concatenating the context anew in every pass
(a copy of the whole context per block and pass). Slots n .. n+f-1 hold nothing the cache still needs:
past the context, the next commit overwrites what it uses of them.

Every index is a Python int decided on the host from the fill state ("stage"), never read back from
the GPU: a stage is a fixed-shape, sync-free function, and a stream meets only a few of them (the
fill stages, then a short cycle of ring pointers; one stage for the default S = 3, W = 9, chunk 3).
`full` grows without bound and has no static form.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import torch

from rf.models.attention import apply_rope
from rf.models.cache import CacheConfig, Fill, Rope, ema_fuse, plan_commit


class RotatedContext(NamedTuple):
    """The context of one block with RoPE already applied to its keys: k, v [B, L, H, D]. In place: k_all, v_all
    [B, L + Lc, H, D] are views of the same buffers with room after the context for a pass's Lc own tokens."""

    k: torch.Tensor
    v: torch.Tensor
    k_all: torch.Tensor | None = None
    v_all: torch.Tensor | None = None
    rotated = True  # attention appends the chunk's own rotated keys and rotates nothing else


@dataclass(frozen=True)
class Stage:
    """Host-side fill state of the cache: everything a commit's indices depend on."""

    fill: Fill = Fill()  # sink and window lengths, next sink slot: the policy's state (plan_commit)
    pointer: int = 0  # next ring slot to write; the oldest window frame once the ring is full

    @property
    def sink_len(self) -> int:
        return self.fill.sink_len

    @property
    def window_len(self) -> int:
        return self.fill.window_len


class Write(NamedTuple):
    """Where frame `frame` of a committed chunk goes, and what it pushes out (a tuple: write_chunk's plan, and a
    constant to torch.compile)."""

    frame: int
    slot: int  # buffer slot the frame is written to (-1: it is evicted at once, the window having no room)
    evict_from: int | None = None  # slot whose frame leaves first
    fuse_into: int | None = None  # sink slot the leaving frame fuses into (ema_sink)


def write_chunk(k_raw, k_rot, v, k_new, v_new, plan: tuple[Write, ...], n: int, alpha: float, cos, sin) -> None:
    """The device work of one block's commit, in place: buffers k_raw [B, S + Wc, T, H, D], k_rot and v the same
    (with fast.kv_in_place, and the room for a pass's frames after slot S + Wc, which the commit leaves alone); the
    chunk's k_new, v_new [B, f, T, H, D] (before RoPE); plan: one `Write` (frame, slot, evict_from, fuse_into) per
    frame; n: context frames after the commit; cos, sin [1, n*T, 1, D]: their RoPE tables.

    Eager, this is about 12 kernels per committed frame and 10 for the re-rotation, per block; compiled
    (StaticKVCache(compiled=True), fast.compile_commit) Inductor fuses them into six, one compilation per plan; or one
    Triton kernel (StaticKVCache(kernel=True), fast.commit_kernel: rf.fast.commit_kernel) where the plan allows."""
    k_new, v_new = k_new.to(v.dtype), v_new.to(v.dtype)
    for frame, slot, evict_from, fuse_into in plan:
        leaving = (k_new[:, frame], v_new[:, frame])  # a frame the full window cannot keep leaves at once
        if evict_from is not None:
            leaving = (k_raw[:, evict_from].clone(), v[:, evict_from].clone())
        if fuse_into is not None:
            k_raw[:, fuse_into] = ema_fuse(k_raw[:, fuse_into], leaving[0], alpha)
            v[:, fuse_into] = ema_fuse(v[:, fuse_into], leaving[1], alpha)
        if slot >= 0:
            k_raw[:, slot] = k_new[:, frame]
            v[:, slot] = v_new[:, frame]
    context = k_raw[:, :n]  # [B, n, T, H, D]
    k_rot[:, :n] = apply_rope(context.flatten(1, 2), cos, sin).view_as(context)


class StaticKVCache:
    """One set of static buffers per block; the same policies as rf.models.cache.KVCache (a StreamCache)."""

    def __init__(self, config: CacheConfig, num_blocks: int, compiled: bool = False, in_place: bool = False,
                 kernel: bool = False):  # fmt: skip
        if config.policy == "full":
            raise ValueError("sink=full grows with the stream and has no static cache: use window, sink or ema_sink")
        self.kernel = kernel  # the commit as one Triton kernel where its plan allows (rf.fast.commit_kernel)
        self._commit_kernel = None  # its launch (rf.fast.commit_kernel.commit), bound once here
        if kernel:
            from rf.fast.commit_kernel import commit, commit_kernel_available

            if (why := commit_kernel_available()) is not None:
                raise RuntimeError(why)
            self._commit_kernel = commit
        self._write = write_chunk  # a commit's device work; compiled: Inductor's, one graph per plan
        if compiled:
            self._write = torch.compile(write_chunk, dynamic=False)
            # a stream meets one plan per stage: the fill stages, then one per ring position
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self.config = config
        self.sink_frames = config.sink_frames if config.has_sink else 0  # S
        self.capacity = config.window_capacity  # Wc
        self.num_blocks = num_blocks
        self.in_place = in_place  # room after the context for a pass's own K/V (module docstring)
        self.pass_frames = 0  # frames of the forward now running (prepare)
        self.stage = Stage()
        self.evicted_frames = 0
        self.buffers: list[dict[str, torch.Tensor]] = []  # per block, allocated by prepare()
        self.first_sink_k: torch.Tensor | None = None  # block 0's sink when it first filled (drift statistics)
        self.rope: Rope | None = None
        self._commits: dict[tuple[Stage, int], tuple] = {}  # committed(): per (stage, frames), for these buffers
        self._tables: dict[tuple[Stage, int], object] = {}  # the kernel's table per (stage, frames), or None
        self._frozen = False
        self._written: dict[int, int] = {}  # block -> frames it committed in the current write (until end_write)

    # ---- set-up ---------------------------------------------------------------------------------------------

    def prepare(self, batch: int, tokens: int, heads: int, head_dim: int, dtype, device, rope: Rope,
                frames: int = 0) -> None:  # fmt: skip
        """Allocate the buffers on first use (the model knows the shapes); later calls check they still match.
        frames: the frames of the forward about to run; in place, the first forward's sets the room after the context
        (a later, longer forward concatenates as without it)."""
        self.rope, self.pass_frames = rope, frames
        context = (batch, self.sink_frames + self.capacity, tokens, heads, head_dim)
        if self.buffers:
            have = self.buffers[0]["k_raw"]
            if tuple(have.shape) != context or have.dtype != dtype:
                raise ValueError(
                    f"this static cache holds {tuple(have.shape)} {have.dtype}, the model now asks for "
                    f"{context} {dtype}: "
                    "start a new stream (model.new_cache) for a new batch or frame size"
                )
            return
        self._commits, self._tables = {}, {}
        room = (batch, context[1] + (frames if self.in_place else 0), *context[2:])  # k_rot, v: and the room
        self.buffers = [
            {
                "k_raw": torch.zeros(context, dtype=dtype, device=device),
                "k_rot": torch.zeros(room, dtype=dtype, device=device),
                "v": torch.zeros(room, dtype=dtype, device=device),
            }
            for _ in range(self.num_blocks)
        ]
        self.first_sink_k = torch.zeros_like(self.buffers[0]["k_raw"][:, : self.sink_frames])

    def reset(self) -> None:
        """Start a new stream on the same buffers (what is left in them is never read: the stage says what is)."""
        self.stage, self.evicted_frames = Stage(), 0
        self._written.clear()

    @contextmanager
    def frozen(self):
        """Run the device work of a pass without moving the host-side stage (CUDA graph capture)."""
        self._frozen = True
        try:
            yield
        finally:
            self._frozen = False

    # ---- what the model and the sampler read ------------------------------------------------------------------

    @property
    def context_frames(self) -> int:
        return self.stage.sink_len + self.stage.window_len

    @property
    def window_frames(self) -> int:
        return self.stage.window_len

    def context_frames_after(self, frames: int) -> int:
        after = self.plan(frames)[1]
        return after.sink_len + after.window_len

    def context(self, block: int) -> RotatedContext | None:
        """[sink ; window] of a block, rotated, as [B, L, H, D] views of the static buffers (None while empty).
        A block that has committed in the current write holds the stage after it (read by the fused cache pass).
        In place, with room for the pass's frames: k_all, v_all over [context ; room] too."""
        n = self.context_frames if block not in self._written else self.context_frames_after(self._written[block])
        if n == 0:
            return None
        buf = self.buffers[block]
        k, v = buf["k_rot"][:, :n].flatten(1, 2), buf["v"][:, :n].flatten(1, 2)
        end = n + self.pass_frames
        if not self.in_place or end > buf["v"].shape[1]:
            return RotatedContext(k, v)
        return RotatedContext(k, v, buf["k_rot"][:, :end].flatten(1, 2), buf["v"][:, :end].flatten(1, 2))

    def sink_drift(self) -> float:
        """||S_K - S0_K|| / ||S0_K|| in the first block (as KVCache.sink_drift)."""
        if self.stage.sink_len < self.sink_frames or self.sink_frames == 0:
            return 0.0
        sink = self.buffers[0]["k_raw"][:, : self.sink_frames].float()
        first = self.first_sink_k.float()
        return float((sink - first).norm() / first.norm().clamp_min(1e-12))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for buf in self.buffers for t in buf.values())

    # ---- the commit -------------------------------------------------------------------------------------------

    def plan(self, frames: int) -> tuple[tuple[Write, ...], Stage, int]:
        """Where each of `frames` committed frames goes, the stage after them, and how many frames leave.

        The policy's plan (plan_commit) placed in the buffers: sink slot j is slot j, and the window is a
        ring of Wc slots after the sink whose pointer is the next slot to write (the oldest frame once full)."""
        steps, fill = plan_commit(self.config, self.stage.fill, frames)
        pointer, wc, writes = self.stage.pointer, self.capacity, []
        for j, step in enumerate(steps):
            if step.to_sink is not None:
                writes.append(Write(j, step.to_sink))
            elif step.evicts and wc == 0:  # no window: the frame passes straight into the sink (or is dropped)
                writes.append(Write(j, -1, fuse_into=step.fuse_into))
            else:
                slot = self.sink_frames + pointer
                writes.append(Write(j, slot, evict_from=slot if step.evicts else None, fuse_into=step.fuse_into))
                pointer = (pointer + 1) % wc
        return tuple(writes), Stage(fill, pointer), sum(step.evicts for step in steps)

    def committed(self, frames: int) -> tuple[tuple[Write, ...], Stage, int, tuple[torch.Tensor, torch.Tensor]]:
        """plan(frames) and the RoPE tables of the context after it ([1, n*T, 1, D] cos, sin), worked out once
        per stage: every block's commit, and every replay of the stage's graph, reuses them."""
        key = (self.stage, frames)
        if key not in self._commits:
            writes, after, evicted = self.plan(frames)
            n = after.sink_len + after.window_len
            self._commits[key] = (writes, after, evicted, self.rope(self.positions(after)[:n]))
        return self._commits[key]

    def positions(self, stage: Stage) -> torch.Tensor:
        """Frame position of every slot at `stage`: sink slot j at j, ring slot r at S + its age (long [S + Wc])."""
        device = self.buffers[0]["v"].device
        sink = torch.arange(self.sink_frames, device=device)
        oldest = stage.pointer if stage.window_len == self.capacity else 0
        ring = (torch.arange(self.capacity, device=device) - oldest) % max(self.capacity, 1) + stage.sink_len
        return torch.cat([sink, ring])

    def commit(self, block: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write one block's chunk K/V ([B, f, T, H, D], before RoPE) into its slots, then re-rotate its context."""
        writes, after, _, (cos, sin) = self.committed(k.shape[1])
        self._written[block] = k.shape[1]
        buf, n = self.buffers[block], after.sink_len + after.window_len
        table = self._table(k.shape[1], writes, n) if self.kernel else None
        if table is not None:  # one launch (rf.fast.commit_kernel); plans it cannot express run write_chunk
            self._commit_kernel(buf["k_raw"], buf["k_rot"], buf["v"], k, v, table, n, self.config.alpha, cos, sin)
        else:
            self._write(buf["k_raw"], buf["k_rot"], buf["v"], k, v, writes, n, self.config.alpha, cos, sin)
        if block == 0 and self.stage.sink_len < self.sink_frames <= after.sink_len:
            self.first_sink_k.copy_(buf["k_raw"][:, : self.sink_frames])

    def _table(self, frames: int, writes: tuple[Write, ...], n: int):
        """The commit kernel's table for this stage's plan (once a stage; a fixed tensor that graph replays
        read), or None where the plan needs write_chunk."""
        key = (self.stage, frames)
        if key not in self._tables:
            from rf.fast.commit_kernel import table_for

            self._tables[key] = table_for(writes, n, self.buffers[0]["v"].device)
        return self._tables[key]

    def end_write(self, frames: int) -> None:
        """Move the host-side stage past a commit of `frames` frames (every block has been written)."""
        self._written.clear()
        if self._frozen:
            return
        _, self.stage, evicted, _ = self.committed(frames)
        self.evicted_frames += evicted

    def drop_window(self) -> None:
        """Forget the window, keep the sink (re-caching under a new prompt)."""
        self.stage = Stage(self.stage.fill._replace(window_len=0), pointer=0)
