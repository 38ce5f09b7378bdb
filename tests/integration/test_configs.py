"""Every config composes: each primary config, each experiment, and the overrides users and scripts type.

The toy experiments also build their callbacks and module, the way rf.train does, on a one-block model; the
distillation module's rollouts then stream with the very CacheConfig of the EMA-Sink callback, its one owner.
"""

import re
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf

from rf.callbacks.ema_sink import EMASinkCallback
from rf.lit.distill import DistillModule
from rf.models.cache import CacheConfig
from rf.train import build_loggers, cache_settings
from rf.utils.instantiate import instantiate

CONF = Path(__file__).parents[2] / "conf"
PRIMARY = ["train", "generate", "eval", "bench", "ode_pairs", "encode_prompts", "serve"]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
ENTRY_OF = {"toy_ode_pairs": "ode_pairs"}  # the others are training experiments (rf.train)
TOY_TRAINING = ["toy_teacher", "toy_ode_init", "toy_re_dmd", "toy_dmd"]
ONE_BLOCK = ["model.transformer.num_layers=1", "model.transformer.ffn_dim=64"]


def compose_cfg(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def test_every_experiment_is_a_global_delta():
    assert set(TOY_TRAINING) < set(EXPERIMENTS)
    for path in (CONF / "experiment").glob("*.yaml"):
        assert path.read_text().startswith("# @package _global_"), path


@pytest.mark.parametrize("name", PRIMARY)
def test_every_primary_config_composes_and_resolves(name):
    cfg = compose_cfg(name, "paths.weights=/weights")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["traceback"] is False


def test_a_bench_variant_starts_from_a_preset_and_overrides_it():
    """fast: {preset: exact, ...}: the preset as conf/fast/ composes it (fast=approximate inherits exact), the
    variant's own keys on top; a preset that does not exist, or a misspelt switch, is refused by the variant's name."""
    from rf.bench import variant_fast
    from rf.fast.fast_path import FastPath

    cfg = compose_cfg("bench", "variants=best")
    exact = FastPath(**OmegaConf.to_container(compose_cfg("generate", "fast=exact").fast))
    assert variant_fast(cfg, "exact", cfg.variants.exact) == exact
    best = variant_fast(cfg, "best", cfg.variants.best)
    assert (best.attention, best.vae_whole_chunk, best.block_norms) == ("fa3", True, True)  # override; preset's
    approximate = compose_cfg("bench", "variants=default").variants.approximate
    assert variant_fast(cfg, "approximate", approximate).cache_pass == "reuse"
    assert variant_fast(cfg, "approximate", approximate).commit_kernel  # exact's, inherited by approximate
    for override, message in (("variants.best.fast.preset=fastest", "variants.best.fast.preset=fastest: the presets"),
                              ("+variants.best.fast.compil=true", "variants.best.fast: FastPath")):  # fmt: skip
        bad = compose_cfg("bench", "variants=best", override)
        with pytest.raises(ValueError, match=re.escape(message)):
            variant_fast(bad, "best", bad.variants.best)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_resolves(experiment):
    cfg = compose_cfg(ENTRY_OF.get(experiment, "train"), f"experiment={experiment}", "paths.weights=/weights")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if experiment not in ENTRY_OF:
        assert resolved["name"] == experiment
        assert resolved["module"]["_target_"].startswith("rf.lit.")
        assert "sink" not in resolved["module"]  # the cache settings come from callbacks.ema_sink alone


@pytest.mark.parametrize("experiment", TOY_TRAINING)
def test_toy_experiments_build_their_callbacks_and_module(experiment):
    """As rf.train builds them: callbacks first, then the module with the cache settings of their owner."""
    ckpts = {"toy_teacher": [], "toy_ode_init": ["module.teacher_ckpt=null"]}
    overrides = ckpts.get(experiment, ["module.teacher_ckpt=null", "module.student_ckpt=null"])
    cfg = compose_cfg("train", f"experiment={experiment}", *ONE_BLOCK, *overrides, "sink=window", "sink.alpha=0.5")
    torch.manual_seed(0)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    build = instantiate(cfg.module, model=cfg.model, optim=cfg.optim, _partial_=True, _recursive_=False)
    module = build(**cache_settings(build.func, callbacks))
    owners = [c for c in callbacks if isinstance(c, EMASinkCallback)]
    if isinstance(module, DistillModule):
        assert len(owners) == 1
        assert module.sampler.cache_config is owners[0].config  # the one object, not a copy
        assert owners[0].config == CacheConfig("window", 3, 9, 3, 0.5)
        assert module.hparams.sink == asdict(owners[0].config)  # plain numbers in the checkpoint
        owners[0].setup(None, module, "fit")  # agrees: nothing to refuse
    else:
        assert owners == [] and not hasattr(module, "sampler")


def test_a_distillation_without_the_cache_owner_is_refused():
    with pytest.raises(ValueError, match=r"no callbacks\.ema_sink: keep it"):
        cache_settings(DistillModule, [object()])
    assert cache_settings(DistillModule, [owner := EMASinkCallback(policy="sink")]) == {"sink": owner.config}
    from rf.lit.teacher import TeacherModule

    assert cache_settings(TeacherModule, []) == {}


def test_the_cache_owner_refuses_a_module_built_with_other_settings():
    module = SimpleNamespace(sampler=SimpleNamespace(cache_config=CacheConfig(policy="full")))
    with pytest.raises(ValueError, match=r"streams with sink .*'full'.* callbacks\.ema_sink owns .*'ema_sink'"):
        EMASinkCallback().setup(None, module, "fit")
    with pytest.raises(ValueError, match=r"streams no rollouts, so it has no cache to set: remove callbacks\.ema_sink"):
        EMASinkCallback().setup(None, SimpleNamespace(), "fit")


@pytest.mark.parametrize("policy", ["full", "window", "sink", "ema_sink"])
def test_each_sink_option_changes_only_the_policy(policy):
    base = OmegaConf.to_container(compose_cfg("generate").sink)
    assert OmegaConf.to_container(compose_cfg("generate", f"sink={policy}").sink) == {**base, "policy": policy}


# What the Makefile, README, demo.py and the scripts under experiments/ type.
TYPED = [
    ("train", ["experiment=toy_re_dmd", "callbacks.video_log=null"], "callbacks.video_log", None),
    ("train", ["experiment=toy_re_dmd", "~callbacks.video_log"], "callbacks.video_log", None),
    ("train", ["experiment=toy_re_dmd", "callbacks.generator_ema.decay=0.5"], "callbacks.generator_ema.decay", 0.5),
    ("train", ["experiment=toy_re_dmd", "callbacks.video_log.every_n_iterations=7"],
     "callbacks.video_log.every_n_iterations", 7),
    ("train", ["experiment=toy_re_dmd", "module.teacher_ckpt=/t.ckpt"], "module.teacher_ckpt", "/t.ckpt"),
    ("train", ["experiment=toy_re_dmd", "module.max_iterations=3"], "module.max_iterations", 3),
    ("train", ["experiment=toy_re_dmd", "sink.alpha=0.9"], "callbacks.ema_sink.alpha", 0.9),
    ("train", ["experiment=toy_re_dmd", "sink=window"], "callbacks.ema_sink.policy", "window"),
    ("train", ["experiment=rf_1_3b", "trainer=fsdp2"], "trainer.gradient_clip_val", None),
    ("train", ["experiment=toy_re_dmd", "trainer=ddp_cpu"], "trainer.strategy.process_group_backend", "gloo"),
    ("train", ["experiment=toy_re_dmd", "trainer=gpu"], "trainer.precision", "bf16-mixed"),
    ("train", ["experiment=toy_re_dmd", "logger.tensorboard=false"], "logger.tensorboard", False),
    ("train", ["experiment=toy_re_dmd", "data.batch_size=3"], "data.batch_size", 3),
    ("train", ["experiment=toy_re_dmd", "+trainer.max_time=00:01:00:00"], "trainer.max_time", "00:01:00:00"),
    ("train", ["experiment=toy_teacher", "model=toy_large"], "module._target_", "rf.lit.teacher.TeacherModule"),
    ("generate", ["model=toy_large", "ckpt=shipped", "sink=ema_sink"], "sink.policy", "ema_sink"),
    ("generate", ["experiment=toy_teacher"], "sink.policy", "ema_sink"),
    ("generate", ["sink=ema_sink", "sink.alpha=0.9"], "sink.alpha", 0.9),
    ("eval", ["sink=full"], "sink.policy", "full"),
    ("bench", ["model=toy"], "sink.policy", "ema_sink"),
    ("bench", ["variants=steps"], "variants.approx_best_fp8_3_steps.sampler.denoising_steps.2", 333),
    ("bench", ["variants=ladder", "~variants.compile", "~variants.taehv"], "variants.compile", None),
    ("bench", ["variants=ladder", "~variants.compile"], "variants.fa3.fast.attention", "fa3"),
    ("bench", ["variants=best", "~variants.exact_no_overlap", "~variants.exact"], "variants.best.fast.attention",
     "fa3"),
    ("bench", ["variants=best", "variants.best.fast.vae_head_norm=false"], "variants.best.fast.vae_head_norm", False),
    ("bench", ["variants=vae_convs"], "variants.best_vae_192.fast.vae_subpixel", True),
    ("generate", ["fast.vae_subpixel=true", "fast.vae_conv3d_from=96"], "fast.vae_conv3d_from", 96),
    ("bench", ["variants=norm_rope"], "variants.best_no_overlap_norm_rope.fast.norm_rope", True),
]  # fmt: skip


def test_every_fast_switch_can_be_typed_on_the_plain_preset():
    """conf/fast/plain.yaml names every FastPath field, so `fast.SWITCH=VALUE` works without a `+` (Hydra refuses
    to override a key the composed config lacks), at its dataclass default."""
    from dataclasses import fields

    from rf.fast.fast_path import FastPath

    cfg = compose_cfg("generate", *[f"fast.{f.name}={'null' if f.default is None else f.default}"
                                    for f in fields(FastPath)])  # fmt: skip
    assert {f.name: f.default for f in fields(FastPath)} == OmegaConf.to_container(cfg.fast, resolve=True)


@pytest.mark.parametrize(("entry", "overrides", "key", "value"), TYPED)
def test_the_overrides_users_type_still_work(entry, overrides, key, value):
    cfg = compose_cfg(entry, *overrides)
    OmegaConf.to_container(cfg, resolve=True)
    assert OmegaConf.select(cfg, key) == value


def test_a_logger_switched_off_is_not_built(tmp_path):
    loggers = build_loggers(compose_cfg("train", "experiment=toy_teacher", "logger.tensorboard=false"), tmp_path)
    assert [type(x) for x in loggers] == [CSVLogger] and Path(loggers[0].log_dir).parent == tmp_path / "logs"
    assert len(build_loggers(compose_cfg("train", "experiment=toy_teacher"), tmp_path)) == 2


def test_the_in_place_entry_points_share_one_hydra_option():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name in PRIMARY[1:]:
            hydra = compose(name, return_hydra_config=True).hydra
            assert (hydra.run.dir, hydra.output_subdir, hydra.job.chdir) == (".", None, False), name
            assert hydra.job_logging.root.handlers == ["console"], name


def test_rf_train_without_the_cache_owner_is_one_line(tmp_path):
    from tests.cli import run_rf

    r = run_rf("train", "experiment=toy_re_dmd", "callbacks.ema_sink=null", "sink=window", runs=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no callbacks.ema_sink: keep it (choose the policy with sink=NAME" in lines[0], lines
    assert not (tmp_path / "toy_re_dmd").exists()  # nothing left behind


@pytest.mark.parametrize("preset", ["fdr", "limit"])
def test_debug_presets_compose_over_an_experiment(preset):
    cfg = compose_cfg("train", "experiment=toy_re_dmd", f"debug={preset}")
    assert cfg.traceback is True and cfg.ckpt_path is None and cfg.name == "toy_re_dmd"
    assert cfg.trainer.get("fast_dev_run", False) is (preset == "fdr")


def test_debug_fdr_runs_one_distillation_batch_in_the_debug_folder(tmp_path):
    from tests.cli import run_rf, write_tiny_re_dmd

    r = run_rf("train", *write_tiny_re_dmd(tmp_path), "debug=fdr", runs=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "debug" / "toy_re_dmd"  # the experiment's name
    assert run.is_dir() and not (tmp_path / "toy_re_dmd").exists()
    assert not (run / "checkpoints").exists()  # fdr keeps nothing


def test_the_old_traceback_switch_names_the_new_one(tmp_path):
    from tests.cli import run_rf

    r = run_rf("generate", "debug=true", runs=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: debug=true: tracebacks are switched with traceback=true; debug=NAME picks a preset of conf/debug/ "
        "(rf.train: debug=fdr, debug=limit)"
    ), r.stderr
