"""Re-DMD in one process on a tiny toy config: step counts, exact resume, what checkpoints hold."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch

from rf.callbacks.checkpoint import LastCheckpoint
from rf.callbacks.generator_ema import GeneratorEMA
from rf.callbacks.reward import RewardCallback
from rf.lit.distill import DistillModule
from rf.lit.prompts import PromptDataModule
from rf.models.loading import read_state_dict

MODEL = {
    "name": "toy",
    "video": {"height": 16, "width": 16, "fps": 8},
    "transformer": dict(
        patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=16, in_channels=12, out_channels=12,
        text_dim=16, freq_dim=16, ffn_dim=32, num_layers=1, cross_attn_norm=True, eps=1e-6, rope_max_seq_len=64,
    ),
    "autoencoder": {"_target_": "rf.toy.autoencoder.ToyAutoencoder", "factor": 2},
    "text_encoder": {"_target_": "rf.toy.text.ToyTextEncoder", "dim": 16, "max_length": 40},
}  # fmt: skip
OPTIM = dict(lr_generator=1e-3, lr_critic=1e-3, betas=[0.0, 0.999], weight_decay=0.01, clip_generator=10.0,
             clip_critic=10.0)  # fmt: skip
SINK = dict(policy="ema_sink", sink_frames=3, attention_frames=9, chunk_frames=3, alpha=0.99)
SAMPLER = dict(denoising_steps=[1000, 750, 500, 250], shift=5.0, context_timestep=0.0)


class Brightness(torch.nn.Module):
    """A reward anyone can compute by hand: mean pixel value, NaN for prompts containing 'nan'."""

    name = "brightness"

    def forward(self, video, prompts=None):
        r = video.mean(dim=(1, 2, 3, 4))
        return torch.where(torch.tensor(["purple" in p for p in prompts]), torch.nan, r) if prompts else r


def make(method="re_dmd", accumulate=1, iterations=10, **kw):
    L.seed_everything(0)
    return DistillModule(
        model=MODEL, optim=OPTIM, sink=SINK, sampler=SAMPLER, method={"name": method, "beta": 0.5},
        latent_frames=6, accumulate=accumulate, max_iterations=iterations, **kw,
    )  # fmt: skip


def fit(module, root, ckpt_path=None, callbacks=(), every=3):
    trainer = L.Trainer(
        accelerator="cpu", max_steps=-1, max_epochs=-1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
        callbacks=[LastCheckpoint(root / "checkpoints", every_n_iterations=every), *callbacks],
    )  # fmt: skip
    trainer.fit(module, datamodule=PromptDataModule(batch_size=2, height=16, width=16), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("accumulate", [1, 2])
def test_step_counts_over_ten_iterations(tmp_path, accumulate):
    module = make("dmd", accumulate=accumulate, iterations=10)
    fit(module, tmp_path)
    assert module.iteration == 10 and module.micro_step == 10 * accumulate
    assert module.critic_steps == 10 and module.generator_steps == 2


def test_resume_equals_an_uninterrupted_run(tmp_path):
    straight = make(iterations=6)
    fit(
        straight,
        tmp_path / "a",
        callbacks=[RewardCallback(Brightness()), GeneratorEMA(0.9, start_iteration=0)],
    )

    first = make(iterations=3)
    fit(first, tmp_path / "b", callbacks=[RewardCallback(Brightness()), GeneratorEMA(0.9, start_iteration=0)])
    resumed = make(iterations=6)
    ema = GeneratorEMA(0.9, start_iteration=0)
    fit(resumed, tmp_path / "b", ckpt_path=tmp_path / "b" / "checkpoints" / "last.ckpt",
        callbacks=[RewardCallback(Brightness()), ema])  # fmt: skip

    assert resumed.iteration == 6 and resumed.generator_steps == 2 and resumed.critic_steps == 6
    again = make(iterations=6)  # relaunching a finished run trains no further
    fit(
        again,
        tmp_path / "b",
        ckpt_path=tmp_path / "b" / "checkpoints" / "last.ckpt",
        callbacks=[RewardCallback(Brightness())],
    )
    assert again.micro_step == 6 and again.critic_steps == 6
    for (name, a), b in zip(straight.generator.state_dict().items(), resumed.generator.state_dict().values(),
                            strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    for a, b in zip(straight.critic.parameters(), resumed.critic.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert ema.updates == 2


class LateSigterm(L.Callback):
    """Raises Lightning's SIGTERM flag in on_train_batch_end of iteration `at`, after LastCheckpoint's hook has run:
    where a real signal lands when it comes while the batch's last hooks and the loggers run (a race the SIGTERM
    test of tests/integration/test_train.py lost on a CI machine)."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if module.iteration == self.at and module.at_iteration_boundary:
            trainer._signal_connector.received_sigterm = True


