"""fast.vae_norm_silu: the Wan decoder's RMS norm, SiLU and causal time padding in one Triton kernel
(rf.fast.vae_norm), run on a CPU in Triton's interpreter. TRITON_INTERPRET is read when a kernel is defined, so each
check runs in a fresh Python with it set (tests/unit/test_norm_rope.py's run_interpreted)."""

import pytest

from tests.unit.test_norm_rope import run_interpreted

pytest.importorskip("triton", reason="Triton comes with `make install` on Linux (pyproject's dev extras)")

KERNEL_CHECK = """
import torch
import torch.nn.functional as F
from rf.fast.vae_norm import norm_silu_frames

torch.manual_seed(0)

def reference(x, gamma, bias, cache, pad, scale):
    y = x.float() + (0 if bias is None else bias.float().view(1, -1, 1, 1, 1))
    y = F.silu(F.normalize(y, dim=1) * scale * gamma.float().view(1, -1, 1, 1, 1))
    before = torch.zeros(x.shape[0], x.shape[1], pad, *x.shape[3:])
    if cache is not None:
        kept = min(pad, cache.shape[2])
        before[:, :, pad - kept :] = cache[:, :, cache.shape[2] - kept :].float()
    return torch.cat([before, y], dim=2)

# 24 and 12 channels: the kernel's channel blocks are 32 and 16, their last lanes masked
for c, dtype, tol in ((24, torch.float32, 1e-6), (24, torch.bfloat16, 2e-2), (12, torch.float32, 1e-6)):
    wide = torch.randn(2, 32, 3, 5, 7)  # a wider convolution's output: x is its first c channels, strided
    layouts = {"channels-first": torch.randn(2, c, 3, 5, 7),
               "channels-last": torch.randn(2, c, 3, 5, 7).contiguous(memory_format=torch.channels_last_3d),
               "a channel slice": wide.contiguous(memory_format=torch.channels_last_3d)[:, :c],
               "one frame": torch.randn(2, c, 1, 5, 7)}
    gamma, bias = torch.rand(c, 1, 1, 1) + 0.5, torch.randn(c)
    for name, x in layouts.items():
        for b in (None, bias):
            for cache in (None, torch.randn(2, c, 1, 5, 7), torch.randn(2, c, 2, 5, 7)):
                args = (x.to(dtype), gamma.to(dtype), None if b is None else b.to(dtype),
                        None if cache is None else cache.to(dtype), 2, c**0.5)
                out = norm_silu_frames(*args)
                ref = reference(*args)
                assert out.shape == ref.shape and out.dtype == dtype, (out.shape, ref.shape, out.dtype)
                assert out.is_contiguous(memory_format=torch.channels_last_3d)
                err = ((out.float() - ref).norm() / ref.norm()).item()
                assert err < tol, (c, name, dtype, b is None, cache is None, err)
    print(c, dtype, f"{err:.1e}")
try:
    norm_silu_frames(torch.randn(1, 8, 2, 3, 3), torch.ones(6), None, None, 2, 1.0)
except ValueError as e:
    assert "x has 8 channels, gamma 6" in str(e), e
else:
    raise AssertionError("a gamma of the wrong width was accepted")
print("ok")
"""

