"""Every switch of the exact fast path computes the plain path's function (fp32, CPU, tiny model)."""

import copy
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan
from diffusers.models.activations import GELU
from diffusers.models.attention_dispatch import _AttentionBackendRegistry
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanResample, WanRMS_norm, WanUpsample
from omegaconf import OmegaConf

from rf.diffusion.sampler import GeneratorNoise, StreamSampler
from rf.fast.compile import compile_blocks
from rf.fast.epilogue import EpilogueGELU
from rf.fast.fast_path import FastPath
from rf.fast.graphs import CudaGraphModel
from rf.fast.recompiles import graphs_compiled
from rf.fast.static_cache import StaticKVCache, write_chunk
from rf.models.attention import backend, kernel
from rf.models.cache import CacheConfig
from rf.models.causal_wan import CausalWanTransformer3DModel
from rf.models.vae import WanVideoAutoencoder
from rf.models.vae_forms import (
    SubpixelUpsample,
    causal_conv3d,
    causal_conv_as_2d,
    pad_filters,
    padded_filters,
    stacks_outputs,
    use_upsample3d_forward,
)
from rf.utils.cli import CONF_DIR
from tests.conftest import tiny_wan_config


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).norm() / ref.norm()).item()


def tiny_wan_vae() -> AutoencoderKLWan:
    """A Wan VAE small enough for the CPU, with the real one's causal time downsampling."""
    return AutoencoderKLWan(base_dim=16, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                            temperal_downsample=[False, True, True])  # fmt: skip


@pytest.mark.parametrize("policy", ["ema_sink"])
def test_compiled_blocks_stream_the_same_video(policy):
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    text = torch.randn(1, 6, model.config.text_dim)
    shape = (1, model.config.in_channels, 15, 4, 4)  # 5 chunks: the window fills, then evicts and fuses
    cache = CacheConfig(policy=policy, sink_frames=3, attention_frames=9)
    with torch.no_grad():
        ref = StreamSampler(model, cache).rollout([(0, text)], shape, GeneratorNoise(0))
        compile_blocks(model)
        out = StreamSampler(model, cache).rollout([(0, text)], shape, GeneratorNoise(0))
    assert all(hasattr(block, "_compiled_call_impl") and block._compiled_call_impl for block in model.blocks)
    assert relative_error(out, ref) < 1e-5


def stream_pair(policy, sink_frames, attention_frames, chunk_frames, frames=24, switch_at=None, compile_commit=False,
                kv_in_place=False, compile=False, batch=1, cache_pass="clean", prepare=None, commit_kernel=False,
                **sampler):  # fmt: skip
    """The same stream through the growing cache and through the static one: (plain, static, both samplers).
    compile_commit: the static cache's commit under torch.compile (fast.compile_commit); kv_in_place: each pass's
    K/V written after the context in its buffers (fast.kv_in_place); compile: the blocks compiled for the static
    stream only; cache_pass: how each chunk's K/V reach the cache (clean, or reuse: the last pass's); prepare: called
    with the model before both streams (a switch that marks its blocks); commit_kernel: the static cache's commit
    as one Triton kernel (fast.commit_kernel; on a CPU only in Triton's interpreter)."""
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    if prepare is not None:
        prepare(model)
    model.static_cache_options = {"compiled": compile_commit, "in_place": kv_in_place, "kernel": commit_kernel}
    texts = [(0, torch.randn(batch, 6, model.config.text_dim))]
    if switch_at is not None:  # a second prompt; the window is re-cached under it (LongLive)
        texts.append((switch_at, torch.randn(batch, 6, model.config.text_dim)))
        sampler["recache_on_switch"] = True
    shape = (batch, model.config.in_channels, frames, 4, 4)
    cache = CacheConfig(policy=policy, sink_frames=sink_frames, attention_frames=attention_frames,
                        chunk_frames=chunk_frames, alpha=0.9)  # fmt: skip
    samplers = [StreamSampler(model, cache, static_cache=static, cache_pass=cache_pass) for static in (False, True)]
    outs = []
    with torch.no_grad():
        for s in samplers:
            if compile and s is samplers[1]:
                compile_blocks(model)
            outs.append(torch.cat([c.latents for c in s.stream(texts, shape, GeneratorNoise(0), **sampler)], 2))
    return outs[0], outs[1], samplers


STATIC_CASES = [  # policy, sink_frames, attention_frames, chunk_frames
    ("ema_sink", 3, 9, 3),  # the paper's setting: one steady stage
    ("sink", 3, 9, 3),
    ("window", 3, 9, 3),
    ("ema_sink", 3, 15, 3),  # a 9-frame ring: three ring positions
    ("ema_sink", 2, 9, 3),  # chunks not sink-sized: the EMA slot pointer rolls
    ("ema_sink", 3, 6, 3),  # no window at all: evicted at once
    ("sink", 1, 12, 4),
    ("ema_sink", 4, 12, 2),
]


@pytest.mark.parametrize("policy, sink_frames, attention_frames, chunk_frames", STATIC_CASES)
def test_static_cache_streams_the_same_video(policy, sink_frames, attention_frames, chunk_frames):
    plain, static, samplers = stream_pair(policy, sink_frames, attention_frames, chunk_frames)
    assert relative_error(static, plain) < 1e-5
    assert samplers[1].last_cache.evicted_frames == samplers[0].last_cache.evicted_frames > 0
    assert samplers[1].last_cache.sink_drift() == pytest.approx(samplers[0].last_cache.sink_drift(), rel=1e-5)


