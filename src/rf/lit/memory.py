"""Does a distillation run fit on the GPUs it was launched on? Checked before any model is allocated, so a run
that cannot fit stops with one line that names the memory it needs, not with an out-of-memory error minutes in.

FSDP2 (lit/parallel.py) shards every model over the N processes, so per GPU the run holds

    states = [ P_s (4 fp32 weights + 4 gradients + 8 Adam moments + 4 generator EMA)   generator
             + P_c (4 + 4 + 8)                                                          critic
             + P_t bytes(teacher_dtype) ] / N                                            frozen teacher
    need   = states + ACTIVATIONS_GIB

P_* are exact parameter counts (the architectures built on the meta device, no memory). ACTIVATIONS_GIB is
measured, not derived: everything above the states at the peak of a full-size step (21 latent frames at
480x832, bf16, activation checkpointing; experiments/multi_gpu): 8.6 GiB at N = 1 and 13.9 GiB at N = 2
(FSDP2's all-gathered blocks), the larger kept. It leaves out a larger teacher's own activations and gathered
blocks, so `need` is a floor: a run under it may still run out of memory, a run over it cannot fit. The paper's
recipe (14B teacher) peaked at 54.7 GiB on 2 H100s and 38.7 on 4, 3.7 and 6.3 GiB above its floor.
"""

from __future__ import annotations

import math

import torch

ACTIVATIONS_GIB = 13.9
GIB = 2**30
BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, None: 4}


def parameters(arch: dict) -> int:
    """Exact parameter count of a WanTransformer3DModel with these kwargs, without allocating it."""
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        return sum(p.numel() for p in WanTransformer3DModel(**arch).parameters())


def state_bytes(student: int, critic: int, teacher: int, teacher_dtype: str | None) -> int:
    """Bytes of weights, gradients, optimiser state and EMA of the whole run (before sharding)."""
    return student * (4 + 4 + 8 + 4) + critic * (4 + 4 + 8) + teacher * BYTES[teacher_dtype]


def check_fits(arch: dict, teacher_arch: dict, teacher_dtype: str | None, gpus: int, gpu_bytes: int, gpu_name: str):
    """Raise ValueError, in one line, when the states per GPU plus the measured activations exceed the GPU."""
    p_s = parameters(arch)
    p_t = p_s if teacher_arch == arch else parameters(teacher_arch)
    total = state_bytes(p_s, p_s, p_t, teacher_dtype)
    need = total / gpus / GIB + ACTIVATIONS_GIB
    have = gpu_bytes / GIB
    if need <= have:
        return
    enough = math.ceil(total / GIB / (have - ACTIVATIONS_GIB)) if have > ACTIVATIONS_GIB else None
    fix = f"launch on at least {enough} GPUs (torchrun --nproc-per-node {enough})" if enough else "use a larger GPU"
    raise ValueError(
        f"this run needs about {need:.0f} GiB per GPU on {gpus} GPU{'s' * (gpus > 1)} ({total / GIB:.0f} GiB of "
        f"weights, gradients and optimiser state over {gpus}: student and critic {p_s / 1e9:.2f}B parameters in "
        f"fp32 with Adam, teacher {p_t / 1e9:.2f}B in {teacher_dtype or 'fp32'}; {ACTIVATIONS_GIB} GiB measured "
        f"for activations), and {gpu_name} has {have:.0f} GiB: {fix}"
    )
