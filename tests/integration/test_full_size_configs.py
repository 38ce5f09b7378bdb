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

from rf.models.loading import build_transformer
from rf.utils.instantiate import instantiate

CONF = Path(__file__).parents[2] / "conf"
PUBLISHED = json.loads((Path(__file__).parents[1] / "data" / "wan2.1_configs.json").read_text())
EXPERIMENTS = ["rf_1_3b", "sf_baseline_1_3b", "rf_1_3b_small_teacher", "full_size_random"]


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
])  # fmt: skip
def test_sizes_match_the_published_configs(experiment, student, teacher):
    cfg = compose_train(f"experiment={experiment}")
    for arch, size in ((cfg.model.transformer, student), (cfg.module.teacher_arch, teacher)):
        arch = OmegaConf.to_container(arch, resolve=True)
        published = PUBLISHED[size]
        assert {k: arch.get(k) for k in published["transformer"]} == published["transformer"]
        with torch.device("meta"):
            model = build_transformer(arch, causal=True)
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
