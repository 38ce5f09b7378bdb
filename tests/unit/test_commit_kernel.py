"""fast.commit_kernel: the static cache's commit (EMA-Sink fuse, slot writes, the context's re-rotation) as one
Triton kernel a block (rf.fast.commit_kernel), run on a CPU in Triton's interpreter. TRITON_INTERPRET is read when a
kernel is defined, so each check runs in a fresh Python with it set (tests/unit/test_norm_rope.py's
run_interpreted)."""

import pytest

from rf.fast.commit_kernel import table_for
from rf.fast.static_cache import StaticKVCache, Write
from rf.models.cache import CacheConfig
from tests.unit.test_fast_path import STATIC_CASES
from tests.unit.test_norm_rope import run_interpreted

pytest.importorskip("triton", reason="Triton comes with `make install` on Linux (pyproject's dev extras)")

BUFFER_CHECK = """
import torch
import rf.fast.commit_kernel as ck
from rf.fast.static_cache import StaticKVCache, write_chunk
from rf.models.attention import rope_tables
from rf.models.cache import CacheConfig
from tests.unit.test_fast_path import STATIC_CASES

launches = []
kernel = ck.commit
ck.commit = lambda *a: launches.append(1) or kernel(*a)
b, tokens, heads, head_dim = 2, 5, 3, 8  # 24 channels: a 32-lane block, its last lanes masked
freqs = torch.randn(64, head_dim // 2, dtype=torch.float64)

def rope(positions):  # [n] frame positions -> cos, sin [1, n * tokens, 1, head_dim] float32, as the model's tables
    angle = positions.double()[:, None, None] * freqs[None, :1] + torch.arange(tokens)[None, :, None] * freqs[:1]
    angle = angle.repeat_interleave(2, -1).reshape(1, -1, 1, head_dim)
    return angle.cos().float(), angle.sin().float()

torch.manual_seed(0)
worst = {}
for dtype in (torch.float32, torch.bfloat16):
    for policy, sink, attention, chunk in STATIC_CASES:
        cfg = CacheConfig(policy=policy, sink_frames=sink, attention_frames=attention, chunk_frames=chunk, alpha=0.9)
        caches = [StaticKVCache(cfg, 1, in_place=True, kernel=k) for k in (False, True)]
        for c in caches:
            c.prepare(b, tokens, heads, head_dim, dtype, "cpu", rope, frames=chunk)
        for step in range(7):  # the fill stages, the window full, a few turns of the ring
            new = torch.randn(b, chunk, tokens, heads, 2 * head_dim).to(dtype)
            for c in caches:  # k and v strided as the model's: views of a wider projection output
                c.commit(0, new[..., :head_dim], new[..., head_dim:])
                c.end_write(chunk)
            ref = {name: t.float() for name, t in caches[0].buffers[0].items()}  # eager write_chunk's
            for name, t in caches[1].buffers[0].items():
                err = ((t.float() - ref[name]).norm() / ref[name].norm().clamp_min(1e-12)).item()
                key = (str(dtype), name)
                worst[key] = max(worst.get(key, 0.0), err)
                t.copy_(caches[0].buffers[0][name])  # the next commit from the same buffers (the test's doc)
tol = {"torch.float32": 1e-6, "torch.bfloat16": 1.6e-2}
for (dtype, name), err in sorted(worst.items()):
    print(dtype, name, f"{err:.1e}")
    assert err < tol[dtype], (dtype, name, err)
assert launches, "the kernel never ran"
print("ok", len(launches))
"""

STREAM_CHECK = """
import rf.fast.commit_kernel as ck
from tests.unit.test_commit_kernel import STREAM_CASES
from tests.unit.test_fast_path import relative_error, stream_pair

launches = []
kernel = ck.commit
ck.commit = lambda *a: launches.append(1) or kernel(*a)
errs = {}
for case, kw in STREAM_CASES:
    before = len(launches)
    plain, static, samplers = stream_pair(*case, commit_kernel=True, **kw)
    assert samplers[1].last_cache.kernel and len(launches) > before, (case, kw, "the kernel never ran")
    errs[case, tuple(kw)] = relative_error(static, plain)
before = len(launches)
plain, static, _ = stream_pair("ema_sink", 3, 9, 3, frames=15, switch_at=9, commit_kernel=True)  # a prompt switch
assert len(launches) > before, "the kernel never ran on the switch's stream"
errs["switch"] = relative_error(static, plain)
print(max(errs.values()), len(launches))
assert max(errs.values()) < 1e-5, errs
print("ok")
"""

