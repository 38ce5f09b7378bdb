"""Distribution matching distillation (DMD) and the critic's flow-matching loss (PAPER.md §3).

For a clean sample x from the student, noised to x_t at a random t:

    x0_real = teacher with CFG:  cond + (w - 1) (cond - uncond)      (Eq. CFG, w = 4; rf.diffusion.flow.cfg)
    x0_fake = critic (the student's current distribution), no CFG
    g       = (x0_fake - x0_real) / mean|x - x0_real|       mean per sample over C, F, H, W
    L_DMD   = 0.5 || x - stopgrad(x - g) ||^2                                      (Eq. DMD)

The gradient of L_DMD with respect to x is g: the student moves towards the teacher's
distribution and away from its own. Losses are returned per sample ([B]) so Re-DMD can weight
each sample by its reward (rf.losses.re_dmd).
"""

from __future__ import annotations

import torch


def dmd_gradient(x: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """g = (x0_fake - x0_real) / mean|x - x0_real|, normalised per sample. All [B, ...], no grad needed."""
    dims = tuple(range(1, x.ndim))
    scale = (x.float() - x0_real.float()).abs().mean(dim=dims, keepdim=True).clamp_min(1e-6)  # [B, 1, ...]
    return (x0_fake.float() - x0_real.float()) / scale


def dmd_loss(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5 || x - stopgrad(x - g) ||^2, mean over all but the batch dim -> [B]; d/dx = g / numel."""
    target = (x.float() - grad).detach()
    return 0.5 * (x.float() - target).square().flatten(1).mean(dim=1)


def flow_matching_loss(flow: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Critic (and teacher) loss: mean (v_hat - (eps - x0))^2 per sample -> [B]."""
    return (flow.float() - (noise.float() - x0.float())).square().flatten(1).mean(dim=1)
