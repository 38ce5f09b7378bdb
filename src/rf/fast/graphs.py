"""CUDA graphs over the stream's passes: the exact fast path without launch gaps or host syncs.

With a static KV cache (rf.fast.static_cache) a denoising pass or a cache pass is a fixed-shape
function of fixed addresses, given the cache's host-side stage. `CudaGraphModel` wraps the causal
model for StreamSampler: the first time a (stage, pass kind, shape) comes up it runs eagerly, the
second time it is captured as a CUDA graph, and from then on it is one graph launch:

    x, t, text K/V  --copy-->  static inputs  --replay-->  static output  --clone-->  flow prediction
                                                 \\-> writes the cache's buffers in place (cache pass)

A stream meets a handful of keys: the chunks that fill the cache, then one steady stage per ring
position (one in all for the default 3-frame sink, 9-frame span, 3-frame chunks), times the two pass
kinds. All graphs share one memory pool: they never run at the same time.

One stream at a time: `new_cache` resets and hands back the same static cache, whose buffers the
graphs were captured on. Compiled blocks (rf.fast.compile) can run inside the graphs; the eager
first call of every key compiles them before any capture.
"""

from __future__ import annotations

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput

from rf.fast.static_cache import StaticKVCache
from rf.models.cache import CacheConfig
from rf.models.causal_wan import TextContext


class CudaGraphModel:
    """The causal model as StreamSampler calls it (a rf.diffusion.sampler.StreamModel), each pass replayed from a
    CUDA graph."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.dtype = model.dtype
        self.cache: StaticKVCache | None = None
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}  # key -> (graph, static output)
        self.seen: set[tuple] = set()  # keys run once eagerly, captured at their second call
        self.inputs: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # x shape -> static x, t
        self.text: TextContext | None = None  # static cross-attention K/V
        self.text_source: TextContext | None = None  # the TextContext last copied into them
        self.pool = None

    def parameters(self):
        return self.model.parameters()

    def encode_text(self, encoder_hidden_states: torch.Tensor) -> TextContext:
        return self.model.encode_text(encoder_hidden_states)

    def new_cache(self, config: CacheConfig, static: bool = True) -> StaticKVCache:
        """The static cache the graphs write, reset for a new stream (always static: graphs need fixed buffers)."""
        if self.cache is None or self.cache.config != config:  # new buffers: new graphs, in a new memory pool
            self.graphs, self.seen, self.pool = {}, set(), None  # (the old pool dies with the old graphs)
            self.cache = self.model.new_cache(config, static=True)
        self.cache.reset()
        return self.cache

    def __call__(self, x, t, *, text: TextContext, cache: StaticKVCache, write_cache: bool = False,
                 kv_only: bool = False):  # fmt: skip
        """x [B, C, f, H, W], t [B] -> Transformer2DModelOutput(sample=flow [B, C, f, H, W]; None with kv_only)."""
        if cache is not self.cache:
            raise ValueError("CudaGraphModel replays on its own cache: get it from its new_cache()")
        if x.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, the stream runs on {x.device}: leave graphs=false")
        key = (cache.stage, write_cache, kv_only, tuple(x.shape), x.dtype, tuple(text.kv[0][0].shape))
        if key not in self.graphs:
            if key not in self.seen:  # first call: run eagerly (compiles, warms cuBLAS/cuDNN up)
                self.seen.add(key)
                return self.model(x, t, text=text, cache=cache, write_cache=write_cache, kv_only=kv_only)
            self.graphs[key] = self._capture(x, t, text, write_cache, kv_only)
        graph, out = self.graphs[key]
        self._load(x, t, text)
        graph.replay()
        if write_cache:
            cache.end_write(x.shape[2] // self.model.config.patch_size[0])
        return Transformer2DModelOutput(sample=None if out is None else out.clone())

    def _load(self, x: torch.Tensor, t: torch.Tensor, text: TextContext) -> None:
        """Copy a pass's inputs into the static tensors the graphs read (allocated at the first capture)."""
        if tuple(x.shape) not in self.inputs:
            self.inputs[tuple(x.shape)] = (torch.empty_like(x), torch.empty_like(t))
        static_x, static_t = self.inputs[tuple(x.shape)]
        static_x.copy_(x)
        static_t.copy_(t)
        self._load_text(text)

    def _load_text(self, text: TextContext) -> None:
        shapes = [k.shape for k, _ in text.kv]
        if self.text is None or [k.shape for k, _ in self.text.kv] != shapes:
            self.text = TextContext([(torch.empty_like(k), torch.empty_like(v)) for k, v in text.kv])
            self.text_source = None
        if text is not self.text_source:
            for (k, v), (sk, sv) in zip(text.kv, self.text.kv, strict=True):
                sk.copy_(k)
                sv.copy_(v)
            self.text_source = text

    def _capture(self, x, t, text, write_cache, kv_only) -> tuple[torch.cuda.CUDAGraph, torch.Tensor | None]:
        self._load(x, t, text)
        static_x, static_t = self.inputs[tuple(x.shape)]
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with self.cache.frozen(), torch.cuda.graph(graph, pool=self.pool):  # records; nothing runs
            out = self.model(static_x, static_t, text=self.text, cache=self.cache, write_cache=write_cache,
                             kv_only=kv_only).sample  # fmt: skip
        self.pool = graph.pool()
        return graph, out
