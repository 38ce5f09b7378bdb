"""Shrink a toy-teacher checkpoint to its transformer weights in fp16 (to carry it between machines).

    python experiments/toy_re_dmd/export_teacher.py runs/toy_gpu/toy_teacher/checkpoints/last.ckpt teacher.ckpt

The result loads wherever an rf checkpoint is expected (teacher_ckpt=..., generate ckpt=...).
"""

import sys

import torch

src, dst = sys.argv[1], sys.argv[2]
ckpt = torch.load(src, map_location="cpu", weights_only=True)
weights = {k: v.half() for k, v in ckpt["state_dict"].items() if k.startswith("transformer.")}
small = {"state_dict": weights, "hyper_parameters": ckpt["hyper_parameters"], "global_step": ckpt["global_step"]}
torch.save(small, dst)
print(f"{dst}: {sum(v.numel() for v in weights.values()) / 1e6:.2f}M parameters from step {ckpt['global_step']}")
