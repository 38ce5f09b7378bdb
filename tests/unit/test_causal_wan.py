"""CausalWanTransformer3DModel against its parent and against its own teacher-forcing forward."""

import pytest
import torch
from diffusers import WanTransformer3DModel

from rf.models.cache import CacheConfig
from rf.models.causal_wan import CausalWanTransformer3DModel, block_causal_mask
from tests.conftest import tiny_wan_config


def inputs(frames=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 4, frames, 4, 4, generator=g), torch.randn(1, 6, 8, generator=g)


def test_from_pretrained_of_a_diffusers_folder_matches_parent(tmp_path):
    torch.manual_seed(0)
    parent = WanTransformer3DModel(**tiny_wan_config()).eval()
    parent.save_pretrained(tmp_path / "transformer")
    model, info = CausalWanTransformer3DModel.from_pretrained(tmp_path / "transformer", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    x, text = inputs()
    t = torch.tensor([700.0])
    with torch.no_grad():
        ref = parent(x, t, text).sample
        out = model.eval()(x, t, text).sample
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_per_frame_timesteps_equal_separate_calls_without_mask(tiny_wan):
    # a [B, F] timestep that is constant over frames is the same as a [B] timestep
    x, text = inputs()
    with torch.no_grad():
        a = tiny_wan(x, torch.tensor([300.0]), text).sample
        b = tiny_wan(x, torch.full((1, 6), 300.0), text).sample
    torch.testing.assert_close(a, b)


def test_block_causal_mask_layout():
    m = block_causal_mask(frames=6, tokens_per_frame=2, chunk_frames=3)
    assert m.shape == (12, 12)
    assert m[:6, :6].all() and not m[:6, 6:].any() and m[6:, :].all()


def test_streaming_equals_block_causal_teacher_forcing(tiny_wan):
    """Chunk by chunk with a `full` cache == one block-causal forward over the whole clip.

    Each chunk i is run at its own timestep t_i, attending to the cached K/V of chunks < i,
    which were written by passes at their own timesteps: exactly what the mask computes at once.
    """
    frames, chunk = 9, 3
    x, text = inputs(frames)
    t = torch.tensor([[900.0] * 3 + [400.0] * 3 + [0.0] * 3])  # [B, F]
    with torch.no_grad():
        whole = tiny_wan(x, t, text, causal_chunk=chunk).sample
        ctx = tiny_wan.encode_text(text)
        cache = tiny_wan.new_cache(CacheConfig(policy="full", chunk_frames=chunk))
        parts = []
        for i in range(frames // chunk):
            sl = slice(i * chunk, (i + 1) * chunk)
            parts.append(tiny_wan(x[:, :, sl], t[:, sl], text=ctx, cache=cache, write_cache=True).sample)
    torch.testing.assert_close(torch.cat(parts, dim=2), whole, atol=1e-5, rtol=1e-5)
    # and the mask matters: a bidirectional pass differs in the early chunks
    with torch.no_grad():
        bidir = tiny_wan(x, t, text).sample
    assert (bidir[:, :, :3] - whole[:, :, :3]).abs().max() > 1e-3


def test_gradient_flows_through_the_causal_forward(tiny_wan):
    x, text = inputs()
    tiny_wan.train()
    out = tiny_wan(x, torch.full((1, 6), 500.0), text, causal_chunk=3).sample
    out.square().mean().backward()
    grads = [p.grad for p in tiny_wan.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_gradient_checkpointing_gives_the_same_gradient(tiny_wan):
    x, text = inputs()
    t = torch.full((1, 6), 500.0)
    tiny_wan.train()
    tiny_wan(x, t, text, causal_chunk=3).sample.square().mean().backward()
    ref = [p.grad.clone() for p in tiny_wan.parameters()]
    tiny_wan.zero_grad()
    tiny_wan.enable_gradient_checkpointing()
    tiny_wan(x, t, text, causal_chunk=3).sample.square().mean().backward()
    for a, b in zip(ref, [p.grad for p in tiny_wan.parameters()], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_rope_tables_keep_full_precision_when_the_weights_go_to_bf16():
    """A bf16 cast (rf.models.loading.cast, model.to) must not round the cos / sin tables to 8-bit mantissas."""
    from rf.models.loading import cast

    exact = CausalWanTransformer3DModel(**tiny_wan_config())
    for model in (cast(CausalWanTransformer3DModel(**tiny_wan_config()), torch.bfloat16),
                  CausalWanTransformer3DModel(**tiny_wan_config()).to(torch.bfloat16)):  # fmt: skip
        assert model.proj_out.weight.dtype == torch.bfloat16
        for name in ("freqs_cos", "freqs_sin"):
            table = getattr(model.rope, name)
            assert table.dtype == torch.float32
            torch.testing.assert_close(table, getattr(exact.rope, name).float(), rtol=0, atol=0)


def test_a_kv_only_cache_pass_writes_the_same_cache_and_returns_no_flow(tiny_wan):
    """kv_only (the stream's t=0 cache pass): the last block stops at its K/V and the head is skipped; every block's
    cached keys and values are the full pass's (the same operations: fp32 within 1e-6), through a window that evicts
    into an EMA sink, and the next chunk's flow is the same."""
    x, text = inputs(frames=12)
    config = CacheConfig(policy="ema_sink", sink_frames=3, attention_frames=6, chunk_frames=3)
    t0 = torch.zeros(1)
    with torch.no_grad():
        ctx = tiny_wan.encode_text(text)
        full, only = tiny_wan.new_cache(config), tiny_wan.new_cache(config)
        calls = []  # the last block's FFN and the head run in the full pass only
        hooks = [m.register_forward_hook(lambda m, i, o: calls.append(m)) for m in (tiny_wan.blocks[-1].ffn,
                                                                                 tiny_wan.proj_out)]  # fmt: skip
        for i in range(3):  # 9 frames: the window fills and the sink takes what leaves it
            chunk = x[:, :, 3 * i : 3 * i + 3]
            assert tiny_wan(chunk, t0, text=ctx, cache=full, write_cache=True).sample is not None
            assert len(calls) == 2 * i + 2
            assert tiny_wan(chunk, t0, text=ctx, cache=only, write_cache=True, kv_only=True).sample is None
            assert len(calls) == 2 * i + 2
        for hook in hooks:
            hook.remove()
        for block in range(len(tiny_wan.blocks)):
            a, b = full.context(block), only.context(block)
            assert a.k.shape == b.k.shape and a.k.shape[1] > 0
            torch.testing.assert_close(b.k, a.k, atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(b.v, a.v, atol=1e-6, rtol=1e-6)
        nxt = x[:, :, 9:]
        ref = tiny_wan(nxt, torch.tensor([750.0]), text=ctx, cache=full).sample
        out = tiny_wan(nxt, torch.tensor([750.0]), text=ctx, cache=only).sample
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="kv_only=True skips what only the flow needs in a cache pass"):
        tiny_wan(nxt, t0, text=ctx, cache=only, kv_only=True)
