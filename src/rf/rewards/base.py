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


@runtime_checkable
class RewardSource(Protocol):
    """What the Re-DMD module asks of its reward: per-sample rewards of a rollout, over every rank.

    rf.callbacks.reward.RewardCallback implements it (it holds the frozen RewardModel, outside the module and
    outside checkpoints); DistillModule finds it among the trainer's callbacks. The source sees the module only
    through `module.decode(latents) -> video [b, 3, T, H, W]` and Lightning's own `all_gather`, `log`,
    `log_dict`, `device` and `trainer.world_size`.
    """

    def rollout_rewards(self, module, latents: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """latents [B, C, F, h, w] and this rank's prompts -> rewards [W B] float32 on the CPU: every rank's
        samples in rank order (gathered once, the same on every rank); NaN where a sample could not be scored."""
        ...
