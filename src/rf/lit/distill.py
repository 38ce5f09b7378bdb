"""Re-DMD distillation (PAPER.md §3-4): generator, critic and teacher in one LightningModule.

    generator  the causal student (CausalWanTransformer3DModel), trained
    critic     a bidirectional Wan initialised from the teacher, trained: the "fake score"
    teacher    the bidirectional Wan, frozen, with classifier-free guidance: the "real score"

One iteration, with the paper's semantics (the released trainer steps its optimisers by
Lightning's global step; rf counts iterations):

    if iteration % generator_every == 0:                     # every 5th iteration
        x   = rollout(prompts), gradient through one random denoising step (truncation)
        w   = exp(reward(x) / beta)  per sample               # Re-DMD (the RewardSource callback); ones for DMD
        generator step on mean_i w_i L_DMD(x_i)
    x = rollout(prompts) without gradient                    # a fresh rollout
    critic step on the flow-matching loss at x                # every iteration

Gradient accumulation: an iteration spans `accumulate` micro-batches; optimisers step on the
last one. Every random draw is seeded by (seed, micro step) and, for a sample's own noise and noise
level, by the sample's global index in the prompt stream: a resumed run repeats an uninterrupted one
exactly, and N processes with batch B train as one process with batch N B (same draws per sample).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict

import torch

from rf.diffusion.flow import add_noise, cfg, sample_timesteps, sigma_of, x0_from_flow
from rf.diffusion.sampler import SampleNoise, StreamSampler
from rf.fast.compile import compile_blocks
from rf.lit.common import adamw
from rf.lit.frozen import FrozenModulesMixin
from rf.lit.guard import NonFiniteGuard
from rf.lit.parallel import data_parallel_mesh, shard_wan
from rf.losses.dmd import dmd_gradient, dmd_loss, flow_matching_loss
from rf.losses.re_dmd import check_method, reward_weights, weighted_mean
from rf.models.cache import CacheConfig
from rf.models.loading import describe_size, load_transformer, size_of_arch
from rf.rewards.base import RewardSource
from rf.utils.instantiate import instantiate, to_dict
from rf.utils.video import check_frame_size


def check_shared_spaces(student: dict, teacher: dict, text_dim: int, latent_channels: int) -> None:
    """Teacher, critic and student read the same text embeddings and latents: their widths must agree."""
    for name, arch in (("model.transformer", student), ("module.teacher_arch", teacher)):
        if arch["text_dim"] != text_dim:
            raise ValueError(
                f"{name}.text_dim={arch['text_dim']} but the text encoder gives {text_dim}-wide embeddings: "
                "teacher and student must read the same text encoder (umT5-XXL: 4096)"
            )
        if arch["in_channels"] != latent_channels:
            raise ValueError(
                f"{name}.in_channels={arch['in_channels']} but the autoencoder has {latent_channels} latent "
                "channels: teacher and student must share the latent space"
            )


class DistillModule(NonFiniteGuard, FrozenModulesMixin):
    frozen_modules = ("teacher", "text_encoder", "autoencoder")

    def __init__(
        self,
        model: dict,
        optim: dict,
        sampler: dict,
        method: dict,
        sink: CacheConfig | dict | None = None,
        teacher_ckpt: str | None = None,
        student_ckpt: str | None = None,
        critic_ckpt: str | None = None,
        teacher_arch: dict | None = None,
        teacher_dtype: str | None = None,
        activation_checkpointing: bool = False,
        compile: bool = False,
        latent_frames: int = 9,
        guidance: float = 4.0,
        generator_every: int = 5,
        accumulate: int = 1,
        max_iterations: int = 600,
        t_min: float = 20.0,
        t_max: float = 980.0,
        time_shift: float = 5.0,
        seed: int = 0,
    ):
        super().__init__()
        # The rollouts' cache settings are not the module's own: rf.train hands it the CacheConfig of their owner,
        # the EMA-Sink callback (rf.callbacks.ema_sink), which keeps them across the run. Built in Python without
        # one: a dict or CacheConfig, or None for CacheConfig()'s defaults (EMA-Sink, S=3, W=9, chunk 3, alpha 0.99).
        cache = sink if isinstance(sink, CacheConfig) else CacheConfig(**to_dict(sink or {}))
        sink = asdict(cache)  # what save_hyperparameters records (it reads this frame's arguments): plain numbers,
        self.save_hyperparameters()  # as rf checkpoints load with torch.load(weights_only=True)
        model, method = to_dict(model), to_dict(method)
        check_method(method["name"], method.get("beta"))
        for name, v in (("generator_every", generator_every), ("accumulate", accumulate)):
            if v < 1:
                raise ValueError(f"module.{name}={v}: must be >= 1")
        # Cheap parts first: every size is checked before a transformer is allocated.
        self.text_encoder = instantiate(model["text_encoder"])
        self.autoencoder = instantiate(model["autoencoder"])
        arch = model["transformer"]
        video = model["video"]
        check_frame_size(video["height"], video["width"], self.autoencoder.spatial_factor, arch["patch_size"][1])
        teacher_arch = to_dict(teacher_arch) if teacher_arch is not None else arch
        check_shared_spaces(arch, teacher_arch, self.text_encoder.dim, self.autoencoder.latent_channels)
        if critic_ckpt is None and size_of_arch(teacher_arch) != size_of_arch(arch):
            raise ValueError(
                f"the teacher ({describe_size(*size_of_arch(teacher_arch))}) is another size than the critic "
                f"({describe_size(*size_of_arch(arch))}), so the critic cannot start as the teacher: "
                "set module.critic_ckpt to weights of the critic's size"
            )
        self.teacher = load_transformer(teacher_arch, teacher_ckpt, causal=False, dtype=teacher_dtype)[0]
        if critic_ckpt is not None:  # the paper's critic: a 1.3B Wan beside a 14B teacher ("random": measurements)
            self.critic = load_transformer(arch, None if critic_ckpt == "random" else critic_ckpt, causal=False)[0]
        else:  # the critic starts as the teacher
            self.critic = load_transformer(arch, None, causal=False)[0]
            self.critic.load_state_dict(self.teacher.state_dict())
        self.generator = load_transformer(arch, student_ckpt, causal=True)[0]  # ODE-init weights, or the critic's
        if student_ckpt is None:
            self.generator.load_state_dict(self.critic.state_dict())
        if activation_checkpointing:  # diffusers' switch; CausalWanTransformer3DModel honours it per block
            self.generator.enable_gradient_checkpointing()
            self.critic.enable_gradient_checkpointing()
        if compile:  # every block of the three transformers under torch.compile (rf.fast.compile)
            for net in (self.generator, self.critic, self.teacher):
                compile_blocks(net)
        self.freeze_modules()
        f = self.autoencoder.spatial_factor
        self.latent_shape = (
            self.autoencoder.latent_channels,
            latent_frames,
            video["height"] // f,
            video["width"] // f,
        )
        self.sampler = StreamSampler(self.generator, cache, **to_dict(sampler))
        self.sampler.num_chunks(latent_frames)  # validates the rollout length now, not mid-run
        self.automatic_optimization = False

        self.micro_step = 0  # micro-batches done; iteration = micro_step // accumulate
        self.generator_steps = 0
        self.critic_steps = 0
        self.dropped_samples = 0
        self.generator_stepped = False  # set on the micro-batch whose generator step just happened
        self.reward_source: RewardSource | None = None  # found among the trainer's callbacks at fit start

    # ----- bookkeeping -----------------------------------------------------------------------------

    @property
    def iteration(self) -> int:
        return self.micro_step // self.hparams.accumulate

    @property
    def at_iteration_boundary(self) -> bool:
        return self.micro_step % self.hparams.accumulate == 0

    def _seed(self, *keys: int) -> int:
        # tuples of ints hash the same in every process (only str hashing is salted)
        return hash((self.hparams.seed, *keys)) % (2**62)

    def _rng(self, *keys: int) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(self._seed(*keys))

    def sample_index(self, batch: dict) -> list[int]:
        """Global indices of the batch's samples in the prompt stream (rf.lit.prompts: batch["index"])."""
        if "index" in batch:
            return [int(i) for i in batch["index"]]
        b = len(batch["prompt"])  # the layout PromptStream uses: batch m of rank r holds [(m W + r) B, ...)
        first = (self.micro_step * self.trainer.world_size + self.global_rank) * b
        return list(range(first, first + b))

    def _all_ranks(self, decision: bool) -> bool:
        """True only if every process says so: a rank skipping a backward the others run would hang them."""
        if self._trainer is None or self.trainer.world_size == 1:
            return decision
        return self.trainer.strategy.reduce_boolean_decision(decision, all=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rf_loop"] = {
            "micro_step": self.micro_step,
            "generator_steps": self.generator_steps,
            "critic_steps": self.critic_steps,
            "dropped_samples": self.dropped_samples,
            "nonfinite_steps": self.nonfinite_steps,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        for k, v in checkpoint.get("rf_loop", {}).items():
            setattr(self, k, v)

    # ----- pieces ----------------------------------------------------------------------------------

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> text [B, Lt, D] and the CFG negative [B, Lt, D]: the encoder's negative prompt (Wan's, for
        umT5), or all zeros (the empty prompt) for an encoder without one (the toy)."""
        text = self.text_encoder(prompts).to(self.device)
        negative = getattr(self.text_encoder, "negative", None)
        if negative is None:
            return text, torch.zeros_like(text)
        return text, negative().to(text).expand_as(text)

    def rollout(self, text: torch.Tensor, seeds: list[int], exit_step: int) -> torch.Tensor:
        """Clean latents [B, C, F, H, W] from the student, through the one StreamSampler; one seed per sample."""
        shape = (text.shape[0], *self.latent_shape)
        return self.sampler.rollout([(0, text)], shape, SampleNoise(seeds, self.device), exit_step=exit_step)

    def _noised(self, x: torch.Tensor, gens: list[torch.Generator]):
        """x [B, ...] at a random noise level per sample; sample b draws its level and noise from gens[b]."""
        hp = self.hparams
        t = torch.cat([sample_timesteps(1, hp.time_shift, g, self.device, hp.t_min, hp.t_max) for g in gens])  # [B]
        noise = torch.stack([torch.randn(x.shape[1:], generator=g, device=self.device, dtype=x.dtype) for g in gens])
        sigma = sigma_of(t).view(-1, 1, 1, 1, 1)
        return add_noise(x, noise, sigma), t, sigma, noise

    def dmd_losses(self, x: torch.Tensor, text, uncond, gens: list[torch.Generator]) -> torch.Tensor:
        """Per-sample L_DMD [B] at a random noise level (PAPER.md §3)."""
        with torch.no_grad():
            x_t, t, sigma, _ = self._noised(x.detach(), gens)
            v = self.teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([text, uncond])).sample
            x0_cond, x0_uncond = x0_from_flow(torch.cat([x_t, x_t]), v, torch.cat([sigma, sigma])).chunk(2)
            x0_real = cfg(x0_cond, x0_uncond, self.hparams.guidance)
            x0_fake = x0_from_flow(x_t, self.critic(x_t, t, text).sample, sigma)
            grad = dmd_gradient(x.detach(), x0_real, x0_fake)
        return dmd_loss(x, grad)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [b, C, F, h, w] -> video [b, 3, T, H, W] in [-1, 1]: what a RewardSource scores."""
        return self.autoencoder.decode(latents.float())

    def on_fit_start(self) -> None:
        sources = [c for c in self.trainer.callbacks if isinstance(c, RewardSource)]
        if len(sources) > 1:
            names = ", ".join(type(c).__name__ for c in sources)
            raise ValueError(f"{len(sources)} reward callbacks ({names}): keep one callbacks.reward")
        self.reward_source = sources[0] if sources else None
        if self.hparams.method["name"] == "re_dmd" and self.reward_source is None:
            raise ValueError("method=re_dmd needs a reward: keep callbacks.reward (RewardCallback) in the config")

    def weights(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Per-sample loss weights [B]: exp(r / beta) for Re-DMD, 1 for DMD; 0 where the reward is not finite.

        The reward source returns the rewards of the global batch (every rank's, gathered once), so the
        weights are computed over it (`normalize` divides by the global mean, as one process with the whole
        batch would) and each rank keeps its own slice. Plain DMD needs no reward; one, if configured, is
        only logged and drops the samples it cannot score.
        """
        method = self.hparams.method
        source = self.reward_source
        rewards = source.rollout_rewards(self, x.detach(), prompts) if source is not None else None  # [W B] or None
        b = x.shape[0]
        w, valid = reward_weights(
            rewards, method.get("beta"), method.get("normalize", False), batch=b, method=method["name"]
        )
        dropped = int((~valid).sum())  # over the global batch: every rank keeps the same count
        if dropped:
            self.dropped_samples += dropped
            warnings.warn(f"reward was not finite for {dropped} sample(s): dropped from this step", stacklevel=2)
        # Effective sample size of the global batch, (sum w)^2 / sum w^2: B when every sample weighs the same,
        # 1 when one sample carries the update. Re-DMD should keep it >= B / 4 (standardised, clipped rewards).
        if w.sum() > 0:
            ess = (w.sum() ** 2 / w.square().sum()).item()
            self.log_dict({"train/ess": ess, "train/ess_fraction": ess / w.shape[0]})
        if w.shape[0] != b:  # the global batch: this rank's slice
            w = w[self.global_rank * b : (self.global_rank + 1) * b]
        return w.to(self.device)

    # ----- the iteration -----------------------------------------------------------------------------

    def on_train_batch_start(self, batch, batch_idx):
        if self.iteration >= self.hparams.max_iterations:  # a relaunched finished run does nothing
            self.trainer.should_stop = True
            return -1
        return None

    def training_step(self, batch: dict, batch_idx: int) -> None:
        hp = self.hparams
        it, micro = self.iteration, self.micro_step
        last_micro = micro % hp.accumulate == hp.accumulate - 1
        opt_g, opt_c = self.optimizers()
        # Each sample's noise comes from its global index, so how samples are spread over processes changes
        # nothing; truncation steps are shared (FSDP2 needs the same forward passes on every rank).
        index = self.sample_index(batch)
        gens = [self._rng(micro, 5, i) for i in index]  # noise levels and noise of the DMD and critic losses
        text, uncond = self.encode(batch["prompt"])
        self.generator_stepped = False
        bad: list[str] = []

        if it % hp.generator_every == 0:
            # one truncation step per iteration, the same for every chunk and micro-batch
            exit_step = self._seed(it, 1) % len(self.sampler.timesteps)
            x = self.rollout(text, [self._seed(micro, 2, i) for i in index], exit_step=exit_step)
            losses = self.dmd_losses(x, text, uncond, gens)  # [B]
            w = self.weights(x, batch["prompt"])
            loss = weighted_mean(losses, w)
            if self._all_ranks(self.finite(loss)):
                self.manual_backward(loss / hp.accumulate)
            else:  # drop this iteration's generator gradients altogether
                bad.append("train/dmd_loss")
                opt_g.zero_grad(set_to_none=True)
            if last_micro and not bad:
                self.clip_gradients(opt_g, gradient_clip_val=hp.optim["clip_generator"], gradient_clip_algorithm="norm")
                opt_g.step()
                opt_g.zero_grad(set_to_none=True)
                self.generator_steps += 1
                self.generator_stepped = True
            self.log_dict({"train/dmd_loss": loss.detach(), "train/weight_mean": w.mean()}, prog_bar=True)
            self.log("train/exit_step", float(exit_step))

        with torch.no_grad():
            exit_step = self._seed(micro, 3) % len(self.sampler.timesteps)  # shared: same passes on every rank
            x = self.rollout(text, [self._seed(micro, 4, i) for i in index], exit_step=exit_step)
        x_t, t, _, noise = self._noised(x, gens)
        critic_loss = flow_matching_loss(self.critic(x_t, t, text).sample, noise, x).mean()
        critic_finite = self._all_ranks(self.finite(critic_loss))
        if critic_finite:
            self.manual_backward(critic_loss / hp.accumulate)
        else:
            bad.append("train/critic_loss")
            opt_c.zero_grad(set_to_none=True)
        self.end_step(bad)
        if last_micro and critic_finite:
            self.clip_gradients(opt_c, gradient_clip_val=hp.optim["clip_critic"], gradient_clip_algorithm="norm")
            opt_c.step()
            opt_c.zero_grad(set_to_none=True)
            self.critic_steps += 1
        self.log("train/critic_loss", critic_loss.detach(), prog_bar=True)
        if getattr(self, "_sharded", False):
            # FSDP2 keeps a root module's weights gathered after a forward (no-grad rollouts included) and does not
            # gather them again before the next one: the forward would use the root weights (patch and condition
            # embedders, output projection) from before the optimiser steps above. Free them now.
            for model in (self.generator, self.critic):
                model.reshard()

        self.micro_step += 1
        self.log_dict({
            "train/iteration": float(self.iteration),
            "train/dropped_samples": float(self.dropped_samples),
            "train/nonfinite_steps": float(self.nonfinite_steps),
        })  # fmt: skip
        if self.iteration >= hp.max_iterations and self.at_iteration_boundary:
            self.trainer.should_stop = True

    def configure_model(self) -> None:
        """Under trainer=fsdp2 (ModelParallelStrategy): shard student, critic and teacher (rf.lit.parallel)."""
        mesh = data_parallel_mesh(self)
        if mesh is None or getattr(self, "_sharded", False):
            return
        for model in (self.generator, self.critic, self.teacher):
            shard_wan(model, mesh)
        self._sharded = True
        # Lightning's sharded loader bypasses FrozenModulesMixin.load_state_dict: tell it the teacher is
        # meant to be absent from checkpoints.
        self.strict_loading = False

    def configure_optimizers(self):
        o = self.hparams.optim
        opt_g = adamw(self.generator.parameters(), o, o["lr_generator"])
        opt_c = adamw(self.critic.parameters(), o, o["lr_critic"])
        return [opt_g, opt_c]
