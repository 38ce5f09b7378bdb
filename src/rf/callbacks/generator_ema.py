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
from torch.distributed.tensor import DTensor, distribute_tensor

from rf.models.loading import EMA_STATE_KEY, EMA_WEIGHTS


class GeneratorEMA(L.Callback):
    # Where rf.models.loading (use_ema=true) finds the weights: ckpt["callbacks"][state_key][weights_key].
    state_key = EMA_STATE_KEY
    weights_key = EMA_WEIGHTS

    def __init__(self, decay: float = 0.99, start_iteration: int = 200):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"generator_ema.decay={decay}: must be in (0, 1)")
        self.decay, self.start_iteration = decay, start_iteration
        self.shadow: dict[str, torch.Tensor] | None = None
        self.updates = 0

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
                ema = self.shadow[k]
                if isinstance(ema, DTensor) != isinstance(p, DTensor) or ema.device != p.device:
                    ema = self.shadow[k] = _like(ema, p)  # first update after a resume: onto this rank's layout
                ema.lerp_(p.float(), 1.0 - self.decay)
        self.updates += 1
        module.log("train/ema_updates", float(self.updates))

    def state_dict(self) -> dict:
        # Under FSDP2 the shadow holds this rank's shards (DTensors): the checkpoint gets whole tensors
        # (every rank takes part in the gather), so it resumes on any number of GPUs.
        shadow = None
        if self.shadow is not None:
            shadow = {k: (v.full_tensor() if isinstance(v, DTensor) else v).cpu() for k, v in self.shadow.items()}
        state = {"decay": self.decay, "start_iteration": self.start_iteration, "updates": self.updates}
        return {**state, self.weights_key: shadow}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]
        self.shadow = state[self.weights_key]


def _like(full: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A whole float32 tensor laid out like `param`: this rank's shard of it under FSDP2."""
    full = full.float().to(param.device)
    if isinstance(param, DTensor):
        return distribute_tensor(full, param.device_mesh, param.placements)
    return full
