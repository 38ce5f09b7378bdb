"""Frozen giants stay out of checkpoints (DESIGN.md): teacher, text encoder, autoencoder, reward.

A LightningModule lists the attribute names of its frozen submodules in `frozen_modules`; they
are dropped from `state_dict` and not expected back by `load_state_dict`. They still move with
the module between devices like any submodule.
"""

from __future__ import annotations

import lightning as L
import torch


class FrozenModulesMixin(L.LightningModule):
    frozen_modules: tuple[str, ...] = ()

    def _is_frozen(self, key: str) -> bool:
        return any(key == name or key.startswith(name + ".") for name in self.frozen_modules)

    def freeze_modules(self) -> None:
        for name in self.frozen_modules:
            module = getattr(self, name, None)
            if isinstance(module, torch.nn.Module):
                module.eval().requires_grad_(False)

    def state_dict(self, *args, **kwargs):
        sd = super().state_dict(*args, **kwargs)
        for key in [k for k in sd if self._is_frozen(k)]:
            del sd[key]
        return sd

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        missing, unexpected = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in missing if not self._is_frozen(k)]
        if strict and (missing or unexpected):
            raise RuntimeError(f"checkpoint does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        return torch.nn.modules.module._IncompatibleKeys(missing, unexpected)

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen_modules:  # Lightning calls .train() on the whole module every epoch
            module = getattr(self, name, None)
            if isinstance(module, torch.nn.Module):
                module.eval()
        return self
