"""rf's autoencoder interface (`VideoAutoencoder`, `StreamDecoder`) and the Wan VAE behind it.

The interface, shared with rf.toy.autoencoder.ToyAutoencoder and rf.fast.taehv.TAEHVAutoencoder:

    encode(video [B, 3, T, H, W] in [-1, 1]) -> latents [B, C, F, h, w]   (normalised)
    decode(latents) -> video
    num_frames(latent_frames) -> video frames they decode to
    stream_decoder() -> StreamDecoder: decode(chunk) -> frames, keeping its causal state; reset()

The Wan VAE alone also has speed_up(...), the fast path's decoder switches (rf.fast.fast_path applies them where an
autoencoder has them; TAEHV and the toy autoencoder have none): its layers in the faster forms of rf.models.vae_forms.

diffusers' `AutoencoderKLWan.decode` clears its causal-conv cache on every call, so decoding
chunk by chunk through it would restart the temporal convolutions at each chunk boundary.
`WanStreamDecoder` drives the decoder itself, one latent frame at a time, keeping the cache
(`feat_map`) for the whole stream: chunked decoding equals one-shot decoding.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Protocol

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import (
    WanCausalConv3d,
    WanResample,
    WanResidualBlock,
    unpatchify,
)

from rf.fast.vae_norm import norm_silu_available
from rf.models.vae_forms import (
    SubpixelUpsample,
    causal_conv3d,
    causal_conv_as_2d,
    decoder_forward,
    pad_filters,
    residual_block_forward,
    stacks_outputs,
    takes_norm_silu,
    takes_norm_silu_head,
    use_upsample3d_forward,
)
from rf.utils.files import require_files
from rf.utils.instantiate import resolve_dtype


class StreamDecoder(Protocol):
    """Decodes a stream chunk by chunk, its causal state carried from one chunk to the next."""

    overlapped: bool  # True: decode runs on a side CUDA stream and submit() returns at once (rf.fast.overlap)

    def reset(self) -> None:
        """Start a new stream."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, C, f, h, w] (normalised) -> frames [B, 3, T, H, W] in [-1, 1]."""