def test_a_sigterm_after_the_batch_end_hook_is_saved_and_resuming_equals_an_uninterrupted_run(tmp_path):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    straight = make("dmd", iterations=6)
    fit(straight, tmp_path / "a", every=100)
    first = make("dmd", iterations=6)
    with pytest.raises(SIGTERMException):
        fit(first, tmp_path / "b", callbacks=[LateSigterm(at=4)], every=100)  # no periodic save: only the signal's
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert last.is_file() and first.iteration == 4
    resumed = make("dmd", iterations=6)
    fit(resumed, tmp_path / "b", ckpt_path=last, every=100)
    assert resumed.iteration == 6 and resumed.critic_steps == 6
    for a, b in zip(straight.generator.parameters(), resumed.generator.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for a, b in zip(straight.critic.parameters(), resumed.critic.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_checkpoint_holds_no_frozen_models_and_the_loader_reads_it(tmp_path):
    module, ema = make(iterations=3), GeneratorEMA(0.9, start_iteration=0)
    fit(module, tmp_path, callbacks=[RewardCallback(Brightness()), ema])
    path = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    prefixes = {k.split(".")[0] for k in ckpt["state_dict"]}
    assert prefixes == {"generator", "critic"}
    assert len(ckpt["optimizer_states"]) == 2 and ckpt["rf_loop"]["micro_step"] == 3
    assert ckpt["callbacks"]["Reward"]["count"] > 0  # running statistics, not the reward model
    assert not any(torch.is_tensor(v) for v in ckpt["callbacks"]["Reward"].values())
    # The names the writers use (the module's attribute, the callback's state key) are the ones the loader reads.
    student, found = read_state_dict(path)
    assert found == "generator" and student.keys() == module.generator.state_dict().keys()
    shadow, found = read_state_dict(path, use_ema=True)
    assert found == "generator EMA" and ema.updates == 1
    for name, value in ema.shadow.items():
        torch.testing.assert_close(shadow[name], value, rtol=0, atol=0, msg=name)


def test_nonfinite_reward_drops_the_sample_and_the_step_goes_on():
    module = make(iterations=1)
    black = SimpleNamespace(rollout_rewards=lambda module, x, p: Brightness()(torch.zeros(2, 3, 6, 16, 16), p))
    module.reward_source = black  # a RewardSource (rf.rewards.base), as on_fit_start finds among the callbacks
    with pytest.warns(UserWarning, match="dropped"):
        w = module.weights(torch.zeros(2, 12, 6, 8, 8), ["a purple circle moving", "a red circle moving"])
    assert w[0].item() == 0.0 and w[1].item() == pytest.approx(1.0)  # exp(0 / beta)
    assert module.dropped_samples == 1


def test_re_dmd_without_a_reward_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs a reward"):
        fit(make("re_dmd", iterations=1), tmp_path)


def test_bad_method_beta_and_length():
    with pytest.raises(ValueError, match="method='ppo'"):
        make("ppo")
    with pytest.raises(ValueError, match="beta=0"):
        DistillModule(model=MODEL, optim=OPTIM, sink=SINK, sampler=SAMPLER, method={"name": "re_dmd", "beta": 0})
    with pytest.raises(ValueError, match="7 latent frames"):
        DistillModule(model=MODEL, optim=OPTIM, sink=SINK, sampler=SAMPLER, method={"name": "dmd", "beta": 1},
                      latent_frames=7)  # fmt: skip


def test_three_nonfinite_losses_in_a_row_stop_the_run_keeping_the_checkpoint_before(tmp_path):
    module = make("dmd", iterations=10)
    forward = module.critic.forward

    def nan_after_two_iterations(*args, **kwargs):
        out = forward(*args, **kwargs)
        if module.micro_step >= 2 and torch.is_grad_enabled():  # the critic's own training loss turns NaN
            out.sample = out.sample * float("nan")
        return out

    module.critic.forward = nan_after_two_iterations
    with pytest.warns(UserWarning, match="not finite: step skipped"), pytest.raises(FloatingPointError) as err:
        fit(module, tmp_path, every=1)
    assert "train/critic_loss" in str(err.value) and "3 steps in a row" in str(err.value)
    assert module.nonfinite_steps == 3 and module.critic_steps == 2
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["rf_loop"]["micro_step"] == 2  # saved before the first bad step, never after
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_a_video_log_that_cannot_be_written_costs_no_checkpoint(tmp_path, monkeypatch, capsys):
    """The video of the last iteration is written in on_train_end, before Lightning's checkpoint callbacks:
    a writer that fails there (no PyAV, a full disk) must warn, not take the final last.ckpt with it."""
    from rf.callbacks import video_log

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(video_log, "StreamingVideoWriter", broken)
    module = make(iterations=4)
    log = video_log.VideoLogCallback(every_n_iterations=100, prompts=["a red circle moving right"], latent_frames=6)
    fit(module, tmp_path, callbacks=[RewardCallback(Brightness()), log], every=100)
    assert "video log of iteration 4 was not written (OSError: disk full)" in capsys.readouterr().out
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["rf_loop"]["micro_step"] == 4
