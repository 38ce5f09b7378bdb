"""ODE initialisation of the causal student (CausVid's recipe, PAPER.md §4 "init").

Each training sample is a stored teacher trajectory: states at the student's K timesteps and the
clean endpoint (rf.lit.ode_pairs). Every chunk of every sample draws its own index k in 0..K; the
student sees the whole clip at once, chunk c at state k_c with timestep t_{k_c} (per-frame
timesteps), under the block-causal mask, and regresses x0 (rf.losses.ode):

    x0_hat = x_t - s(t) v(x_t, t)          L = || x0_hat - x0 ||^2

k = K is the clean endpoint at the cache pass's timestep (0): its own loss is zero, but later
chunks attend to it, which is what every chunk of a stream sees at inference (clean K/V written
at t = 0). Drawing only noisy states (K excluded) never shows the student clean context, and a
stream from such a student falls apart after its first chunk: found on the toy world.
"""

from __future__ import annotations

import torch

from rf.diffusion.flow import sigma_of, warp_timesteps, x0_from_flow
from rf.lit.common import adamw
from rf.lit.frozen import FrozenModulesMixin
from rf.losses.ode import ode_regression_loss
from rf.models.loading import load_transformer
from rf.utils.instantiate import instantiate, to_dict


class ODEInitModule(FrozenModulesMixin):
    frozen_modules = ("text_encoder",)

    def __init__(self, model: dict, optim: dict, sampler: dict, teacher_ckpt: str | None = None, chunk_frames: int = 3):
        super().__init__()
        self.save_hyperparameters()
        model = to_dict(model)
        self.generator = load_transformer(model["transformer"], teacher_ckpt, causal=True)[0]
        self.text_encoder = instantiate(model["text_encoder"])
        self.freeze_modules()
        sampler = to_dict(sampler)
        timesteps = [*warp_timesteps(sampler["denoising_steps"], sampler["shift"]), sampler["context_timestep"]]
        self.register_buffer("timesteps", torch.tensor(timesteps), persistent=False)  # [K + 1], the last: clean

    @property
    def iteration(self) -> int:
        return self.global_step

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        states = batch["states"]  # [B, K+1, C, F, H, W]; index K is the clean endpoint
        b, k1, _, f, _, _ = states.shape
        k_steps, chunk = k1 - 1, self.hparams.chunk_frames
        if k_steps != len(self.timesteps) - 1:
            raise ValueError(
                f"ODE pairs hold {k_steps} noisy states, the sampler has {len(self.timesteps) - 1} steps: "
                "regenerate the pairs with this sampler config"
            )
        if states.shape[2] != self.generator.config.in_channels:
            raise ValueError(
                f"ODE pairs have {states.shape[2]} latent channels, the student takes "
                f"{self.generator.config.in_channels}: teacher and student must share the autoencoder"
            )
        if f % chunk:
            raise ValueError(f"ODE pairs have {f} latent frames, not a whole number of {chunk}-frame chunks")
        k = torch.randint(0, k_steps + 1, (b, f // chunk), device=self.device).repeat_interleave(chunk, dim=1)  # [B, F]
        idx = k[:, None, None, :, None, None].expand(b, 1, *states.shape[2:])
        x_t = states.gather(1, idx).squeeze(1)  # [B, C, F, H, W]: chunk c at its own step
        t = self.timesteps[k]  # [B, F]
        sigma = sigma_of(t)[:, None, :, None, None]  # [B, 1, F, 1, 1]
        with torch.no_grad():
            text = self.text_encoder(batch["prompt"]).to(x_t)
        flow = self.generator(x_t, t, text, causal_chunk=chunk).sample
        x0_hat = x0_from_flow(x_t.float(), flow, sigma)  # fp32
        loss = ode_regression_loss(x0_hat, states[:, -1]).mean()
        self.log("train/ode_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        o = self.hparams.optim
        return adamw(self.generator.parameters(), o, o["lr"])