@pytest.mark.parametrize(
    "policy, sink_frames, attention_frames, chunk_frames",
    [("ema_sink", 3, 9, 3), ("ema_sink", 3, 15, 3), ("ema_sink", 2, 9, 3), ("ema_sink", 3, 6, 3), ("window", 3, 9, 3)],
)
def test_compiled_commit_streams_the_same_video(policy, sink_frames, attention_frames, chunk_frames):
    """fast.compile_commit: the commit's slot writes, EMA-Sink fusion and re-rotation as Inductor's kernels; fp32 on
    the CPU, so only the order of float operations may differ (1e-5 is about 100 fp32 roundings of the latents)."""
    plain, static, samplers = stream_pair(policy, sink_frames, attention_frames, chunk_frames, compile_commit=True)
    assert samplers[1].last_cache._write is not write_chunk  # the compiled function ran, not the eager one
    assert relative_error(static, plain) < 1e-5
    assert samplers[1].last_cache.evicted_frames == samplers[0].last_cache.evicted_frames > 0


@pytest.mark.parametrize("policy, sink_frames, attention_frames, chunk_frames", STATIC_CASES)
def test_kv_in_place_streams_the_same_video(policy, sink_frames, attention_frames, chunk_frames):
    """fast.kv_in_place: every pass writes its chunk's rotated K/V into the room after the context and attention
    reads [context ; chunk] from the buffers; the same values as the concatenation, so fp32 agrees to rounding."""
    plain, static, samplers = stream_pair(policy, sink_frames, attention_frames, chunk_frames, kv_in_place=True)
    assert relative_error(static, plain) < 1e-5
    cache = samplers[1].last_cache
    slots = cache.sink_frames + cache.capacity
    buf = cache.buffers[0]
    assert buf["v"].shape[1] == buf["k_rot"].shape[1] == slots + chunk_frames and buf["k_raw"].shape[1] == slots
    assert buf["v"][:, slots:].abs().sum() > 0 and buf["k_rot"][:, slots:].abs().sum() > 0  # the room was written


@pytest.mark.parametrize("batch", [1, 2])
def test_kv_in_place_under_compiled_blocks(batch):
    """Inductor writes the pass's K/V into the buffers (a mutated view of a graph input) and reads the view after;
    two streams in a batch check the buffers' batch stride, which the view's does not equal."""
    plain, static, samplers = stream_pair("ema_sink", 3, 9, 3, frames=15, kv_in_place=True, compile=True, batch=batch,
                                          compile_commit=True)  # fmt: skip
    assert relative_error(static, plain) < 1e-5
    cache = samplers[1].last_cache
    assert cache.buffers[0]["v"][:, cache.sink_frames + cache.capacity :].abs().sum() > 0  # the room was written


def test_kv_in_place_recaches_on_a_prompt_switch_like_the_plain_cache():
    """The re-cache pass attends over the sink with the whole window as its own frames: in place, they are written
    into the slots after the sink, the ring the window was dropped from, before the pass commits them there."""
    plain, static, _ = stream_pair("ema_sink", 3, 15, 3, switch_at=4, kv_in_place=True)
    assert relative_error(static, plain) < 1e-5


@pytest.mark.parametrize("kv_in_place", [False, True])
def test_static_cache_reuses_the_last_pass_kv_like_the_plain_cache(kv_in_place):
    """cache_pass=reuse (fast=approximate) on the static cache: the last denoising pass commits its own K/V, with
    or without the room after the context; the same approximation as on the growing cache, to fp32 rounding."""
    plain, static, samplers = stream_pair("ema_sink", 3, 9, 3, kv_in_place=kv_in_place, compile_commit=True,
                                          cache_pass="reuse")  # fmt: skip
    assert relative_error(static, plain) < 1e-5
    assert samplers[1].last_cache.evicted_frames == samplers[0].last_cache.evicted_frames > 0


def test_static_cache_recaches_on_a_prompt_switch_like_the_plain_cache():
    plain, static, _ = stream_pair("ema_sink", 3, 15, 3, switch_at=4)
    assert relative_error(static, plain) < 1e-5


@pytest.mark.parametrize("kv_in_place", [False, True])
def test_static_cache_memory_is_fixed_and_full_has_no_static_form(kv_in_place):
    """The buffers are allocated once, the in-place room with them: a stream's memory does not grow."""
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    model.static_cache_options = {"in_place": kv_in_place}
    cache = model.new_cache(CacheConfig(policy="ema_sink"), static=True)
    shape = (1, model.config.in_channels, 3, 4, 4)
    text = model.encode_text(torch.randn(1, 6, model.config.text_dim))
    sizes = []
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(shape), torch.zeros(1), text=text, cache=cache, write_cache=True)
            sizes.append(cache.nbytes())
    assert len(set(sizes)) == 1 and cache.context_frames == 6
    assert cache.buffers[0]["v"].shape[1] == 6 + 3 * kv_in_place  # the room for a 3-frame pass, in place
    with pytest.raises(ValueError, match="sink=full grows with the stream and has no static cache"):
        model.new_cache(CacheConfig(policy="full"), static=True)


def test_reusing_the_last_pass_kv_is_an_approximation_with_one_pass_fewer():
    """cache_pass=reuse (an opt-in approximation): the first chunk is identical, later ones differ a little."""
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    text = torch.randn(1, 6, model.config.text_dim)
    shape = (1, model.config.in_channels, 12, 4, 4)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        exact = StreamSampler(model, CacheConfig()).rollout([(0, text)], shape, GeneratorNoise(0))
        n_exact = len(calls)
        reuse = StreamSampler(model, CacheConfig(), cache_pass="reuse").rollout([(0, text)], shape, GeneratorNoise(0))
    assert n_exact == 4 * 5 - 1 + 1  # 4 chunks x 4 passes + 3 cache passes, + encode_text
    assert len(calls) - n_exact == 4 * 4 + 1
    torch.testing.assert_close(reuse[:, :, :3], exact[:, :, :3], rtol=0, atol=0)
    assert 1e-4 < relative_error(reuse[:, :, 3:], exact[:, :, 3:]) < 0.5


