"""Attention for the causal Wan: RoPE at any frame offset, self-attention over the KV cache,
cross-attention on text K/V computed once per prompt.

These functions drive the submodules of diffusers' `WanAttention` (to_q, to_k, to_v, norm_q,
norm_k, to_out) directly, so parameter names and weights stay Wan's own.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import WanAttention, WanRotaryPosEmbed

from rf.models.cache import Context


def backend(attn: WanAttention):
    """The attention kernel diffusers' `model.set_attention_backend(...)` chose for this module (None: its default)."""
    return getattr(attn.processor, "_attention_backend", None)


def kernel(attn: WanAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None) -> torch.Tensor:
    """q [B, Lq, H, D], k, v [B, Lk, H, D] -> [B, Lq, H, D] on this module's kernel.

    `attn.rf_kernel` (rf.fast.fast_path: fast.attention=fa3) when set, a function of q, k, v without a mask;
    otherwise diffusers' dispatcher with the backend `set_attention_backend` chose."""
    own = getattr(attn, "rf_kernel", None)
    if own is None:
        return dispatch_attention_fn(q, k, v, attn_mask=mask, backend=backend(attn))
    if mask is not None:
        raise ValueError(
            f"{own.__name__} takes no attention mask (teacher forcing's block-causal mask asked for one): "
            "train with fast.attention=null or cudnn"
        )
    return own(q, k, v)