# The stream check's cases: one of each kind, not every STATIC_CASES case in every form (each one a stream through
# Triton's interpreter, about 2 s; 24 of them took about a minute). What the kernel writes is checked for every case
# commit by commit (test_kernel_writes_the_buffers_the_commit_writes: each fill stage, the steady stage, turns of the
# ring, strided K/V, the room after the context, both dtypes), each case's table by test_tables_follow_the_plans_or_
# refuse_them, and each case's static stream without the kernel (in place, compiled commit) by test_fast_path. What a
# stream adds is the cache handing the kernel the model's chunk K/V, RoPE tables and buffers pass after pass, for:
IN_PLACE = {"kv_in_place": True, "compile_commit": True}  # as the presets (fast=exact) run it
STREAM_CASES = [
    (("ema_sink", 3, 9, 3), {}),  # the paper's: the sink, the window fill, then each chunk fuses the last into the sink
    (("ema_sink", 3, 9, 3), {"cache_pass": "fused"}),  # the same, committed by the fused pass
    (("sink", 1, 12, 4), {}),  # sink: a 1-frame sink, a 7-slot ring that 4-frame chunks wrap around mid-chunk
    (("window", 3, 9, 3), {}),  # window: no sink, turns of a 2-chunk ring
    (("ema_sink", 3, 6, 3), {}),  # no window: each new frame fused into the sink as it arrives
    (("ema_sink", 3, 15, 3), IN_PLACE),  # in place (k_rot and v with room after the context); a 3-chunk ring
    (("ema_sink", 2, 9, 3), IN_PLACE),  # the plans the kernel refuses take the compiled commit, its others the kernel
]


def test_kernel_writes_the_buffers_the_commit_writes():
    """Every static-cache case (EMA-Sink, sink, window; sinks of 1-4 frames, windows of none to 9 ring slots; the
    fill stages, then turns of the ring) through seven commits, with the kernel and with write_chunk, on strided
    chunk K/V like the model's: k_raw, k_rot and v after each commit, each commit from the same buffers.
    float32 1e-6 relative (the same sums in another order, a fused multiply-add). bfloat16: the EMA rounded once
    here and three times in eager write_chunk, the interpreter truncating where the GPU rounds to nearest: up to a
    bf16 ulp (2^-8) at each rounding, 3 on a fused slot, 1.2e-2 relative at most (4-7e-3 measured), bound at 1.6e-2,
    where a wrong slot, frame or RoPE row is off by O(1). (Not carried from commit to commit: the interpreter's
    truncation is biased, and the EMA adds a bias up, to 1.8e-2 after 7 commits at alpha 0.9.) The plans the kernel
    cannot express (a sink slot fused twice in one commit) run write_chunk: the kernel must still run."""
    out = run_interpreted(BUFFER_CHECK)
    assert out.strip().splitlines()[-1].startswith("ok"), out


def test_stream_with_the_kernel_is_the_plain_stream():
    """Streams with the commit kernel against the growing cache (STREAM_CASES: each policy, the fill stages and turns
    of the ring, a new frame fused at once, the clean and the fused cache pass, in place with the compiled commit
    beside it, where plans the kernel refuses take that) and a prompt switch (the window re-cached): fp32, 1e-5 as
    the static cache's own tests; the kernel must have run in each. Every case's commits are checked one by one in
    test_kernel_writes_the_buffers_the_commit_writes (STREAM_CASES says why the streams are a subset)."""
    out = run_interpreted(STREAM_CHECK)
    assert out.strip().endswith("ok"), out


def _cache(policy, sink, attention, chunk):
    cfg = CacheConfig(policy=policy, sink_frames=sink, attention_frames=attention, chunk_frames=chunk, alpha=0.9)
    return StaticKVCache(cfg, 1)


@pytest.mark.parametrize("case", STATIC_CASES, ids=lambda c: "-".join(map(str, c)))
def test_tables_follow_the_plans_or_refuse_them(case):
    """A table names each context slot once, fuse targets first; each fuse reads a slot no fuse writes; a slot
    taking a new frame names it. A plan that fuses one sink slot twice (2 sink frames, 3-frame chunks) is refused."""
    cache, chunk = _cache(*case), case[3]
    refused = 0
    for _ in range(6):
        writes, after, _ = cache.plan(chunk)
        n = after.sink_len + after.window_len
        table = table_for(writes, n, "cpu")
        cache.stage = after
        if table is None:
            refused += 1
            targets = [w.fuse_into for w in writes if w.fuse_into is not None]
            assert len(targets) != len(set(targets))
            continue
        rows = table.rows.tolist()
        assert sorted(r[0] for r in rows) == list(range(n))
        fused = rows[: table.fused]
        assert all(r[2] != -1 for r in fused) and all(r[2] == -1 for r in rows[table.fused :])
        assert not {r[2] for r in fused} & {r[0] for r in fused}
        for w in writes:
            if w.slot >= 0:
                assert [r[1] for r in rows if r[0] == w.slot] == [w.frame]
    assert refused == (6 - 2 if case == ("ema_sink", 2, 9, 3) else 0)


def test_plans_beyond_the_kernel_are_refused():
    """A frame leaving from a slot written earlier in the same commit, a slot written after it was fused into,
    and a target past the context: None (the cache then runs write_chunk)."""
    assert table_for((Write(0, 3), Write(1, 4, evict_from=3)), 5, "cpu") is None
    assert table_for((Write(0, 3, evict_from=3, fuse_into=0), Write(1, 0)), 4, "cpu") is None
    assert table_for((Write(0, 5),), 4, "cpu") is None
    keep = table_for((), 3, "cpu")
    assert keep.fused == 0 and keep.rows.tolist() == [[0, -1, -1], [1, -1, -1], [2, -1, -1]]


def test_kernel_switch_needs_the_static_cache():
    from rf.fast.fast_path import FastPath

    with pytest.raises(ValueError, match="fast.commit_kernel=true runs the static cache's commit as one Triton"):
        FastPath(commit_kernel=True)
    assert "commit_kernel" in FastPath(graphs=True, commit_kernel=True).gpu_only()
