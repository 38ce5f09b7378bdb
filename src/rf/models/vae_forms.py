"""The Wan decoder's layers in faster forms with the same sums, which WanVideoAutoencoder.speed_up (rf.models.vae)
installs for the fast path's decoder switches (rf.fast.fast_path):

    causal_conv_as_2d     a causal 3-D convolution as one 2-D convolution over stacked frames (vae_conv2d), or over
                          its taps stacked along the outputs where they are few (taps_then_sum: vae_stack_taps)
    causal_conv3d         the same as cuDNN's 3-D convolution with its spatial padding inside (vae_conv3d_from),
                          optionally with zero filters up to a tile-friendly width (pad_filters: vae_min_out)
    residual_block_forward  a residual block whose norms, SiLUs and causal padding are one kernel each
                          (rf.fast.vae_norm: vae_norm_silu), its convolutions cuDNN's 3-D ones without their bias
    decoder_forward       the decoder with its RGB head's norm, SiLU and causal padding as that kernel too
                          (vae_head_norm)
    SubpixelUpsample      nearest-2x-then-3x3 upsampling as four 2x2 convolutions of the frames (vae_subpixel)
    upsample3d_forward    the time-and-space upsampling block with its cache marker tested by type (vae_compile)

Each keeps diffusers' parameters and their state-dict names; tests/unit/test_fast_path.py checks each against
diffusers' own layer in float32.
"""

from __future__ import annotations

import types

import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import (
    CACHE_T,
    WanCausalConv3d,
    WanDecoder3d,
    WanResample,
    WanResidualBlock,
)

from rf.fast.vae_norm import norm_silu_frames


def causal_frames(conv: WanCausalConv3d, x: torch.Tensor, cache_x: torch.Tensor | None = None) -> torch.Tensor:
    """x [B, C, T, H, W] with the kt - 1 frames of causal past a convolution reads before it: the cached frames
    (cache_x), zeros for what the cache lacks (the stream's start), as diffusers' WanCausalConv3d pads in time.
    -> [B, C, T + kt - 1, H, W]; the spatial padding is left to the convolution."""
    pad_t = conv._padding[4]
    if cache_x is not None and pad_t > 0:
        x = torch.cat([cache_x.to(x.device), x], dim=2)
        pad_t -= cache_x.shape[2]
    if pad_t > 0:
        x = torch.nn.functional.pad(x, (0, 0, 0, 0, pad_t, 0))
    return x


def causal_conv_as_2d(conv: WanCausalConv3d, x: torch.Tensor, cache_x: torch.Tensor | None = None) -> torch.Tensor:
    """WanCausalConv3d.forward as a 2-D convolution (the same sums; cuDNN's 2-D kernels are the faster ones).

    Output frame j of a (kt, kh, kw) convolution sums kt 2-D convolutions over input frames j .. j+kt-1, which is
    one 2-D convolution over those frames stacked along channels: [B*T_out, kt*C, H, W] * [O, kt*C, kh, kw]; or,
    where the outputs are few and speed_up(stack_taps=True) marked the convolution, over the frames once with the
    taps stacked along the outputs (taps_then_sum).
    x [B, C, T, H, W] (cache_x: the previous frames the causal padding takes from) -> [B, O, T_out, H, W]."""
    return conv2d_frames(conv, causal_frames(conv, x, cache_x))