@pytest.mark.parametrize(
    "switches",
    [{"conv2d": True}, {"channels_last": True}, {"conv2d": True, "channels_last": True}, {"compile": True},
     {"whole_chunk": True}, {"whole_chunk": True, "conv2d": True, "channels_last": True},
     {"whole_chunk": True, "conv2d": True, "channels_last": True, "stack_taps": True}, {"subpixel": True},
     {"conv2d": True, "conv3d_from": 32},
     {"whole_chunk": True, "conv2d": True, "channels_last": True, "stack_taps": True, "subpixel": True,
      "conv3d_from": 32},
     {"whole_chunk": True, "conv2d": True, "channels_last": True, "stack_taps": True, "subpixel": True,
      "conv3d_from": 32, "min_out": 48}],
)  # fmt: skip
def test_wan_vae_decode_switches_decode_the_same_frames(switches):
    """vae_conv2d / vae_channels_last / vae_compile / vae_subpixel / vae_conv3d_from: chunked streaming decode equal
    to the plain decoder's (fp32)."""
    torch.manual_seed(0)
    vae = tiny_wan_vae()
    plain = WanVideoAutoencoder(vae)
    fast = copy.deepcopy(plain)
    fast.speed_up(**switches)
    assert list(fast.state_dict()) == list(plain.state_dict())  # the weights keep their names: checkpoints load
    marked = [m for m in fast.vae.decoder.modules() if getattr(m, "rf_stack_taps", False)]
    assert len(marked) == (1 if switches.get("stack_taps") else 0)  # the RGB head only (16 -> 3 outputs, 3 taps)
    upsamplers = [m for m in fast.vae.decoder.modules() if isinstance(m, WanResample)]
    assert len(upsamplers) == 3 and all(isinstance(m.resample, SubpixelUpsample) == switches.get("subpixel", False)
                                        for m in upsamplers)  # fmt: skip
    convs = [m for m in fast.vae.decoder.modules() if isinstance(m, WanCausalConv3d)]
    in_3d = [m.in_channels for m in convs if getattr(m.forward, "__func__", None) is causal_conv3d]
    if "conv3d_from" in switches:  # the 32-channel convolutions stay 3-D, the 16-channel ones (the last block) go 2-D
        assert in_3d and min(in_3d) == 32 and len(in_3d) < len(convs)
    else:
        assert not in_3d
    padded = [m for m in convs if padded_filters(m)[0].shape[0] > m.out_channels]
    if "min_out" in switches:  # the 3-D ones with 32 outputs compute 48; the 64-channel time upsampling does not
        assert padded and all(padded_filters(m)[0].shape[0] == 48 and m.out_channels == 32 for m in padded)
    else:
        assert not padded
    z = torch.randn(1, 16, 7, 4, 6)
    ref = plain.stream_decoder().decode(z)
    decoder = fast.stream_decoder()
    out = torch.cat([decoder.decode(z[:, :, :1]), decoder.decode(z[:, :, 1:4]), decoder.decode(z[:, :, 4:])], dim=2)
    assert out.shape == ref.shape == (1, 3, 25, 32, 48)
    assert relative_error(out, ref) < 1e-5


