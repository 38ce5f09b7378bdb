"""CausalWanTransformer3DModel: Wan2.1's DiT made streamable (PAPER.md §1-2).

A subclass of diffusers' `WanTransformer3DModel` with the same parameters and names, so real
Wan weights load unchanged and `from_pretrained` / `save_pretrained` work as they do upstream.
The forward adds what a causal, chunk-by-chunk student needs:

- per-frame timesteps [B, F]: clean context and a noisy chunk can share one forward;
- a KV cache (rf.models.cache): the chunk attends to [sink ; window ; itself], keys cached
  before RoPE and rotated at attention time with frame positions re-counted from 0;
- a block-causal mask for teacher-forcing training: chunk i attends to chunks <= i;
- text cross-attention K/V computed once per prompt (`encode_text`) and reused by every call;
- the fused cache pass (rf.models.fused): chunk i's clean K/V written in chunk i+1's first denoising pass.

With no cache, no mask and one timestep per sample it computes exactly what the parent does.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel, WanTransformerBlock

from rf.models.attention import cross_attention, keys_values, rope_tables, self_attention, text_kv
from rf.models.cache import Context, KVCache, StreamCache
from rf.models.fused import FusedSplit, committer, fused_self_attention


@dataclass
class TextContext:
    """Per-block cross-attention K/V of one prompt batch; build it with `model.encode_text`."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block: ([B, Lt, H, D], [B, Lt, H, D])

    @property
    def batch_size(self) -> int:
        return self.kv[0][0].shape[0]


def block_causal_mask(frames: int, tokens_per_frame: int, chunk_frames: int, device=None) -> torch.Tensor:
    """Boolean [L, L] (True = may attend): a query in chunk i sees keys of chunks 0..i."""
    chunk = torch.arange(frames, device=device) // chunk_frames
    chunk = chunk.repeat_interleave(tokens_per_frame)  # [L]
    return chunk[:, None] >= chunk[None, :]


