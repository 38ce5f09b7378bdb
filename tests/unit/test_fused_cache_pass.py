"""cache_pass=fused (rf.models.fused): the stream equals the unfused one (fp32, CPU, tiny model), one forward fewer
per chunk, for every cache policy, through window overflows into the sink and prompt switches."""

import pytest
import torch

from rf.diffusion.sampler import GeneratorNoise, SampleNoise, StreamSampler
from rf.fast.compile import compile_blocks
from rf.fast.fast_path import FastPath
from rf.fast.static_cache import write_chunk
from rf.models.cache import CacheConfig
from rf.models.causal_wan import CausalWanTransformer3DModel
from tests.conftest import tiny_wan_config

# The fused pass runs the same operations as the unfused passes; only the shapes of its matrix products differ
# (two chunks' tokens at once), so a BLAS may block and sum them in another order: fp32 rounding, ~1e-7 relative
# per op, through two layers and a stream's recurrence (measured: 1.6e-7 to 2.5e-7 on WIDE, 1 or 2 threads).
# 1e-5 relative to the chunk's largest value covers that with room and still catches a wrong pass: the next
# chunk's queries attending to the cache before the commit move these latents by 1.7e-4 (measured on WIDE).
TOLERANCE = 1e-5
WIDE = tiny_wan_config(num_attention_heads=4, attention_head_dim=32, ffn_dim=128)  # wide enough to block matmuls


def streams(cache: CacheConfig, chunks: int, switch_at=None, recache=False, static=False, batch=1):
    """The same stream, unfused then fused: ([chunk latents], [chunk latents], fused forwards, the two samplers)."""
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**WIDE).eval()
    prompts = [(0, torch.randn(batch, 6, model.config.text_dim))]
    if switch_at is not None:
        prompts.append((switch_at, torch.randn(batch, 6, model.config.text_dim)))
    shape = (batch, model.config.in_channels, chunks * cache.chunk_frames, 4, 4)
    fused_calls = []
    model.register_forward_hook(lambda m, a, kw, out: fused_calls.append(kw.get("fused")), with_kwargs=True)
    samplers = [StreamSampler(model, cache, static_cache=static, cache_pass=p) for p in ("clean", "fused")]
    outs = []
    with torch.no_grad():
        for sampler in samplers:
            fused_calls.clear()
            noise = SampleNoise(list(range(batch))) if batch > 1 else GeneratorNoise(0)
            outs.append([c.latents for c in sampler.stream(prompts, shape, noise, recache_on_switch=recache)])
    return outs[0], outs[1], fused_calls, samplers


def assert_same_chunks(unfused: list, fused: list) -> float:
    """Every chunk within TOLERANCE (relative to its largest value); returns the largest relative deviation."""
    worst = 0.0
    for i, (a, b) in enumerate(zip(unfused, fused, strict=True)):
        dev = ((a - b).abs().max() / a.abs().max()).item()
        assert dev <= TOLERANCE, f"chunk {i}: {dev:.2e}"
        worst = max(worst, dev)
    return worst


# Sink 3, span 9, chunks of 3: a 3-frame window, so from chunk 3 on every commit evicts (into the EMA sink for
# ema_sink); 9 chunks overflow it six times. The others: the EMA slot pointer rolls (chunks not sink-sized), no
# window at all (evicted at once), 2-frame chunks.
CASES = [
    ("full", 3, 9, 3),
    ("window", 3, 9, 3),
    ("sink", 3, 9, 3),
    ("ema_sink", 3, 9, 3),
    ("ema_sink", 2, 9, 3),
    ("ema_sink", 3, 6, 3),
    ("ema_sink", 4, 12, 2),
]


@pytest.mark.parametrize("static", [False, True], ids=["growing", "static"])
@pytest.mark.parametrize("policy, sink_frames, attention_frames, chunk_frames", CASES)
def test_fused_stream_equals_the_unfused_one(policy, sink_frames, attention_frames, chunk_frames, static):
    if static and policy == "full":
        pytest.skip("full has no static cache")
    cache = CacheConfig(policy=policy, sink_frames=sink_frames, attention_frames=attention_frames,
                        chunk_frames=chunk_frames, alpha=0.9)  # fmt: skip
    unfused, fused, fused_calls, samplers = streams(cache, chunks=9, static=static)
    assert_same_chunks(unfused, fused)
    assert fused_calls.count(chunk_frames) == 8  # every chunk but the first has its predecessor's cache pass fused
    assert len(fused_calls) == 1 + 9 * 4  # encode_text, then 4 passes per chunk: no separate cache pass
    a, b = (s.last_cache for s in samplers)
    assert a.evicted_frames == b.evicted_frames and (policy == "full") == (a.evicted_frames == 0)
    assert b.sink_drift() == pytest.approx(a.sink_drift(), rel=1e-5, abs=1e-12)