@pytest.mark.parametrize(("in_channels", "out_channels", "few"), [(16, 3, True), (16, 16, False), (8, 3, False)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_causal_conv_as_2d_is_the_3d_convolution_with_its_cache(in_channels, out_channels, few, channels_last):
    """Both 2-D forms (kt input frames stacked along channels; or, for few outputs like the RGB head, kt taps
    stacked along the outputs and summed) against WanCausalConv3d itself, with a cache of two frames and without.
    fp32: the same sums in another order, a few dozen roundings of 6e-8 each."""
    torch.manual_seed(0)
    conv = WanCausalConv3d(in_channels, out_channels, 3, padding=1).eval()
    if channels_last:
        conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last_3d)
    assert stacks_outputs(conv) is few
    conv.rf_stack_taps = few  # what speed_up(conv2d=True, stack_taps=True) sets
    x, cache = torch.randn(2, in_channels, 4, 5, 6), torch.randn(2, in_channels, 2, 5, 6)
    with torch.no_grad():
        for cache_x in (None, cache):
            ref, out = conv(x, cache_x), causal_conv_as_2d(conv, x, cache_x)
            assert out.shape == ref.shape == (2, out_channels, 4, 5, 6)
            assert relative_error(out, ref) < 1e-6


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("h", "w"), [(5, 7), (6, 4), (1, 1)])
def test_subpixel_upsampling_is_the_upsampled_convolution(h, w, channels_last):
    """vae_subpixel: four 2x2 convolutions of the frames, interleaved, against nearest-exact 2x then the 3x3
    convolution (diffusers' WanUpsample, which upsamples in float32). float64 weights and frames: the upsampling's
    float32 rounding of the frames (6e-8 relative) is what separates them; in float32, a few roundings of 6e-8."""
    torch.manual_seed(0)
    for dtype, tolerance in ((torch.float64, 1e-6), (torch.float32, 1e-6)):
        conv = torch.nn.Conv2d(6, 4, 3, padding=1).to(dtype)
        x = torch.randn(3, 6, h, w, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ref = conv(WanUpsample(scale_factor=(2.0, 2.0), mode="nearest-exact")(x))
        with torch.no_grad():
            out = SubpixelUpsample(conv)(x)
        assert out.shape == ref.shape == (3, 4, 2 * h, 2 * w)
        assert relative_error(out, ref) < tolerance
        if h * w > 1:  # (1x1 frames are both)
            assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    with pytest.raises(ValueError, match="subpixel upsampling needs a 3x3, padding-1, stride-1 convolution"):
        SubpixelUpsample(torch.nn.Conv2d(6, 4, 3, padding=0))


def test_subpixel_weights_follow_a_checkpoint_loaded_after_speed_up():
    """The parities' weights are derived, not saved: a state dict loaded into a decoder already sped up (a checkpoint
    after speed_up) recomputes them, so it decodes what the same weights loaded before speed_up decode (fp32)."""
    torch.manual_seed(0)
    vae = tiny_wan_vae()
    other = tiny_wan_vae().state_dict()  # other weights (another seed's draw)
    late = WanVideoAutoencoder(copy.deepcopy(vae))
    late.speed_up(subpixel=True)
    late.vae.load_state_dict(other)
    early = WanVideoAutoencoder(copy.deepcopy(vae))
    early.vae.load_state_dict(other)
    early.speed_up(subpixel=True)
    z = torch.randn(1, 16, 4, 4, 6)
    with torch.no_grad():
        out, ref = late.stream_decoder().decode(z), early.stream_decoder().decode(z)
        stale = WanVideoAutoencoder(copy.deepcopy(vae))
        stale.speed_up(subpixel=True)
        before = stale.stream_decoder().decode(z)
    assert relative_error(out, ref) < 1e-6 < relative_error(before, ref)  # the weights matter, and followed


@pytest.mark.parametrize("channels_last", [False, True])
def test_causal_conv3d_is_the_causal_convolution_with_its_cache(channels_last):
    """vae_conv3d_from: the spatial padding inside the 3-D convolution, against WanCausalConv3d (its padded copy),
    with a cache of two frames, one frame, and none. fp32: the same sums, the same order up to cuDNN/oneDNN's
    algorithm choice: a few dozen roundings of 6e-8."""
    torch.manual_seed(0)
    conv = WanCausalConv3d(8, 5, 3, padding=1).eval()
    if channels_last:
        conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 8, 4, 5, 6)
    with torch.no_grad():
        for cache_x in (None, torch.randn(2, 8, 2, 5, 6), torch.randn(2, 8, 1, 5, 6)):
            ref, out = conv(x, cache_x), causal_conv3d(conv, x, cache_x)
            assert out.shape == ref.shape == (2, 5, 4, 5, 6)
            assert relative_error(out, ref) < 1e-6
            pad_filters(conv, 16)  # vae_min_out: 11 zero filters more, their channels sliced off
            padded = causal_conv3d(conv, x, cache_x)
            pad_filters(conv, None)
            assert padded.shape == ref.shape and relative_error(padded, ref) < 1e-6
            assert padded_filters(conv)[0] is conv.weight  # taken away again


def test_padded_filters_follow_a_checkpoint_loaded_after_speed_up():
    """vae_min_out: the zero-padded filters are buffers outside the state dict, rebuilt after load_state_dict, so a
    decoder sped up first and loaded after decodes with the loaded weights (fp32, as the plain decoder does)."""
    torch.manual_seed(0)
    plain = WanVideoAutoencoder(tiny_wan_vae())
    fast = WanVideoAutoencoder(tiny_wan_vae())  # other random weights
    fast.speed_up(conv2d=True, channels_last=True, conv3d_from=32, min_out=48)
    padded = [m for m in fast.vae.decoder.modules() if "rf_padded_weight" in m._buffers]
    assert padded and all(m.rf_padded_weight.is_contiguous(memory_format=torch.channels_last_3d) for m in padded)
    assert not any("rf_padded" in key for key in fast.vae.state_dict())
    fast.vae.load_state_dict(plain.vae.state_dict())
    z = torch.randn(1, 16, 4, 4, 6)
    with torch.no_grad():
        ref = plain.stream_decoder().decode(z)
        out = fast.stream_decoder().decode(z)
    assert relative_error(out, ref) < 1e-5


def test_the_upsampling_blocks_typed_cache_marker_streams_the_same_frames_and_compiles_whole():
    """upsample3d_forward (installed by speed_up(compile=True)): diffusers' upsampling block with its "Rep" marker
    tested by type computes the same frames over a stream (the same operations: fp32 within 1e-6), and the compiled
    decoder has no graph break. diffusers' own form broke it under torch 2.11 (a tensor compared with a string),
    checked there; torch 2.13 traces both."""
    torch.manual_seed(0)
    plain = WanVideoAutoencoder(tiny_wan_vae())
    typed = copy.deepcopy(plain)
    assert use_upsample3d_forward(typed.vae.decoder) > 0  # the tiny VAE upsamples in time too
    z = torch.randn(1, 16, 6, 4, 6)
    pieces = (z[:, :, :1], z[:, :, 1:3], z[:, :, 3:6])  # the first frame alone, then two chunks
    ref, out = plain.stream_decoder(), typed.stream_decoder()
    for piece in pieces:
        assert relative_error(out.decode(piece), ref.decode(piece)) < 1e-6
    torch._dynamo.reset()
    decoder, cache = typed.vae.decoder, [None] * out.num_convs
    explained = [torch._dynamo.explain(decoder)(piece, feat_cache=cache, feat_idx=[0], first_chunk=i == 0)
                 for i, piece in enumerate(pieces)]  # fmt: skip
    assert [e.graph_break_count for e in explained] == [0, 0, 0]
    torch._dynamo.reset()


