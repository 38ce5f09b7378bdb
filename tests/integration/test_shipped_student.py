"""The shipped toy student still streams what it was shipped for (src/rf/toy/weights/MODEL_CARD.md).

4 held-out single-object prompts, 4-s EMA-Sink streams through the one StreamSampler at the shipped shift,
scored on the exact frames by rf.eval.toy_metrics. A later change that breaks generation (the cache, the
sampler, the loaders, the decoder) drops these numbers and fails here. Measured on these 4 streams when
shipped: persistence 1.00, 1.00, 1.00, 0.82 (mean 0.955); direction agreement 0.59, 0.81, 0.44, 0.81 (mean
0.66); signed speed ratio mean 0.83; shape and background accuracy 1.00 on all four. Rendered real clips score
1.00 on all of them; a frozen object scores direction 0, a random walk about 0.33. A stream that loses its object
scores persistence 0 and shape NaN, one that loses the background scores background accuracy ~0.25 (chance).

One bar the issue sets is not met by the shipped weights, and is a row marked xfail(strict=True): it fails
the suite, and its mark must go, once weights that meet it are shipped:
    direction agreement >= 0.7 over these 4-s streams (0.66; 0.87 over 60 s for the GPU-trained DMD student)
"""

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rf.diffusion.sampler import GeneratorNoise, StreamSampler
from rf.eval.toy_metrics import score
from rf.models.cache import CacheConfig
from rf.models.loading import load_transformer
from rf.toy.shipped import SAMPLER_SHIFT, shipped_path
from rf.toy.world import ToyWorld
from rf.utils.cli import CONF_DIR
from rf.utils.instantiate import instantiate

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPTS_SEED = 3_000_000_019  # scenes no training stream reaches


@pytest.fixture(scope="module")
def streams():
    return make_streams()


def make_streams():
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("generate", overrides=["model=toy_large", "sink=ema_sink", f"sampler.shift={SAMPLER_SHIFT}"])
    world = ToyWorld(cfg.model.video.height, cfg.model.video.width, cfg.model.video.fps)
    prompts = [world.sample_scene(PROMPTS_SEED + i, objects=1).prompt() for i in range(4)]
    arch = OmegaConf.to_container(cfg.model.transformer, resolve=True)
    model = load_transformer(arch, shipped_path("shipped", "toy_large"), causal=True)[0].eval()
    ae, text_encoder = instantiate(cfg.model.autoencoder), instantiate(cfg.model.text_encoder)
    sink = CacheConfig(**OmegaConf.to_container(cfg.sink, resolve=True))
    sampler = StreamSampler(model, sink, **OmegaConf.to_container(cfg.sampler, resolve=True))
    frames = 33  # 4 s at 8 fps, rounded up to whole 3-frame chunks: 11 chunks, the window fills and evicts
    with torch.no_grad():
        latents = sampler.rollout([(0, text_encoder(prompts))], (4, ae.latent_channels, frames, 16, 16),
                                  GeneratorNoise(0, torch.device("cpu")))  # fmt: skip
        video = ae.decode(latents).clamp(-1, 1)  # [4, 3, 33, 32, 32]
    return [score(v, p, world) for v, p in zip(video, prompts, strict=True)]


def mean(rows, key):
    return sum(r[key] for r in rows) / len(rows)


def test_the_asked_object_stays(streams):
    assert mean(streams, "persistence") >= 0.9  # 0.955 when shipped; 0 when generation breaks


def test_the_object_moves_more_the_asked_way_than_a_random_walk(streams):
    assert mean(streams, "direction_agreement") >= 0.45  # 0.66 when shipped; random walk ~0.33, frozen 0
    assert mean(streams, "speed_ratio") >= 0.4  # 0.83 when shipped; frozen or random walk ~0


def test_shape_and_background_are_the_asked_ones(streams):
    assert all(r["shape_accuracy"] >= 0.75 for r in streams)  # 1.00 on each when shipped; NaN if the object is lost
    assert mean(streams, "background_accuracy") >= 0.9  # 1.00 when shipped; chance is 0.25


@pytest.mark.xfail(strict=True, reason="shipped weights miss the direction bar over 4 s (0.66): issue 14")
def test_the_object_moves_the_asked_way(streams):
    assert mean(streams, "direction_agreement") >= 0.7
