"""FP8 matmuls against bf16 at the DiT's own Linear shapes (one H100): bf16 `F.linear` against `torch._scaled_mm`
rowwise and tensorwise on pre-quantised inputs, and the rowwise quantisation of the input alone
(rf.fast.fp8.quantize_rowwise, compiled). M = 4,680 tokens (one chunk) and 9,360 (the fused cache pass's two chunks).
Run by experiments/bench/profile_chunk.py (its FP8 part; --no-fp8 leaves it out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rf.fast.fp8 import quantize_rowwise


def cuda_ms(fn, repeats: int = 50) -> float:
    for _ in range(5):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / repeats


def fp8_row(m: int, k: int, n: int, quantize) -> dict:
    """One Linear shape x [m, k] @ w [n, k]^T + bias: bf16 against fp8 (rowwise, tensorwise) and the quantisation."""
    device = torch.device("cuda")
    x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
    w = torch.randn(n, k, device=device, dtype=torch.bfloat16) / k**0.5
    bias = torch.zeros(n, device=device, dtype=torch.bfloat16)
    xq, xs = quantize_rowwise(x)
    wq, ws = quantize_rowwise(w)
    one = torch.ones((), device=device)
    bf16 = cuda_ms(lambda: F.linear(x, w, bias))
    row = cuda_ms(lambda: torch._scaled_mm(xq, wq.t(), scale_a=xs, scale_b=ws.t(), bias=bias, out_dtype=torch.bfloat16))
    tensor = cuda_ms(lambda: torch._scaled_mm(xq, wq.t(), scale_a=one, scale_b=one, bias=bias,
                                              out_dtype=torch.bfloat16))  # fmt: skip
    quant = cuda_ms(lambda: quantize(x))
    flop = 2 * m * k * n
    return {
        "bf16_ms": bf16, "fp8_rowwise_ms": row, "fp8_tensorwise_ms": tensor, "quantize_x_ms": quant,
        "bf16_tflops": flop / bf16 / 1e9, "fp8_rowwise_tflops": flop / row / 1e9,
        "fp8_tensorwise_tflops": flop / tensor / 1e9, "fp8_rowwise_with_quantize_speedup": bf16 / (row + quant),
    }  # fmt: skip


def fp8_matmuls() -> dict:
    quantize = torch.compile(quantize_rowwise)
    shapes = {"q/k/v/o, cross q/o": (1536, 1536), "fused qkv": (1536, 4608), "ffn up": (1536, 8960),
              "ffn down": (8960, 1536)}  # fmt: skip
    return {f"M={m} {what} ({k}->{n})": fp8_row(m, k, n, quantize) for m in (4680, 9360)
            for what, (k, n) in shapes.items()}  # fmt: skip


def fp8_table(rows: dict) -> list[str]:
    """fp8_matmuls()'s rows as Markdown lines."""
    lines = ["| shape | bf16 ms (TFLOP/s) | fp8 rowwise | fp8 tensorwise | quantise x | rowwise+quantise vs bf16 |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for shape, r in rows.items():
        lines.append(
            f"| {shape} | {r['bf16_ms']:.3f} ({r['bf16_tflops']:.0f}) | {r['fp8_rowwise_ms']:.3f} "
            f"({r['fp8_rowwise_tflops']:.0f}) | {r['fp8_tensorwise_ms']:.3f} ({r['fp8_tensorwise_tflops']:.0f}) | "
            f"{r['quantize_x_ms']:.3f} | {r['fp8_rowwise_with_quantize_speedup']:.2f}x |"
        )
    return lines
