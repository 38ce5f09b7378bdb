"""fast.block_norms: the DiT block's layer norms with their residual sums and modulation in one Triton kernel each
(rf.fast.block_norms), run on a CPU in Triton's interpreter. TRITON_INTERPRET is read when a kernel is defined, so
each check runs in a fresh Python with it set (tests/unit/test_norm_rope.py's run_interpreted)."""

import pytest

from tests.unit.test_norm_rope import run_interpreted

pytest.importorskip("triton", reason="Triton comes with `make install` on Linux (pyproject's dev extras)")

KERNEL_CHECK = """
import torch
import torch.nn.functional as F
from rf.fast.block_norms import ada_norm, residual_ada_norm

torch.manual_seed(0)
b, frames, per_frame = 2, 3, 5
n = frames * per_frame

def modulation(d):  # [B, F, 6, D] chunked as the block does: strided [B, F, 1, D] float32 rows
    return (torch.randn(1, 1, 6, d) + torch.randn(b, frames, 6, d)).chunk(6, dim=2)

def by_frame(t, d):
    return t.view(b, frames, -1, d)

# 24 channels: a 32-lane block, its last lanes masked; 64: none masked. x offset by 3: a mean to take out
for d, dtype, tol in ((24, torch.float32, 1e-6), (64, torch.float32, 1e-6), (64, torch.bfloat16, 2e-2)):
    x = (torch.randn(b, n, d) + 3).to(dtype)
    update, cross = torch.randn(b, n, d).to(dtype), torch.randn(b, n, d).to(dtype)
    w, bias = (torch.rand(d) + 0.5).to(dtype), torch.randn(d).to(dtype)
    e = modulation(d)

    def err(out, ref):
        assert out.shape == ref.shape and out.dtype == dtype, (out.shape, ref.shape, out.dtype)
        return ((out.float() - ref.float()).norm() / ref.float().norm()).item()

    # norm1: LN(x) * (1 + scale) + shift
    ref1 = (by_frame(F.layer_norm(x.float(), (d,), eps=1e-6), d) * (1 + e[1]) + e[0]).view(b, n, d).to(dtype)
    errs = [err(ada_norm(x, None, None, e[0], e[1], frames, 1e-6), ref1)]
    # norm2: x1 = x + update * gate (rounded), LN(x1) * w + b
    x1 = (by_frame(x.float(), d) + by_frame(update.float(), d) * e[2]).view(b, n, d).to(dtype)
    ref2 = F.layer_norm(x1.float(), (d,), w.float(), bias.float(), eps=1e-6).to(dtype)
    r, y = residual_ada_norm(x, update, e[2], w, bias, None, None, frames, 1e-6)
    errs += [err(r, x1), err(y, ref2)]
    # norm3: x2 = x1 + cross (bf16 sum), LN(x2) * (1 + scale) + shift
    x2 = x1 + cross
    ref3 = (by_frame(F.layer_norm(x2.float(), (d,), eps=1e-6), d) * (1 + e[4]) + e[3]).view(b, n, d).to(dtype)
    r, y = residual_ada_norm(x1, cross, None, None, None, e[3], e[4], frames, 1e-6)
    errs += [err(r, x2), err(y, ref3)]
    assert max(errs) < tol, (d, dtype, errs)
    print(d, dtype, f"{max(errs):.1e}")
for bad, match in (
    (lambda: ada_norm(torch.randn(1, 6, 8), None, None, torch.randn(1, 3, 1, 8).half(), torch.randn(1, 3, 1, 8), 3,
                      1e-6), "shift must be float32 \\\\[1, 3, 1, 8\\\\]"),
    (lambda: ada_norm(torch.randn(1, 7, 8), None, None, None, None, 3, 1e-6), "7 tokens are not 3 frames"),
):
    try:
        bad()
    except ValueError as e:
        import re
        assert re.search(match, str(e)), e
    else:
        raise AssertionError(match)
print("ok")
"""

