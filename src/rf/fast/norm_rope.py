"""The self-attention's q/k RMS norms and RoPE as one Triton kernel (fast.norm_rope).

Per pass and block, the exact path computes

    q = rope(RMSNorm_q(to_q(x)))      k_raw = RMSNorm_k(to_k(x))      k_rot = rope(k_raw)

(rf.models.attention.project_qkv, apply_rope). Compiled, that is a reduction kernel for each norm's statistics and
a pointwise kernel that reads the rows again to normalise and rotate them, then copies into the cache: about 80 us
a pass on an H100 (experiments/bench/results/profile_commit.md). Here one program takes one token's row of q and of
k: it reads each once, reduces it in float32, and writes q rotated, k normalised (what the static cache commits:
keys before RoPE) and k rotated, in place (fast.kv_in_place) straight into the cache's buffers beside the values.

Measured (experiments/bench/README.md): 38 us a pass against about 80, but alone no faster stream (+2.2 ms a chunk,
95% CI [-0.5, +5.0], then -2.8 [-5.9, +0.2]): Inductor's GELU kernel ran slower in the graph around the opaque op.
With the GELU in its matmul's epilogue (fast.gelu_epilogue) the pair saves 7.7 ms a chunk on an H100, 95% CI
[5.2, 10.2]: both are in variants=best and, since 2026-11-28, in the presets (variants=presets_kernels).

The function is the plain path's, rounding for rounding where the order allows: the norm and its weight in float32,
rounded once to the input's dtype (PyTorch's rms_norm), then the rotation in float32 on those rounded values,
rounded once (apply_rope). Only the order of the squares' sum differs (and a fused multiply-add in the rotation):
a float32 rounding or two before the final one.

    q, k [B, L, H*D] (rows may be strided, e.g. views of the fused qkv projection); weights [H*D];
    cos, sin [1, L, 1, D] float32 (rf.models.attention.rope_tables: cos read at even, sin at odd channels)
    -> q_rot, k_raw, k_rot [B, L, H*D], in q's dtype

On a CUDA device the kernel runs compiled; on a CPU it runs in Triton's interpreter (TRITON_INTERPRET=1 set before
Triton is imported), which is how the tests check it. Under torch.compile it is one opaque custom op, rf::norm_rope.
"""

from __future__ import annotations

import torch

from rf.models.attention import has_room, join_rotated, projections

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU install without Triton: fast.norm_rope is refused before any work (norm_rope_available)
    triton = None


def norm_rope_available() -> str | None:
    """None where the kernel can run; otherwise why not, and the fix."""
    if triton is None:
        return "fast.norm_rope is a Triton kernel and Triton is not installed (it comes with PyTorch's CUDA builds)"
    return None


