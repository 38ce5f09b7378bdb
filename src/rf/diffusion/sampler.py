"""StreamSampler: THE chunk loop (PAPER.md §1). Generation, training rollouts, evaluation and
the benchmark all stream through it; a second copy of this loop anywhere is a defect.

For each chunk of `chunk_frames` latent frames:

    x = noise
    for each warped step t_s (4 of them):
        x0 = x - s_s * model(x, t_s | cache)                # the chunk attends to [sink ; window ; itself]
        x  = (1 - s_{s+1}) x0 + s_{s+1} * fresh noise         # re-noise to the next step
    model(x0, t = 0 | cache, write)                          # the clean pass writes the chunk's K/V
    yield x0

Training (Self Forcing's gradient truncation): `exit_step=k` stops each chunk's denoising at
step k; only that forward carries gradient, the steps before it and the cache pass run without,
and the cache holds detached K/V, so no gradient crosses chunks.

Inference options of the fast path (rf.fast.fast_path): `static_cache=True` keeps the cache in
preallocated buffers (rf.fast.static_cache, the same function); `cache_pass="fused"` runs chunk i's
t = 0 pass and chunk i+1's first denoising pass as one forward over both chunks (rf.models.fused: the same
function, one pass fewer); `cache_pass="reuse"` lets the last denoising pass write the cache instead of
the t = 0 pass (an approximation, one pass fewer); `cache_pass="whole"` computes the t = 0 pass whole, its unread
flow and the last block's attention and FFN included (what "clean" did before it stopped at the last block's K/V:
kept to measure that; on an H200 +1.1 ms a chunk, 95% CI [-0.7, +2.9]: not shown). At a prompt switch the fused
pass falls back to the unfused one: chunk i's K/V are written under chunk i's prompt, as the unfused stream writes
them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from rf.diffusion.flow import NUM_TRAIN_TIMESTEPS, add_noise, warp_timesteps, x0_from_flow
from rf.models.cache import CacheConfig, StreamCache

if TYPE_CHECKING:
    from diffusers.models.modeling_outputs import Transformer2DModelOutput

    from rf.models.causal_wan import TextContext


class StreamModel(Protocol):
    """What the sampler calls: rf.models.causal_wan.CausalWanTransformer3DModel, or the same model behind
    the fast path's CUDA graphs (rf.fast.graphs.CudaGraphModel)."""

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...

    def encode_text(self, encoder_hidden_states: torch.Tensor) -> TextContext:
        """Text embeddings [B, Lt, text_dim] -> the per-block cross-attention K/V, once per prompt."""

    def new_cache(self, config: CacheConfig, static: bool = False) -> StreamCache:
        """A fresh KV cache for a stream (static: preallocated, rf.fast.static_cache)."""

    def __call__(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        *,
        text: TextContext,
        cache: StreamCache,
        write_cache: bool = False,
        kv_only: bool = False,
        fused: int | None = None,
    ) -> Transformer2DModelOutput:
        """x [B, C, f, H, W], t [B] or [B, f] -> .sample: the flow prediction [B, C, f, H, W]; write_cache commits
        K/V (kv_only: and computes nothing else, .sample None); fused: x's first `fused` frames are committed and the
        flow of the others returned (rf.models.fused)."""


class NoiseSource(Protocol):
    def initial(self, chunk: int, like: torch.Tensor) -> torch.Tensor: ...

    def renoise(self, chunk: int, step: int, like: torch.Tensor) -> torch.Tensor: ...


class GeneratorNoise:
    """Fresh Gaussian noise from one seeded generator (on the model's device)."""

    def __init__(self, seed: int, device: torch.device | str = "cpu"):
        self.generator = torch.Generator(device).manual_seed(seed)

    def initial(self, chunk: int, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.generator, device=like.device, dtype=like.dtype)

    def renoise(self, chunk: int, step: int, like: torch.Tensor) -> torch.Tensor:
        return self.initial(chunk, like)


class SampleNoise:
    """Fresh Gaussian noise from one seeded generator per sample.

    Sample b's noise depends on its own seed only, not on the batch around it: a batch of 2 in one
    process draws what two processes with a batch of 1 each draw (data parallelism changes nothing).
    """

    def __init__(self, seeds: list[int], device: torch.device | str = "cpu"):
        self.generators = [torch.Generator(device).manual_seed(s) for s in seeds]

    def initial(self, chunk: int, like: torch.Tensor) -> torch.Tensor:
        if like.shape[0] != len(self.generators):
            raise ValueError(f"a batch of {like.shape[0]} samples but {len(self.generators)} noise seeds")
        return torch.stack([
            torch.randn(like.shape[1:], generator=g, device=like.device, dtype=like.dtype) for g in self.generators
        ])  # fmt: skip

    def renoise(self, chunk: int, step: int, like: torch.Tensor) -> torch.Tensor:
        return self.initial(chunk, like)