def conv2d_frames(conv: WanCausalConv3d, x: torch.Tensor) -> torch.Tensor:
    """causal_conv_as_2d's convolution of frames already padded in time (causal_frames, or norm_silu_frames).
    x [B, C, T + kt - 1, H, W] -> [B, O, T, H, W]."""
    pad_w, _, pad_h = conv._padding[:3]
    (kt, kh, kw), out_channels = conv.kernel_size, conv.out_channels
    b, c, t, h, w = x.shape
    t_out = t - kt + 1
    frames = x.transpose(1, 2)  # [B, T, C, H, W]
    if getattr(conv, "rf_stack_taps", False):  # speed_up(stack_taps=True), where the outputs are few
        return taps_then_sum(conv, frames, t_out, (pad_h, pad_w))
    stacked = torch.cat([frames[:, i : i + t_out] for i in range(kt)], dim=2) if kt > 1 else frames
    stacked = stacked.reshape(b * t_out, kt * c, h, w)
    if conv.weight.is_contiguous(memory_format=torch.channels_last_3d):
        stacked = stacked.contiguous(memory_format=torch.channels_last)
    weight = conv.weight.transpose(1, 2).reshape(out_channels, kt * c, kh, kw)  # frame-major, like `stacked`
    y = torch.nn.functional.conv2d(stacked, weight, conv.bias, stride=conv.stride[1:], padding=(pad_h, pad_w))
    return y.view(b, t_out, out_channels, *y.shape[-2:]).transpose(1, 2)


def causal_conv3d(conv: WanCausalConv3d, x: torch.Tensor, cache_x: torch.Tensor | None = None) -> torch.Tensor:
    """WanCausalConv3d.forward with the spatial zero padding inside cuDNN's 3-D convolution, not a padded copy: only
    the causal time padding (the cached frames, zeros before the stream's first) is concatenated, which torch.compile
    writes in place from the norm before it. Where the channels are many, cuDNN's 3-D kernels are as fast as the 2-D
    path's over stacked frames (experiments/bench/results/vae_convs.md) without the kt-fold stacked copy.
    x [B, C, T, H, W] (cache_x: the previous frames) -> [B, O, T_out, H, W]."""
    x = causal_frames(conv, x, cache_x)
    if not conv.weight.is_contiguous(memory_format=torch.channels_last_3d):
        return conv_frames(conv, x, with_bias=True)
    # channels-last in and out (cuDNN's outputs are, a CPU's need not be): frames, caches and norms in one layout.
    # One channels-first cache makes the concatenation, and every norm before it, write channels-first, and then
    # a transposed copy for the kernel (experiments/bench/results/profile_vae_3d96.md)
    y = conv_frames(conv, x.contiguous(memory_format=torch.channels_last_3d), with_bias=True)
    if padded_filters(conv)[0].shape[0] > conv.out_channels:  # the zero filters' channels sliced off: a view
        return y
    return y.contiguous(memory_format=torch.channels_last_3d)


def conv_frames(conv: WanCausalConv3d, frames: torch.Tensor, with_bias: bool) -> torch.Tensor:
    """The causal convolution of frames already padded in time (causal_frames, or norm_silu_frames), its spatial
    padding inside cuDNN's 3-D kernel, with its padded filters (padded_filters) and their zero channels sliced off.
    frames [B, C, T + kt - 1, H, W] -> [B, O, T, H, W]; without its bias where with_bias is False."""
    weight, bias = padded_filters(conv)
    pad_w, _, pad_h = conv._padding[:3]
    y = torch.nn.functional.conv3d(frames, weight, bias if with_bias else None, conv.stride, (0, pad_h, pad_w))
    return y[:, : conv.out_channels]


def residual_block_forward(block: WanResidualBlock, x: torch.Tensor, feat_cache=None, feat_idx=(0,)) -> torch.Tensor:
    """WanResidualBlock.forward with each norm, SiLU and causal time padding as one kernel (norm_silu_frames) and the
    convolutions as cuDNN's 3-D ones on the padded frames, their biases added by what reads their outputs (the next
    kernel, the residual sum). Each convolution's new cache is its padded input's last CACHE_T frames: the frames
    diffusers keeps (the activation's last two, or the cached last one and a single new frame), and at the stream's
    start a zero frame before a single new one, which reads as the zero padding it stands for. The block's
    convolutions must take the 3-D path (causal_conv3d; speed_up installs this form only there). In eval mode (the
    decoder's): no dropout. x [B, C, T, H, W] -> [B, O, T, H, W]."""
    if feat_cache is None:  # a decode without the stream's caches: diffusers' own
        return WanResidualBlock.forward(block, x)
    h = block.conv_shortcut(x)
    idx = feat_idx[0]
    y, bias = x, None
    for norm, conv, slot in ((block.norm1, block.conv1, idx), (block.norm2, block.conv2, idx + 1)):
        frames = norm_silu_frames(y, norm.gamma, bias, feat_cache[slot], conv._padding[4], norm.scale)
        feat_cache[slot] = frames[:, :, -CACHE_T:].clone()
        y, bias = conv_frames(conv, frames, with_bias=False), conv.bias
    feat_idx[0] += 2
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1, 1)
    return y + h


