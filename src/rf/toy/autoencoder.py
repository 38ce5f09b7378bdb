"""A parameter-free stand-in for the Wan VAE, with the same latent interface.

Encoding folds each f x f pixel block into channels (pixel-unshuffle) and keeps time 1:1, so latents
are [B, 3 f^2, T, H/f, W/f] and decoding is exact. Toy runs then train the generator alone: whatever it
gets wrong is the generator's fault, never the autoencoder's.
"""

from __future__ import annotations

import torch
from einops import rearrange


def _check_5d(x: torch.Tensor, name: str, channels: int, factor: int) -> None:
    if x.ndim != 5:
        raise ValueError(f"{name} has shape {tuple(x.shape)}: need 5-D [B, C, T, H, W]")
    if x.shape[1] != channels:
        raise ValueError(f"{name} has {x.shape[1]} channels (shape {tuple(x.shape)}); allowed: {channels}")
    if name == "video" and (x.shape[-2] % factor or x.shape[-1] % factor):
        raise ValueError(f"video size {tuple(x.shape[-2:])} (H, W) must be divisible by factor {factor}")


class ToyAutoencoder(torch.nn.Module):
    """Exact, parameter-free 'VAE': pixel-unshuffle in space, 1:1 in time (a rf.models.vae.VideoAutoencoder)."""

    def __init__(self, factor: int = 2, scale: float = 1.0):
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor {factor} must be an integer >= 1")
        if not scale > 0:
            raise ValueError(f"scale {scale} must be > 0")
        self.spatial_factor = factor
        self.temporal_factor = 1
        self.latent_channels = 3 * factor**2
        self.scale = scale

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] in [-1, 1] -> [B, 3 f^2, T, H/f, W/f], times `scale`."""
        f = self.spatial_factor
        _check_5d(video, "video", 3, f)
        return rearrange(video, "b c t (h p) (w q) -> b (c p q) t h w", p=f, q=f) * self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, 3 f^2, F, h, w] -> [B, 3, F, h f, w f], clamped to [-1, 1] like a real decoder's output."""
        f = self.spatial_factor
        _check_5d(latents, "latents", self.latent_channels, f)
        video = rearrange(latents / self.scale, "b (c p q) t h w -> b c t (h p) (w q)", p=f, q=f)
        return video.clamp(-1, 1)

    def num_frames(self, latent_frames: int) -> int:
        """Video frames decoded from that many latent frames (Wan's 4x causal VAE gives 1 + 4 (n - 1))."""
        if latent_frames < 1:
            raise ValueError(f"latent_frames {latent_frames} must be >= 1")
        return latent_frames

    def stream_decoder(self) -> ToyStreamDecoder:
        return ToyStreamDecoder(self)


class ToyStreamDecoder:
    """Chunk-by-chunk decoding with the Wan streaming decoder's API.

    Wan's decoder carries a causal-conv cache from chunk to chunk; the toy decoder sees one frame at a
    time, so it has no state and `reset` has nothing to clear.
    """

    overlapped = False  # rf.models.vae.StreamDecoder

    def __init__(self, autoencoder: ToyAutoencoder):
        self.autoencoder = autoencoder

    def reset(self) -> None:
        """Start a new stream."""

    def decode(self, chunk: torch.Tensor) -> torch.Tensor:
        """[B, C, f, h, w] latents -> [B, 3, f, H, W] frames."""
        return self.autoencoder.decode(chunk)
