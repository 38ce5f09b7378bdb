"""FlashAttention-3's forward kernel for the DiT's attention on Hopper: fast.attention=fa3.

PyTorch's SDPA has no FlashAttention-3: on an H100 it runs the stream's attention on cuDNN (about 500 TFLOP/s at
the stream's shapes, experiments/bench/README.md). FlashAttention-3 is Hopper's own kernel (warp-specialised,
TMA loads, softmax overlapped with the matmuls). It takes q, k, v in the [B, L, H, D] layout the DiT already holds,
so no transposes either. The same function as any exact kernel: only the order of bf16 sums differs (the bench's
GPU check measures it).

The kernel ships as a wheel built against PyTorch's stable C ABI for CUDA 13:

    pip install fa3-fwd          # or pip install -e '.[fa3]': FlashAttention 3's hopper/ forward only;
                                 # a Hopper GPU, torch >= 2.10 (cu130)

It is imported only when fast.attention=fa3 asks for it.
"""

from __future__ import annotations

import torch

INSTALL = "pip install fa3-fwd (FlashAttention 3's forward kernel: a Hopper GPU, PyTorch >= 2.10 built for CUDA 13)"


def load():
    """FlashAttention-3's forward op (a torch custom op with a fake kernel: torch.compile traces through it)."""
    try:
        from fa3_fwd_interface import _flash_attn_forward
    except ImportError as error:
        raise ImportError(f"fast.attention=fa3 needs FlashAttention-3: {INSTALL}; or fast.attention=cudnn") from error
    return _flash_attn_forward


def flash_attention_3(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q [B, Lq, H, D], k, v [B, Lk, H, D] (bf16, CUDA) -> softmax(q k^T / sqrt(D)) v [B, Lq, H, D]; no mask."""
    out, _lse, _, _ = load()(q, k, v, softmax_scale=q.shape[-1] ** -0.5, causal=False)
    return out
