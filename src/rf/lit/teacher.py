"""The toy teacher: a bidirectional Wan trained by flow matching on toy-world clips.

    x_t = (1 - s) x0 + s eps,   loss = || v_theta(x_t, t, text) - (eps - x0) ||^2      (PAPER.md §1)

Text is dropped (replaced by the empty prompt's embedding, all zeros) with probability
`cfg_dropout`, so the teacher also learns the unconditional flow that classifier-free guidance needs.
`init_ckpt` starts from trained weights (any file rf.models.loading reads, e.g. the shipped toy teacher)
instead of random ones: a fine-tune. `ema_decay` keeps an exponential moving average of the weights,
`transformer_ema` (ema <- decay ema + (1 - decay) theta after every optimiser step, as EDM and DiT
sample from), saved in the checkpoint beside the raw weights; `ema_decay=null` keeps none.
"""

from __future__ import annotations

import copy

import torch
from diffusers import WanTransformer3DModel

from rf.diffusion.flow import add_noise, flow_target, sample_timesteps, sigma_of
from rf.lit.common import adamw
from rf.lit.frozen import FrozenModulesMixin
from rf.models.loading import load_transformer
from rf.utils.instantiate import instantiate, to_dict


class TeacherModule(FrozenModulesMixin):
    frozen_modules = ("text_encoder", "autoencoder")

    def __init__(
        self,
        model: dict,
        optim: dict,
        time_shift: float = 3.0,
        cfg_dropout: float = 0.1,
        init_ckpt: str | None = None,
        ema_decay: float | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        model = to_dict(model)
        if init_ckpt is None:
            self.transformer = WanTransformer3DModel(**model["transformer"])
        else:
            self.transformer = load_transformer(model["transformer"], init_ckpt, causal=False)[0]
        if ema_decay is not None:
            if not 0.0 < ema_decay < 1.0:
                raise ValueError(f"module.ema_decay={ema_decay}: must be in (0, 1), or null for no EMA")
            self.transformer_ema = copy.deepcopy(self.transformer).requires_grad_(False)
        self.text_encoder = instantiate(model["text_encoder"])
        self.autoencoder = instantiate(model["autoencoder"])
        self.freeze_modules()
        if self.text_encoder.dim != self.transformer.config.text_dim:
            raise ValueError(
                f"text encoder dim {self.text_encoder.dim} != transformer text_dim "
                f"{self.transformer.config.text_dim}: make model.transformer.text_dim match"
            )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        with torch.no_grad():
            x0 = self.autoencoder.encode(batch["video"])  # [B, C, F, h, w]
            text = self.text_encoder(batch["prompt"]).to(x0)  # [B, Lt, text_dim]
            drop = torch.rand(x0.shape[0], device=x0.device) < self.hparams.cfg_dropout
            text = torch.where(drop[:, None, None], torch.zeros_like(text), text)
        t = sample_timesteps(x0.shape[0], self.hparams.time_shift, device=x0.device)  # [B]
        noise = torch.randn_like(x0)
        x_t = add_noise(x0, noise, sigma_of(t).view(-1, 1, 1, 1, 1))
        flow = self.transformer(x_t, t, text).sample
        loss = (flow.float() - flow_target(x0, noise).float()).square().mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    @torch.no_grad()
    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.hparams.ema_decay is not None:
            for ema, p in zip(self.transformer_ema.parameters(), self.transformer.parameters(), strict=True):
                ema.lerp_(p.detach().to(ema.dtype), 1.0 - self.hparams.ema_decay)

    def configure_optimizers(self):
        o = self.hparams.optim
        return adamw(self.transformer.parameters(), o, o["lr"])
