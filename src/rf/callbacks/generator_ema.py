"""A generator-only EMA (PAPER.md §4: decay 0.99 from iteration 200).

Lightning's WeightAveraging averages the whole module, teacher and critic included, and cannot
shard; this keeps a float32 shadow of the generator alone. The shadow is created (a copy) at the
first generator step at or after `start_iteration`, then updated after every generator step:

    ema <- decay * ema + (1 - decay) * generator

It lives in the checkpoint as this callback's state; `python -m rf.generate use_ema=true` streams
with it.
"""

from __future__ import annotations

import lightning as L
import torch


class GeneratorEMA(L.Callback):
    def __init__(self, decay: float = 0.99, start_iteration: int = 200):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"generator_ema.decay={decay}: must be in (0, 1)")
        self.decay, self.start_iteration = decay, start_iteration
        self.shadow: dict[str, torch.Tensor] | None = None
        self.updates = 0

    @property
    def state_key(self) -> str:
        return "GeneratorEMA"

    @torch.no_grad()
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if not getattr(module, "generator_stepped", False):
            return
        # the iteration of the step that just happened (the counter has already moved past it)
        if (module.micro_step - 1) // module.hparams.accumulate < self.start_iteration:
            return
        params = {k: p.detach() for k, p in module.generator.named_parameters()}
        if self.shadow is None:
            self.shadow = {k: p.float().clone() for k, p in params.items()}
        else:
            for k, p in params.items():
                self.shadow[k].lerp_(p.float(), 1.0 - self.decay)
        self.updates += 1
        module.log("train/ema_updates", float(self.updates))

    def state_dict(self) -> dict:
        shadow = {k: v.cpu() for k, v in self.shadow.items()} if self.shadow is not None else None
        return {"decay": self.decay, "start_iteration": self.start_iteration, "updates": self.updates, "shadow": shadow}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]
        self.shadow = state["shadow"]

    def on_fit_start(self, trainer, module) -> None:
        if self.shadow is not None:
            self.shadow = {k: v.to(module.device) for k, v in self.shadow.items()}