if triton is not None:

    @triton.jit
    def _normed(ptr, weight_ptr, offs, mask, eps, DIM: tl.constexpr, out_dtype: tl.constexpr):
        """A row's RMS norm and weight in float32, rounded once to out_dtype (PyTorch's rms_norm)."""
        x = tl.load(ptr + offs, mask, other=0.0).to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / DIM + eps)
        return (x * rstd * tl.load(weight_ptr + offs, mask, other=0.0).to(tl.float32)).to(out_dtype)

    @triton.jit
    def _rotated(y, cos, sin, BLOCK: tl.constexpr):
        """RoPE on a row's channel pairs (2p, 2p + 1), in float32 (apply_rope)."""
        a, b = tl.split(tl.reshape(y.to(tl.float32), [BLOCK // 2, 2]))
        return tl.reshape(tl.join(a * cos - b * sin, a * sin + b * cos), [BLOCK])

    @triton.jit
    def _norm_rope_kernel(
        q_ptr, k_ptr, v_ptr, wq_ptr, wk_ptr, cos_ptr, sin_ptr, q_rot_ptr, k_raw_ptr, k_rot_ptr, v_out_ptr,
        q_row_stride, k_row_stride, v_row_stride, rope_row_stride, out_batch_stride, out_row_stride, out_first,
        tokens, eps_q, eps_k, DIM: tl.constexpr, HALF_HEAD: tl.constexpr, BLOCK: tl.constexpr, COPY_V: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0)  # a token of the batch: b * tokens + its position in the chunk
        pos = row % tokens
        out_row = (row // tokens) * out_batch_stride + (out_first + pos) * out_row_stride  # in k_rot (and v_out)
        offs = tl.arange(0, BLOCK)
        mask = offs < DIM
        pairs = tl.arange(0, BLOCK // 2)  # channel pairs (2p, 2p + 1): the rotation's planes
        pair_mask = pairs < DIM // 2
        within = pairs % HALF_HEAD  # the pair's place inside its head: the tables' column 2 * within
        cos = tl.load(cos_ptr + pos * rope_row_stride + 2 * within, pair_mask, other=0.0)
        sin = tl.load(sin_ptr + pos * rope_row_stride + 2 * within + 1, pair_mask, other=0.0)
        out_dtype = q_rot_ptr.dtype.element_ty

        # q normalised (rounded once) and rotated (rounded once); k the same, and stored before the rotation too
        q = _normed(q_ptr + row * q_row_stride, wq_ptr, offs, mask, eps_q, DIM, out_dtype)
        tl.store(q_rot_ptr + row * DIM + offs, _rotated(q, cos, sin, BLOCK).to(out_dtype), mask)
        k = _normed(k_ptr + row * k_row_stride, wk_ptr, offs, mask, eps_k, DIM, out_dtype)
        tl.store(k_raw_ptr + row * DIM + offs, k, mask)
        tl.store(k_rot_ptr + out_row + offs, _rotated(k, cos, sin, BLOCK).to(out_dtype), mask)
        if COPY_V:  # v beside it, where attention reads [context ; chunk]
            tl.store(v_out_ptr + out_row + offs, tl.load(v_ptr + row * v_row_stride + offs, mask), mask)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x [B, L, C] whose rows are evenly strided with contiguous channels (a view of a fused projection is)."""
    b, l, _ = x.shape
    if x.stride(2) == 1 and (b == 1 or x.stride(0) == l * x.stride(1)):
        return x
    return x.contiguous()


def _launch(q, k, v, weight_q, weight_k, cos, sin, eps_q, eps_k, head_dim, k_out, v_out, first):
    """q_rot, k_raw [B, L, H*D] returned; k rotated (and v, if v_out is given) written to rows first .. first+L-1
    of k_out [B, N, H, D] (v_out alike)."""
    why = norm_rope_available()
    if why is not None:
        raise RuntimeError(why)
    q, k, v = _rows(q), _rows(k), _rows(v)
    b, tokens, dim = q.shape
    if dim % head_dim or head_dim % 2 or cos.shape[1] != tokens or cos.stride(-1) != 1 or sin.stride() != cos.stride():
        raise ValueError(f"norm_rope: q [B, L, H*D] = {tuple(q.shape)} with head_dim {head_dim}, and RoPE tables "
                         f"[1, L, 1, D] = {tuple(cos.shape)} with contiguous channels")  # fmt: skip
    for out in (k_out, v_out):
        if out is not None and (out.stride(-1) != 1 or out.stride(-2) != head_dim or out.stride() != k_out.stride()):
            raise ValueError(f"norm_rope: the K/V buffers [B, N, H, D] need contiguous heads, not {out.stride()}")
    q_rot, k_raw = (torch.empty(b, tokens, dim, dtype=q.dtype, device=q.device) for _ in range(2))
    block = triton.next_power_of_2(dim)
    _norm_rope_kernel[(b * tokens,)](
        q, k, v, weight_q, weight_k, cos, sin, q_rot, k_raw, k_out, k_out if v_out is None else v_out,
        q.stride(1), k.stride(1), v.stride(1), cos.stride(1), k_out.stride(0), k_out.stride(1), first,
        tokens, eps_q, eps_k, DIM=dim, HALF_HEAD=head_dim // 2, BLOCK=block, COPY_V=v_out is not None,
        num_warps=4 if block <= 2048 else 8,
    )  # fmt: skip
    return q_rot, k_raw


@torch.library.custom_op("rf::norm_rope", mutates_args=())
def norm_rope(
    q: torch.Tensor, k: torch.Tensor, weight_q: torch.Tensor, weight_k: torch.Tensor, cos: torch.Tensor,
    sin: torch.Tensor, eps_q: float, eps_k: float, head_dim: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(q_rot, k_raw, k_rot) [B, L, H*D]: see the module doc."""
    b, tokens, dim = q.shape
    k_rot = torch.empty(b, tokens, dim // head_dim, head_dim, dtype=q.dtype, device=q.device)
    q_rot, k_raw = _launch(q, k, q, weight_q, weight_k, cos, sin, eps_q, eps_k, head_dim, k_rot, None, 0)
    return q_rot, k_raw, k_rot.flatten(2)


@norm_rope.register_fake
def _(q, k, weight_q, weight_k, cos, sin, eps_q, eps_k, head_dim):
    b, tokens, dim = q.shape
    return tuple(q.new_empty(b, tokens, dim) for _ in range(3))


@torch.library.custom_op("rf::norm_rope_into", mutates_args=("k_all", "v_all"))
def norm_rope_into(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, weight_q: torch.Tensor, weight_k: torch.Tensor,
    cos: torch.Tensor, sin: torch.Tensor, eps_q: float, eps_k: float, head_dim: int, k_all: torch.Tensor,
    v_all: torch.Tensor, first: int,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(q_rot, k_raw) [B, L, H*D], and the chunk's rotated keys and its values written into k_all, v_all
    [B, first + L, H, D] after the context's `first` rows (the static cache in place, fast.kv_in_place)."""
    return _launch(q, k, v, weight_q, weight_k, cos, sin, eps_q, eps_k, head_dim, k_all, v_all, first)


@norm_rope_into.register_fake
def _(q, k, v, weight_q, weight_k, cos, sin, eps_q, eps_k, head_dim, k_all, v_all, first):
    b, tokens, dim = q.shape
    return q.new_empty(b, tokens, dim), q.new_empty(b, tokens, dim)


def rms_eps(norm: torch.nn.RMSNorm, dtype: torch.dtype) -> float:
    """The epsilon torch.nn.RMSNorm adds (its own, or the dtype's machine epsilon where it has none)."""
    return norm.eps if norm.eps is not None else torch.finfo(dtype).eps


def norm_rope_qkv(attn, x: torch.Tensor, rope_q: tuple[torch.Tensor, torch.Tensor], context):
    """A WanAttention's projections of x [B, L, dim], then the kernel, beside a rotated context (the static
    cache's) -> q_rot, k_raw, v [B, L, H, D] and k_all, v_all [B, Lctx + L, H, D]: [context ; the chunk], its keys
    rotated at the queries' positions. What rf.models.attention's project_qkv, apply_rope and join_rotated compute;
    in place (fast.kv_in_place) the kernel writes the chunk's keys and values into the cache's buffers itself."""
    q, k, v = projections(attn, x)  # [B, L, dim] each
    head_dim = q.shape[-1] // attn.heads
    args = (attn.norm_q.weight, attn.norm_k.weight, *rope_q, rms_eps(attn.norm_q, q.dtype),
            rms_eps(attn.norm_k, k.dtype), head_dim)  # fmt: skip
    heads = (attn.heads, head_dim)
    if has_room(context, q.shape[1]):
        q_rot, k_raw = norm_rope_into(q, k, v, *args, context.k_all, context.v_all, context.k.shape[1])
        return q_rot.unflatten(2, heads), k_raw.unflatten(2, heads), v.unflatten(2, heads), context.k_all, context.v_all
    q_rot, k_raw, k_rot = norm_rope(q, k, *args)
    k_all, v_all = join_rotated(context, k_rot.unflatten(2, heads), v.unflatten(2, heads))
    return q_rot.unflatten(2, heads), k_raw.unflatten(2, heads), v.unflatten(2, heads), k_all, v_all


def use_norm_rope(model: torch.nn.Module) -> int:
    """Mark every block's self-attention to take the kernel (rf.models.attention.self_attention reads the mark
    where the context is the static cache's, its keys already rotated); returns how many."""
    why = norm_rope_available()
    if why is not None:
        raise RuntimeError(why)
    marked = 0
    for block in model.blocks:
        attn = block.attn1
        for norm in (attn.norm_q, attn.norm_k):
            if not isinstance(norm, torch.nn.RMSNorm) or norm.weight is None:
                raise ValueError(f"fast.norm_rope fuses torch.nn.RMSNorm with a weight; this model's is {norm}")
        attn.rf_norm_rope = norm_rope_qkv
        marked += 1
    return marked
