"""A non-finite loss skips its step; three steps in a row stop the run.

The bad loss is never back-propagated, so no NaN reaches the weights or the optimiser state.
While a streak is open, `callbacks/checkpoint.py` does not write `last.ckpt`, so the checkpoint
left behind is the one from before the first bad step.
"""

from __future__ import annotations

import warnings

import torch


class NonFiniteGuard:
    max_streak = 3
    nonfinite_steps = 0  # over the run (saved with the loop state)
    nonfinite_streak = 0

    @staticmethod
    def finite(loss: torch.Tensor) -> bool:
        return bool(torch.isfinite(loss).all())

    def end_step(self, bad: list[str]) -> None:
        """Call once per step with the names of the losses that were not finite (and were skipped)."""
        if not bad:
            self.nonfinite_streak = 0
            return
        self.nonfinite_steps += 1
        self.nonfinite_streak += 1
        names = ", ".join(bad)
        if self.nonfinite_streak >= self.max_streak:
            raise FloatingPointError(
                f"{names} not finite for {self.nonfinite_streak} steps in a row: stopped; last.ckpt holds the "
                "state from before the first of them (lower the learning rate, or check the data)"
            )
        warnings.warn(f"{names} not finite: step skipped ({self.nonfinite_streak} in a row)", stacklevel=2)
