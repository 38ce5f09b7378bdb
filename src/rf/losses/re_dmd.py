"""Re-DMD: each sample's DMD loss weighted by exp(r_i / beta) (PAPER.md §3).

    L_Re-DMD = mean_i  w_i L_DMD(x_i),    w_i = exp(r_i / beta)

r_i is the reward of the decoded rollout i (z-scored); beta = 1/2 in the paper (the released code's
`beta: 2.0` multiplies r, the same thing). Rewards are weights only: no gradient flows through them.
Unlike the released code, every sample gets its own weight (it scores sample 0 and applies that
to the whole batch). A sample whose reward is not finite is dropped: weight 0.
"""

from __future__ import annotations

import torch

METHODS = ("dmd", "re_dmd")


def check_method(name: str, beta: float | None) -> None:
    """Refuse an unknown method, or a Re-DMD temperature that is not > 0 (plain DMD does not read beta)."""
    if name not in METHODS:
        raise ValueError(f"method={name!r}: choose one of {', '.join(METHODS)}")
    if name == "re_dmd" and (beta is None or beta <= 0):
        raise ValueError(f"method.beta={beta}: must be > 0 (the paper uses 0.5)")


def reward_weights(
    rewards: torch.Tensor | None,
    beta: float | None,
    normalize: bool = False,
    batch: int | None = None,
    method: str = "re_dmd",
) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards [B] (or None: no reward) -> (weights [B], valid [B] bool), for either method.

    re_dmd  w = exp(r / beta); `normalize` divides by the mean weight over the valid samples, so the loss
            scale stays that of DMD.
    dmd     w = 1: the reward, if any, is only logged, and drops the samples it cannot score.
    No reward (None) means every one of the `batch` samples weighs 1.
    """
    check_method(method, beta)
    if rewards is None:
        if batch is None:
            raise ValueError("weights without rewards need the batch size: pass batch=B")
        ones = torch.ones(batch)
        return ones, ones.bool()
    rewards = rewards.detach().float()
    valid = torch.isfinite(rewards)
    if method == "dmd":
        return valid.float(), valid
    # clamp the exponent: a reward of 40 sigma should not overflow the weight to inf
    w = torch.exp((torch.where(valid, rewards, torch.zeros_like(rewards)) / beta).clamp(max=30.0))
    w = torch.where(valid, w, torch.zeros_like(w))
    if normalize and valid.any():
        w = w / w[valid].mean()
    return w, valid


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """mean_i w_i L_i over the batch (dropped samples count as zero, so every sample keeps the same scale)."""
    return (losses * weights.to(losses)).mean()
