"""Re-DMD: each sample's DMD loss weighted by exp(r_i / beta) (PAPER.md §3).

    L_Re-DMD = mean_i  w_i L_DMD(x_i),    w_i = exp(r_i / beta)

r_i is the reward of the decoded rollout i (z-scored); beta = 1/2 in the paper (the released code's
`beta: 2.0` multiplies r, the same thing). Rewards are weights only: no gradient flows through them.
Unlike the released code, every sample gets its own weight (it scores sample 0 and applies that
to the whole batch). A sample whose reward is not finite is dropped: weight 0.
"""

from __future__ import annotations

import torch


def reward_weights(rewards: torch.Tensor | None, beta: float, normalize: bool = False, batch: int | None = None):
    """rewards [B] (or None for plain DMD) -> (weights [B], valid [B] bool).

    normalize: divide by the mean weight over the valid samples, so the loss scale stays that of DMD.
    """
    if beta <= 0:
        raise ValueError(f"method.beta={beta}: must be > 0 (the paper uses 0.5)")
    if rewards is None:
        if batch is None:
            raise ValueError("plain DMD weights need the batch size")
        ones = torch.ones(batch)
        return ones, ones.bool()
    rewards = rewards.detach().float()
    valid = torch.isfinite(rewards)
    # clamp the exponent: a reward of 40 sigma should not overflow the weight to inf
    w = torch.exp((torch.where(valid, rewards, torch.zeros_like(rewards)) / beta).clamp(max=30.0))
    w = torch.where(valid, w, torch.zeros_like(w))
    if normalize and valid.any():
        w = w / w[valid].mean()
    return w, valid


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """mean_i w_i L_i over the batch (dropped samples count as zero, so every sample keeps the same scale)."""
    return (losses * weights.to(losses)).mean()