def test_channels_last_decoder_keeps_its_frames_channels_last():
    """fast.exact's decoder (channels-last, 3-D convolutions from 32 channels here, sub-pixel upsampling): every norm,
    3-D convolution and upsampling reads and writes channels-last, on a CPU as cuDNN does. A channels-first tensor
    anywhere makes the compiled decoder write norms channels-first and transpose them for the next convolution."""
    torch.manual_seed(0)
    ae = WanVideoAutoencoder(tiny_wan_vae())
    ae.speed_up(channels_last=True, conv2d=True, whole_chunk=True, stack_taps=True, subpixel=True, conv3d_from=32)
    seen = []

    def record(module, args, out):
        frames = torch.channels_last_3d if out.dim() == 5 else torch.channels_last
        seen.append((type(module).__name__, out.is_contiguous(memory_format=frames)))
        if not isinstance(module, (WanResample, SubpixelUpsample)):  # (Wan's time upsampling is channels-first)
            seen.append((type(module).__name__, args[0].is_contiguous(memory_format=frames)))

    for module in ae.vae.decoder.modules():
        three_d = getattr(getattr(module, "forward", None), "__func__", None) is causal_conv3d
        if three_d or isinstance(module, (WanRMS_norm, SubpixelUpsample, WanResample)):
            module.register_forward_hook(record)
    decoder = ae.stream_decoder()
    z = torch.randn(1, 16, 4, 4, 6)
    with torch.no_grad():
        decoder.decode(z[:, :, :1])  # (the first frame alone: [B, C, 1, H, W] can be both layouts at once)
        seen.clear()
        decoder.decode(z[:, :, 1:])  # a steady chunk
    names = {name for name, _ in seen}
    assert {"WanRMS_norm", "WanCausalConv3d", "SubpixelUpsample", "WanResample"} <= names
    assert [entry for entry in seen if not entry[1]] == []


@pytest.mark.parametrize("first", [1, 3])
def test_whole_chunk_decode_is_the_frame_by_frame_function_exactly_in_float64(first):
    """vae_whole_chunk: after the stream's first latent frame, a call's frames go through the decoder together: every
    causal convolution sees the same inputs through its cache, so the function is the same. In float64 only the
    order of a kernel's sums may differ (rounding 1e-16 per operation, a few hundred operations deep: far below
    1e-12), where a wrong cache would be off by order 1. A first call of several frames decodes its first frame
    alone, as the Wan VAE must."""
    torch.manual_seed(0)
    vae = tiny_wan_vae().double()
    plain = WanVideoAutoencoder(vae)
    whole = copy.deepcopy(plain)
    whole.speed_up(whole_chunk=True)
    z = torch.randn(1, 16, first + 6, 4, 6, dtype=torch.float64)
    ref = plain.stream_decoder().decode(z)
    decoder = whole.stream_decoder()
    calls = []
    decoder.vae.decoder.register_forward_hook(lambda m, args, kwargs, out: calls.append(out.shape[2]), with_kwargs=True)
    out = torch.cat([decoder.decode(z[:, :, :first]), decoder.decode(z[:, :, first : first + 3]),
                     decoder.decode(z[:, :, first + 3 :])], dim=2)  # fmt: skip
    assert calls == [1] + ([4 * (first - 1)] if first > 1 else []) + [12, 12]  # video frames per decoder call
    assert out.shape == ref.shape and relative_error(out, ref) < 1e-12


def test_attention_backend_switch_keeps_the_function():
    """fast.attention goes through diffusers' set_attention_backend; the math kernel runs on a CPU."""
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    text = torch.randn(1, 6, model.config.text_dim)
    shape = (1, model.config.in_channels, 9, 4, 4)
    with torch.no_grad():
        ref = StreamSampler(model, CacheConfig()).rollout([(0, text)], shape, GeneratorNoise(0))
        default = _AttentionBackendRegistry._active_backend  # diffusers' process-wide default (DIFFUSERS_ATTN_BACKEND)
        runner = FastPath(attention="math", static_cache=True).prepare_model(model)
        assert all(b.attn1.processor._attention_backend.value == "_native_math" for b in model.blocks)
        fresh = CausalWanTransformer3DModel(**tiny_wan_config())  # another model keeps the default kernel
        assert backend(fresh.blocks[0].attn1) is None and _AttentionBackendRegistry._active_backend == default
        sampler = StreamSampler(runner, CacheConfig(), **FastPath(static_cache=True).sampler_kwargs())
        out = sampler.rollout([(0, text)], shape, GeneratorNoise(0))
    assert relative_error(out, ref) < 1e-5


def test_fused_qkv_projection_keeps_the_function():
    """fast.fuse_qkv: one [dim -> 3 dim] matmul per self-attention; the stream (fused cache pass too) is unchanged."""
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    text = torch.randn(1, 6, model.config.text_dim)
    shape = (1, model.config.in_channels, 15, 4, 4)  # 5 chunks: the window fills, evicts and fuses
    cache = CacheConfig(policy="ema_sink", sink_frames=3, attention_frames=9)
    with torch.no_grad():
        ref = StreamSampler(model, cache).rollout([(0, text)], shape, GeneratorNoise(0))
        runner = FastPath(fuse_qkv=True).prepare_model(model)
        assert all(b.attn1.fused_projections and not b.attn2.fused_projections for b in model.blocks)
        out = StreamSampler(runner, cache).rollout([(0, text)], shape, GeneratorNoise(0))
        fused = StreamSampler(runner, cache, cache_pass="fused").rollout([(0, text)], shape, GeneratorNoise(0))
    # one matmul of three: each output is the same dot product, summed perhaps in another order (fp32: ~1e-7)
    assert relative_error(out, ref) < 1e-5
    assert relative_error(fused, ref) < 1e-5