DECODER_CHECK = """
import copy
import torch
from rf.models.vae import WanVideoAutoencoder
from rf.models.vae_forms import decoder_forward, residual_block_forward
from tests.unit.test_fast_path import relative_error, tiny_wan_vae
from diffusers.models.autoencoders.autoencoder_kl_wan import WanResidualBlock

torch.manual_seed(0)
plain = WanVideoAutoencoder(tiny_wan_vae())
for norm in plain.vae.decoder.modules():  # the tiny VAE's gammas are all 1: random ones, so a dropped gamma shows
    if hasattr(norm, "gamma"):
        norm.gamma.data = torch.rand(norm.gamma.shape) + 0.5
# 2 x 3 latents, 16 x 24 frames: launches of 6 to 4,608 pixels, 1 to 144 programs of 32, some with a masked tail.
# Triton's interpreter runs a launch's programs one by one: 4 x 6 latents took about three times as long
z = torch.randn(1, 16, 7, 2, 3)
ref = plain.stream_decoder().decode(z)
for switches in ({"conv2d": True, "channels_last": True, "conv3d_from": 32},
                 {"conv2d": True, "channels_last": True, "conv3d_from": 32, "min_out": 48, "subpixel": True,
                  "stack_taps": True, "whole_chunk": True}):
    fast = copy.deepcopy(plain)
    fast.speed_up(**switches, norm_silu=True, head_norm=True)
    head = fast.vae.decoder.conv_out
    assert getattr(fast.vae.decoder.forward, "__func__", None) is decoder_forward  # the head's norm in the kernel too
    calls = []  # the head's norm_out is skipped: its kernel runs instead
    fast.vae.decoder.norm_out.register_forward_hook(lambda *a: calls.append(1))
    blocks = [m for m in fast.vae.decoder.modules() if isinstance(m, WanResidualBlock)]
    kernel = [m for m in blocks if getattr(m.forward, "__func__", None) is residual_block_forward]
    # the tiny decoder's 32-channel blocks have 3-D convolutions; its last block's 16-channel ones stay 2-D
    assert kernel and len(kernel) < len(blocks), (len(kernel), len(blocks))
    assert all(m.conv1.in_channels >= 32 and m.conv2.in_channels >= 32 for m in kernel)
    decoder = fast.stream_decoder()
    out = torch.cat([decoder.decode(z[:, :, :1]), decoder.decode(z[:, :, 1:4]), decoder.decode(z[:, :, 4:])], dim=2)
    err = relative_error(out, ref)
    assert out.shape == ref.shape and err < 1e-5, err
    assert not calls, "diffusers' head ran"
    fast.speed_up(**switches)  # and back: diffusers' forward again
    assert not any(getattr(m.forward, "__func__", None) is residual_block_forward for m in blocks)
    assert "forward" not in fast.vae.decoder.__dict__
    print(sorted(switches), getattr(head, "rf_stack_taps", False), f"{err:.1e}")
odd = copy.deepcopy(plain)  # a block whose norm has a bias, or with dropout, keeps diffusers' forward
blocks = [m for m in odd.vae.decoder.modules() if isinstance(m, WanResidualBlock) and m.conv1.in_channels >= 32]
blocks[0].norm2.bias = torch.nn.Parameter(torch.zeros(blocks[0].norm2.gamma.shape))
blocks[1].dropout.p = 0.1
odd.vae.decoder.norm_out.bias = torch.nn.Parameter(torch.zeros(odd.vae.decoder.norm_out.gamma.shape))  # and the head
odd.speed_up(conv2d=True, channels_last=True, conv3d_from=32, norm_silu=True, head_norm=True)
assert [getattr(m.forward, "__func__", None) is residual_block_forward for m in blocks[:3]] == [False, False, True]
assert "forward" not in odd.vae.decoder.__dict__
try:
    copy.deepcopy(plain).speed_up(head_norm=True)
except ValueError as e:
    assert "head_norm=True feeds the head's convolution its padded frames: set conv2d=True too" in str(e), e
else:
    raise AssertionError("head_norm without conv2d was accepted")
try:
    copy.deepcopy(plain).speed_up(conv2d=True, norm_silu=True)
except ValueError as e:
    assert "norm_silu=True feeds the 3-D convolutions their padded frames: set conv3d_from too" in str(e), e
else:
    raise AssertionError("norm_silu without conv3d_from was accepted")
print("ok")
"""


def test_kernel_is_the_norm_silu_and_causal_padding_of_the_wan_decoder():
    """Against F.normalize * sqrt(C) * gamma, SiLU and the padding causal_frames builds (zeros, then the cache's last
    frames), for two channel counts: x channels-first, channels-last, a strided channel
    slice and a single frame; with and without the convolution's bias; no cache, one cached frame, two. float32: the
    same operations but the sum of squares' order, 1e-6 relative. bfloat16: one rounding of the output (2^-8
    relative; the interpreter truncates) and the inputs' own, 2e-2 bounds it where a wrong channel, frame or weight is
    off by O(1)."""
    out = run_interpreted(KERNEL_CHECK)
    assert out.strip().endswith("ok")


def test_decoder_with_the_kernel_streams_the_plain_decoders_frames():
    """The tiny Wan decoder with every 3-D residual block in the kernel's form (residual_block_forward), chunked
    1 + 3 + 3 latent frames of 2 x 3 latents, against the plain decoder's frames: fp32, 1e-5 as the other decoder
    switches; with the padded filters and the sub-pixel upsampling too; the RGB head's norm in the kernel as well
    (head_norm: its convolution on the stacked-frames path, then on the stacked-taps one), diffusers' norm_out not
    run. A block or head whose norm has a bias, or a block with dropout, keeps diffusers' forward. The switches are
    undone by speed_up without them, and refused without conv3d_from (norm_silu) or conv2d (head_norm). The norms'
    gammas are drawn in [0.5, 1.5] (the tiny VAE's are all 1): a kernel fed ones instead fails (0.34 the head's, 0.66
    the blocks')."""
    out = run_interpreted(DECODER_CHECK)
    assert out.strip().endswith("ok")


def test_head_norm_switch_needs_the_2d_path_and_a_gpu():
    """fast.vae_head_norm hands the head's convolution its padded frames on the 2-D path's forms; a Triton kernel."""
    from rf.fast.fast_path import FastPath

    with pytest.raises(ValueError, match="fast.vae_head_norm=true feeds the VAE's head its padded frames"):
        FastPath(vae_head_norm=True)
    assert "vae_head_norm" in FastPath(vae_conv2d=True, vae_head_norm=True).gpu_only()