class VideoAutoencoder(Protocol):
    """What the stream builder, training and evaluation ask of an autoencoder (see the module docstring)."""

    latent_channels: int  # C
    spatial_factor: int  # H / h
    temporal_factor: int  # video frames per latent frame after the first

    def num_frames(self, latent_frames: int) -> int: ...

    def encode(self, video: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...

    def stream_decoder(self) -> StreamDecoder: ...


class WanStreamDecoder:
    """The Wan VAE's StreamDecoder: one latent frame at a time through diffusers' decoder, its cache kept.

    whole_chunk: after the stream's first latent frame (decoded alone: Wan's time upsampling starts there), all of a
    call's latent frames go through the decoder at once. Every convolution is causal with its cache carried, so this
    is the same function (float64: identical; fp32: 1e-6), in a third of the calls for a 3-frame chunk."""

    overlapped = False

    def __init__(self, vae: AutoencoderKLWan, mean: torch.Tensor, std: torch.Tensor, channels_last: bool = False,
                 whole_chunk: bool = False):  # fmt: skip
        self.vae, self.mean, self.std, self.whole_chunk = vae, mean, std, whole_chunk
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.num_convs = sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
        self.reset()

    def reset(self) -> None:
        self.feat_map: list = [None] * self.num_convs
        self.first = True

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, C, f, h, w] (normalised) -> frames [B, 3, T, H, W] in [-1, 1]."""
        vae = self.vae
        z = latents.to(vae.dtype) * self.std.to(latents.device, vae.dtype) + self.mean.to(latents.device, vae.dtype)
        z = vae.post_quant_conv(z.contiguous(memory_format=self.memory_format))
        if not self.whole_chunk:
            pieces = z.split(1, dim=2)
        elif self.first and z.shape[2] > 1:  # the stream's first frame alone, then the rest at once
            pieces = [z[:, :, :1], z[:, :, 1:]]
        else:
            pieces = [z]
        out = []
        for piece in pieces:
            out.append(vae.decoder(piece, feat_cache=self.feat_map, feat_idx=[0], first_chunk=self.first))
            self.first = False
        video = torch.cat(out, dim=2)
        if vae.config.patch_size is not None:
            video = unpatchify(video, patch_size=vae.config.patch_size)
        return video.clamp(-1, 1)


class WanVideoAutoencoder(torch.nn.Module):
    """AutoencoderKLWan with Wan's latent normalisation: 4x in time (first frame alone), 8x in space.

    A VideoAutoencoder."""

    def __init__(self, vae: AutoencoderKLWan):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        z = vae.config.z_dim
        self.register_buffer("mean", torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1), persistent=False)
        self.latent_channels = z
        self.spatial_factor = vae.spatial_compression_ratio
        self.temporal_factor = vae.temporal_compression_ratio if hasattr(vae, "temporal_compression_ratio") else 4
        self.channels_last = self.whole_chunk = False  # speed_up sets them

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None, torch_dtype: str | torch.dtype = "float32"
    ) -> WanVideoAutoencoder:
        """A local diffusers VAE folder (`Wan2.1-T2V-1.3B-Diffusers/vae`, or the pipeline folder above it).

        path=None builds the published Wan2.1 VAE architecture (diffusers' defaults) with random weights:
        for benchmarks and tests, where speed and shapes do not depend on weight values.
        """
        dtype = resolve_dtype(torch_dtype)
        if path is None:
            return cls(torch.nn.Module.to(AutoencoderKLWan(), dtype))  # (diffusers .to() warns needlessly)
        path = Path(path)
        if (path / "vae").is_dir():
            path = path / "vae"
        require_files(
            path, ["config.json", ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")], "VAE"
        )
        return cls(AutoencoderKLWan.from_pretrained(path, torch_dtype=dtype, local_files_only=True))

    def num_frames(self, latent_frames: int) -> int:
        return 1 + self.temporal_factor * (latent_frames - 1)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        z = self.vae.encode(video.to(self.vae.dtype)).latent_dist.mode()
        return (z - self.mean.to(z)) / self.std.to(z)

    def speed_up(
        self,
        channels_last: bool = False,
        compile: bool = False,
        conv2d: bool = False,
        whole_chunk: bool = False,
        stack_taps: bool = False,
        subpixel: bool = False,
        conv3d_from: int | None = None,
        min_out: int | None = None,
        norm_silu: bool = False,
        head_norm: bool = False,
    ) -> None:
        """Decoder speed switches of the fast path (rf.fast.fast_path); the function decoded stays the same.

        channels_last: 3-D convolutions in channels-last-3d layout (cuDNN's fast kernels on tensor cores).
        compile: torch.compile the decoder (the causal-conv cache is a list it mutates: Dynamo replays that); the
        recompile limit goes up to 256, and the upsampling blocks take upsample3d_forward (no graph break).
        conv2d: every causal 3-D convolution computed as one 2-D convolution over stacked frames.
        whole_chunk: a chunk's latent frames through the decoder in one call, not one by one (WanStreamDecoder).
        stack_taps: with conv2d, a convolution with few outputs (the RGB head) stacks its taps' outputs, not its
        input frames (taps_then_sum: less memory moved; in bf16 the taps' sums are rounded once more).
        subpixel: the upsampling blocks' nearest-2x-then-3x3 convolutions as four 2x2 convolutions of the frames
        themselves (SubpixelUpsample: 2.25x fewer multiplications, no upsampled frames; in bf16 the weights of the
        taps that read one pixel are summed and rounded once).
        conv3d_from: with conv2d, the convolutions with at least this many input channels stay 3-D (causal_conv3d:
        cuDNN's 3-D kernels with the padding inside them, no stacked copy); the narrower ones take the 2-D path, and
        so does a head whose taps stack_taps stacks.
        min_out: with conv3d_from, those 3-D convolutions with fewer output channels than this compute zero filters
        up to it, the extra channels left unread (padded_filters: 96 -> 128 for the full-resolution block's).
        norm_silu: with conv3d_from, the residual blocks whose convolutions are 3-D compute each norm, SiLU and
        causal time padding as one Triton kernel (residual_block_forward, rf.fast.vae_norm).
        head_norm: with conv2d, the RGB head's norm, SiLU and causal time padding as that kernel too
        (decoder_forward)."""
        if stack_taps and not conv2d:
            raise ValueError("stack_taps=True changes how conv2d stacks: set conv2d=True too")
        if conv3d_from is not None and not conv2d:
            raise ValueError(f"conv3d_from={conv3d_from} picks which convolutions leave the 2-D path: set conv2d=True")
        if min_out is not None and conv3d_from is None:
            raise ValueError(f"min_out={min_out} pads the 3-D convolutions' outputs: set conv3d_from too")
        if norm_silu and conv3d_from is None:
            raise ValueError("norm_silu=True feeds the 3-D convolutions their padded frames: set conv3d_from too")
        if head_norm and not conv2d:
            raise ValueError("head_norm=True feeds the head's convolution its padded frames: set conv2d=True too")
        if (norm_silu or head_norm) and (why := norm_silu_available()) is not None:
            raise RuntimeError(why)
        self.whole_chunk = whole_chunk
        if subpixel:
            for module in self.vae.decoder.modules():
                if isinstance(module, WanResample) and module.mode.startswith("upsample"):
                    if not isinstance(module.resample, SubpixelUpsample):
                        module.resample = SubpixelUpsample(module.resample[1])
        if channels_last:
            for module in [self.vae.post_quant_conv, *self.vae.decoder.modules()]:
                if isinstance(module, torch.nn.Conv3d):
                    module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
                if isinstance(module, SubpixelUpsample):
                    module.channels_last = True
            self.channels_last = True
        if conv2d:  # after channels_last: the padded filters take the weight's layout
            for module in [self.vae.post_quant_conv, *self.vae.decoder.modules()]:
                if isinstance(module, WanCausalConv3d):
                    module.rf_stack_taps = stack_taps and stacks_outputs(module)
                    wide = conv3d_from is not None and module.in_channels >= conv3d_from and not module.rf_stack_taps
                    module.forward = types.MethodType(causal_conv3d if wide else causal_conv_as_2d, module)
                    pad_filters(module, min_out if wide else None)
            for module in self.vae.decoder.modules():
                if isinstance(module, WanResidualBlock):
                    if norm_silu and takes_norm_silu(module):
                        module.forward = types.MethodType(residual_block_forward, module)
                    else:
                        module.__dict__.pop("forward", None)  # diffusers' own
        decoder = self.vae.decoder
        if head_norm and takes_norm_silu_head(decoder):
            decoder.forward = types.MethodType(decoder_forward, decoder)
        else:
            decoder.__dict__.pop("forward", None)  # diffusers' own
        if compile:  # the upsampling blocks' cache marker tested by type: no graph break under torch 2.11
            use_upsample3d_forward(self.vae.decoder)
        if compile and self.vae.decoder._compiled_call_impl is None:  # once: a second compile starts over
            # every block class meets several channel counts, chunk lengths and cache states: one graph each, more than
            # the default 8; and the bench's variants change the switches of one decoder (rf.fast.recompiles)
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
            self.vae.decoder.compile(dynamic=False)

    def stream_decoder(self) -> WanStreamDecoder:
        return WanStreamDecoder(self.vae, self.mean, self.std, self.channels_last, self.whole_chunk)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.stream_decoder().decode(latents)