def test_gelu_epilogue_swaps_every_ffn_activation_and_keeps_the_function_off_cuda():
    """fast.gelu_epilogue: each block's GELU becomes an EpilogueGELU with the same parameters; off CUDA it computes
    what diffusers' GELU does (its fused CUDA form is checked by the bench on the GPU)."""
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    text = torch.randn(1, 6, model.config.text_dim)
    shape = (1, model.config.in_channels, 9, 4, 4)
    names = set(model.state_dict())
    with torch.no_grad():
        ref = StreamSampler(model, CacheConfig()).rollout([(0, text)], shape, GeneratorNoise(0))
        FastPath(gelu_epilogue=True).prepare_model(model)
        out = StreamSampler(model, CacheConfig()).rollout([(0, text)], shape, GeneratorNoise(0))
    assert all(type(b.ffn.net[0]) is EpilogueGELU for b in model.blocks)
    assert set(model.state_dict()) == names  # checkpoints load and save as before
    assert relative_error(out, ref) < 1e-6


@pytest.mark.parametrize("switch", [{"gelu_epilogue": True}, {"fuse_qkv": True}, {"fp8": True}])
def test_a_model_switch_applied_after_compiling_recompiles_the_blocks(switch):
    """The bench's variants share one model and apply their switches in place, after earlier variants compiled its
    blocks: each switch must make the compiled blocks trace again, or the variant measures the code before it. Under
    torch 2.11, fast.gelu_epilogue's first form (the module's class changed in place) recompiled nothing: this test
    failed there (0 graphs) and the bench measured the old GELU."""
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    text = torch.randn(1, 6, model.config.text_dim)
    shape = (1, model.config.in_channels, 9, 4, 4)
    cache = CacheConfig(policy="ema_sink", sink_frames=3, attention_frames=9)
    torch._dynamo.reset()
    with torch.no_grad():
        compile_blocks(model)
        StreamSampler(model, cache).rollout([(0, text)], shape, GeneratorNoise(0))
        before = graphs_compiled()
        FastPath(**switch).prepare_model(model)
        StreamSampler(model, cache).rollout([(0, text)], shape, GeneratorNoise(0))
    assert graphs_compiled() > before  # the blocks traced again, with the switch
    torch._dynamo.reset()


def test_fast_path_hands_every_decoder_switch_to_the_wan_vae():
    """FastPath.prepare_decoder -> WanVideoAutoencoder.speed_up: the preset's decoder switches (fast=exact's, with a
    channel threshold and filter count the tiny VAE has) reach the decoder, and it streams the plain decoder's frames
    (fp32). Its Triton norm kernel (vae_norm_silu) runs on a CPU only in Triton's interpreter: tests/unit/
    test_vae_norm.py streams the tiny decoder with it there."""
    torch.manual_seed(0)
    plain = WanVideoAutoencoder(tiny_wan_vae())
    fast_vae = copy.deepcopy(plain)
    preset = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / "fast" / "exact.yaml"))
    decoder_switches = {k: v for k, v in preset.items() if k.startswith("vae_") and k != "vae_compile"}
    assert {"vae_subpixel", "vae_conv3d_from", "vae_conv2d", "vae_stack_taps", "vae_min_out",
            "vae_norm_silu"} <= set(decoder_switches)  # fmt: skip
    fast = FastPath(**{**decoder_switches, "vae_conv3d_from": 32, "vae_min_out": 48, "vae_norm_silu": False})
    decoder = fast.prepare_decoder(fast_vae, torch.device("cpu"))
    modules = list(fast_vae.vae.decoder.modules())
    assert any(isinstance(m, SubpixelUpsample) for m in modules)
    assert any(getattr(m.forward, "__func__", None) is causal_conv3d for m in modules if isinstance(m, WanCausalConv3d))
    z = torch.randn(1, 16, 4, 4, 6)
    ref = plain.stream_decoder().decode(z)
    out = torch.cat([decoder.decode(z[:, :, :1]), decoder.decode(z[:, :, 1:])], dim=2)
    assert relative_error(out, ref) < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the cuBLASLt epilogue runs on CUDA only")
def test_gelu_epilogue_on_cuda_is_the_tanh_gelu():
    torch.manual_seed(0)
    act = GELU(64, 256, approximate="tanh").cuda()
    x = torch.randn(3, 40, 64, device="cuda")
    assert relative_error(EpilogueGELU.holding(act)(x), act(x)) < 1e-5  # fp32: the same function, rounding only


