"""ODE initialisation (CausVid): regress the causal student onto the teacher's ODE endpoint.

From a stored trajectory (states at the student's K timesteps, clean endpoint x0), each chunk of
each sample gets a random step index k; the student sees state k of that chunk at t_k (per-frame
timesteps, block-causal teacher forcing) and predicts x0:

    L_ODE = || x0_hat(x_{t_k}, t_k) - x0 ||^2
"""

from __future__ import annotations

import torch


def ode_regression_loss(x0_pred: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error -> [B]."""
    return (x0_pred.float() - x0.float()).square().flatten(1).mean(dim=1)