def decoder_forward(decoder: WanDecoder3d, x: torch.Tensor, feat_cache=None, feat_idx=(0,), first_chunk=False):
    """WanDecoder3d.forward with the head's norm, SiLU and causal time padding as one kernel (norm_silu_frames), as
    residual_block_forward does for the blocks: the RGB head's input written once, padded, channels-last, where
    Inductor wrote the normed frames and then their concatenation with the cached ones. Up to the head, diffusers'
    forward line for line. x [B, C, T, h, w] latents after post_quant_conv -> [B, 3, T', H, W]."""
    if feat_cache is None:  # a decode without the stream's caches: diffusers' own
        return WanDecoder3d.forward(decoder, x, feat_cache, feat_idx, first_chunk)
    idx = feat_idx[0]  # conv_in (diffusers')
    cache_x = x[:, :, -CACHE_T:, :, :].clone()
    if cache_x.shape[2] < 2 and feat_cache[idx] is not None:
        cache_x = torch.cat([feat_cache[idx][:, :, -1, :, :].unsqueeze(2).to(cache_x.device), cache_x], dim=2)
    x = decoder.conv_in(x, feat_cache[idx])
    feat_cache[idx] = cache_x
    feat_idx[0] += 1
    x = decoder.mid_block(x, feat_cache=feat_cache, feat_idx=feat_idx)
    for up_block in decoder.up_blocks:
        x = up_block(x, feat_cache=feat_cache, feat_idx=feat_idx, first_chunk=first_chunk)
    # the head: [zeros ; cached frames ; SiLU(RMSNorm(x))], and its new cache the padded frames' last CACHE_T
    # (diffusers' cache_x: the activation's last two, or the cached last one and a single new frame)
    idx, conv, norm = feat_idx[0], decoder.conv_out, decoder.norm_out
    frames = norm_silu_frames(x, norm.gamma, None, feat_cache[idx], conv._padding[4], norm.scale)
    feat_cache[idx] = frames[:, :, -CACHE_T:].clone()
    feat_idx[0] += 1
    if getattr(conv.forward, "__func__", None) is causal_conv3d:
        return conv_frames(conv, frames, with_bias=True)
    return conv2d_frames(conv, frames)


def takes_norm_silu_head(decoder: WanDecoder3d) -> bool:
    """Whether decoder_forward computes this decoder's function: the head's conv on a path that reads padded frames
    (causal_conv_as_2d or causal_conv3d: speed_up's conv2d), a SiLU and a norm without a bias."""
    forms = (causal_conv_as_2d, causal_conv3d)
    norm = decoder.norm_out
    return (getattr(decoder.conv_out.forward, "__func__", None) in forms and isinstance(decoder.nonlinearity,
            torch.nn.SiLU) and isinstance(norm.bias, float) and norm.bias == 0.0)  # fmt: skip


def takes_norm_silu(block: WanResidualBlock) -> bool:
    """Whether residual_block_forward computes this block's function: both convolutions on the 3-D path, norms
    without a bias (the kernel adds none) and no dropout (the form applies none). The Wan decoder's blocks all are,
    once their convolutions are 3-D."""
    convs_3d = all(getattr(c.forward, "__func__", None) is causal_conv3d for c in (block.conv1, block.conv2))
    no_bias = all(isinstance(n.bias, float) and n.bias == 0.0 for n in (block.norm1, block.norm2))
    return convs_3d and no_bias and block.dropout.p == 0