def test_fast_path_refuses_unknown_switch_values():
    with pytest.raises(ValueError, match="fast.attention='fa9'"):
        FastPath(attention="fa9")
    with pytest.raises(ValueError, match="fast.decoder='tiny'"):
        FastPath(decoder="tiny")
    with pytest.raises(ValueError, match="fast.compile_commit=true compiles the static cache's commit"):
        FastPath(compile_commit=True)
    with pytest.raises(ValueError, match="fast.kv_in_place=true writes into the static cache's buffers"):
        FastPath(kv_in_place=True)
    with pytest.raises(ValueError, match="fast.decode_priority=true sets the priority of the overlapped decode"):
        FastPath(decode_priority=True)
    with pytest.raises(ValueError, match="fast.vae_stack_taps=true changes how the 2-D path stacks"):
        FastPath(vae_stack_taps=True)
    with pytest.raises(ValueError, match="fast.fp8_scales=tensorwise scales the FP8 matmuls' inputs: set fast.fp8"):
        FastPath(fp8_scales="tensorwise")
    with pytest.raises(ValueError, match="fast.fp8_scales='columnwise': choose one of rowwise, tensorwise, calibrated"):
        FastPath(fp8=True, fp8_scales="columnwise")
    with pytest.raises(ValueError, match="fast.fp8_weights='blockwise': choose one of rowwise, tensorwise"):
        FastPath(fp8=True, fp8_weights="blockwise")
    with pytest.raises(ValueError, match="fast.fp8_weights=tensorwise scales the FP8 matmuls' weights: set fast.fp8"):
        FastPath(fp8_weights="tensorwise")
    with pytest.raises(ValueError, match="stack_taps=True changes how conv2d stacks: set conv2d=True"):
        WanVideoAutoencoder(tiny_wan_vae()).speed_up(stack_taps=True)
    with pytest.raises(ValueError, match="conv3d_from=192 picks which convolutions leave the 2-D path: set conv2d"):
        WanVideoAutoencoder(tiny_wan_vae()).speed_up(conv3d_from=192)
    with pytest.raises(ValueError, match="fast.vae_conv3d_from=192 picks which VAE convolutions leave the 2-D path"):
        FastPath(vae_conv3d_from=192)
    with pytest.raises(ValueError, match="fast.vae_min_out=128 pads the outputs of the VAE's 3-D convolutions: set"):
        FastPath(vae_conv2d=True, vae_min_out=128)
    with pytest.raises(ValueError, match="fast.autotune=true tunes the compiled blocks"):
        FastPath(autotune=True)
    with pytest.raises(ValueError, match="fast.kernel_tuning=true tunes the compiled blocks' Triton kernels: set"):
        FastPath(kernel_tuning=True)
    with pytest.raises(ValueError, match="max-autotune already tunes the Triton kernels"):
        FastPath(compile=True, autotune=True, kernel_tuning=True)
    assert FastPath(compile=True, graphs=True).gpu_only() == ["graphs"]
    kernels = FastPath(static_cache=True, norm_rope=True, block_norms=True, commit_kernel=True, vae_conv2d=True,
                       vae_conv3d_from=96, vae_norm_silu=True, vae_head_norm=True)  # fmt: skip
    triton = ["norm_rope", "block_norms", "commit_kernel", "vae_norm_silu", "vae_head_norm"]
    assert kernels.gpu_only() == triton  # Triton kernels: refused on a CPU
    assert FastPath().describe() == "plain" and FastPath(fp8=True).approximate


@pytest.mark.parametrize("switches, how", [
    ({}, {"mode": None}),
    ({"autotune": True}, {"mode": "max-autotune-no-cudagraphs"}),
    ({"kernel_tuning": True}, {"options": {"coordinate_descent_tuning": True}}),
])  # fmt: skip
def test_autotune_compiles_the_blocks_in_max_autotune_without_inductors_graphs(switches, how, monkeypatch):
    """fast.autotune picks Inductor's mode, its own CUDA graphs off (rf.fast.graphs captures the passes);
    fast.kernel_tuning passes the coordinate-descent option alone (torch.compile takes a mode or options)."""
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    calls = []
    for block in model.blocks:
        monkeypatch.setattr(block, "compile", lambda dynamic, **kw: calls.append({"dynamic": dynamic, **kw}))
    FastPath(compile=True, **switches).prepare_model(model)
    assert calls == [{"dynamic": False, **how}] * len(model.blocks)


def test_kernel_tuning_compiles_the_blocks_to_the_same_stream():
    """The option reaches Inductor (an unknown key raises there) and the stream is the eager one: on a CPU the tuning
    has no Triton kernels to time, so this checks the plumbing; float32, C++ kernels against eager (reordered
    sums: ~1e-7 relative)."""
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    text = torch.randn(1, 6, model.config.text_dim)
    shape = (1, model.config.in_channels, 6, 4, 4)
    cache = CacheConfig(policy="ema_sink", sink_frames=3, attention_frames=9)
    with torch.no_grad():
        ref = StreamSampler(model, cache).rollout([(0, text)], shape, GeneratorNoise(0))
        runner = FastPath(compile=True, kernel_tuning=True).prepare_model(model)
        out = StreamSampler(runner, cache).rollout([(0, text)], shape, GeneratorNoise(0))
    assert all(block._compiled_call_impl is not None for block in model.blocks)
    assert relative_error(out, ref) < 1e-5


def test_cuda_graphs_say_what_they_need_on_a_cpu():
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    graphed = CudaGraphModel(model)
    cache = graphed.new_cache(CacheConfig())
    assert isinstance(cache, StaticKVCache) and graphed.new_cache(CacheConfig()) is cache  # the graphs' buffers
    text = model.encode_text(torch.randn(1, 6, model.config.text_dim))
    x = torch.randn(1, model.config.in_channels, 3, 4, 4)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        graphed(x, torch.zeros(1), text=text, cache=cache)
    with pytest.raises(ValueError, match="replays on its own cache"):
        graphed(x, torch.zeros(1), text=text, cache=model.new_cache(CacheConfig(), static=True))


def math_attention(calls: list):
    """An own attention kernel for `rf_kernel` (as fast.attention=fa3 installs one): fp32 SDPA, counting its calls."""

    def attention(q, k, v):  # [B, L, H, D] -> [B, L, H, D]
        calls.append(q.shape[1])
        out = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)

    return attention


