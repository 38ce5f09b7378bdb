"""The DiT's attention calls on each exact kernel at the stream's own shapes: time per call, TFLOP/s and error.

    python experiments/bench/attention_kernels.py OUTDIR      (one Hopper GPU; FlashAttention-3 rows need fa3-fwd)

Shapes (832x480, 1,560 tokens a latent frame, 12 heads of 128): one 3-frame chunk's 4,680 queries attend to the
cache and itself: 3 frames (the first chunk), 6, and 9 (every steady chunk: ema_sink's 9-frame window, sink and
chunk included), and cross-attention to 512 text tokens. Kernels, each on the same bf16 q, k, v [B, L, H, D]:
  sdpa_cudnn   diffusers' dispatcher with `_native_cudnn` (fast=exact's attention: transposes to [B, H, L, D])
  sdpa_flash   the same with `_native_flash` (PyTorch's FlashAttention-2)
  fa3          FlashAttention-3's forward (rf.fast.fa3)
  fa3_fp8      FlashAttention-3 on e4m3 q, k, v with per-tensor scales (an approximation: its error is reported;
               the quantisation is timed apart)
  fa3_splitsN  FlashAttention-3 with the keys split N ways (more tiles than the 132 SMs' 3.4 waves of 444) and combined
  fa3_pack_gqa FlashAttention-3 with its pack_gqa scheduling
The stream appends the chunk's own keys to the cache's before each self-attention; two ways, timed whole:
  fa3_cat      torch.cat of the context's and the chunk's k and v, then FlashAttention-3 (what fast.attention=fa3 does)
  fa3_append   FlashAttention-3's append-KV: the chunk's k, v written into a preallocated buffer after the context,
               in the kernel (seqused_k = the context's length), no concatenation
Error: relative Frobenius error against float32 attention (cuBLAS, TF32 off) on the same bf16 inputs.
Writes OUTDIR/attention_kernels.json and prints the table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn

from rf.fast.timing import median_seconds

TOKENS, HEADS, DIM = 1560, 12, 128
QUERIES = 3 * TOKENS
KEYS = {"self, first chunk (3 frames)": 3 * TOKENS, "self, 6 frames": 6 * TOKENS,
        "self, steady (9 frames)": 9 * TOKENS, "cross (512 text tokens)": 512}  # fmt: skip


def timed(fn) -> float:
    """Median seconds of fn() over 50 calls after 5 warm ones (CUDA events)."""
    return median_seconds(fn, repeats=50, warm=5)


def reference(q, k, v) -> torch.Tensor:
    """float32 softmax(q k^T / sqrt(D)) v, [B, L, H, D], one head at a time (the score matrix in fp32)."""
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    for h in range(q.shape[2]):
        s = q[:, :, h].float() @ k[:, :, h].float().transpose(1, 2) * DIM**-0.5  # [B, Lq, Lk]
        out[:, :, h] = torch.softmax(s, dim=-1) @ v[:, :, h].float()
    return out


def error(out, ref) -> float:
    return float((out.float() - ref).norm() / ref.norm())


def quantize(x: torch.Tensor):
    """bf16 [B, L, H, D] -> (e4m3 of x / scale, scale [B, H] float32) with one scale per tensor."""
    scale = (x.abs().amax().float() / torch.finfo(torch.float8_e4m3fn).max).clamp(min=1e-12)
    return (x / scale).to(torch.float8_e4m3fn), scale.expand(x.shape[0], x.shape[2]).contiguous()


def appended(fa3, k, v, context: int, q) -> dict:
    """fa3_cat and fa3_append for keys = [the first `context` of k, v ; the chunk's own last ones]."""
    ctx_k, ctx_v = k[:, :context].clone(), v[:, :context].clone()  # the cache's rotated context, [B, Lc, H, D]
    new_k, new_v = k[:, context:].clone(), v[:, context:].clone()  # the chunk's own, [B, Lq, H, D]
    buf_k, buf_v = k.clone(), v.clone()  # [B, Lc + Lq, H, D]: the context, then room for the chunk
    used = torch.full((q.shape[0],), context, dtype=torch.int32, device=q.device)

    def cat():
        return fa3(q, torch.cat([ctx_k, new_k], 1), torch.cat([ctx_v, new_v], 1), softmax_scale=DIM**-0.5)[0]

    def append():
        return fa3(q, buf_k, buf_v, k_new=new_k, v_new=new_v, seqused_k=used, max_seqlen_q=q.shape[1],
                   softmax_scale=DIM**-0.5)[0]  # fmt: skip

    return {"fa3_cat": cat, "fa3_append": append}


def main(out_dir: Path) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device("cuda")
    try:
        from fa3_fwd_interface import _flash_attn_forward as fa3
    except ImportError as e:
        print(f"no FlashAttention-3 ({e}): its rows are skipped")
        fa3 = None
    rows = []
    for label, keys in KEYS.items():
        g = torch.Generator(device).manual_seed(0)
        q = torch.randn(1, QUERIES, HEADS, DIM, device=device, generator=g).to(torch.bfloat16)
        k = torch.randn(1, keys, HEADS, DIM, device=device, generator=g).to(torch.bfloat16)
        v = torch.randn(1, keys, HEADS, DIM, device=device, generator=g).to(torch.bfloat16)
        ref = reference(q, k, v)
        flops = 4 * QUERIES * keys * HEADS * DIM
        kernels = {
            "sdpa_cudnn": lambda q=q, k=k, v=v: dispatch_attention_fn(q, k, v, backend="_native_cudnn"),
            "sdpa_flash": lambda q=q, k=k, v=v: dispatch_attention_fn(q, k, v, backend="_native_flash"),
        }
        if fa3 is not None:
            kernels["fa3"] = lambda q=q, k=k, v=v: fa3(q, k, v, softmax_scale=DIM**-0.5)[0]
            (q8, qs), (k8, ks), (v8, vs) = quantize(q), quantize(k), quantize(v)
            fp8 = {"q_descale": qs, "k_descale": ks, "v_descale": vs, "softmax_scale": DIM**-0.5}
            kernels["fa3_fp8"] = lambda q8=q8, k8=k8, v8=v8, fp8=fp8: fa3(q8, k8, v8, **fp8)[0]
            for n in (2, 3, 4):
                kernels[f"fa3_splits{n}"] = lambda q=q, k=k, v=v, n=n: fa3(q, k, v, softmax_scale=DIM**-0.5,
                                                                         num_splits=n)[0]  # fmt: skip
            kernels["fa3_pack_gqa"] = lambda q=q, k=k, v=v: fa3(q, k, v, softmax_scale=DIM**-0.5, pack_gqa=True)[0]
            if keys > QUERIES:  # self-attention with a context: the chunk's own k, v are the last QUERIES keys
                kernels.update(appended(fa3, k, v, keys - QUERIES, q))
        for name, fn in kernels.items():
            try:
                seconds, err = timed(fn), error(fn(), ref)
            except Exception as e:  # a kernel that cannot take these shapes is a row that says so
                rows.append({"shape": label, "kernel": name, "error_text": f"{type(e).__name__}: {e}"[:300]})
                continue
            row = {"shape": label, "queries": QUERIES, "keys": keys, "kernel": name, "ms": 1e3 * seconds,
                   "tflops": flops / seconds / 1e12, "relative_error": err}  # fmt: skip
            if name == "fa3_fp8":
                row["quantize_ms"] = 1e3 * timed(lambda q=q, k=k, v=v: [quantize(x) for x in (q, k, v)])
            rows.append(row)
        del q, k, v, ref
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}
    (out_dir / "attention_kernels.json").write_text(json.dumps({"method": __doc__, **info, "rows": rows}, indent=1))
    print(f"{info['device']}, torch {info['torch']} (CUDA {info['cuda']})")
    print("| shape | kernel | ms / call | TFLOP/s | rel. error vs fp32 |\n|---|---|---|---|---|")
    for r in rows:
        if "error_text" in r:
            print(f"| {r['shape']} | {r['kernel']} | failed: {r['error_text']} | | |")
        else:
            extra = f" (+{r['quantize_ms']:.3f} quantise)" if "quantize_ms" in r else ""
            print(f"| {r['shape']} | {r['kernel']} | {r['ms']:.3f}{extra} | {r['tflops']:.0f} | "
                  f"{r['relative_error']:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "attention_kernels"))
