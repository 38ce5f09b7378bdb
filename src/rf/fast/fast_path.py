"""The fast path's switches in one place: what `make bench` turns on, piece by piece.

Exact (the plain path's function; only bf16 rounding differs):

    compile          torch.compile each causal block                      rf.fast.compile
    autotune         compile the blocks with Inductor's max-autotune (no CUDA graphs of its own): it times Triton
                     matmul templates, with the pointwise work around them fused in, against cuBLAS, and keeps the
                     faster; minutes of tuning on the first chunks
    kernel_tuning    compile the blocks with Inductor's coordinate-descent tuning alone: each Triton kernel it
                     generates (the layer norms with their modulation, the residual sums, the gates) times its
                     neighbouring tiles and warps on the first calls and keeps the fastest; the matmuls stay
                     cuBLAS's, the function is the same kernels' (max-autotune includes this tuning). Not faster
                     on an H200: +1.9 ms a chunk [-0.2, +3.9] (variants=tuning, experiments/bench/README.md)
    static_cache     preallocated KV buffers with a ring-buffer window    rf.fast.static_cache
    compile_commit   the static cache's commit (slot writes, EMA-Sink, the context's re-rotation) under torch.compile:
                     once a chunk (eager: about 46 kernels a block, 3-frame chunks)    rf.fast.static_cache.write_chunk
    commit_kernel    the static cache's commit as one Triton kernel a block: the EMA-Sink fuse, the new frames' slot
                     writes and the context's re-rotation, each byte read or written once (Inductor's compiled commit
                     took six kernels, 5.3 ms a chunk on an H200); plans it cannot express run the compiled or eager
                     commit    rf.fast.commit_kernel
    kv_in_place      each pass writes its chunk's rotated K/V into the static cache's buffers right after the context,
                     and attention reads both there: no concatenation of the whole context per block and pass
                     rf.fast.static_cache
    graphs           one CUDA graph per pass (implies static_cache)       rf.fast.graphs
    norm_rope        each self-attention's q/k RMS norms and RoPE as one Triton kernel that reads each row once,
                     where the context is the static cache's (rotated already); exact; alone not shown faster on an
                     H100, with gelu_epilogue -7.7 ms a chunk (variants=best, experiments/bench/README.md)
                     rf.fast.norm_rope
    block_norms      each block's three layer norms with the residual sums before them and their modulation or affine
                     after, as one Triton kernel each: the residual and the normed row written once (exact; -4.0 ms
                     a chunk [-5.8, -2.1] on an H200, variants=block_norms; in variants=best)    rf.fast.block_norms
    fuse_qkv         each self-attention's q, k, v projections as one matmul (diffusers' fuse_projections)
    gelu_epilogue    the FFN's bias and tanh-GELU in its up-projection's cuBLASLt epilogue    rf.fast.epilogue
                     (exact; with norm_rope in variants=best. fuse_qkv and cache_pass=fused: exact, and no faster
                     on an H100 in the steady state, experiments/bench/README.md)
    attention        the DiT's attention kernel, through diffusers' set_attention_backend: cudnn | flash |
                     efficient | math (null: PyTorch picks; on an H100, torch 2.11 already picks cuDNN for the stream's
                     shapes, experiments/bench/README.md); or fa3: FlashAttention-3's Hopper kernel    rf.fast.fa3
    cudnn_benchmark  let cuDNN time its convolution algorithms (the VAE's 3-D convolutions)
    vae_channels_last / vae_conv2d / vae_compile   the Wan VAE decoder in channels-last layout / its causal 3-D
                     convolutions as 2-D ones over stacked frames / under torch.compile      rf.models.vae
    vae_whole_chunk  a chunk's latent frames through the Wan decoder in one call, not one by one (exact; 146.8 ->
                     134.7 ms a steady chunk on an H100)    rf.models.vae.WanStreamDecoder
    vae_stack_taps   with vae_conv2d: the RGB head's 2-D convolution stacks its 3 taps' outputs, not 3 input frames
                     (133.1 -> 130.0 ms a chunk; bf16 frames 1.2e-2 -> 1.5e-2 from fp32; in variants=best since the
                     bench's check passed)    rf.models.vae_forms.taps_then_sum
    vae_subpixel     the upsampling blocks' nearest-2x-then-3x3 convolutions as four 2x2 convolutions of the
                     frames themselves, interleaved (2.25x fewer multiplications, no upsampled frames; in bf16 the
                     summed taps' weights are rounded once)    rf.models.vae_forms.SubpixelUpsample
    vae_conv3d_from  with vae_conv2d: the convolutions with at least this many input channels stay 3-D, their
                     spatial padding inside cuDNN's kernel, no stacked copy (null: all 2-D)
                     rf.models.vae_forms.causal_conv3d
    vae_min_out      with vae_conv3d_from: those 3-D convolutions with fewer output channels than this compute zero
                     filters up to it, the extra channels unread (128: the 96-channel ones, which cuDNN tiles by 64).
                     Padded inside the compiled graph, the frames went channels-first and cuDNN transposed them
                     (+3.2 ms a chunk on an H100); as channels-last buffers, -5.1 ms a chunk [-7.7, -2.5] on an
                     H200 (variants=min_out)    rf.models.vae_forms.pad_filters
    vae_norm_silu    with vae_conv3d_from: the residual blocks with 3-D convolutions compute each RMS norm, SiLU and
                     causal time padding as one Triton kernel that writes the padded frames once, channels-last
                     (Inductor's kernels wrote a float32 copy channels-first and read it back transposed): -7.2 ms
                     a chunk [-9.3, -5.0] on an H200 (variants=vae_norm); its channels in chunks, -2.4 ms more of
                     card time (results/profile_vae_norm_chunks.md)
                     rf.fast.vae_norm, rf.models.vae_forms.residual_block_forward
    vae_head_norm    with vae_conv2d: the RGB head's RMS norm, SiLU and causal time padding as vae_norm_silu's kernel,
                     its padded frames written once for the head's convolution (Inductor's kernels took 2.4 ms of
                     card time a chunk on an H200, results/profile_vae_norm_chunks.md)
                     rf.models.vae_forms.decoder_forward
    overlap          decode chunk i on a second CUDA stream while chunk i+1 denoises    rf.fast.overlap
    decode_priority  with overlap: that stream at CUDA's high priority, its kernels scheduled first (frames sooner,
                     the first one above all: 1-14 ms sooner in three paired runs on an H100; not reproduced in a
                     later call's ladder)    rf.fast.overlap
    dit_priority     with overlap: the other way round, the DiT's passes on a stream at CUDA's high priority and the
                     decode filling what its kernels leave of the card (the tails of their waves); the first chunk
                     decodes in line. Measured no better than decode_priority: either order saves 1.4-2.2 ms of
                     337 a chunk (variants=priority, experiments/bench/README.md)    rf.fast.overlap
    decode_lag       with overlap: how many chunks the decode may trail the denoising before the timed stream waits
                     for its frames (1: chunk i's after chunk i+1's passes are queued; with dit_priority, 2 keeps
                     DiT work queued while the host waits)    rf.fast.timing.Stream
    cache_pass       fused: chunk i's t=0 cache pass and chunk i+1's first denoising pass as one forward over both
                     chunks (one pass fewer per chunk, larger matmuls; not with graphs yet)    rf.models.fused

Approximations (each changes the video; the bench measures by how much against the exact path):

    fp8              FP8 matmuls in the blocks' Linear layers (Hopper; a CPU emulates them)    rf.fast.fp8
    fp8_scales       with fp8: each input scaled per token (rowwise) or with one scale (tensorwise: 2.8 ms a chunk
                     slower in card time on an H100, experiments/bench/README.md) at each call, or with one scale
                     fixed by a calibration stream before the first chunk (calibrated: no reduction at run time;
                     prepare_model needs `calibrate`, rf.stream.fp8_calibrator)
    fp8_weights      with fp8: each weight scaled per output channel (rowwise) or with one scale (tensorwise; with
                     calibrated inputs, cuBLAS's tensorwise FP8 matmul)
    cache_pass       reuse: the last denoising pass writes the cache, no t=0 pass (rf.diffusion.sampler);
                     clean (the default) and fused are exact
    decoder          a stream decoder instead of the model's own autoencoder (wan): the NAME of a
                     conf/decoder/NAME.yaml, which rf.stream.build_decoder instantiates; taehv: the tiny TAEHV
                     decoder (rf.fast.taehv)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rf.fast.compile import compile_blocks
from rf.fast.fp8 import check_scales as check_fp8_scales
from rf.fast.graphs import CudaGraphModel
from rf.fast.overlap import OverlappedDecoder
from rf.utils.cli import CONF_DIR

BACKENDS = {"cudnn": "_native_cudnn", "flash": "_native_flash", "efficient": "_native_efficient",
            "math": "_native_math"}  # fmt: skip
ATTENTION = [*BACKENDS, "fa3"]  # fa3: rf.fast.fa3, not one of diffusers' backends
STATIC_CACHE_SWITCHES = {  # switch -> what it does to the static cache (rf.fast.static_cache), which it needs
    "compile_commit": "compiles the static cache's commit",
    "kv_in_place": "writes into the static cache's buffers",
    "commit_kernel": "runs the static cache's commit as one Triton kernel",
    "norm_rope": "rotates the chunk's keys beside the static cache's rotated context",
}
DECODER_CONFIGS = Path(CONF_DIR) / "decoder"  # fast.decoder=NAME: conf/decoder/NAME.yaml; wan needs none


def decoder_names() -> list[str]:
    """What fast.decoder can name: wan (the model's own autoencoder) and every conf/decoder/NAME.yaml."""
    return ["wan", *sorted(p.stem for p in DECODER_CONFIGS.glob("*.yaml"))]


@dataclass(frozen=True)
class FastPath:
    compile: bool = False
    autotune: bool = False
    kernel_tuning: bool = False
    static_cache: bool = False
    compile_commit: bool = False
    commit_kernel: bool = False
    kv_in_place: bool = False
    graphs: bool = False
    norm_rope: bool = False
    block_norms: bool = False
    fuse_qkv: bool = False
    gelu_epilogue: bool = False
    attention: str | None = None
    cudnn_benchmark: bool = False
    vae_channels_last: bool = False
    vae_conv2d: bool = False
    vae_compile: bool = False
    vae_whole_chunk: bool = False
    vae_stack_taps: bool = False
    vae_subpixel: bool = False
    vae_conv3d_from: int | None = None
    vae_min_out: int | None = None
    vae_norm_silu: bool = False
    vae_head_norm: bool = False
    overlap: bool = False
    decode_priority: bool = False
    dit_priority: bool = False
    decode_lag: int = 1
    fp8: bool = False
    fp8_scales: str = "rowwise"
    fp8_weights: str = "rowwise"
    cache_pass: str = "clean"
    decoder: str = "wan"

    def __post_init__(self):  # cache_pass's values are checked where it is used: rf.diffusion.sampler.StreamSampler
        if self.cache_pass == "fused" and self.graphs:
            raise ValueError(
                "fast.cache_pass=fused with fast.graphs=true: the CUDA graphs (rf.fast.graphs) capture the unfused "
                "passes only; set fast.graphs=false (fast.static_cache=true keeps the static cache) or "
                "fast.cache_pass=clean"
            )
        for switch, what in STATIC_CACHE_SWITCHES.items():
            if getattr(self, switch) and not (self.static_cache or self.graphs):
                raise ValueError(f"fast.{switch}=true {what}: set fast.static_cache=true or fast.graphs=true (the "
                                 "graphs' cache is static)")  # fmt: skip
        if self.vae_stack_taps and not self.vae_conv2d:
            raise ValueError("fast.vae_stack_taps=true changes how the 2-D path stacks the VAE's convolutions: set "
                             "fast.vae_conv2d=true")  # fmt: skip
        if self.vae_conv3d_from is not None and not self.vae_conv2d:
            raise ValueError(f"fast.vae_conv3d_from={self.vae_conv3d_from} picks which VAE convolutions leave the 2-D "
                             "path: set fast.vae_conv2d=true, or fast.vae_conv3d_from=null")  # fmt: skip
        if self.vae_min_out is not None and self.vae_conv3d_from is None:
            raise ValueError(f"fast.vae_min_out={self.vae_min_out} pads the outputs of the VAE's 3-D convolutions: set "
                             "fast.vae_conv3d_from (e.g. 96), or fast.vae_min_out=null")  # fmt: skip
        if self.vae_norm_silu and self.vae_conv3d_from is None:
            raise ValueError("fast.vae_norm_silu=true feeds the VAE's 3-D convolutions their padded frames: set "
                             "fast.vae_conv3d_from (e.g. 96), or fast.vae_norm_silu=false")  # fmt: skip
        if self.vae_head_norm and not self.vae_conv2d:
            raise ValueError("fast.vae_head_norm=true feeds the VAE's head its padded frames on the 2-D path: set "
                             "fast.vae_conv2d=true, or fast.vae_head_norm=false")  # fmt: skip
        if self.decode_priority and not self.overlap:
            raise ValueError("fast.decode_priority=true sets the priority of the overlapped decode's stream: set "
                             "fast.overlap=true, or fast.decode_priority=false with fast.overlap=false (the presets "
                             "have both on)")  # fmt: skip
        if self.dit_priority and not self.overlap:
            raise ValueError("fast.dit_priority=true puts the DiT's stream ahead of the overlapped decode's: set "
                             "fast.overlap=true")  # fmt: skip
        if self.dit_priority and self.decode_priority:
            raise ValueError("fast.dit_priority=true and fast.decode_priority=true each put one stream first: "
                             "choose one")  # fmt: skip
        if self.decode_lag < 1:
            raise ValueError(f"fast.decode_lag={self.decode_lag}: the frames of chunk i are waited for once chunk "
                             "i + decode_lag is queued; set 1 or more")  # fmt: skip
        if self.decode_lag != 1 and not self.overlap:
            raise ValueError(f"fast.decode_lag={self.decode_lag} lets the overlapped decode trail the denoising: set "
                             "fast.overlap=true, or fast.decode_lag=1")  # fmt: skip
        check_fp8_scales(self.fp8_scales, self.fp8_weights, names=("fast.fp8_scales", "fast.fp8_weights"))
        if self.fp8_scales != "rowwise" and not self.fp8:
            raise ValueError(f"fast.fp8_scales={self.fp8_scales} scales the FP8 matmuls' inputs: set fast.fp8=true")
        if self.fp8_weights != "rowwise" and not self.fp8:
            raise ValueError(f"fast.fp8_weights={self.fp8_weights} scales the FP8 matmuls' weights: set fast.fp8=true")
        if self.autotune and not self.compile:
            raise ValueError("fast.autotune=true tunes the compiled blocks: set fast.compile=true too")
        if self.kernel_tuning and not self.compile:
            raise ValueError("fast.kernel_tuning=true tunes the compiled blocks' Triton kernels: set fast.compile=true "
                             "too")  # fmt: skip
        if self.kernel_tuning and self.autotune:
            raise ValueError("fast.kernel_tuning=true with fast.autotune=true: max-autotune already tunes the Triton "
                             "kernels (coordinate descent is part of it); set one of them")  # fmt: skip
        if self.attention is not None and self.attention not in ATTENTION:
            raise ValueError(f"fast.attention={self.attention!r}: choose one of {', '.join(ATTENTION)} or null")
        if self.decoder not in decoder_names():
            raise ValueError(f"fast.decoder={self.decoder!r}: choose one of {', '.join(decoder_names())} (wan: the "
                             f"model's own autoencoder; the others: {DECODER_CONFIGS}/NAME.yaml)")  # fmt: skip

    def gpu_only(self) -> list[str]:
        """The switches on that need a CUDA device. FP8 runs anywhere: off Ada / Hopper its reference path computes
        the same quantised function in float32 (no faster; what it costs the video can be measured on a CPU)."""
        kernels = ("norm_rope", "block_norms", "commit_kernel", "vae_norm_silu", "vae_head_norm")  # Triton's (GPU)
        on = [k for k in ("graphs", *kernels, "overlap", "cudnn_benchmark") if getattr(self, k)]
        return on + ([f"attention={self.attention}"] if self.attention in ("cudnn", "flash", "fa3") else [])

    @property
    def compiles(self) -> bool:
        """Whether the first chunks of a stream pay for compilation or graph capture (rf.serve warms these up)."""
        return self.compile or self.compile_commit or self.graphs or self.vae_compile

    @property
    def approximate(self) -> bool:
        return self.fp8 or self.cache_pass == "reuse" or self.decoder != "wan"

    def describe(self) -> str:
        on = [k if v is True else f"{k}={v}" for k, v in asdict(self).items() if v != getattr(FastPath, k)]
        return ", ".join(on) or "plain"

    def prepare_model(self, model: torch.nn.Module, calibrate: Callable[[torch.nn.Module], None] | None = None):
        """Apply the model switches in place; returns what StreamSampler should call (a CUDA-graph wrapper or it).

        calibrate: with fp8_scales=calibrated, streams a few chunks through the model it is given (the FP8 layers
        swapped in, nothing compiled or captured yet); rf.stream.fp8_calibrator builds one. Ignored otherwise."""
        if self.attention == "fa3":  # before compiling, like the others; every block's self- and cross-attention
            from rf.fast.fa3 import flash_attention_3, load

            load()  # a missing kernel fails here, with how to install it, not in the first pass
            for block in model.blocks:
                block.attn1.rf_kernel = block.attn2.rf_kernel = flash_attention_3
        elif self.attention is not None:  # before compiling: the kernel is fixed when the blocks are traced
            from diffusers.models.attention_dispatch import _AttentionBackendRegistry as registry

            default = registry._active_backend
            model.set_attention_backend(BACKENDS[self.attention])  # this model's attention modules (what rf reads)...
            registry.set_active_backend(default)  # ...but diffusers also makes it every later model's: not here
        if self.fuse_qkv:  # one [dim -> 3 dim] matmul instead of three; to_q/k/v stay for checkpoints
            for block in model.blocks:
                block.attn1.fuse_projections()
        if self.norm_rope:  # a Triton kernel (on a CPU only in Triton's interpreter, which the tests use)
            from rf.fast.norm_rope import use_norm_rope

            use_norm_rope(model)
        if self.block_norms:  # a Triton kernel too
            from rf.fast.block_norms import use_block_norms

            use_block_norms(model)
        if self.gelu_epilogue:  # before fp8: an fp8 projection keeps its own GELU
            from rf.fast.epilogue import gelu_epilogue

            gelu_epilogue(model)
        if self.fp8:
            from rf.fast.fp8 import calibration, fp8_linears  # Hopper matmuls: imported only when asked for

            fp8_linears(model, scales=self.fp8_scales, weights=self.fp8_weights)
            if self.fp8_scales == "calibrated":
                if calibrate is None:
                    raise ValueError("fast.fp8_scales=calibrated fixes each FP8 input's scale from a calibration "
                                     "stream: pass prepare_model a `calibrate` function "
                                     "(rf.stream.fp8_calibrator)")  # fmt: skip
                with calibration(model):
                    calibrate(model)
        if self.compile:
            options = {"coordinate_descent_tuning": True} if self.kernel_tuning else None
            compile_blocks(model, mode="max-autotune-no-cudagraphs" if self.autotune else None, options=options)
        # read by model.new_cache(static=True): StaticKVCache's keyword arguments
        model.static_cache_options = {
            "compiled": self.compile_commit,
            "in_place": self.kv_in_place,
            "kernel": self.commit_kernel,
        }
        return CudaGraphModel(model) if self.graphs else model

    def sampler_kwargs(self) -> dict:
        return {"static_cache": self.static_cache or self.graphs, "cache_pass": self.cache_pass}

    def prepare_decoder(self, autoencoder, device: torch.device):
        """The stream decoder with the decode switches applied: OverlappedDecoder when overlap is on."""
        torch.backends.cudnn.benchmark = self.cudnn_benchmark  # process-wide: set either way (rf.fast.in_place)
        # the Wan VAE's switches (rf.models.vae.WanVideoAutoencoder.speed_up); TAEHV and the toy one have none and
        # decode as they are
        if hasattr(autoencoder, "speed_up"):
            autoencoder.speed_up(
                channels_last=self.vae_channels_last,
                compile=self.vae_compile,
                conv2d=self.vae_conv2d,
                whole_chunk=self.vae_whole_chunk,
                stack_taps=self.vae_stack_taps,
                subpixel=self.vae_subpixel,
                conv3d_from=self.vae_conv3d_from,
                min_out=self.vae_min_out,
                norm_silu=self.vae_norm_silu,
                head_norm=self.vae_head_norm,
            )
        decoder = autoencoder.stream_decoder()
        if not self.overlap:
            return decoder
        priority = "decode" if self.decode_priority else "dit" if self.dit_priority else None
        return OverlappedDecoder(decoder, device, priority, self.decode_lag)