def test_own_attention_kernel_keeps_the_function():
    """A module's `rf_kernel` (rf.models.attention.kernel) replaces diffusers' dispatcher, self- and cross-attention."""
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    text = torch.randn(1, 6, model.config.text_dim)
    shape = (1, model.config.in_channels, 12, 4, 4)  # 4 chunks: the window fills and evicts
    cache = CacheConfig(policy="ema_sink", sink_frames=3, attention_frames=9)
    calls = []
    with torch.no_grad():
        ref = StreamSampler(model, cache).rollout([(0, text)], shape, GeneratorNoise(0))
        for block in model.blocks:
            block.attn1.rf_kernel = block.attn2.rf_kernel = math_attention(calls)
        static = FastPath(static_cache=True)
        out = StreamSampler(model, cache, **static.sampler_kwargs()).rollout([(0, text)], shape, GeneratorNoise(0))
    passes = 4 * 5 - 1  # 4 chunks of 4 denoising passes, and a cache pass after each chunk but the last
    skipped = 2 * 3  # each cache pass's last block stops at its K/V (kv_only): no attention of its own
    assert len(calls) == 2 * len(model.blocks) * passes - skipped  # every other attention call went through it
    assert relative_error(out, ref) < 1e-5  # fp32: the same function


def test_own_attention_kernel_refuses_a_mask():
    model = CausalWanTransformer3DModel(**tiny_wan_config()).eval()
    attn = model.blocks[0].attn1
    attn.rf_kernel = math_attention([])
    q = torch.randn(1, 8, attn.heads, model.config.attention_head_dim)
    with pytest.raises(ValueError, match="takes no attention mask"):
        kernel(attn, q, q, q, mask=torch.ones(8, 8, dtype=torch.bool))


def test_fa3_switch_says_how_to_install_it():
    fast = FastPath(attention="fa3")
    assert fast.gpu_only() == ["attention=fa3"]
    try:
        import fa3_fwd_interface  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install fa3-fwd"):
            fast.prepare_model(CausalWanTransformer3DModel(**tiny_wan_config()))
    else:
        pytest.skip("FlashAttention-3 is installed: test_fa3_kernel_matches_fp32_attention checks it")


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9, reason="Hopper only")
def test_fa3_kernel_matches_fp32_attention():
    pytest.importorskip("fa3_fwd_interface", reason="pip install fa3-fwd")
    from rf.fast.fa3 import flash_attention_3

    g = torch.Generator("cuda").manual_seed(0)
    q, k, v = (torch.randn(1, n, 12, 128, device="cuda", generator=g).bfloat16() for n in (4680, 9360, 9360))
    ref = torch.nn.functional.scaled_dot_product_attention(*(x.float().transpose(1, 2) for x in (q, k, v)))
    # bf16 output: each element rounded to 2^-9 relative, and bf16 P @ V inside the kernel; 1e-2 leaves 5x room
    assert relative_error(flash_attention_3(q, k, v).float(), ref.transpose(1, 2)) < 1e-2


@pytest.mark.parametrize("path", sorted((Path(CONF_DIR) / "variants").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_bench_variant_file_names_valid_switches(path):
    """make bench ARGS='variants=NAME': each variant of conf/variants/NAME.yaml is a valid FastPath (its preset, if it
    names one, resolved as rf.bench resolves it), lists one or more bounded policies and sets only the sampler's own
    keys; plain comes first (every check is against it, and the switches accumulate). A misspelt switch, or one that
    needs another, fails here and not on a GPU minutes into a call."""
    from hydra import compose, initialize_config_dir

    from rf.bench import variant_fast

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("bench", overrides=[f"variants={path.stem}"])
    variants = OmegaConf.to_container(cfg.variants)  # the file as composed: Hydra read it once
    sampler = OmegaConf.load(Path(CONF_DIR) / "sampler" / "default.yaml")
    assert next(iter(variants)) == "plain" and variants["plain"]["fast"] == {}  # every check is against plain
    for name, variant in variants.items():
        variant_fast(cfg, name, cfg.variants[name])  # raises on an unknown switch, value or preset
        assert variant["policies"] and set(variant["policies"]) <= {"full", "window", "sink", "ema_sink"}, name
        assert set(variant) <= {"fast", "policies", "sampler"} and set(variant.get("sampler", {})) <= set(sampler), name


@pytest.mark.parametrize("preset", ["exact", "approximate"])
def test_make_bench_measures_the_presets_themselves(preset):
    """conf/variants/default.yaml's exact and approximate rows are fast=exact and fast=approximate, switch for switch:
    what make bench reports for them is what make generate ARGS='fast=...' runs."""
    from hydra import compose, initialize_config_dir

    from rf.bench import variant_fast

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("generate", overrides=[f"fast={preset}"])
        bench = compose("bench", overrides=["variants=default"])
    assert variant_fast(bench, preset, bench.variants[preset]) == FastPath(**OmegaConf.to_container(cfg.fast))
    assert OmegaConf.to_container(bench.variants[preset].fast) == {"preset": preset}  # the preset itself, nothing over


def test_half_precision_attention_kernels_are_refused_for_a_float32_model():
    """cuDNN's, flash and FlashAttention-3's attention take bf16 / fp16 only: fast=exact on the toy (float32) would
    fail inside the first compiled pass ("No available kernel"); rf.stream refuses it before any work, with the fix."""
    from rf.stream import check_fast_path

    for attention in ("cudnn", "flash", "fa3"):
        refused = f"fast.attention={attention} computes in bf16 or fp16 only, and this model computes in float32 "
        with pytest.raises(ValueError, match=refused + ".* set dtype=bfloat16, or fast.attention=null"):
            check_fast_path(FastPath(attention=attention), torch.device("cuda"), torch.float32)
    check_fast_path(FastPath(attention="cudnn"), torch.device("cuda"), torch.bfloat16)  # no error
    check_fast_path(FastPath(attention="efficient"), torch.device("cuda"), torch.float32)  # takes float32
