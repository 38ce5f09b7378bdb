"""The cache policies: agreement within the window, constant memory past it, the EMA-Sink rule."""

import pytest
import torch

from rf.diffusion.sampler import GeneratorNoise, StreamSampler
from rf.models.cache import BlockCache, CacheConfig, KVCache

B, T, H, D = 1, 4, 2, 8  # batch, tokens per frame, heads, head dim


def chunk(seed: int, frames: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, frames, T, H, D, generator=g), torch.randn(B, frames, T, H, D, generator=g)


@pytest.mark.parametrize("policy", ["window", "sink", "ema_sink"])
def test_bounded_policies_keep_constant_size(policy):
    cache = BlockCache(CacheConfig(policy=policy))
    sizes = []
    for i in range(12):
        cache.commit(*chunk(i))
        sizes.append(cache.nbytes())
    # full after the window fills (sink 3 + window 3, or window 6), then flat
    assert len(set(sizes[2:])) == 1
    assert cache.sink_len + cache.window_len == 6


def test_full_policy_grows():
    cache = BlockCache(CacheConfig(policy="full"))
    for i in range(5):
        cache.commit(*chunk(i))
    assert cache.window_len == 15 and cache.evicted_frames == 0


def test_ema_sink_closed_form():
    alpha = 0.9
    cache = BlockCache(CacheConfig(policy="ema_sink", alpha=alpha))
    chunks = [chunk(i) for i in range(8)]
    for k, v in chunks:
        cache.commit(k, v)
    # chunk 0 is the sink S0; chunks 1..7 pass through a 3-frame window, so E_1..E_6 were evicted
    evicted = [c[0] for c in chunks[1:7]]
    n = len(evicted)
    expected = alpha**n * chunks[0][0] + (1 - alpha) * sum(alpha ** (n - j) * e for j, e in enumerate(evicted, 1))
    torch.testing.assert_close(cache.sink_k, expected)
    assert cache.evicted_frames == 3 * n
    torch.testing.assert_close(cache.win_k, chunks[7][0])


def test_ema_sink_alpha_one_equals_static_sink():
    ema, static = (
        BlockCache(CacheConfig(policy="ema_sink", alpha=1.0)),
        BlockCache(CacheConfig(policy="sink")),
    )
    for i in range(7):
        ema.commit(*chunk(i))
        static.commit(*chunk(i))
    torch.testing.assert_close(ema.context(), static.context())


def test_window_drops_oldest():
    cache = BlockCache(CacheConfig(policy="window"))
    chunks = [chunk(i) for i in range(4)]
    for c in chunks:
        cache.commit(*c)
    k, _ = cache.context()
    torch.testing.assert_close(k, torch.cat([chunks[2][0], chunks[3][0]], dim=1).flatten(1, 2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(policy="rolling"), "rolling"),
        (dict(alpha=1.5), "1.5"),
        (dict(alpha=-0.1), "-0.1"),
        (dict(attention_frames=5), "attention_frames=5"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CacheConfig(**kwargs)


def stream(model, policy, frames, **cfg):
    sampler = StreamSampler(model, CacheConfig(policy=policy, **cfg))
    text = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return sampler.rollout([(0, text)], (1, 4, frames, 4, 4), GeneratorNoise(7))


def test_policies_agree_inside_the_window(tiny_wan):
    # 9 frames = 3 chunks fit in a 9-frame span: nothing is evicted, so every policy sees the same keys
    out = {p: stream(tiny_wan, p, 9) for p in ["full", "window", "sink", "ema_sink"]}
    for p in ["window", "sink", "ema_sink"]:
        torch.testing.assert_close(out[p], out["full"], atol=1e-5, rtol=1e-5)


def test_policies_differ_past_the_window(tiny_wan):
    out = {p: stream(tiny_wan, p, 15) for p in ["full", "window", "sink", "ema_sink"]}
    for a, b in [("full", "window"), ("window", "sink"), ("sink", "ema_sink")]:
        assert (out[a][:, :, 9:] - out[b][:, :, 9:]).abs().max() > 1e-4, (a, b)
        torch.testing.assert_close(out[a][:, :, :9], out[b][:, :, :9], atol=1e-5, rtol=1e-5)


def test_stream_cache_stays_constant(tiny_wan):
    sampler = StreamSampler(tiny_wan, CacheConfig(policy="ema_sink"))
    text = torch.randn(1, 6, 8)
    sizes = []
    orig = tiny_wan.new_cache

    def spy(config):
        cache = orig(config)
        sizes.append(cache)
        return cache

    tiny_wan.new_cache = spy
    with torch.no_grad():
        nbytes = [sizes[0].nbytes() for _ in sampler.stream([(0, text)], (1, 4, 30, 4, 4), GeneratorNoise(0))]
    assert len(set(nbytes[3:])) == 1 and nbytes[-1] > 0
    assert sizes[0].evicted_frames == 3 * 7  # chunks 1..7 left the window (chunk 9 never enters the cache)


def test_kvcache_counts_context_frames():
    cache = KVCache(CacheConfig(policy="sink"), num_blocks=2)
    for blk in cache.blocks:
        blk.commit(*chunk(0))
    assert cache.context_frames == 3 and cache.window_frames == 0