STREAM_CHECK = """
import torch
import rf.fast.block_norms as bn
from rf.diffusion.sampler import GeneratorNoise, StreamSampler
from rf.fast.compile import compile_blocks
from rf.fast.fast_path import FastPath
from rf.models.cache import CacheConfig
from rf.models.causal_wan import CausalWanTransformer3DModel
from tests.unit.test_fast_path import relative_error, tiny_wan_config

calls = []
launch = bn._launch  # both ops launch through it: count the kernel's runs
bn._launch = lambda *a: calls.append(1) or launch(*a)

torch.manual_seed(0)
model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
text = torch.randn(1, 6, model.config.text_dim)
shape = (1, model.config.in_channels, 15, 4, 4)  # 5 chunks: the window fills, evicts; a second prompt at frame 9
cache = CacheConfig(policy="ema_sink", sink_frames=3, attention_frames=9)
prompts = [(0, text), (9, torch.randn(1, 6, model.config.text_dim))]
with torch.no_grad():
    ref = StreamSampler(model, cache).rollout(prompts, shape, GeneratorNoise(0))
    fused_ref = StreamSampler(model, cache, cache_pass="fused").rollout(prompts, shape, GeneratorNoise(0))
    runner = FastPath(block_norms=True).prepare_model(model)
    assert all(getattr(b, "rf_block_norms", False) for b in model.blocks)
    # eager with the fused cache pass, compiled with the clean one (the test's doc: not both passes both ways)
    fused = StreamSampler(runner, cache, cache_pass="fused").rollout(prompts, shape, GeneratorNoise(0))
    eager_calls = len(calls)
    compile_blocks(model)
    compiled = StreamSampler(runner, cache).rollout(prompts, shape, GeneratorNoise(0))
errs = [relative_error(fused, fused_ref), relative_error(compiled, ref)]
assert max(errs) < 1e-5, errs
assert eager_calls and len(calls) > eager_calls, (eager_calls, len(calls))
print("ok", [f"{e:.1e}" for e in errs], eager_calls)
"""


def test_kernel_is_the_blocks_norms_with_their_residuals_and_modulation():
    """norm1 (modulated), norm2 (the gated residual, affine) and norm3 (the plain residual, modulated) against
    F.layer_norm and the plain path's roundings, rows masked (24 channels in 32 lanes) and not, modulation rows
    strided as the block's chunks. float32: the same roundings but the order of the sums, 1e-6 relative. bfloat16:
    the interpreter truncates where the GPU rounds to nearest, up to a bf16 ulp (2^-8) at each of two roundings
    (the residual's, the output's): 2e-2 bounds that with room, where a wrong frame row, a missing mean or gate is
    off by O(1). A modulation row of the wrong dtype and tokens not divisible into frames are refused by name."""
    out = run_interpreted(KERNEL_CHECK)
    assert out.strip().endswith("ok")


def test_stream_with_the_kernels_is_the_plain_stream():
    """The whole stream (EMA-Sink, the window evicting, a prompt switch; the clean and the fused cache pass; the
    blocks eager and compiled, the ops opaque to Inductor) with every block's norms in the kernels, against the same
    model without them: fp32, 1e-5 as the static cache's own tests; the kernels must have run, compiled too. The
    eager blocks stream with the fused cache pass (each chunk's first pass with the last chunk's frames at their own
    timestep: per-frame modulation rows) and the compiled ones with the clean pass (its last block stopping after
    norm1); both take the same later denoising passes. A third rollout, the clean pass eager, took 8 s of kernels in
    Triton's interpreter and made no call of a kind these two do not."""
    out = run_interpreted(STREAM_CHECK)
    assert out.strip().splitlines()[-1].startswith("ok")


def test_blocks_without_wans_norms_are_refused():
    """A block whose norm2 is no layer norm (diffusers' cross_attn_norm=false) cannot take the kernels."""
    import torch

    from rf.fast.block_norms import use_block_norms
    from rf.models.causal_wan import CausalWanTransformer3DModel
    from tests.unit.test_fast_path import tiny_wan_config

    model = CausalWanTransformer3DModel(**{**tiny_wan_config(), "cross_attn_norm": False})
    with pytest.raises(ValueError, match="cross_attn_norm=false has no norm2: set fast.block_norms=false"):
        use_block_norms(model)
    model = CausalWanTransformer3DModel(**tiny_wan_config())
    model.blocks[0].norm2 = torch.nn.LayerNorm(model.blocks[0].norm2.normalized_shape, elementwise_affine=False)
    with pytest.raises(ValueError, match="norm1 and norm3 without affine parameters and norm2 with them"):
        use_block_norms(model)
