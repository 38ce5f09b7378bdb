"""fast.norm_rope: the q/k RMS norms and RoPE in one Triton kernel (rf.fast.norm_rope), run on a CPU in Triton's
interpreter. TRITON_INTERPRET is read when a kernel is defined, so each check runs in a fresh Python with it set
(another test may have imported the module without it)."""

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import THREADS

pytest.importorskip("triton", reason="Triton comes with `make install` on Linux (pyproject's dev extras)")

KERNEL_CHECK = """
import torch
from diffusers.models.transformers.transformer_wan import WanAttention, WanRotaryPosEmbed
from rf.fast.norm_rope import norm_rope_qkv, use_norm_rope
from rf.fast.static_cache import RotatedContext
from rf.models.attention import apply_rope, project_qkv, rope_tables

torch.manual_seed(0)
for dtype, fused, tol in ((torch.float32, False, 1e-6), (torch.float32, True, 1e-6), (torch.bfloat16, False, 2e-2)):
    attn = WanAttention(dim=96, heads=3, dim_head=32).eval().to(dtype)  # 96 channels: the kernel's block is 128
    with torch.no_grad():
        attn.norm_q.weight.uniform_(0.5, 1.5), attn.norm_k.weight.uniform_(0.5, 1.5)
        if fused:
            attn.fuse_projections()  # q, k, v as views of one matmul: strided rows
        rope = WanRotaryPosEmbed(32, (1, 2, 2), 64)
        x = 3 * torch.randn(2, 2 * 3 * 4, 96, dtype=dtype)  # 2 frames of 3 x 4 tokens
        cos, sin = rope_tables(rope, torch.tensor([5, 6]), 3, 4, torch.float32)
        ctx_k, ctx_v = torch.randn(2, 2, 10, 3, 32, dtype=dtype)  # a context of 10 tokens
        q, k, v = project_qkv(attn, x)
        k_rot = apply_rope(k, cos, sin)
        ref = (apply_rope(q, cos, sin), k, v, torch.cat([ctx_k, k_rot], 1), torch.cat([ctx_v, v], 1))
        k_buf, v_buf = torch.zeros(2, 2, 34, 3, 32, dtype=dtype)  # the cache's buffers, room after the context
        k_buf[:, :10], v_buf[:, :10] = ctx_k, ctx_v
        contexts = {"concatenated": RotatedContext(ctx_k, ctx_v),
                    "in place": RotatedContext(k_buf[:, :10], v_buf[:, :10], k_buf, v_buf)}
        for how, context in contexts.items():
            out = norm_rope_qkv(attn, x, (cos, sin), context)
            for name, o, r in zip(("q_rot", "k_raw", "v", "k_all", "v_all"), out, ref):
                assert o.shape == r.shape and o.dtype == dtype, (name, o.shape, o.dtype)
                err = ((o.float() - r.float()).norm() / r.float().norm()).item()
                assert err < tol, (name, how, dtype, fused, err)
                print(name, how, dtype, fused, f"{err:.1e}")
        assert out[3].data_ptr() == k_buf.data_ptr() and out[4].data_ptr() == v_buf.data_ptr()  # written in place
        assert torch.equal(k_buf[:, :10], ctx_k) and torch.equal(v_buf[:, :10], ctx_v)  # the context untouched

class Stack(torch.nn.Module):  # what use_norm_rope walks: blocks with an attn1, here without an RMSNorm epsilon
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Module()])
        self.blocks[0].attn1 = WanAttention(dim=32, heads=2, dim_head=16, eps=None)
assert use_norm_rope(Stack()) == 1
print("ok")
"""

STREAM_CHECK = """
import rf.fast.norm_rope as nr
from tests.unit.test_fast_path import relative_error, stream_pair

calls = []
kernel = nr.norm_rope_qkv
nr.norm_rope_qkv = lambda *args: calls.append(1) or kernel(*args)  # use_norm_rope marks the blocks with this
for policy, sink, attention, chunk, in_place, compile in (
    ("ema_sink", 3, 9, 3, True, False), ("ema_sink", 2, 9, 3, False, False), ("window", 3, 9, 3, True, False),
    ("ema_sink", 3, 9, 3, True, True),  # compiled: the op that writes the cache's buffers, functionalised
):
    plain, static, _ = stream_pair(policy, sink, attention, chunk, frames=15, kv_in_place=in_place, compile=compile,
                                   prepare=nr.use_norm_rope)  # fmt: skip
    err = relative_error(static, plain)
    assert err < 1e-5, (policy, sink, attention, chunk, in_place, compile, err)
    print(policy, in_place, compile, f"{err:.1e}")
assert calls, "the kernel never ran: the static cache's passes did not take it"
print("ok", len(calls))
"""


def run_interpreted(code: str) -> str:
    # the suite's thread count (tests/conftest.py), as tests/cli.py's subprocesses: a check that imports no
    # tests.conftest (the kernel checks) ran at the 2 threads of CI's 2 cores under RF_TEST_THREADS=1 as well
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": str(THREADS)}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=root, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_kernel_computes_the_norms_and_rope_of_the_plain_path():
    """q rotated, k normalised and [context ; k rotated], [context ; v] against project_qkv + apply_rope, for
    contiguous and fused-projection (strided) rows, concatenated and written into the cache's buffers in place.
    float32: the same roundings but the sum of squares' order and a fused multiply-add, 1e-6 relative. bfloat16:
    Triton's interpreter truncates where the GPU rounds to nearest, up to a bf16 ulp (2^-8 relative) at each of two
    roundings (the norm's, the rotation's): at most 8e-3, 6.8e-3 measured; 2e-2 bounds that with room, where a wrong
    pair, table column or weight is off by O(1). A model whose RMSNorm has no epsilon (torch's default: the dtype's)
    is accepted."""
    out = run_interpreted(KERNEL_CHECK)
    assert out.strip().endswith("ok")


def test_static_cache_stream_with_the_kernel_is_the_plain_stream():
    """The whole stream (EMA-Sink and window, the chunk's K/V in place after the context or concatenated, the blocks
    eager and compiled) with every block's norms and RoPE in the kernel, against the plain growing cache: fp32,
    1e-5 as the static cache's own tests; the kernel must have run. 15 frames, 5 chunks: the sink and the window
    fill, then the window's frames leave (fused into the sink, or out of the ring) twice, so the context the kernel
    writes after has reached its full length (each further chunk, a second in Triton's interpreter, passes the same
    shapes again)."""
    out = run_interpreted(STREAM_CHECK)
    assert out.strip().splitlines()[-1].startswith("ok")
