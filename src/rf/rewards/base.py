"""What Re-DMD asks of a reward model.

A reward scores decoded rollouts, one number per sample. Rewards are weights only: Re-DMD multiplies each
sample's DMD loss by exp(r / beta) (rf.losses.re_dmd), so no gradient ever flows through a reward, and its
scale matters: rewards are z-scored (mean 0, std 1 over typical rollouts) so that beta means the same
thing whichever reward is plugged in.

A reward may return NaN for a sample it cannot score (a non-finite video, a clip too short to judge); the
caller drops that sample (weight 0) instead of guessing.
"""

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class RewardModel(Protocol):
    name: str  # for logs: rewards/{name}

    def __call__(self, video: torch.Tensor, prompts: list[str] | None = None) -> torch.Tensor:
        """video [B, 3, T, H, W] in [-1, 1] (decoded rollouts), prompts: one per sample or None
        -> rewards [B] float32, z-scored, NaN where a sample cannot be scored; computed without grad."""
        ...
