"""The fast path's switches in one place: what `make bench` turns on, piece by piece.

Exact (the plain path's function; only bf16 rounding differs):

    compile          torch.compile each causal block                      rf.models.compile
    static_cache     preallocated KV buffers with a ring-buffer window    rf.models.static_cache
    graphs           one CUDA graph per pass (implies static_cache)       rf.models.graphs
    attention        the SDPA backend of every attention call: cudnn | flash | efficient (null: PyTorch picks)
    cudnn_benchmark  let cuDNN time its convolution algorithms (the VAE's 3-D convolutions)
    vae_channels_last / vae_compile   the Wan VAE decoder in channels-last-3d / under torch.compile
    overlap          decode chunk i on a second CUDA stream while chunk i+1 denoises    rf.models.overlap

Approximations (each changes the video; the bench measures by how much against the exact path):

    fp8              FP8 matmuls in the blocks' Linear layers (Hopper)    rf.models.fp8
    cache_pass       reuse: the last denoising pass writes the cache, no t=0 pass (rf.diffusion.sampler)
    decoder          taehv: the tiny TAEHV decoder instead of the Wan VAE rf.models.taehv
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from rf.models.compile import compile_blocks
from rf.models.graphs import CudaGraphModel
from rf.models.overlap import OverlappedDecoder

BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
DECODERS = ("wan", "taehv")


@dataclass(frozen=True)
class FastPath:
    compile: bool = False
    static_cache: bool = False
    graphs: bool = False
    attention: str | None = None
    cudnn_benchmark: bool = False
    vae_channels_last: bool = False
    vae_compile: bool = False
    overlap: bool = False
    fp8: bool = False
    cache_pass: str = "clean"
    decoder: str = "wan"

    def __post_init__(self):
        if self.attention is not None and self.attention not in BACKENDS:
            raise ValueError(f"fast.attention={self.attention!r}: choose one of {', '.join(BACKENDS)} or null")
        if self.cache_pass not in ("clean", "reuse"):
            raise ValueError(f"fast.cache_pass={self.cache_pass!r}: choose clean (exact) or reuse (approximation)")
        if self.decoder not in DECODERS:
            raise ValueError(f"fast.decoder={self.decoder!r}: choose one of {', '.join(DECODERS)}")

    def gpu_only(self) -> list[str]:
        """The switches on that need a CUDA device."""
        on = [k for k in ("graphs", "overlap", "fp8", "cudnn_benchmark") if getattr(self, k)]
        return on + ([f"attention={self.attention}"] if self.attention in ("cudnn", "flash") else [])

    @property
    def approximate(self) -> bool:
        return self.fp8 or self.cache_pass != "clean" or self.decoder != "wan"

    def describe(self) -> str:
        on = [k if v is True else f"{k}={v}" for k, v in asdict(self).items() if v != getattr(FastPath, k)]
        return ", ".join(on) or "plain"

    def prepare_model(self, model: torch.nn.Module):
        """Apply the model switches in place; returns what StreamSampler should call (a CUDA-graph wrapper or it)."""
        if self.fp8:
            from rf.models.fp8 import fp8_linears  # Hopper matmuls: imported only when asked for

            fp8_linears(model)
        if self.compile:
            compile_blocks(model)
        return CudaGraphModel(model) if self.graphs else model

    def sampler_kwargs(self) -> dict:
        return {"static_cache": self.static_cache or self.graphs, "cache_pass": self.cache_pass}

    def attention_backend(self):
        """Context manager putting the chosen SDPA backend first (a no-op when attention is null)."""
        if self.attention is None:
            return nullcontext()
        # the chosen backend first; calls it cannot take (shapes, layouts) fall back in PyTorch's order
        order = [BACKENDS[self.attention]] + [b for b in BACKENDS.values() if b != BACKENDS[self.attention]]
        return sdpa_kernel(order, set_priority=True)

    def prepare_decoder(self, autoencoder, device: torch.device):
        """The stream decoder with the decode switches applied: OverlappedDecoder when overlap is on."""
        if self.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        if (self.vae_channels_last or self.vae_compile) and hasattr(autoencoder, "speed_up"):  # Wan VAE switches
            autoencoder.speed_up(channels_last=self.vae_channels_last, compile=self.vae_compile)
        decoder = autoencoder.stream_decoder()
        return OverlappedDecoder(decoder, device) if self.overlap else decoder