def rope_tables(
    rope: WanRotaryPosEmbed, frame_positions: torch.Tensor, height: int, width: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin for tokens at the given temporal positions on an (height x width) token grid.

    frame_positions: [F] integer positions. -> (cos, sin), each [1, F*height*width, 1, head_dim].
    Wan's split of a head: t_dim temporal, h_dim and w_dim spatial channels (interleaved pairs).
    The tables are built in float64 by diffusers and cast once here: fp64 elementwise work in every
    layer is a known cost of the released code.
    """
    n_f = frame_positions.numel()
    split = [rope.t_dim, rope.h_dim, rope.w_dim]
    tables = []
    for buf in (rope.freqs_cos, rope.freqs_sin):
        f_t, f_h, f_w = buf.split(split, dim=1)
        f_t = f_t[frame_positions.to(buf.device)].view(n_f, 1, 1, -1).expand(n_f, height, width, -1)
        f_h = f_h[:height].view(1, height, 1, -1).expand(n_f, height, width, -1)
        f_w = f_w[:width].view(1, 1, width, -1).expand(n_f, height, width, -1)
        tables.append(torch.cat([f_t, f_h, f_w], dim=-1).reshape(1, n_f * height * width, 1, -1).to(dtype))
    return tables[0], tables[1]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of x [B, L, H, D] by the tables [1, L, 1, D]."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # [B, L, H, D/2] each
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return out.type_as(x)


def self_attention(
    attn: WanAttention,
    x: torch.Tensor,
    frames: int,
    rope_q: tuple[torch.Tensor, torch.Tensor],
    rope_k: tuple[torch.Tensor, torch.Tensor],
    context: Context | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [B, L, dim] (L = frames * tokens per frame) -> (out [B, L, dim], k, v [B, L, H, D] before RoPE).

    The chunk attends to [context ; itself], context being the cache's [sink ; window] K/V taken
    when the block was called (a snapshot: activation checkpointing recomputes this attention after
    the cache has moved on). Keys are cached before RoPE; RoPE is applied here to the whole key
    sequence with the positions in `rope_k`. A context whose `rotated` is True (the static cache's,
    rf.fast.static_cache) carries RoPE already; then only the chunk's keys are rotated, at the queries' positions.
    The chunk's own K/V are returned for the caller to commit: the function has no side effects (but for the
    static cache in place, fast.kv_in_place, whose scratch slots after the context it writes; inference only),
    so it can be recomputed and compiled.
    """
    own = getattr(attn, "rf_norm_rope", None)  # rf.fast.norm_rope (fast.norm_rope): norms and RoPE in one kernel
    if own is not None and context is not None and context.rotated:
        q_rot, k, v, k_all, v_all = own(attn, x, rope_q, context)  # k normalised, not rotated (what is committed)
        return attn.to_out[0](kernel(attn, q_rot, k_all, v_all, mask).flatten(2, 3).type_as(x)), k, v
    q, k, v = project_qkv(attn, x)
    return attn.to_out[0](attend(attn, q, k, v, rope_q, rope_k, context, mask).type_as(x)), k, v


def projections(attn: WanAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [B, L, dim] -> to_q(x), to_k(x), to_v(x) [B, L, dim]. After diffusers' `attn.fuse_projections()`
    (fast.fuse_qkv) the three are one matmul, to_qkv, and these are views of its output."""
    if getattr(attn, "fused_projections", False):
        return attn.to_qkv(x).chunk(3, dim=-1)
    return attn.to_q(x), attn.to_k(x), attn.to_v(x)


def keys_values(attn: WanAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, L, dim] -> k (after its RMSNorm, before RoPE), v [B, L, H, D]: what a chunk commits to the cache, without
    its queries or attention (the cache pass's last block: nothing reads the rest)."""
    if getattr(attn, "fused_projections", False):
        _, k, v = attn.to_qkv(x).chunk(3, dim=-1)
    else:
        k, v = attn.to_k(x), attn.to_v(x)
    return attn.norm_k(k).unflatten(2, (attn.heads, -1)), v.unflatten(2, (attn.heads, -1))


def project_qkv(attn: WanAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [B, L, dim] -> q, k, v [B, L, H, D]: q and k after their RMSNorm, all before RoPE."""
    q, k, v = projections(attn, x)
    q = attn.norm_q(q).unflatten(2, (attn.heads, -1))  # [B, L, H, D]
    k = attn.norm_k(k).unflatten(2, (attn.heads, -1))
    return q, k, v.unflatten(2, (attn.heads, -1))


def attend(
    attn: WanAttention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rope_q: tuple[torch.Tensor, torch.Tensor],
    rope_k: tuple[torch.Tensor, torch.Tensor],
    context: Context | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The chunk's q, k, v [B, L, H, D] (before RoPE) attend to [context ; the chunk] -> [B, L, H*D], before to_out."""
    if context is not None and context.rotated:  # a static cache's context: its keys already carry RoPE
        k_all, v_all = join_rotated(context, apply_rope(k, *rope_q), v)
    else:
        k_all, v_all = k, v
        if context is not None:
            k_all = torch.cat([context.k.to(k.dtype), k], dim=1)  # [B, Lctx + L, H, D]
            v_all = torch.cat([context.v.to(v.dtype), v], dim=1)
        k_all = apply_rope(k_all, *rope_k)
    out = kernel(attn, apply_rope(q, *rope_q), k_all, v_all, mask)  # [B, L, H, D]
    return out.flatten(2, 3)


def join_rotated(context, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[context ; the chunk]'s K/V [B, Lctx + L, H, D] for a context whose keys carry RoPE already (a static
    cache's, rf.fast.static_cache), the chunk's k [B, L, H, D] rotated at its own positions: written into the cache's
    buffers right after the context where they have room (fast.kv_in_place), else concatenated."""
    n = context.k.shape[1]
    if has_room(context, k.shape[1]):  # write there
        context.k_all[:, n:].copy_(k)  # views of the cache's buffers
        context.v_all[:, n:].copy_(v)
        return context.k_all, context.v_all
    return torch.cat([context.k, k], dim=1), torch.cat([context.v, v], dim=1)


def has_room(context, tokens: int) -> bool:
    """Whether a rotated context's buffers have room for `tokens` of the chunk right after it (fast.kv_in_place)."""
    return context.k_all is not None and context.k_all.shape[1] == context.k.shape[1] + tokens


def text_kv(attn: WanAttention, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-attention K/V of one block for embedded text [B, Lt, dim] -> ([B, Lt, H, D], [B, Lt, H, D])."""
    k = attn.norm_k(attn.to_k(text)).unflatten(2, (attn.heads, -1))
    v = attn.to_v(text).unflatten(2, (attn.heads, -1))
    return k, v


def cross_attention(attn: WanAttention, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """x [B, L, dim] attends to precomputed text K/V -> [B, L, dim]."""
    q = attn.norm_q(attn.to_q(x)).unflatten(2, (attn.heads, -1))
    out = kernel(attn, q, kv[0].to(q.dtype), kv[1].to(q.dtype))  # [B, L, H, D]
    return attn.to_out[0](out.flatten(2, 3).type_as(x))
