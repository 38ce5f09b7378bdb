"""Shrink an rf checkpoint to one model's weights in fp16 (to carry it between machines).

    python experiments/toy_re_dmd/export_weights.py runs/toy_gpu/toy_teacher/checkpoints/last.ckpt teacher.ckpt
    python experiments/toy_re_dmd/export_weights.py runs/toy_gpu/toy_ode_init/checkpoints/last.ckpt init.ckpt generator.

The result loads wherever an rf checkpoint is expected (teacher_ckpt=..., student_ckpt=..., generate ckpt=...).
"""

import sys

import torch

src, dst = sys.argv[1], sys.argv[2]
prefix = sys.argv[3] if len(sys.argv) > 3 else "transformer."
ckpt = torch.load(src, map_location="cpu", weights_only=True)
weights = {k: v.half() for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
small = {"state_dict": weights, "hyper_parameters": ckpt["hyper_parameters"], "global_step": ckpt["global_step"]}
torch.save(small, dst)
n = sum(v.numel() for v in weights.values()) / 1e6
print(f"{dst}: {n:.2f}M parameters ({prefix}*) from step {ckpt['global_step']}")
