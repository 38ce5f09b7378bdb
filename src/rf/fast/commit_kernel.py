"""The static cache's commit as one Triton kernel per block (fast.commit_kernel).

Once a chunk, every block commits its clean chunk's keys and values to the static cache
(rf.fast.static_cache.write_chunk): in the steady state of the default EMA-Sink stream (S = 3 sink frames, a
9-frame window, 3-frame chunks) each new frame pushes the oldest window frame out of its ring slot, that frame is
fused into a sink slot (S <- alpha S + (1 - alpha) E, PAPER.md §2), the new frame takes the ring slot, and then the
whole context is rotated again at its new positions (k_rot = rope(k_raw)). Compiled by Inductor
(fast.compile_commit) that is six kernels a block, 176 us on an H200 under the stream's load, 5.3 ms a chunk
(experiments/bench/results/profile_block_norms.md: the `..._select_N` and `..._stack_sub_unbind_view` kernels, 30
calls each) for about 230 MB a block that must move: 50-60 us at the card's bandwidth.

Here one program takes one token of the frame grid (its H*D channels in registers) through every context slot:

    fuse targets first: kr, vv = k_raw[s], v[s] fused with the leaving frame (old k_raw[e], v[e], or a new frame
                        that leaves at once); written back; k_rot[s] = rope(kr)
    then the others:    a new frame f written into its slot (k_raw, v), or the slot's k_raw read as it is;
                        k_rot[s] = rope(kr)

so the leaving frames are read before their ring slots take the new ones (the same program, in order), and every
byte is read or written once. Which slot does what is one small int32 table a stage (`CommitTable`), built on the host
from the same `Write` plan write_chunk follows, by replaying it symbolically: plans it cannot express as "each slot
keeps, takes a new frame, or fuses one old or new frame once" (a chunk longer than the window, say) are refused
(`table_for` returns None) and the cache falls back to write_chunk.

The function is compiled write_chunk's: the fuse in float32 from the stored values, rounded once to the cache's
dtype (eager PyTorch rounds alpha * S, (1 - alpha) * E and their sum separately: bf16 units apart), the rotation in
float32 from the rounded raw keys, rounded once (rf.models.attention.apply_rope; the rotation is fast.norm_rope's,
rf.fast.norm_rope._rotated).

    buffers k_raw [B, S + Wc, T, H, D], k_rot and v [B, S + Wc (+ room), T, H, D], channels contiguous;
    k_new, v_new [B, f, T, H, D] (the chunk's keys before RoPE, and values); cos, sin [1, n*T, 1, D] float32

On a CUDA device the kernel runs compiled; on a CPU it runs in Triton's interpreter (TRITON_INTERPRET=1 set before
Triton is imported), which is how the tests check it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU install without Triton: fast.commit_kernel is refused before any work
    triton = None

KEEP = -1  # a table entry: the slot keeps its frame (src), or fuses nothing (fuse)


def commit_kernel_available() -> str | None:
    """None where the kernel can run; otherwise why not, and the fix."""
    if triton is None:
        return "fast.commit_kernel is a Triton kernel and Triton is not installed (it comes with PyTorch's CUDA builds)"
    return None


class CommitTable(NamedTuple):
    """One stage's commit as the kernel reads it: rows (slot, src, fuse) over the n context slots, fuse targets
    first. src: the new frame the slot takes, or KEEP; fuse: the slot whose old frame is fused in (>= 0), a new
    frame fused in at once (-2 - frame), or KEEP."""

    rows: torch.Tensor  # int32 [n, 3], on the buffers' device
    fused: int  # how many leading rows are fuse targets


def table_for(plan, n: int, device) -> CommitTable | None:
    """The kernel's table for a write_chunk plan (rf.fast.static_cache.Write rows) over n context slots, or None
    where the plan does more than the kernel expresses (write_chunk then runs it)."""
    state = {}  # slot -> ("new", frame) | ("fuse", leaving); slots absent keep their frame
    for frame, slot, evict_from, fuse_into in plan:
        if evict_from is not None:
            if evict_from in state:  # a frame written or fused earlier in this plan leaves again
                return None
            leaving = ("old", evict_from)
        else:
            leaving = ("new", frame)
        if fuse_into is not None:
            if fuse_into in state:  # a slot fused twice, or fused after a write
                return None
            state[fuse_into] = ("fuse", leaving)
        if slot >= 0:
            if slot in state and state[slot][0] == "fuse":
                return None
            state[slot] = ("new", frame)
    targets = {s for s, (kind, _) in state.items() if kind == "fuse"}
    sources = {leaving[1] for kind, leaving in state.values() if kind == "fuse" and leaving[0] == "old"}
    if any(s >= n for s in state) or targets & sources:
        return None
    rows = []
    for slot in sorted(range(n), key=lambda s: s not in targets):  # fuse targets first, then by slot
        kind, what = state.get(slot, (None, None))
        src = what if kind == "new" else KEEP
        fuse = KEEP if kind != "fuse" else what[1] if what[0] == "old" else -2 - what[1]
        rows.append((slot, src, fuse))
    return CommitTable(torch.tensor(rows, dtype=torch.int32, device=device), len(targets))


if triton is not None:
    from rf.fast.norm_rope import _rotated  # the rotation, in float32 (apply_rope), as fast.norm_rope's kernel does it

    @triton.jit
    def _commit_kernel(
        k_raw_ptr, k_rot_ptr, v_ptr, k_new_ptr, v_new_ptr, rows_ptr, cos_ptr, sin_ptr,
        raw_b, buf_b, slot_stride, new_b, new_f, new_t, tokens, n, fused, alpha,
        D: tl.constexpr, HALF_HEAD: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        """One program: batch b's token t of the frame grid, through every context slot (the module doc)."""
        pid = tl.program_id(0).to(tl.int64)
        b, t = pid // tokens, pid % tokens
        c = tl.arange(0, BLOCK)
        mask = c < D
        raw = k_raw_ptr + b * raw_b + t * D + c  # slot 0 of this token; slot s at + s * slot_stride
        rot = k_rot_ptr + b * buf_b + t * D + c
        val = v_ptr + b * buf_b + t * D + c
        new_k = k_new_ptr + b * new_b + t * new_t + c  # frame 0 of this token; frame f at + f * new_f
        new_v = v_new_ptr + b * new_b + t * new_t + c
        dtype = k_rot_ptr.dtype.element_ty
        pairs = tl.arange(0, BLOCK // 2)  # channel pairs (2p, 2p + 1): the rotation's planes
        pair_mask = pairs < D // 2
        within = pairs % HALF_HEAD  # the pair's place inside its head: the tables' column 2 * within
        for i in range(n):
            slot = tl.load(rows_ptr + 3 * i).to(tl.int64)
            src = tl.load(rows_ptr + 3 * i + 1).to(tl.int64)
            fuse = tl.load(rows_ptr + 3 * i + 2).to(tl.int64)
            if i < fused:  # EMA-Sink: the slot's frame and the leaving one, in float32, rounded once
                if fuse >= 0:
                    ek = tl.load(raw + fuse * slot_stride, mask, other=0.0).to(tl.float32)
                    ev = tl.load(val + fuse * slot_stride, mask, other=0.0).to(tl.float32)
                else:
                    ek = tl.load(new_k + (-2 - fuse) * new_f, mask, other=0.0).to(tl.float32)
                    ev = tl.load(new_v + (-2 - fuse) * new_f, mask, other=0.0).to(tl.float32)
                sk = tl.load(raw + slot * slot_stride, mask, other=0.0).to(tl.float32)
                sv = tl.load(val + slot * slot_stride, mask, other=0.0).to(tl.float32)
                kr = (alpha * sk + (1 - alpha) * ek).to(dtype)
                tl.store(raw + slot * slot_stride, kr, mask)
                tl.store(val + slot * slot_stride, (alpha * sv + (1 - alpha) * ev).to(dtype), mask)
            elif src >= 0:  # a new frame takes the slot
                kr = tl.load(new_k + src * new_f, mask, other=0.0).to(dtype)
                tl.store(raw + slot * slot_stride, kr, mask)
                tl.store(val + slot * slot_stride, tl.load(new_v + src * new_f, mask, other=0.0).to(dtype), mask)
            else:
                kr = tl.load(raw + slot * slot_stride, mask, other=0.0)
            row = slot * tokens + t  # the slot's token in the context's RoPE tables (rows of D = 2 * HALF_HEAD)
            cos = tl.load(cos_ptr + row * HALF_HEAD * 2 + 2 * within, pair_mask, other=0.0)
            sin = tl.load(sin_ptr + row * HALF_HEAD * 2 + 2 * within + 1, pair_mask, other=0.0)
            tl.store(rot + slot * slot_stride, _rotated(kr, cos, sin, BLOCK).to(dtype), mask)


def _token_rows(x: torch.Tensor) -> bool:
    """x [B, F, T, H, D] with H*D contiguous channels per token and tokens evenly strided within a frame."""
    return x.stride(4) == 1 and x.stride(3) == x.shape[4] and x.stride(1) == x.shape[2] * x.stride(2)


def commit(k_raw, k_rot, v, k_new, v_new, table: CommitTable, n: int, alpha: float, cos, sin) -> None:
    """write_chunk's work for a plan whose table is `table` (table_for), in one kernel launch: see the module doc."""
    why = commit_kernel_available()
    if why is not None:
        raise RuntimeError(why)
    b, _, tokens, heads, head_dim = k_raw.shape
    k_new, v_new = k_new.to(v.dtype), v_new.to(v.dtype)
    if not _token_rows(k_new) or k_new.stride() != v_new.stride():
        k_new, v_new = k_new.contiguous(), v_new.contiguous()
    for buf in (k_raw, k_rot, v):
        if not buf.is_contiguous():
            raise ValueError(f"fast.commit_kernel: the static cache's buffers must be contiguous, not {buf.stride()}")
    if k_rot.stride() != v.stride() or cos.shape != (1, n * tokens, 1, head_dim) or not cos.is_contiguous():
        raise ValueError(f"fast.commit_kernel: k_rot {tuple(k_rot.shape)} and v {tuple(v.shape)} alike, and RoPE "
                         f"tables [1, {n * tokens}, 1, {head_dim}] contiguous, not {tuple(cos.shape)}")  # fmt: skip
    d = heads * head_dim
    _commit_kernel[(b * tokens,)](
        k_raw, k_rot, v, k_new, v_new, table.rows, cos, sin,
        k_raw.stride(0), k_rot.stride(0), k_raw.stride(1), k_new.stride(0), k_new.stride(1), k_new.stride(2),
        tokens, n, table.fused, alpha, D=d, HALF_HEAD=head_dim // 2, BLOCK=triton.next_power_of_2(d),
        num_warps=4,
    )  # fmt: skip
