"""The DiT's cross-attention (a chunk's 4,680 queries to the prompt's 512 text tokens) on every exact kernel.

    python experiments/bench/cross_attention.py OUTDIR      (one GPU; the fa3 row needs fa3-fwd)

A steady chunk makes 150 of these calls (30 blocks, 5 passes). Each form computes softmax(q k^T / sqrt(D)) v on the
same bf16 q [1, 4680, 12, 128] and k, v [1, 512, 12, 128], laid out as the blocks hold them:

  fa3           FlashAttention-3's forward (rf.fast.fa3: variants=best's kernel)
  sdpa_flash    PyTorch's FlashAttention-2 (SDPA on the [B, H, L, D] views)
  sdpa_cudnn    cuDNN's (SDPA)
  sdpa_efficient  the memory-efficient kernel (SDPA)
  short         short_attention below: one Triton program per 64 or 128 queries of a head, walking the 512 keys
                (its configuration timed once, at the first call)
  matmul        torch.compile of softmax(q k^T) v written out: two batched matmuls and a float32 softmax

Each row: us a call inside a CUDA graph of 20 calls (as the stream replays them: no launch cost), the median of 10
replays after 2, TFLOP/s, and the relative error against float32 attention on the same inputs. Writes
OUTDIR/cross_attention.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.nn.attention import SDPBackend, sdpa_kernel

from rf.fast.timing import median_seconds

# A Triton kernel for attention over short key sequences, measured here against the library kernels (it lost to
# FlashAttention-3 on an H100: results/cross_attention.json). One program takes BLOCK_M queries of one head and walks
# the keys in BLOCK_N blocks with FlashAttention's online softmax (float32, exp2 with the scale folded in).
CONFIGS = [(bm, bn, warps, stages) for bm in (64, 128) for bn in (64, 128) for warps in (4, 8) for stages in (2, 3)]


@triton.jit
def _short_attention(
    q_ptr, k_ptr, v_ptr, o_ptr,
    sq_b, sq_l, sq_h, sk_b, sk_l, sk_h, sv_b, sv_l, sv_h, so_b, so_l, so_h,
    lq, lk, heads, scale_log2e,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // heads, bh % heads
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # this program's queries
    offs_d = tl.arange(0, D)
    offs_n = tl.arange(0, BLOCK_N)
    q_rows = offs_m[:, None] < lq
    q = tl.load(q_ptr + b * sq_b + h * sq_h + offs_m[:, None] * sq_l + offs_d[None, :], q_rows, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running max of the scaled scores (log2 units)
    l_i = tl.zeros([BLOCK_M], tl.float32)  # running sum of exp2(score - max)
    acc = tl.zeros([BLOCK_M, D], tl.float32)  # running sum of exp2(score - max) v
    for start in range(0, lk, BLOCK_N):
        n = start + offs_n
        keys = n[:, None] < lk
        k = tl.load(k_ptr + b * sk_b + h * sk_h + n[:, None] * sk_l + offs_d[None, :], keys, other=0.0)
        s = tl.dot(q, tl.trans(k)) * scale_log2e  # [BLOCK_M, BLOCK_N] float32
        s = tl.where(n[None, :] < lk, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_ptr + b * sv_b + h * sv_h + n[:, None] * sv_l + offs_d[None, :], keys, other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new
    out = acc / l_i[:, None]
    o = o_ptr + b * so_b + h * so_h + offs_m[:, None] * so_l + offs_d[None, :]
    tl.store(o, out.to(o_ptr.dtype.element_ty), q_rows)


# each (lq, lk, D) timed once over CONFIGS, at the first call (outside any CUDA graph capture)
short_kernel = triton.autotune(
    configs=[triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=warps, num_stages=stages)
             for bm, bn, warps, stages in CONFIGS],
    key=["lq", "lk", "D"],
)(_short_attention)  # fmt: skip


def short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q [B, Lq, H, D], k, v [B, Lk, H, D] -> softmax(q k^T / sqrt(D)) v [B, Lq, H, D]; no mask."""
    b, lq, heads, d = q.shape
    lk = k.shape[1]
    if k.shape != (b, lk, heads, d) or v.shape != k.shape:
        raise ValueError(f"short_attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not match")
    if d & (d - 1) or d < 16 or any(t.stride(-1) != 1 for t in (q, k, v)):
        raise ValueError(f"short_attention needs a power-of-two head size >= 16 with contiguous heads, not {d}")
    out = torch.empty(b, lq, heads, d, device=q.device, dtype=q.dtype)
    grid = lambda meta: (triton.cdiv(lq, meta["BLOCK_M"]), b * heads)  # noqa: E731
    short_kernel[grid](
        q, k, v, out, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3],
        lq, lk, heads, d**-0.5 * math.log2(math.e), D=d,
    )  # fmt: skip
    return out


def sdpa(backend):
    def attend(q, k, v):
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            return out.transpose(1, 2)

    return attend


def written_out(q, k, v):
    s = torch.einsum("blhd,bkhd->bhlk", q, k).float() * q.shape[-1] ** -0.5
    return torch.einsum("bhlk,bkhd->blhd", s.softmax(-1).to(v.dtype), v)


def graphed_us(fn, calls: int = 20) -> float:
    """Microseconds a call of fn() takes inside a CUDA graph of `calls` calls (fn warmed up first)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    return 1e6 * median_seconds(graph.replay, repeats=10, warm=2) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--queries", type=int, default=4680)
    parser.add_argument("--keys", type=int, default=512)
    args = parser.parse_args()
    torch.manual_seed(0)
    dev, heads, d = torch.device("cuda"), 12, 128
    q = torch.randn(1, args.queries, heads, d, device=dev, dtype=torch.bfloat16)
    k = torch.randn(1, args.keys, heads, d, device=dev, dtype=torch.bfloat16)
    v = torch.randn(1, args.keys, heads, d, device=dev, dtype=torch.bfloat16)
    with sdpa_kernel(SDPBackend.MATH):
        torch.backends.cuda.matmul.allow_tf32 = False
        ref = sdpa(SDPBackend.MATH)(q.float(), k.float(), v.float())
    forms = {"sdpa_flash": sdpa(SDPBackend.FLASH_ATTENTION), "sdpa_cudnn": sdpa(SDPBackend.CUDNN_ATTENTION),
             "sdpa_efficient": sdpa(SDPBackend.EFFICIENT_ATTENTION), "short": short_attention,
             "matmul": torch.compile(written_out)}  # fmt: skip
    try:
        from rf.fast.fa3 import flash_attention_3, load

        load()
        forms = {"fa3": flash_attention_3, **forms}
    except ImportError as error:
        print(f"fa3: {error}")
    flops = 4 * args.queries * args.keys * heads * d
    rows = []
    for name, fn in forms.items():
        with torch.no_grad():
            out = fn(q, k, v).float()
            error = ((out - ref).norm() / ref.norm()).item()
            us = graphed_us(lambda fn=fn: fn(q, k, v))
        rows.append({"form": name, "us": us, "tflops": flops / us / 1e6, "relative_error": error})
        print(f"{name:15s} {us:8.1f} us  {flops / us / 1e6:6.1f} TFLOP/s  error {error:.2e}", flush=True)
    best = getattr(short_kernel, "best_config", None)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "queries": args.queries,
            "keys": args.keys, "heads": heads, "head_dim": d, "short_config": str(best)}  # fmt: skip
    (args.out / "cross_attention.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    print("short's configuration:", best)


if __name__ == "__main__":
    main()