class CausalWanTransformer3DModel(WanTransformer3DModel):
    """The causal student; as the sampler calls it, a rf.diffusion.sampler.StreamModel."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for block in self.blocks:  # same parameters, the causal forward; blocks stay called as modules
            block.__class__ = CausalWanBlock

    # diffusers' from_config reads the constructor's signature to build the model: keep the parent's
    __init__.__signature__ = inspect.signature(WanTransformer3DModel.__init__)

    def _apply(self, fn, recurse=True):
        """Module.to / .cuda / .half go through here. The RoPE tables (cos / sin, float64 buffers in diffusers)
        must not follow the weights to bf16: 8 bits of mantissa would blur every position. After a cast they
        are rebuilt at full precision and kept in float32, which is what attention uses."""
        super()._apply(fn, recurse)
        rope = self.rope
        if rope.freqs_cos.dtype not in (torch.float32, torch.float64):
            fresh = type(rope)(self.config.attention_head_dim, self.config.patch_size, self.config.rope_max_seq_len)
            for name in ("freqs_cos", "freqs_sin"):
                setattr(rope, name, getattr(fresh, name).to(device=getattr(rope, name).device, dtype=torch.float32))
        return self

    def encode_text(self, encoder_hidden_states: torch.Tensor) -> TextContext:
        """Text embeddings [B, Lt, text_dim] -> per-block K/V for cross-attention.

        Goes through the module call (forward with text_only=True), so that wrappers hooked on the model's
        forward, such as FSDP2's all-gather (rf.lit.parallel), see this use of the weights too."""
        return self(None, None, encoder_hidden_states, text_only=True)

    def _text_context(self, encoder_hidden_states: torch.Tensor) -> TextContext:
        text = self.condition_embedder.text_embedder(encoder_hidden_states)  # [B, Lt, dim]
        return TextContext([text_kv(block.attn2, text) for block in self.blocks])

    def new_cache(self, config, static: bool = False) -> StreamCache:
        """The stream's KV cache; static=True preallocates it (rf.fast.static_cache: the exact fast path)."""
        if not static:
            return KVCache(config, num_blocks=len(self.blocks))
        from rf.fast.static_cache import StaticKVCache  # the fast path's: imported only when asked for

        # rf.fast.fast_path sets static_cache_options: compiled (fast.compile_commit), in_place (fast.kv_in_place),
        # kernel (fast.commit_kernel)
        return StaticKVCache(config, num_blocks=len(self.blocks), **getattr(self, "static_cache_options", {}))

    def _embed_time(self, timestep: torch.Tensor, batch: int, frames: int, dtype: torch.dtype):
        """timestep [B] or [B, F] -> temb [B, F, 1, dim], modulation [B, F, 6, dim] (float32)."""
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)
        if timestep.ndim == 1:
            timestep = timestep[:, None].expand(batch, frames)
        if timestep.shape != (batch, frames):
            raise ValueError(f"timestep shape {tuple(timestep.shape)}: expected [{batch}] or [{batch}, {frames}]")
        emb = self.condition_embedder
        t = emb.timesteps_proj(timestep.flatten())  # [B*F, freq_dim]
        t = t.to(next(emb.time_embedder.parameters()).dtype)
        temb = emb.time_embedder(t).to(dtype)  # [B*F, dim]
        mod = emb.time_proj(emb.act_fn(temb))  # [B*F, 6*dim]
        return temb.view(batch, frames, 1, -1), mod.view(batch, frames, 6, -1)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        *,
        text: TextContext | None = None,
        cache: StreamCache | None = None,
        write_cache: bool = False,
        kv_only: bool = False,
        causal_chunk: int | None = None,
        fused: int | None = None,
        return_dict: bool = True,
        text_only: bool = False,
        **unused,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor] | TextContext:
        """hidden_states [B, C, F, H, W], timestep [B] or [B, F] -> flow prediction [B, C, F, H, W].

        text:          precomputed cross-attention K/V (else computed from encoder_hidden_states)
        cache:         the stream's KV cache; the input frames follow its context
        write_cache:   commit this call's K/V to the cache (the clean t=0 pass of a chunk)
        kv_only:       with write_cache, compute only what the cache reads: the last block stops at its K/V (its
                       attention, cross-attention and FFN, and the output head, are skipped) and .sample is None
        causal_chunk:  block-causal mask with chunks of this many frames (teacher forcing)
        fused:         the fused cache pass (rf.models.fused): the first `fused` frames are the previous chunk's
                       clean latents, committed to the cache; the rest, the next chunk, attend to the cache after
                       that commit. Returns the flow of those last frames only: [B, C, F - fused, H, W]
        text_only:     only compute the TextContext of encoder_hidden_states (what encode_text calls)
        """
        if text_only:
            return self._text_context(encoder_hidden_states)
        if unused.get("encoder_hidden_states_image") is not None:
            raise ValueError("CausalWanTransformer3DModel is text-to-video: image conditioning is not supported")
        if text is None:
            if encoder_hidden_states is None:
                raise ValueError("pass encoder_hidden_states or a TextContext from encode_text()")
            text = self._text_context(encoder_hidden_states)
        if write_cache and cache is None:
            raise ValueError("write_cache=True needs a cache")
        if kv_only and not write_cache:
            raise ValueError("kv_only=True skips what only the flow needs in a cache pass: set write_cache=True")
        if fused is not None and (cache is None or write_cache or not 0 < fused < hidden_states.shape[2]):
            raise ValueError(
                f"fused={fused} with write_cache={write_cache} and {hidden_states.shape[2]} frames: the fused cache "
                "pass needs a cache, write_cache=False (it writes its first `fused` frames) and frames after them"
            )

        b, _, f, h, w = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        ppf, pph, ppw = f // p_t, h // p_h, w // p_w
        tokens_per_frame = pph * ppw

        device = hidden_states.device

        def rope_at(offset: int, frames: int):  # queries at [offset, offset + frames), keys over [0, offset + frames)
            rope_k = rope_tables(self.rope, torch.arange(offset + frames, device=device), pph, ppw, torch.float32)
            return tuple(t[:, offset * tokens_per_frame :] for t in rope_k), rope_k

        # the frames that see the cache as it is now: all of them, or the fused pass's clean ones
        now = ppf if fused is None else fused
        rope_q, rope_k = rope_at(cache.context_frames if cache is not None else 0, now)
        if cache is not None:  # the stream's shapes (a static cache allocates its buffers, rotated at these tables)
            heads = self.config.num_attention_heads
            cache.prepare(b, tokens_per_frame, heads, self.config.attention_head_dim, hidden_states.dtype, device,
                          rope=lambda pos: rope_tables(self.rope, pos, pph, ppw, torch.float32),
                          frames=ppf)  # fmt: skip

        mask = None
        if causal_chunk is not None:
            if cache is not None:
                raise ValueError("causal_chunk (teacher forcing) and a cache are exclusive")
            mask = block_causal_mask(ppf, tokens_per_frame, causal_chunk, device)

        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()  # [B, L, dim]
        temb, mod = self._embed_time(timestep, b, ppf, x.dtype)

        if fused is not None:  # the next chunk's frames see the cache after the commit: its RoPE re-counted from 0
            rope_next = rope_at(cache.context_frames_after(fused), ppf - fused)

        for i, block in enumerate(self.blocks):
            context = cache.context(i) if cache is not None else None  # [sink ; window] K/V, now
            split = None
            if fused is not None:  # this block commits the clean frames between its two attentions
                split = FusedSplit(fused * tokens_per_frame, *rope_next, committer(cache, i, fused))
            args = (x, mod, text.kv[i], rope_q, rope_k, context, mask, ppf, split)
            if torch.is_grad_enabled() and self.gradient_checkpointing and not write_cache and fused is None:
                x, k, v = self._gradient_checkpointing_func(block, *args)
            elif kv_only and i == len(self.blocks) - 1:  # only its K/V are read: called as a module all the same
                x, k, v = block(*args, kv_only=True)
            else:
                x, k, v = block(*args)
            if write_cache:  # the clean pass: this chunk's K/V enter the cache (detached: no gradient across chunks)
                cache.commit(i, k.detach().unflatten(1, (ppf, -1)), v.detach().unflatten(1, (ppf, -1)))
        if write_cache:
            cache.end_write(ppf)
        if kv_only:
            return Transformer2DModelOutput(sample=None) if return_dict else (None,)
        if fused is not None:  # (each block committed the clean frames in its attention)
            cache.end_write(fused)
            x, temb, ppf = x[:, fused * tokens_per_frame :], temb[:, fused:], ppf - fused  # the next chunk's only

        # Output head, modulated per frame: [1, 1, 2, dim] + [B, F, 1, dim]
        shift, scale = (self.scale_shift_table.unsqueeze(0) + temb.float()).chunk(2, dim=2)  # [B, F, 1, dim]
        x = x.unflatten(1, (ppf, tokens_per_frame))  # [B, F, T, dim]
        x = (self.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = self.proj_out(x.flatten(1, 2))  # [B, L, C * p_t * p_h * p_w]

        x = x.reshape(b, ppf, pph, ppw, p_t, p_h, p_w, -1)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
        out = x.flatten(6, 7).flatten(4, 5).flatten(2, 3)  # [B, C, F, H, W]
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)


