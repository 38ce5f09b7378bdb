"""StreamSampler: the gradient-truncation hook, prompt switches, bad input."""

import pytest
import torch

from rf.diffusion.sampler import GeneratorNoise, StreamSampler
from rf.models.cache import CacheConfig

SHAPE = (1, 4, 9, 4, 4)  # 3 chunks


def text(seed):
    return torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(seed))


class Probe(torch.nn.Module):
    """Wraps the model and records, per call, whether it ran with gradient and whether it wrote the cache."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x, t, **kw):
        self.calls.append((torch.is_grad_enabled(), kw.get("write_cache", False), float(t[0])))
        return self.model(x, t, **kw)

    def encode_text(self, *a):
        return self.model.encode_text(*a)

    def new_cache(self, cfg):
        return self.model.new_cache(cfg)


@pytest.mark.parametrize("exit_step", [0, 2, 3])
def test_only_the_exit_step_carries_gradient(tiny_wan, exit_step):
    probe = Probe(tiny_wan.train())
    sampler = StreamSampler(probe, CacheConfig(policy="ema_sink"))
    out = sampler.rollout([(0, text(0))], SHAPE, GeneratorNoise(0), exit_step=exit_step)
    assert out.requires_grad
    per_chunk = exit_step + 2  # denoising passes up to the exit step, then the cache pass
    calls = probe.calls
    assert len(calls) == 3 * per_chunk - 1  # no cache pass after the last chunk
    for grad, write, t in calls:
        if write:
            assert not grad and t == 0.0
        else:
            assert grad == (t == pytest.approx(sampler.timesteps[exit_step]))
    # and the gradient reaches the weights
    out.square().mean().backward()
    assert tiny_wan.proj_out.weight.grad.abs().sum() > 0


def test_no_gradient_crosses_chunks(tiny_wan):
    # the first chunk's output must not depend (through autograd) on anything the later chunks did, and
    # the later chunks' gradient must not reach the first chunk's noise through the cache
    noise = GeneratorNoise(0)
    sampler = StreamSampler(tiny_wan.train(), CacheConfig(policy="full"))
    chunks = list(sampler.stream([(0, text(0))], SHAPE, noise, exit_step=1))
    loss = chunks[2].latents.square().mean()
    grads = torch.autograd.grad(loss, chunks[0].latents, allow_unused=True)
    assert grads[0] is None


def test_prompt_switch_keeps_the_cache(tiny_wan):
    sampler = StreamSampler(tiny_wan, CacheConfig(policy="ema_sink"))
    with torch.no_grad():
        one = [c.latents for c in sampler.stream([(0, text(0))], (1, 4, 15, 4, 4), GeneratorNoise(3))]
        two = list(sampler.stream([(0, text(0)), (3, text(1))], (1, 4, 15, 4, 4), GeneratorNoise(3)))
        fresh = [c.latents for c in sampler.stream([(0, text(1))], (1, 4, 6, 4, 4), GeneratorNoise(99))]
    assert [c.prompt_index for c in two] == [0, 0, 0, 1, 1]
    for a, b in zip(one[:3], two[:3], strict=True):
        torch.testing.assert_close(a, b.latents)
    assert (one[3] - two[3].latents).abs().max() > 1e-4  # the new prompt conditions chunk 3
    assert fresh[0].shape == two[3].latents.shape


def test_the_whole_cache_pass_streams_as_the_clean_one(tiny_wan):
    """cache_pass=whole (the t=0 pass with its unread flow computed, kept to measure the clean pass's kv_only) and
    clean give the same stream: the same K/V from the same operations (fp32 within 1e-6) through an EMA sink and a
    prompt switch; only whole runs the output head on its cache passes."""
    prompts, shape = [(0, text(0)), (3, text(1))], (1, 4, 15, 4, 4)
    heads = []
    hook = tiny_wan.proj_out.register_forward_hook(lambda m, i, o: heads.append(m))
    streams = {}
    with torch.no_grad():
        for cache_pass in ("clean", "whole"):
            heads.clear()
            sampler = StreamSampler(tiny_wan, CacheConfig(policy="ema_sink"), cache_pass=cache_pass)
            streams[cache_pass] = (sampler.rollout(prompts, shape, GeneratorNoise(3)), len(heads))
    hook.remove()
    torch.testing.assert_close(streams["whole"][0], streams["clean"][0], atol=1e-6, rtol=1e-6)
    assert streams["clean"][1] == 5 * 4 and streams["whole"][1] == 5 * 4 + 4  # 4 steps a chunk; 4 cache passes


def test_recache_changes_only_what_follows_the_switch(tiny_wan):
    sampler = StreamSampler(tiny_wan, CacheConfig(policy="ema_sink"))
    prompts = [(0, text(0)), (3, text(1))]
    with torch.no_grad():
        keep = sampler.rollout(prompts, (1, 4, 15, 4, 4), GeneratorNoise(3))
        chunks = sampler.stream(prompts, (1, 4, 15, 4, 4), GeneratorNoise(3), recache_on_switch=True)
        recached = torch.cat([c.latents for c in chunks], dim=2)
    torch.testing.assert_close(keep[:, :, :9], recached[:, :, :9])
    assert (keep[:, :, 9:] - recached[:, :, 9:]).abs().max() > 1e-5


@pytest.mark.parametrize(
    "prompts, shape, kwargs, needle",
    [
        ([(0, text(0))], (1, 4, 10, 4, 4), {}, "10 latent frames"),
        ([], SHAPE, {}, "prompt schedule"),
        ([(1, text(0))], SHAPE, {}, "first at 0"),
        ([(0, text(0)), (2, text(1)), (1, text(2))], SHAPE, {}, "strictly increasing"),
        ([(0, text(0))], SHAPE, {"exit_step": 4}, "exit_step=4"),
    ],
)
def test_bad_stream_arguments(tiny_wan, prompts, shape, kwargs, needle):
    sampler = StreamSampler(tiny_wan, CacheConfig(policy="ema_sink"))
    with pytest.raises(ValueError, match=needle):
        next(iter(sampler.stream(prompts, shape, GeneratorNoise(0), **kwargs)))


@pytest.mark.parametrize("policy", ["ema_sink", "full"])
def test_activation_checkpointing_gives_the_same_gradients(tiny_wan, policy):
    """Recomputation runs after the cache has moved on (later chunks, EMA fusion): each block must see the
    context it saw in the forward, or the recomputed attention differs (or its shapes do)."""
    shape = (1, 4, 15, 4, 4)  # 5 chunks: eviction and fusion happen between forward and backward

    def grads(checkpointing: bool):
        model = tiny_wan.train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        else:
            model.disable_gradient_checkpointing()
        model.zero_grad()
        sampler = StreamSampler(model, CacheConfig(policy=policy, sink_frames=3, attention_frames=6))
        out = sampler.rollout([(0, text(0))], shape, GeneratorNoise(0), exit_step=1)
        out.square().mean().backward()
        return out.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    out_plain, plain = grads(False)
    try:
        out_ckpt, ckpt = grads(True)
    finally:
        tiny_wan.disable_gradient_checkpointing()  # the fixture is shared
    torch.testing.assert_close(out_ckpt, out_plain)
    assert plain.keys() == ckpt.keys() and len(plain) > 10
    for k in plain:
        torch.testing.assert_close(ckpt[k], plain[k], rtol=1e-4, atol=1e-6, msg=k)