def padded_filters(conv: WanCausalConv3d) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight [O', C, kt, kh, kw] and bias [O'] the convolution runs with: its own, or with zero filters after
    them where speed_up(min_out=...) gave it some (pad_filters; O' = min_out). The real channels' sums are the same."""
    if "rf_padded_weight" in conv._buffers:
        return conv.rf_padded_weight, conv.rf_padded_bias
    return conv.weight, conv.bias


def pad_filters(conv: WanCausalConv3d, min_out: int | None) -> None:
    """Give the convolution zero filters up to min_out outputs, or take them away (min_out None, or not above its
    outputs). cuDNN tiles the outputs by 64 or 128 channels: 96 computed as 128 ran its kernel 19% faster on an H100
    (experiments/bench/results/conv96.json). The padded weight and bias are buffers (not in the state dict; rebuilt
    after every load_state_dict), so that the compiled decoder reads them as graph inputs with the weight's
    channels-last strides, as it reads the weight itself: Inductor lays a cuDNN convolution's input and output out
    channels-last when its weight is. Padded inside the compiled graph, the weight's layout was left to Inductor,
    which chose channels-first, and cuDNN transposed the frames both ways (results/profile_min_out.md). As buffers:
    a steady chunk 5.1 ms faster on an H200, 95% CI [2.5, 7.7] (results/bench_min_out_buffers.json)."""
    if min_out is None or min_out <= conv.out_channels:
        for name in ("rf_padded_weight", "rf_padded_bias"):
            conv._buffers.pop(name, None)
        return
    refresh_padded_filters(conv, min_out)
    if getattr(conv, "rf_pad_hook", None) is None:
        conv.rf_pad_hook = conv.register_load_state_dict_post_hook(refresh_after_load)


def refresh_after_load(conv: WanCausalConv3d, _incompatible_keys) -> None:
    """load_state_dict's post hook: the padded filters from the weights just loaded, as wide as they were."""
    if "rf_padded_weight" in conv._buffers:  # (pad_filters may have taken them away since)
        refresh_padded_filters(conv, len(conv.rf_padded_weight))


@torch.no_grad()
def refresh_padded_filters(conv: WanCausalConv3d, outputs: int) -> None:
    """conv's weight and bias with zero filters up to `outputs`, from its current ones, in the weight's memory
    format."""
    weight = conv.weight.detach()
    padded = torch.cat([weight, weight.new_zeros(outputs - conv.out_channels, *weight.shape[1:])])
    if weight.is_contiguous(memory_format=torch.channels_last_3d):
        padded = padded.contiguous(memory_format=torch.channels_last_3d)
    bias = conv.bias
    if bias is not None:
        bias = torch.cat([bias.detach(), bias.new_zeros(outputs - len(bias))])
    conv.register_buffer("rf_padded_weight", padded, persistent=False)
    conv.register_buffer("rf_padded_bias", bias, persistent=False)


def stacks_outputs(conv: WanCausalConv3d) -> bool:
    """Whether kt taps' outputs are fewer than one frame's inputs (the decoder's RGB head, 96 -> 3 x 3 taps): then
    stacking the taps' outputs (taps_then_sum) moves less memory than stacking kt input frames."""
    kt = conv.kernel_size[0]
    return kt > 1 and kt * conv.out_channels <= conv.in_channels


def taps_then_sum(conv: WanCausalConv3d, frames: torch.Tensor, t_out: int, padding: tuple[int, int]) -> torch.Tensor:
    """The causal convolution with its temporal taps stacked along the *output* channels: every input frame goes
    through all kt taps in one 2-D convolution [O*kt outputs], and output frame j sums tap i of frame j + i. The
    same sums as the stacked-frames path, in another order; the frames are read once, not kt times, and the
    convolution's reduction is kt times shorter for the same few outputs.
    frames [B, T, C, H, W] (the cached frames first) -> [B, O, T_out, H, W]."""
    (kt, kh, kw), out_channels = conv.kernel_size, conv.out_channels
    b, t, c, h, w = frames.shape
    flat = frames.reshape(b * t, c, h, w)
    if conv.weight.is_contiguous(memory_format=torch.channels_last_3d):
        flat = flat.contiguous(memory_format=torch.channels_last)
    weight = conv.weight.permute(2, 0, 1, 3, 4).reshape(kt * out_channels, c, kh, kw)  # [kt*O, C, kh, kw], tap-major
    z = torch.nn.functional.conv2d(flat, weight, None, stride=conv.stride[1:], padding=padding)  # [B*T, kt*O, H, W]
    z = z.view(b, t, kt, out_channels, *z.shape[-2:])
    y = sum(z[:, i : i + t_out, i] for i in range(kt))  # [B, T_out, O, H, W]: tap i of frame j + i
    if conv.bias is not None:
        y = y + conv.bias.view(1, 1, -1, 1, 1)
    return y.transpose(1, 2)


# R[p] maps a 3-tap kernel over the 2x-upsampled rows to a 2-tap kernel over the rows themselves, for output rows of
# parity p: even rows 2a read upsampled rows 2a-1, 2a, 2a+1 = rows a-1, a, a; odd rows read a, a, a+1.
SUBPIXEL_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # [p, 2, 3]


def subpixel_weight(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution's weight after a nearest 2x upsampling -> the four 2x2 weights of its output parities.
    weight [O, C, 3, 3] -> [4*O, C, 2, 2], ordered (p, q, o): rows of parity p, columns of parity q. Summed in
    float64, rounded once to the weight's dtype."""
    taps = SUBPIXEL_TAPS.to(weight.device, torch.float64)
    out = torch.einsum("piy,ocyx,qjx->pqocij", taps, weight.double(), taps)
    return out.reshape(-1, *out.shape[3:]).to(weight.dtype)


def subpixel_upsample_conv(conv: torch.nn.Conv2d, frames: torch.Tensor, weight: torch.Tensor | None = None):
    """conv(nearest_2x(frames)) for a 3x3, padding-1 convolution, without the 4x larger upsampled frames: each output
    parity (p, q) is a 2x2 convolution of the frames (the taps that read the same source pixel summed beforehand,
    subpixel_weight), all four as one convolution [4*O outputs], then interleaved. 16 taps per source pixel where
    the upsampled convolution takes 36: 2.25x fewer multiplications, the same sums.
    frames [N, C, h, w] -> [N, O, 2h, 2w]; weight: subpixel_weight(conv.weight), computed here if not given."""
    n, _, h, w = frames.shape
    o = conv.out_channels
    weight = subpixel_weight(conv.weight) if weight is None else weight
    z = torch.nn.functional.conv2d(frames, weight, None, padding=1)  # [N, 4*O, h+1, w+1]: parity p at rows p..p+h
    if frames.is_contiguous(memory_format=torch.channels_last):  # interleaved with the channels innermost, as read
        z = z.permute(0, 2, 3, 1).reshape(n, h + 1, w + 1, 2, 2, o)
        parities = [[z[:, p : p + h, q : q + w, p, q] for q in range(2)] for p in range(2)]  # [N, h, w, O] each
        y = torch.stack([torch.stack(row, dim=3) for row in parities], dim=2)  # [N, h, 2, w, 2, O]
        y = y.reshape(n, 2 * h, 2 * w, o).permute(0, 3, 1, 2)  # [N, O, 2h, 2w], channels-last
    else:
        z = z.view(n, 2, 2, o, h + 1, w + 1)
        parities = [[z[:, p, q, :, p : p + h, q : q + w] for q in range(2)] for p in range(2)]  # [N, O, h, w] each
        y = torch.stack([torch.stack(row, dim=-1) for row in parities], dim=-3)  # [N, O, h, 2, w, 2]
        y = y.reshape(n, o, 2 * h, 2 * w)
    return y if conv.bias is None else y + conv.bias.view(1, -1, 1, 1)


class SubpixelUpsample(torch.nn.Module):
    """Drop-in for WanResample's `resample` (nearest-exact 2x, then a 3x3 convolution): subpixel_upsample_conv with
    the parities' weights computed once, from the convolution's weights when it is swapped in and again after every
    load_state_dict (a checkpoint loaded after speed_up). Nearest-exact at exactly 2x reads source pixel
    floor(i / 2), as nearest does. The convolution keeps its place, `1`, so the state dict's names stay those of
    diffusers' nn.Sequential. frames [N, C, h, w] -> [N, O, 2h, 2w]."""

    def __init__(self, conv: torch.nn.Conv2d):
        super().__init__()
        if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1):
            raise ValueError(f"subpixel upsampling needs a 3x3, padding-1, stride-1 convolution, not {conv}")
        self.add_module("1", conv)  # resample.1.weight, as in diffusers' nn.Sequential(WanUpsample, Conv2d)
        self.register_buffer("weight", subpixel_weight(conv.weight.detach()), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, _: module.refresh())

    @torch.no_grad()
    def refresh(self) -> None:
        """The parities' weights from the convolution's current ones."""
        self.weight = subpixel_weight(self.conv.weight.detach())

    @property
    def conv(self) -> torch.nn.Conv2d:
        return self._modules["1"]

    channels_last = False  # speed_up(channels_last=True): the frames in and out channels-last, like the 3-D convs'

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if self.channels_last:  # (Wan's time upsampling before this interleaves frames channels-first)
            frames = frames.contiguous(memory_format=torch.channels_last)
        if frames.is_contiguous(memory_format=torch.channels_last):
            weight = weight.contiguous(memory_format=torch.channels_last)
        return subpixel_upsample_conv(self.conv, frames, weight)


def upsample3d_forward(
    module: WanResample, x: torch.Tensor, feat_cache: list | None = None, feat_idx: list | None = None
) -> torch.Tensor:
    """WanResample.forward for mode="upsample3d" (Wan's 2x time and space upsampling), with the same sums, its cache
    marker tested by type. diffusers marks the stream's first frame with the string "Rep" in the cache and then
    compares each cached tensor with that string (autoencoder_kl_wan.py:290). torch 2.11's Dynamo cannot trace a
    tensor's comparison with a string, so a compiled decoder broke into frames guarded on every cache state; a new
    stream's first chunk then met states the first stream had not, and compiled again (experiments/bench/README.md,
    the ninth session). speed_up(compile=True) installs this form.
    x [B, C, t, h, w] (feat_cache, feat_idx: the decoder's causal cache and its position, as diffusers passes them)
    -> [B, O, t', 2h, 2w]: t' = 2t, or t at the stream's first call."""
    b, c, t, h, w = x.shape
    if feat_cache is not None:
        idx = feat_idx[0]
        cached = feat_cache[idx]
        if cached is None:  # the stream's first frame: no time upsampling, and the mark for the next call
            feat_cache[idx] = "Rep"
        else:
            first = isinstance(cached, str)  # the call after the first frame: zeros stand for the frames before
            cache_x = x[:, :, -CACHE_T:].clone()
            if cache_x.shape[2] < 2:  # one new frame: the cached one before it
                before = torch.zeros_like(cache_x) if first else cached[:, :, -1:]
                cache_x = torch.cat([before, cache_x], dim=2)
            x = module.time_conv(x) if first else module.time_conv(x, cached)
            feat_cache[idx] = cache_x
            x = x.reshape(b, 2, c, t, h, w)  # the 2 temporal phases, interleaved
            x = torch.stack((x[:, 0], x[:, 1]), 3).reshape(b, c, t * 2, h, w)
        feat_idx[0] += 1
    t = x.shape[2]
    x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    x = module.resample(x)
    return x.view(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)


def use_upsample3d_forward(decoder: torch.nn.Module) -> int:
    """Give every upsample3d block of a Wan decoder upsample3d_forward, in place; returns how many."""
    blocks = [m for m in decoder.modules() if isinstance(m, WanResample) and m.mode == "upsample3d"]
    for module in blocks:
        module.forward = types.MethodType(upsample3d_forward, module)
    return len(blocks)