class CausalWanBlock(WanTransformerBlock):
    """A Wan block with per-frame modulation, the KV cache and the teacher-forcing mask; parameters as upstream.

    Called as a module (not a function over its parameters) so that hooks on blocks, such as FSDP2's
    all-gather in rf.lit.parallel, see every use of the block's weights.
    """

    def forward(
        self,
        x: torch.Tensor,
        mod: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        rope_q,
        rope_k,
        context: Context | None,
        mask: torch.Tensor | None,
        frames: int,
        fused: FusedSplit | None = None,
        kv_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, F*T, dim], mod [B, F, 6, dim] -> (x [B, F*T, dim], the chunk's k, v [B, F*T, H, D]).

        A pure function of its inputs (the model commits k, v to the cache): recomputable and compilable.
        Except in the fused cache pass (rf.models.fused): there the self-attention commits the clean frames'
        K/V itself, between its two attentions, and k, v are those frames' (already committed). kv_only: stop at
        the chunk's k, v (the cache pass's last block); x comes back unchanged."""
        b, n, d = x.shape
        # Modulation order: shift-msa, scale-msa, gate-msa, shift-ffn, scale-ffn, gate-ffn; each [B, F, 1, dim]
        e = (self.scale_shift_table.unsqueeze(0) + mod.float()).chunk(6, dim=2)

        def modulate(norm, shift, scale):
            y = norm(x.float()).view(b, frames, -1, d) * (1 + scale) + shift
            return y.view(b, n, d).type_as(x)

        def gated(update, gate):
            return (x.float().view(b, frames, -1, d) + update.float().view(b, frames, -1, d) * gate).view(b, n, d)

        kernels = getattr(self, "rf_block_norms", False)  # rf.fast.block_norms (fast.block_norms): same function
        if kernels:
            eps = self.norm1.eps
            y = torch.ops.rf.ada_norm(x, None, None, e[0], e[1], frames, eps)
        else:
            y = modulate(self.norm1, e[0], e[1])
        if kv_only:
            return (x, *keys_values(self.attn1, y))
        if fused is None:
            y, k, v = self_attention(self.attn1, y, frames, rope_q, rope_k, context, mask)
        else:
            y, k, v = fused_self_attention(self.attn1, y, rope_q, rope_k, context, fused)
        if kernels:  # the residual sums and the next norm in one kernel each
            norm = torch.ops.rf.residual_ada_norm
            x, h = norm(x, y, e[2], self.norm2.weight, self.norm2.bias, None, None, frames, eps)
            x, h = norm(x, cross_attention(self.attn2, h, kv), None, None, None, e[3], e[4], frames, eps)
            return gated(self.ffn(h), e[5]).type_as(x), k, v
        x = gated(y, e[2]).type_as(x)

        x = x + cross_attention(self.attn2, self.norm2(x.float()).type_as(x), kv)

        y = self.ffn(modulate(self.norm3, e[3], e[4]))
        return gated(y, e[5]).type_as(x), k, v