@pytest.mark.parametrize("recache", [False, True], ids=["keep", "recache"])
@pytest.mark.parametrize("static", [False, True], ids=["growing", "static"])
@pytest.mark.parametrize("policy", ["full", "window", "sink", "ema_sink"])
def test_a_prompt_switch_falls_back_to_the_unfused_pass(policy, static, recache):
    """At the switch chunk the previous chunk's K/V are written under its own prompt, as the unfused stream
    writes them, then (recache) the window is re-encoded under the new one; the other chunks are fused."""
    if static and policy == "full":
        pytest.skip("full has no static cache")
    cache = CacheConfig(policy=policy, sink_frames=3, attention_frames=9, chunk_frames=3, alpha=0.9)
    unfused, fused, fused_calls, _ = streams(cache, chunks=8, switch_at=5, recache=recache, static=static)
    assert_same_chunks(unfused, fused)
    assert fused_calls.count(3) == 6  # 7 chunk boundaries, one of them the switch (unfused)
    rewritten = min(5, (cache.window_capacity or 15) // 3) if recache else 0  # the window's chunks, re-encoded
    assert len(fused_calls) == 2 + 8 * 4 + 1 + rewritten  # 2 prompts, 4 passes per chunk, the switch's cache pass


def test_a_batch_streams_as_its_samples_do():
    """Batch 2: the fused pass's slices of q, k, v are strided views; the samples' seeds are their own."""
    cache = CacheConfig(policy="ema_sink", sink_frames=3, attention_frames=9, chunk_frames=3, alpha=0.9)
    unfused, fused, _, _ = streams(cache, chunks=5, batch=2)
    assert_same_chunks(unfused, fused)


def test_the_model_returns_the_next_chunks_flow_only(tiny_wan):
    cache = tiny_wan.new_cache(CacheConfig(policy="ema_sink"))
    text = tiny_wan.encode_text(torch.randn(1, 6, tiny_wan.config.text_dim))
    x, t = torch.randn(1, 4, 6, 4, 4), torch.tensor([[0.0] * 3 + [900.0] * 3])
    with torch.no_grad():
        out = tiny_wan(x, t, text=text, cache=cache, fused=3).sample
    assert out.shape == (1, 4, 3, 4, 4) and cache.context_frames == 3  # the clean chunk filled the sink
    with pytest.raises(ValueError, match="fused=3 with write_cache=True and 6 frames: the fused cache pass needs"):
        tiny_wan(x, t, text=text, cache=cache, fused=3, write_cache=True)
    with pytest.raises(ValueError, match="fused=6 .* needs a cache"):
        tiny_wan(x, t, text=text, cache=cache, fused=6)


def test_unsupported_combinations_are_refused(tiny_wan):
    with pytest.raises(ValueError, match="cache_pass=fused is an inference pass: training .* use cache_pass=clean"):
        sampler = StreamSampler(tiny_wan, CacheConfig(), cache_pass="fused")
        next(iter(sampler.stream([(0, torch.randn(1, 6, 8))], (1, 4, 6, 4, 4), GeneratorNoise(0), exit_step=1)))
    with pytest.raises(ValueError, match="fast.cache_pass=fused with fast.graphs=true: .* set fast.graphs=false"):
        FastPath(graphs=True, cache_pass="fused")
    with pytest.raises(ValueError, match="choose clean \\(exact\\), whole \\(exact, .*\\), fused .* or reuse"):
        StreamSampler(tiny_wan, CacheConfig(), cache_pass="fuse")
    assert not FastPath(cache_pass="fused").approximate and FastPath(cache_pass="reuse").approximate


@pytest.mark.parametrize("compile_commit", [False, True], ids=["growing cache", "static cache, compiled commit"])
def test_compiled_blocks_run_the_fused_pass(compile_commit):
    """Under torch.compile (rf.fast.compile) a block's graph breaks at the commit (torch.compiler.disable): the
    same stream. With fast.compile_commit the static cache's compiled commit is what runs there (fp32)."""
    cache = CacheConfig(policy="ema_sink", sink_frames=3, attention_frames=9, chunk_frames=3, alpha=0.9)
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    prompts, shape = [(0, torch.randn(1, 6, model.config.text_dim))], (1, model.config.in_channels, 15, 4, 4)
    with torch.no_grad():
        ref = StreamSampler(model, cache).rollout(prompts, shape, GeneratorNoise(0))
        compile_blocks(model)
        model.static_cache_options = {"compiled": compile_commit}
        sampler = StreamSampler(model, cache, static_cache=compile_commit, cache_pass="fused")
        out = sampler.rollout(prompts, shape, GeneratorNoise(0))
    if compile_commit:
        assert sampler.last_cache._write is not write_chunk
    assert_same_chunks(ref.split(3, dim=2), out.split(3, dim=2))
