"""TAEHV: a tiny, approximate stand-in for the Wan 2.1 VAE decoder, streaming chunk by chunk.

TAEHV ("Tiny AutoEncoder for Hunyuan Video", github.com/madebyollin/taehv) is a small 2-D conv net trained to
mimic a video VAE; its `taew2_1` weights mimic the Wan 2.1 VAE. It is many times cheaper than the Wan decoder
but only an approximation of it: how far its frames are from the Wan VAE's is what the bench measures.
Only the decoder is rebuilt here; `TAEHVAutoencoder` has the decoding half of `WanVideoAutoencoder`'s
interface (latents [B, 16, F, h, w] -> video [B, 3, 1 + 4 (F - 1), 8h, 8w] in [-1, 1]).

Decoder, as published (`TAEHV.decoder`, an nn.Sequential, so the state-dict keys are `decoder.<index>.*`):

    0 Clamp, 1 conv 16->256, 2 ReLU,
    3-5 MemBlock(256), 6 Upsample x2, 7 TGrow(256, 1), 8 conv 256->128,
    9-11 MemBlock(128), 12 Upsample x2, 13 TGrow(128, 2), 14 conv 128->64,
    15-17 MemBlock(64), 18 Upsample x2, 19 TGrow(64, 2), 20 conv 64->64,
    21 ReLU, 22 conv 64->3                               (frames in [0, 1] after a clamp)

Every layer works on frames independently except the MemBlocks, which also see their own input at the
previous frame (zeros before the first), and the TGrows, which turn one frame into `stride` frames. So a
stream is decoded chunk by chunk, each chunk's frames in one batch, with each MemBlock keeping its last input
frame: that equals decoding the whole latent sequence at once. F latents give 4F frames, of which the first 3
(before the first latent's single frame, as in Wan's causal VAE) are dropped at the start of the stream.

Latent scale: TAEHV uses no latent shift or scale; it decodes exactly what the diffusion model produces
(the taehv README). For Wan 2.1 that is the normalised latent (z - latents_mean) / latents_std, i.e. rf's
latents as they are: ComfyUI normalises Wan latents before its TAEHV decode, and the Self Forcing demo hands
the generator's latents to TAEHV directly while its Wan decoder un-normalises them first.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from rf.utils.instantiate import resolve_dtype

WEIGHT_FILES = ("taew2_1.pth", "taew2_1.safetensors")
SOURCE = "the published TAEHV weights for Wan 2.1: taew2_1.pth from github.com/madebyollin/taehv"


def conv(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of the latents to (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """Residual conv block that also sees its input at the previous frame: the decoder's only link in time."""

    def __init__(self, n: int):
        super().__init__()
        self.conv = nn.Sequential(conv(2 * n, n), nn.ReLU(inplace=True), conv(n, n), nn.ReLU(inplace=True), conv(n, n))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        """x, past [N, C, H, W] (past: the same block's input one frame earlier) -> [N, C, H, W]."""
        return self.act(self.conv(torch.cat([x, past], dim=1)) + x)


