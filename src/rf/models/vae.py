"""The Wan VAE behind rf's autoencoder interface, with a streaming decoder.

Interface shared with `rf.toy.ToyAutoencoder` (what the sampler's callers rely on):

    encode(video [B, 3, T, H, W] in [-1, 1]) -> latents [B, C, F, h, w]   (normalised)
    decode(latents) -> video
    num_frames(latent_frames) -> video frames they decode to
    stream_decoder() -> object with decode(chunk) -> frames, and reset()

diffusers' `AutoencoderKLWan.decode` clears its causal-conv cache on every call, so decoding
chunk by chunk through it would restart the temporal convolutions at each chunk boundary.
`WanStreamDecoder` drives the decoder itself, one latent frame at a time, keeping the cache
(`feat_map`) for the whole stream: chunked decoding equals one-shot decoding.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, unpatchify

from rf.utils.files import require_files
from rf.utils.instantiate import resolve_dtype


class WanStreamDecoder:
    def __init__(self, vae: AutoencoderKLWan, mean: torch.Tensor, std: torch.Tensor, channels_last: bool = False):
        self.vae, self.mean, self.std = vae, mean, std
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
        out = []
        for i in range(z.shape[2]):
            frame = vae.decoder(z[:, :, i : i + 1], feat_cache=self.feat_map, feat_idx=[0], first_chunk=self.first)
            self.first = False
            out.append(frame)
        video = torch.cat(out, dim=2)
        if vae.config.patch_size is not None:
            video = unpatchify(video, patch_size=vae.config.patch_size)
        return video.clamp(-1, 1)


class WanVideoAutoencoder(torch.nn.Module):
    """AutoencoderKLWan with Wan's latent normalisation: 4x in time (first frame alone), 8x in space."""

    def __init__(self, vae: AutoencoderKLWan):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        z = vae.config.z_dim
        self.register_buffer("mean", torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1), persistent=False)
        self.latent_channels = z
        self.spatial_factor = vae.spatial_compression_ratio
        self.temporal_factor = vae.temporal_compression_ratio if hasattr(vae, "temporal_compression_ratio") else 4
        self.channels_last = False  # speed_up(channels_last=True) sets it

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

    def speed_up(self, channels_last: bool = False, compile: bool = False) -> None:
        """Decoder speed switches of the fast path (rf.models.fast_path); the function decoded stays the same.

        channels_last: 3-D convolutions in channels-last-3d layout (cuDNN's fast kernels on tensor cores).
        compile: torch.compile the decoder (the causal-conv cache is a list it mutates: Dynamo replays that)."""
        if channels_last:
            for module in [self.vae.post_quant_conv, *self.vae.decoder.modules()]:
                if isinstance(module, torch.nn.Conv3d):
                    module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
            self.channels_last = True
        if compile:
            self.vae.decoder.compile(dynamic=False)

    def stream_decoder(self) -> WanStreamDecoder:
        return WanStreamDecoder(self.vae, self.mean, self.std, self.channels_last)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.stream_decoder().decode(latents)
