"""A config in, a ready streaming generator out: the one place that assembles one.

    cfg (generate.yaml, eval.yaml: model, sink, sampler, fast, paths, device, dtype, ckpt, use_ema)
      1. device and dtype, checked against the card; the fast path's switches (FastPath), the GPU-only
         ones refused on a CPU
      2. the model's autoencoder (latent shape, frame counts) and its text encoder (the online one where
         the model has one: umT5 behind the embedding cache), on the device
      3. the frame size, checked against the autoencoder's and the patch's factors
      4. the causal transformer: weights loaded (rf.models.loading), cast, on the device, in eval mode;
         the fast path's model switches applied (prepare_model: compile, FP8, CUDA graphs, ...); with
         fast.fp8_scales=calibrated, the FP8 input scales fixed first from a stream of CALIBRATION_PROMPT
      5. StreamSampler(that model, CacheConfig(sink), sampler settings, the fast path's sampler switches)
      6. the stream decoder: the autoencoder's, or the one conf/decoder/NAME.yaml builds (fast.decoder=NAME,
         e.g. taehv), with the decode switches

rf.generate, rf.serve, rf.eval.generation, rf.bench (steps 1, 5 and 6, over its random full-size model) and
the experiment scripts all build their streams here; what they do with the chunks is their own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from rf.diffusion.sampler import GeneratorNoise, StreamSampler
from rf.diffusion.schedule import chunks_for_seconds
from rf.fast.fast_path import DECODER_CONFIGS, FastPath
from rf.models.cache import CacheConfig
from rf.models.loading import cast, load_transformer
from rf.models.vae import StreamDecoder, VideoAutoencoder
from rf.utils.instantiate import check_dtype, instantiate, pick_device, resolve_dtype, to_dict
from rf.utils.video import check_frame_size


def text_encoder_config(cfg: DictConfig) -> DictConfig:
    """The encoder for new prompts where the model has one (umT5 behind the cache), else the training one."""
    return cfg.model.get("text_encoder_online") or cfg.model.text_encoder


HALF_ONLY_ATTENTION = ("cudnn", "flash", "fa3")  # kernels that take bf16 / fp16 only (math and efficient take fp32)


def check_fast_path(fast: FastPath, device: torch.device, dtype: torch.dtype | None = None) -> None:
    """Refuse, before any work, fast-path switches this device (or the model's compute dtype) cannot run."""
    if device.type != "cuda" and fast.gpu_only():
        raise ValueError(f"fast path switches {', '.join(fast.gpu_only())} need a CUDA GPU, this run is on {device}: "
                         "use fast=plain (the default), or fast.static_cache=true on a CPU")  # fmt: skip
    if fast.attention in HALF_ONLY_ATTENTION and dtype not in (None, torch.bfloat16, torch.float16):
        raise ValueError(f"fast.attention={fast.attention} computes in bf16 or fp16 only, and this model computes in "
                         f"{str(dtype).removeprefix('torch.')} (the toy's default): set dtype=bfloat16, or "
                         "fast.attention=null (PyTorch picks a kernel for it)")  # fmt: skip


def latent_frames_for(cfg: DictConfig, autoencoder: VideoAutoencoder, chunk: int) -> int:
    """Latent frames of the stream: `frames` exactly, or `seconds` rounded up to whole chunks."""
    if cfg.frames is not None:
        if cfg.frames < chunk or cfg.frames % chunk:
            raise ValueError(
                f"frames={cfg.frames} is not a whole number of {chunk}-frame chunks: use a multiple of {chunk}"
            )
        return int(cfg.frames)
    if cfg.seconds is None or cfg.seconds <= 0:
        raise ValueError(f"seconds={cfg.seconds}: give a positive stream length")
    return chunk * chunks_for_seconds(cfg.seconds, cfg.model.video.fps, autoencoder.temporal_factor, chunk)


def build_sampler(runner, cache: CacheConfig, sampler: DictConfig | dict, fast: FastPath) -> StreamSampler:
    """The StreamSampler over `runner` (the model as fast.prepare_model returned it)."""
    return StreamSampler(runner, cache, **to_dict(sampler), **fast.sampler_kwargs())


CALIBRATION_PROMPT = "A video."  # what Streamer's fp8_scales=calibrated streams before the first prompt is known
CALIBRATION_CHUNKS = 4  # chunks of the calibration stream: every denoising step, and the window full (9 latent frames)


def fp8_calibrator(
    text: torch.Tensor, latent_shape: tuple, sampler: DictConfig | dict, cache: CacheConfig, fast: FastPath,
    seed: int, chunks: int = CALIBRATION_CHUNKS,
) -> Callable[[torch.nn.Module], None]:  # fmt: skip
    """What FastPath.prepare_model calls with fast.fp8_scales=calibrated: a function that streams `chunks` chunks of
    `text` [B, Lt, text_dim] (latent frames [B, C, *, h, w] as `latent_shape` says) through the model it is given,
    with the run's sampler settings and cache pass, on a dynamic cache, seeded with `seed`. The FP8 layers' input
    scales are fixed from what they see (rf.fast.fp8.calibration)."""
    b, c, _, h, w = latent_shape

    def calibrate(model: torch.nn.Module) -> None:
        calibration = StreamSampler(model, cache, **to_dict(sampler), cache_pass=fast.cache_pass)
        shape = (b, c, chunks * cache.chunk_frames, h, w)
        device = next(model.parameters()).device
        with torch.inference_mode():
            for _ in calibration.stream([(0, text)], shape, GeneratorNoise(seed, device)):
                pass  # the chunks are not needed: only the largest inputs the FP8 layers record while making them

    return calibrate


def build_decoder(
    fast: FastPath, autoencoder: VideoAutoencoder, cfg: DictConfig, device: torch.device, **overrides
) -> StreamDecoder:
    """The stream decoder, the decode switches applied (once: compile works in place).

    fast.decoder=wan: the model's own `autoencoder`. Any other NAME: what conf/decoder/NAME.yaml instantiates
    (a VideoAutoencoder decoding the same latents, e.g. taehv), its ${...} (paths.weights, model.dtype) resolved
    against `cfg`, then `overrides` applied (the bench: path=None, random weights).
    """
    if fast.decoder != "wan":
        root = copy.deepcopy(cfg)
        with open_dict(root):  # the decoder file as a node of the run's config, so its interpolations resolve
            root.decoder = OmegaConf.load(DECODER_CONFIGS / f"{fast.decoder}.yaml")
        autoencoder = instantiate({**to_dict(root.decoder), **overrides}).to(device)
    return fast.prepare_decoder(autoencoder, device)


@dataclass
class Streamer:
    """A streaming generator, ready: `sampler.stream(prompts, latent_shape(n), noise)` yields latent chunks,
    `decoder.decode` turns each into frames."""

    device: torch.device
    cache: CacheConfig
    fast: FastPath
    autoencoder: VideoAutoencoder  # the model's own: latent channels, factors, frame counts, batch decode
    text_encoder: torch.nn.Module  # prompts [str] -> embeddings [B, Lt, text_dim]
    model: torch.nn.Module  # the causal transformer, cast, on the device, in eval mode
    sampler: StreamSampler
    decoder: StreamDecoder
    height: int  # video frame size and rate
    width: int
    fps: int
    weights: str  # which weights were loaded: "random", "generator_ema", "diffusers folder", ...

    @classmethod
    def from_config(
        cls, cfg: DictConfig, ckpt: str | Path | None = None, device: torch.device | None = None,
        seed: int | None = None, use_ema: bool | None = None,
    ) -> Streamer:  # fmt: skip
        """Build it from a generate / eval config.

        ckpt:    the weights (default cfg.ckpt; null: random weights)
        device:  overrides cfg.device (the experiment scripts pick their own)
        use_ema: overrides cfg.use_ema (the generator EMA of a distillation checkpoint)
        seed:    seed random weights with it, without touching the global RNG (a resumed evaluation
                 draws the same ones); None: random weights from the global RNG
        """
        device = device if device is not None else pick_device(cfg.device)
        dtype = resolve_dtype(cfg.dtype)
        fast = FastPath(**to_dict(cfg.fast))
        check_dtype(device, dtype, fp8=fast.fp8)
        check_fast_path(fast, device, dtype)
        cache = CacheConfig(**to_dict(cfg.sink))

        autoencoder = instantiate(cfg.model.autoencoder).to(device)
        text_encoder = instantiate(text_encoder_config(cfg)).to(device)
        arch = to_dict(cfg.model.transformer)
        h, w = cfg.model.video.height, cfg.model.video.width
        check_frame_size(h, w, autoencoder.spatial_factor, arch["patch_size"][1])

        # rf checkpoints, Self Forcing / Reward Forcing releases, original or diffusers Wan: rf.models.loading
        ckpt = cfg.ckpt if ckpt is None else ckpt
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            use_ema = cfg.use_ema if use_ema is None else use_ema
            model, weights = load_transformer(arch, ckpt or None, causal=True, use_ema=use_ema)
        model = cast(model, dtype).to(device).eval()

        calibrate = None
        if fast.fp8 and fast.fp8_scales == "calibrated":  # the FP8 input scales from a generic prompt
            with torch.inference_mode():
                calibration_text = text_encoder([CALIBRATION_PROMPT]).to(device, dtype)  # [1, Lt, text_dim]
            f = autoencoder.spatial_factor
            shape = (1, autoencoder.latent_channels, 0, h // f, w // f)
            calibrate = fp8_calibrator(calibration_text, shape, cfg.sampler, cache, fast, seed=0)
        runner = fast.prepare_model(model, calibrate)  # the fast path's model switches (rf.fast.fast_path)
        sampler = build_sampler(runner, cache, cfg.sampler, fast)
        decoder = build_decoder(fast, autoencoder, cfg, device)
        return cls(device, cache, fast, autoencoder, text_encoder, model, sampler, decoder, h, w,
                   cfg.model.video.fps, weights)  # fmt: skip

    def latent_shape(self, latent_frames: int, batch: int = 1) -> tuple[int, int, int, int, int]:
        """(B, C, F, h, w) of a stream of `latent_frames` latent frames."""
        f = self.autoencoder.spatial_factor
        return (batch, self.autoencoder.latent_channels, latent_frames, self.height // f, self.width // f)


def with_cache(streamer: Streamer, cache: CacheConfig) -> Streamer:
    """The same streamer under another cache policy or sink.alpha (rf.serve: chosen per stream on the page).

    Model, decoder and text encoder are shared, not copied; only the sampler is a shallow copy reading `cache`.
    The chunk size must stay the same (the decoder and the frame counts depend on it).
    """
    if cache.chunk_frames != streamer.cache.chunk_frames:
        raise ValueError(
            f"sink.chunk_frames={cache.chunk_frames}: the streamer was built for {streamer.cache.chunk_frames}-frame "
            "chunks; build another with Streamer.from_config"
        )
    sampler = copy.copy(streamer.sampler)
    sampler.cache_config = cache
    return replace(streamer, cache=cache, sampler=sampler)