class TGrow(nn.Module):
    """Temporal upsampling: a 1x1 conv makes `stride` frames' channels out of each frame."""

    def __init__(self, n: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n, n * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N * stride, C, H, W], each frame followed by the frames it grew into."""
        return self.conv(x).reshape(-1, *x.shape[1:])


class TAEHVDecoder(nn.Sequential):
    """The published TAEHV decoder for Wan 2.1 (16 latent channels; 4x in time, 8x in space)."""

    latent_channels = 16
    widths = (256, 128, 64, 64)
    time_strides = (1, 2, 2)  # the published decoder_time_upscale=(False, True, True)

    def __init__(self):
        layers: list[nn.Module] = [Clamp(), conv(self.latent_channels, self.widths[0]), nn.ReLU(inplace=True)]
        for n, n_next, stride in zip(self.widths[:-1], self.widths[1:], self.time_strides, strict=True):
            layers += [MemBlock(n), MemBlock(n), MemBlock(n), nn.Upsample(scale_factor=2), TGrow(n, stride)]
            layers.append(conv(n, n_next, bias=False))
        layers += [nn.ReLU(inplace=True), conv(self.widths[-1], 3)]
        super().__init__(*layers)
        self.time_upscale = math.prod(self.time_strides)
        self.frames_to_trim = self.time_upscale - 1  # raw frames before the first latent's one video frame

    def forward(self, latents: torch.Tensor, memory: dict[int, torch.Tensor]) -> torch.Tensor:
        """latents [B, F, C, h, w] -> frames [B, 4F, 3, 8h, 8w] in [0, 1], untrimmed.

        `memory` maps a MemBlock's index to its last input frame [B, 1, C, H, W] and is updated in place:
        pass the same dict for consecutive chunks of one stream, an empty one to start a stream.
        """
        b = latents.shape[0]
        x = latents.flatten(0, 1)  # [B F, C, h, w], batch-major
        for i, layer in enumerate(self):
            if isinstance(layer, MemBlock):
                frames = x.unflatten(0, (b, -1))  # [B, T, C, H, W]
                last = memory.get(i, torch.zeros_like(frames[:, :1]))
                past = torch.cat([last, frames[:, :-1]], dim=1).flatten(0, 1)  # each frame's predecessor
                memory[i] = frames[:, -1:].clone()
                x = layer(x, past)
            else:
                x = layer(x)
        return x.unflatten(0, (b, -1)).clamp(0, 1)


class TAEHVStreamDecoder:
    """Decodes a latent stream chunk by chunk; the MemBlocks' last frames carry over between chunks."""

    overlapped = False

    def __init__(self, decoder: TAEHVDecoder):
        self.decoder = decoder
        self.reset()

    def reset(self) -> None:
        self.memory: dict[int, torch.Tensor] = {}
        self.started = False

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, 16, f, h, w] (Wan-normalised) -> frames [B, 3, T, 8h, 8w] in [-1, 1].

        T = 4f, less the 3 leading frames on the stream's first chunk.
        """
        channels = self.decoder.latent_channels
        if latents.ndim != 5 or latents.shape[1] != channels or latents.shape[2] < 1:
            raise ValueError(f"latents have shape {tuple(latents.shape)}: need [B, {channels}, f >= 1, h, w]")
        dtype = self.decoder[1].weight.dtype
        frames = self.decoder(latents.to(dtype).transpose(1, 2), self.memory)  # [B, 4f, 3, H, W] in [0, 1]
        if not self.started:
            frames = frames[:, self.decoder.frames_to_trim :]
            self.started = True
        return frames.transpose(1, 2) * 2 - 1


class TAEHVAutoencoder(nn.Module):
    """TAEHV's decoder behind rf's autoencoder interface (rf.models.vae.VideoAutoencoder, decoding only): an
    approximate Wan 2.1 VAE."""

    latent_channels = TAEHVDecoder.latent_channels
    spatial_factor = 8
    temporal_factor = 4

    def __init__(self):
        super().__init__()
        self.decoder = TAEHVDecoder().eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path: str | Path | None, torch_dtype: str | torch.dtype = "bf16") -> TAEHVAutoencoder:
        """A local `taew2_1.pth` / `.safetensors` (or a folder holding one); nothing is downloaded.

        The file is the published full TAEHV state dict: its `decoder.*` keys are loaded, its `encoder.*` keys
        ignored. path=None builds the architecture with random weights, for benchmarks and tests.
        """
        model = cls()
        if path is not None:
            file = _weights_file(Path(path))
            model.decoder.load_state_dict(_decoder_state(_read(file), model.decoder.state_dict(), file))
        return model.to(resolve_dtype(torch_dtype))

    def num_frames(self, latent_frames: int) -> int:
        return 1 + self.temporal_factor * (latent_frames - 1)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TAEHVAutoencoder only decodes: encode with the Wan VAE (rf.models.vae)")

    def stream_decoder(self) -> TAEHVStreamDecoder:
        return TAEHVStreamDecoder(self.decoder)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, 16, F, h, w] (Wan-normalised) -> video [B, 3, 1 + 4 (F - 1), 8h, 8w] in [-1, 1]."""
        return self.stream_decoder().decode(latents)


def _weights_file(path: Path) -> Path:
    if path.is_dir():
        found = [path / name for name in WEIGHT_FILES if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(f"TAEHV folder {path} holds neither {' nor '.join(WEIGHT_FILES)} ({SOURCE})")
        return found[0]
    if not path.is_file():
        raise FileNotFoundError(f"TAEHV weights file {path} does not exist ({SOURCE})")
    return path


def _read(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        return load_file(file)
    return torch.load(file, map_location="cpu", weights_only=True)


def _decoder_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], file: Path) -> dict:
    """The `decoder.*` entries of a full TAEHV state dict, unprefixed; one error line if they do not fit."""
    expected = {f"decoder.{k}": v for k, v in expected.items()}
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(k for k in state.keys() - expected.keys() if not k.startswith("encoder."))
    misshapen = [
        f"{k} {tuple(v.shape)} (want {tuple(expected[k].shape)})"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = [
        f"{what} ({len(keys)}): {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen))
        if keys
    ]
    if problems:
        raise ValueError(f"{file} is not a TAEHV Wan 2.1 state dict ({SOURCE}): {'; '.join(problems)}")
    return {k.removeprefix("decoder."): v for k, v in state.items() if k in expected}
