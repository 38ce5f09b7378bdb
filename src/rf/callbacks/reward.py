"""The frozen reward model of Re-DMD, outside the module and outside checkpoints.

The callback is the module's RewardSource (rf.rewards.base): DistillModule finds it among the trainer's
callbacks and asks `rollout_rewards(module, latents, prompts)`. It decodes the rollout through `module.decode`
without gradient, scores the video (one reward per sample), gathers the rewards of every rank once and
returns them all [W B]; the module turns them into weights exp(r / beta) (rf.losses.re_dmd) and keeps its
own rank's slice. Running statistics of the rewards (Welford: count, mean, M2) and of the dropped samples
are this callback's state, so they survive a resume; they are taken over every rank's rewards. Each scored
batch logs the reward mean, spread and min/max.

`standardize`:
    none      the reward model's own scale is used (rf.rewards.motion is z-scored against real clips);
    running   r is z-scored against the running statistics of the student's own rollouts, this batch
              included: z = (r - mean) / std, so the weights exp(z / beta) measure a rollout against
              the student's current typical rollout, not against another distribution it may sit
              sigmas away from (a raw reward far from its calibration set makes one sample carry the
              whole batch).
`clip_z` bounds z to [-clip_z, clip_z] (running only): at beta 0.5 and clip 3, w <= e^6 ~ 400.
"""

from __future__ import annotations

import math

import lightning as L
import torch


class RewardCallback(L.Callback):
    def __init__(self, reward, decode_batch: int = 4, standardize: str = "none", clip_z: float | None = 3.0):
        if standardize not in ("none", "running"):
            raise ValueError(f"callbacks.reward.standardize={standardize!r}: use none or running")
        if clip_z is not None and not clip_z > 0:
            raise ValueError(f"callbacks.reward.clip_z={clip_z}: must be > 0 or null")
        self.reward = reward  # a RewardModel (rf.rewards), built by Hydra from conf/reward/
        self.decode_batch = decode_batch
        self.standardize, self.clip_z = standardize, clip_z
        self.count, self.mean, self.m2, self.nonfinite = 0, 0.0, 0.0, 0

    @property
    def state_key(self) -> str:
        return "Reward"

    def setup(self, trainer, module, stage: str) -> None:
        if isinstance(self.reward, torch.nn.Module):
            self.reward.to(module.device).eval().requires_grad_(False)

    @torch.no_grad()
    def rollout_rewards(self, module, latents: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """latents [B, C, F, h, w] -> rewards [W B] of every rank, rank order (float32, on the CPU; NaN where
        a sample could not be scored), standardized as configured."""
        rewards = []
        for i in range(0, latents.shape[0], self.decode_batch):
            video = module.decode(latents[i : i + self.decode_batch])  # [b, 3, T, H, W]
            rewards.append(self.reward(video, prompts[i : i + self.decode_batch]).float().cpu())
        r = self._gather(torch.cat(rewards), module)  # [W B]
        self._update(r, module)
        if self.standardize == "running":
            std = math.sqrt(self.m2 / max(self.count - 1, 1))
            r = (r - self.mean) / max(std, 1e-6)  # z against the student's own rollouts so far (this batch too)
            if self.clip_z is not None:
                r = r.clamp(-self.clip_z, self.clip_z)  # NaN stays NaN: the module drops that sample
            module.log("reward/z_max", r[torch.isfinite(r)].max().item() if torch.isfinite(r).any() else 0.0)
        return r

    @staticmethod
    def _gather(r: torch.Tensor, module) -> torch.Tensor:
        """This rank's rewards [B] -> every rank's [W B], rank order (the only all-gather of a generator step)."""
        if module.trainer.world_size > 1:
            r = module.all_gather(r.to(module.device)).reshape(-1).cpu()
        return r

    def _update(self, r: torch.Tensor, module) -> None:
        """Running statistics over every rank's rewards [W B], so that each rank holds the same (rank 0 saves them)."""
        finite = r[torch.isfinite(r)]
        self.nonfinite += int(r.numel() - finite.numel())
        for x in finite.tolist():  # Welford: exact running mean and variance over the whole run
            self.count += 1
            delta = x - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (x - self.mean)
        if finite.numel():
            module.log_dict({
                "reward/mean": finite.mean().item(),
                "reward/std": finite.std().item() if finite.numel() > 1 else 0.0,
                "reward/min": finite.min().item(),
                "reward/max": finite.max().item(),
                "reward/running_mean": self.mean,
                "reward/running_std": math.sqrt(self.m2 / max(self.count - 1, 1)),
                "reward/nonfinite_total": float(self.nonfinite),
            })  # fmt: skip

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self.m2, "nonfinite": self.nonfinite}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.mean, self.m2, self.nonfinite = (
            state["count"],
            state["mean"],
            state["m2"],
            state["nonfinite"],
        )
