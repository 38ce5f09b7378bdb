"""The fused cache pass: chunk i's clean K/V written in the same forward as chunk i+1's first denoising pass.

The unfused stream runs, between two chunks, a t = 0 pass over chunk i's clean latents that commits
their K/V (rf.diffusion.sampler), then chunk i+1's first denoising pass, which attends to the cache
after that commit. The fused pass is one forward over both chunks, x = [clean chunk i ; noisy chunk i+1]
with per-frame timesteps [t_ctx]*f + [t_0]*f, and computes the same function:

    every per-token part (patch embedding, modulation, norms, projections, cross-attention, FFN) runs
    once over both chunks: larger matrix products, one pass fewer per chunk;
    the self-attention of each block is two calls on the shared q, k, v:

        chunk i   queries -> [context before ; chunk i]      (RoPE from 0 over the cache as it was)
        commit chunk i's K/V to the block's cache             (the window may evict into the sink here)
        chunk i+1 queries -> [context after ; chunk i+1]     (RoPE re-counted from 0 over the new cache)

Only chunk i's K/V are kept from its half (detached, as the clean pass commits them); the model returns
the flow of chunk i+1's frames only. The two query groups need different key sets because the commit
between them may evict or fuse frames (window, ema_sink) and shifts every position after it.

The commit is a side effect inside the block: a compiled block (rf.fast.compile) breaks its graph there, and
the CUDA graphs (rf.fast.graphs) do not capture this pass (FastPath refuses graphs with it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.models.transformers.transformer_wan import WanAttention

from rf.models.attention import attend, project_qkv
from rf.models.cache import Context, StreamCache

RopeTables = tuple[torch.Tensor, torch.Tensor]  # cos, sin [1, L, 1, D] (rf.models.attention.rope_tables)


@dataclass
class FusedSplit:
    """What one block needs for the fused pass's second attention (built per block by the model's forward)."""

    clean_tokens: int  # the first tokens of x are chunk i's (clean); the rest are chunk i+1's (noisy)
    rope_q: RopeTables  # chunk i+1's queries, at positions [n, n + f) of the cache after the commit (n frames)
    rope_k: RopeTables  # keys over [0, n + f)
    commit: Callable[[torch.Tensor, torch.Tensor], Context | None]  # chunk i's k, v [B, Lc, H, D] -> context after


def committer(cache: StreamCache, block: int, frames: int) -> Callable[[torch.Tensor, torch.Tensor], Context | None]:
    """A FusedSplit.commit for one block: commit the clean chunk's K/V (detached, [B, f, T, H, D]) and read the
    block's context back, now holding them."""

    @torch.compiler.disable  # a compiled block (rf.fast.compile) breaks its graph here, not per block index
    def commit(k: torch.Tensor, v: torch.Tensor) -> Context | None:
        cache.commit(block, k.detach().unflatten(1, (frames, -1)), v.detach().unflatten(1, (frames, -1)))
        return cache.context(block)

    return commit


def fused_self_attention(
    attn: WanAttention,
    x: torch.Tensor,
    rope_q: RopeTables,
    rope_k: RopeTables,
    context: Context | None,
    split: FusedSplit,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [B, Lc + Ln, dim] = [clean chunk i ; noisy chunk i+1] -> (out [B, Lc + Ln, dim], chunk i's k, v [B, Lc, H, D]).

    rope_q / rope_k and context: chunk i's, as in rf.models.attention.self_attention; split: chunk i+1's.
    Commits chunk i's K/V through split.commit between the two attentions (a side effect: no recomputation)."""
    n = split.clean_tokens
    q, k, v = project_qkv(attn, x)  # [B, Lc + Ln, H, D]: one projection over both chunks
    clean = attend(attn, q[:, :n], k[:, :n], v[:, :n], rope_q, rope_k, context)  # [B, Lc, H*D]
    after = split.commit(k[:, :n], v[:, :n])  # the block's [sink ; window] with chunk i in it
    noisy = attend(attn, q[:, n:], k[:, n:], v[:, n:], split.rope_q, split.rope_k, after)  # [B, Ln, H*D]
    out = torch.cat([clean, noisy], dim=1).type_as(x)
    return attn.to_out[0](out), k[:, :n], v[:, :n]