class TensorNoise:
    """Noise given up front.

    initial [B, C, F, H, W] for the whole clip; renoise [chunks, steps - 1, B, C, f, H, W].
    """

    def __init__(self, initial: torch.Tensor, renoise: torch.Tensor, chunk_frames: int):
        self.initial_noise, self.renoise_noise, self.chunk_frames = initial, renoise, chunk_frames

    def initial(self, chunk: int, like: torch.Tensor) -> torch.Tensor:
        f = self.chunk_frames
        return self.initial_noise[:, :, chunk * f : (chunk + 1) * f].to(like)

    def renoise(self, chunk: int, step: int, like: torch.Tensor) -> torch.Tensor:
        return self.renoise_noise[chunk, step].to(like)


@dataclass
class StreamChunk:
    index: int  # chunk number in the stream
    latents: torch.Tensor  # [B, C, f, H, W] clean prediction x0 (carries gradient in a truncated rollout)
    prompt_index: int  # which prompt of the schedule conditioned it


class StreamSampler:
    def __init__(
        self,
        model: StreamModel,
        cache: CacheConfig,
        denoising_steps: tuple[float, ...] = (1000, 750, 500, 250),
        shift: float = 5.0,
        context_timestep: float = 0.0,
        static_cache: bool = False,
        cache_pass: str = "clean",
    ):
        if cache_pass not in ("clean", "whole", "fused", "reuse"):
            raise ValueError(
                f"fast.cache_pass={cache_pass!r} (the sampler's cache_pass): choose clean (exact), whole (exact, the "
                "clean pass with its unread flow computed), fused (exact, one pass fewer) or reuse (approximation)"
            )
        self.model = model
        self.cache_config = cache
        self.chunk_frames = cache.chunk_frames
        self.timesteps = warp_timesteps(denoising_steps, shift)  # e.g. [1000, 937.5, 833.3, 625]
        self.sigmas = [t / NUM_TRAIN_TIMESTEPS for t in self.timesteps]
        self.context_timestep = context_timestep
        self.static_cache = static_cache  # preallocated buffers (rf.fast.static_cache): the fast path's cache
        # clean: a t=0 pass over the chunk's x0 writes its K/V (exact). fused: the same t=0 pass, in one forward
        # with the next chunk's first denoising pass (exact, one pass fewer). reuse: the last denoising pass writes
        # the K/V it computed from its noisy input instead: one pass fewer per chunk, an approximation. whole: the
        # clean pass computed whole (its flow unread), for measuring what stopping at the last block's K/V buys
        self.cache_pass = cache_pass
        self.last_cache = None  # the cache of the latest stream, for statistics (callbacks/ema_sink.py)

    @property
    def own_cache_pass(self) -> bool:
        """Whether a t = 0 pass of its own writes each chunk's K/V (clean, whole), not a denoising pass (fused,
        reuse)."""
        return self.cache_pass in ("clean", "whole")

    def num_chunks(self, latent_frames: int) -> int:
        if latent_frames < 1 or latent_frames % self.chunk_frames:
            raise ValueError(
                f"{latent_frames} latent frames is not a whole number of {self.chunk_frames}-frame chunks: "
                f"use a multiple of {self.chunk_frames}"
            )
        return latent_frames // self.chunk_frames

    def stream(
        self,
        prompts: list[tuple[int, torch.Tensor]],
        latent_shape: tuple[int, int, int, int, int],
        noise: NoiseSource,
        exit_step: int | None = None,
        recache_on_switch: bool = False,
    ) -> Iterator[StreamChunk]:
        """Yield the stream chunk by chunk.

        prompts:      [(first chunk, text embeddings [B, Lt, text_dim]), ...] sorted, first at chunk 0;
                      at a switch the cross-attention K/V change and the self-attention cache stays. The
                      list may grow while the stream runs (rf.serve: a prompt typed live), by entries that
                      start after the chunk last yielded, appended between two chunks by the thread that
                      drives this iterator; it is read by index at the start of each chunk
        latent_shape: (B, C, F, H, W) of the whole stream; F a multiple of chunk_frames
        exit_step:    training only: denoise each chunk up to this step index, with gradient there
        recache_on_switch: re-encode the window's frames under the new prompt (LongLive), sink kept
        """
        b, c, f, h, w = latent_shape
        n_chunks = self.num_chunks(f)
        starts = [s for s, _ in prompts]
        if not prompts or starts[0] != 0 or starts != sorted(set(starts)):
            raise ValueError(f"prompt schedule starts at chunks {starts}: need strictly increasing, first at 0")
        if exit_step is not None and not 0 <= exit_step < len(self.timesteps):
            raise ValueError(f"exit_step={exit_step}: must be in [0, {len(self.timesteps) - 1}]")
        if exit_step is not None and not self.own_cache_pass:
            raise ValueError(
                f"cache_pass={self.cache_pass} is an inference pass: training rollouts (exit_step={exit_step}) use "
                "cache_pass=clean"
            )

        model = self.model
        param = next(model.parameters())
        # diffusers' .dtype skips the modules it keeps in fp32 (norms, time embedding): the compute dtype
        dtype = getattr(model, "dtype", param.dtype)
        cache = (
            model.new_cache(self.cache_config, static=True) if self.static_cache else model.new_cache(self.cache_config)
        )
        self.last_cache = cache
        like = torch.empty(b, c, self.chunk_frames, h, w, device=param.device, dtype=dtype)
        # clean latents of the chunks still in the window, for re-caching under a new prompt
        in_window: deque[torch.Tensor] = deque()
        prompt_index, text = -1, None
        pending = None  # cache_pass=fused: the previous chunk's x0, whose K/V this chunk's first pass writes

        for i in range(n_chunks):
            if prompt_index + 1 < len(prompts) and prompts[prompt_index + 1][0] == i:
                if pending is not None:  # a new prompt: the previous chunk is written under its own, unfused
                    self._write_cache(pending, text, cache)
                    self._keep(pending, cache, in_window)
                    pending = None
                prompt_index += 1
                with torch.set_grad_enabled(torch.is_grad_enabled() and exit_step is not None):
                    text = model.encode_text(prompts[prompt_index][1].to(param.device, dtype))
                if recache_on_switch and i > 0:
                    self._recache(cache, text, in_window)

            more = i + 1 < n_chunks  # the last chunk's K/V would never be read
            x0 = self._denoise(i, noise.initial(i, like), text, cache, noise, exit_step, more, pending)
            if pending is not None:  # its K/V are in the cache now
                self._keep(pending, cache, in_window)
                pending = None
            yield StreamChunk(index=i, latents=x0, prompt_index=prompt_index)

            if more and self.cache_pass == "fused":
                pending = x0.detach()  # written by the next chunk's first pass
            elif more:
                if self.own_cache_pass:
                    self._write_cache(x0.detach(), text, cache)
                self._keep(x0.detach(), cache, in_window)

    def rollout(self, prompts, latent_shape, noise, exit_step=None) -> torch.Tensor:
        """The whole stream at once: [B, C, F, H, W] (training, tests)."""
        chunks = self.stream(prompts, latent_shape, noise, exit_step=exit_step)
        return torch.cat([ch.latents for ch in chunks], dim=2)

    def _keep(self, x0, cache, in_window) -> None:
        """Remember a chunk whose K/V were just committed, for re-caching: as many chunks as the window holds."""
        in_window.append(x0)
        while len(in_window) * self.chunk_frames > cache.window_frames:
            in_window.popleft()

    def _denoise(self, i, x, text, cache, noise, exit_step, more=True, pending=None) -> torch.Tensor:
        """Chunk i's denoising passes -> x0 [B, C, f, H, W]. pending (cache_pass=fused): the previous chunk's x0,
        committed by the first pass, which runs over [pending ; x] (rf.models.fused)."""
        grad_allowed = torch.is_grad_enabled()
        last = len(self.timesteps) - 1 if exit_step is None else exit_step
        for s in range(last + 1):
            with_grad = grad_allowed and (exit_step is None or s == exit_step)
            t = torch.full((x.shape[0],), self.timesteps[s], device=x.device)
            write = self.cache_pass == "reuse" and s == last and more
            with torch.set_grad_enabled(with_grad):
                if s == 0 and pending is not None:  # [B, C, 2f, H, W] at per-frame timesteps [t_ctx]*f + [t_0]*f
                    t_ctx = torch.full((x.shape[0], pending.shape[2]), self.context_timestep, device=x.device)
                    t = torch.cat([t_ctx, t[:, None].expand(-1, x.shape[2])], dim=1)
                    flow = self.model(torch.cat([pending, x], dim=2), t, text=text, cache=cache, fused=pending.shape[2])
                else:
                    flow = self.model(x, t, text=text, cache=cache, write_cache=write)
                x0 = x0_from_flow(x, flow.sample, self.sigmas[s])
            if s < last:
                x = add_noise(x0.detach(), noise.renoise(i, s, x0), self.sigmas[s + 1])
        return x0

    @torch.no_grad()
    def _write_cache(self, x0, text, cache) -> None:
        t = torch.full((x0.shape[0],), self.context_timestep, device=x0.device)
        # its flow is never read: the last block stops at its K/V (kv_only) unless cache_pass=whole
        self.model(x0, t, text=text, cache=cache, write_cache=True, kv_only=self.cache_pass != "whole")

    def _recache(self, cache, text, in_window) -> None:
        cache.drop_window()
        for x0 in in_window:
            self._write_cache(x0, text, cache)
