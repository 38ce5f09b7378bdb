"""The full-size experiments compose, and build on the meta device (no memory) at the published sizes.

Parameter counts are checked twice: against the count of diffusers' own WanTransformer3DModel built from the
published config.json (tests/data/wan2.1_configs.json) and against a closed-form count of Wan's layers.
"""

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rf.models.loading import load_transformer
from rf.utils.instantiate import instantiate

CONF = Path(__file__).parents[2] / "conf"
PUBLISHED = json.loads((Path(__file__).parents[1] / "data" / "wan2.1_configs.json").read_text())
EXPERIMENTS = ["rf_1_3b", "sf_baseline_1_3b", "rf_1_3b_small_teacher", "full_size_random", "full_size_random_14b"]


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def wan_parameters(arch: dict) -> int:
    """Closed form: embeddings, blocks (self-attn, cross-attn, FFN, norms, modulation), head."""
    d, f, t, c = arch["num_attention_heads"] * arch["attention_head_dim"], arch["ffn_dim"], arch["text_dim"], 16
    patch = c * 4 * d + d
    text = (t * d + d) + (d * d + d)
    time = (arch["freq_dim"] * d + d) + (d * d + d) + (d * 6 * d + 6 * d)
    attention = 4 * (d * d + d) + 2 * d  # q, k, v, out + RMSNorm on q and k
    block = 2 * attention + 2 * d + (d * f + f + f * d + d) + 6 * d  # + cross-attn norm, FFN, modulation table
    head = d * c * 4 + c * 4 + 2 * d
    return patch + text + time + arch["num_layers"] * block + head


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_resolves(experiment):
    cfg = compose_train(f"experiment={experiment}", "paths.weights=/weights")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["name"] == experiment
    assert resolved["module"]["latent_frames"] == 21
    assert resolved["model"]["video"] == {"height": 480, "width": 832, "fps": 16}
    assert resolved["trainer"]["gradient_clip_val"] is None  # Lightning refuses it under manual optimisation


@pytest.mark.parametrize(("experiment", "student", "teacher"), [
    ("rf_1_3b", "1.3B", "14B"), ("sf_baseline_1_3b", "1.3B", "14B"), ("rf_1_3b_small_teacher", "1.3B", "1.3B"),
    ("full_size_random_14b", "1.3B", "14B"),
])  # fmt: skip
def test_sizes_match_the_published_configs(experiment, student, teacher):
    cfg = compose_train(f"experiment={experiment}")
    for arch, size in ((cfg.model.transformer, student), (cfg.module.teacher_arch, teacher)):
        arch = OmegaConf.to_container(arch, resolve=True)
        published = PUBLISHED[size]
        assert {k: arch.get(k) for k in published["transformer"]} == published["transformer"]
        with torch.device("meta"):
            model = load_transformer(arch, causal=True)[0]
        assert count(model) == published["parameters"] == wan_parameters(arch)


def test_published_counts_are_diffusers_own():
    from diffusers import WanTransformer3DModel

    for published in (PUBLISHED["1.3B"], PUBLISHED["14B"]):
        with torch.device("meta"):
            model = WanTransformer3DModel(**published["transformer"])
        assert count(model) == published["parameters"]


def test_the_whole_module_instantiates_on_meta():
    """rf_1_3b_small_teacher's module (1.3B x 3 + the Wan VAE) built on meta: no memory, the real classes."""
    cfg = compose_train("experiment=full_size_random")
    with torch.device("meta"):
        module = instantiate(cfg.module, model=cfg.model, optim=cfg.optim, _recursive_=False)
    sizes = {name: count(getattr(module, name)) for name in ("generator", "critic", "teacher")}
    assert sizes == dict.fromkeys(sizes, PUBLISHED["1.3B"]["parameters"])
    assert count(module.autoencoder) == PUBLISHED["vae_parameters"]
    assert module.latent_shape == (16, 21, 60, 104)
    assert module.generator.is_gradient_checkpointing and not module.teacher.is_gradient_checkpointing
    assert all(p.device.type == "meta" for p in module.parameters())


def test_the_14b_measurement_builds_a_random_critic_of_the_students_size():
    """full_size_random_14b (experiments/multi_gpu): the 14B teacher beside a random 1.3B critic, as the paper's."""
    cfg = compose_train("experiment=full_size_random_14b")
    assert cfg.trainer.strategy._target_.endswith("ModelParallelStrategy") and cfg.module.critic_ckpt == "random"
    with torch.device("meta"):
        module = instantiate(cfg.module, model=cfg.model, optim=cfg.optim, _recursive_=False)
    assert count(module.teacher) == PUBLISHED["14B"]["parameters"]
    assert count(module.critic) == count(module.generator) == PUBLISHED["1.3B"]["parameters"]


def test_a_profiler_config_becomes_lightnings_profiler(tmp_path):
    """+trainer/profiler=pytorch: build_trainer instantiates every `_target_` among the trainer's arguments."""
    from lightning.pytorch.profilers import PyTorchProfiler

    from rf.train import build_trainer

    cfg = compose_train("experiment=toy_teacher", "+trainer/profiler=pytorch", f"paths.runs={tmp_path}")
    trainer = build_trainer(cfg, tmp_path, [])
    assert isinstance(trainer.profiler, PyTorchProfiler)
    assert trainer.profiler.dirpath == str(tmp_path / "toy_teacher" / "profile")


def test_slurm_launcher_and_fsdp2_read_the_job_layout(monkeypatch):
    """Sweeps go through submitit (srun starts the processes), and trainer=fsdp2 sizes its mesh from the
    job: torchrun's WORLD_SIZE / LOCAL_WORLD_SIZE, or SLURM's task counts."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=rf_1_3b", "hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert cfg.hydra.launcher.tasks_per_node == cfg.hydra.launcher.gpus_per_node == 8
    torchrun = {"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8"}
    slurm = {"SLURM_NTASKS": "32", "SLURM_NTASKS_PER_NODE": "8", "SLURM_NNODES": "4"}
    for env, expected in ((torchrun, (8, 16)), (slurm, (8, 32))):
        for k in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        trainer = OmegaConf.to_container(compose_train("experiment=rf_1_3b").trainer, resolve=True)
        assert (trainer["devices"], trainer["strategy"]["data_parallel_size"]) == expected


def test_teacher_of_another_text_width_is_refused_before_any_transformer_is_built(tmp_path):
    """A 14B teacher and a 1.3B student must read the same umT5 embeddings: a mismatch is one line, exit 2,
    raised after the cheap parts (text encoder, VAE) and before three 1.3B transformers are allocated."""
    from tests.cli import run_rf

    # trainer.accelerator=cpu: on a machine without a GPU, trainer=gpu is refused first (rf.train.check_devices)
    args = ["experiment=full_size_random", "teacher.transformer.text_dim=2048", "trainer.accelerator=cpu"]
    r = run_rf("train", *args, runs=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "module.teacher_arch.text_dim=2048" in lines[0] and "4096" in lines[0], lines
