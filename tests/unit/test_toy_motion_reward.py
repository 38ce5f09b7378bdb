"""rf.rewards.toy_motion.ToyMotionReward on rendered world-v2 rollouts and on the references of rf.eval.toy_metrics:
it pays the asked motion, and nothing for freezing, wandering, duplicating the object or moving the background."""

import math

import pytest
import torch

from rf.eval.toy_references import reference_videos
from rf.rewards.toy_motion import ToyMotionReward
from rf.toy import draw
from rf.toy.rules import TINTS
from rf.toy.scene import ObjectSpec, SceneSpec
from rf.toy.world import ToyWorld

WORLD = ToyWorld()
REWARD = ToyMotionReward({"preset": "v2"}, height=32, width=32, fps=8)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def scene(direction="right", speed="fast", start=(0.8, 0.4), shape="square", colour="blue", background="striped"):
    tint = TINTS[WORLD.rules.tints[background]]
    return SceneSpec((ObjectSpec(shape, colour, direction, speed, 0.39, start),), background, tint, 0.5, 0.0)


@pytest.mark.parametrize("frames", [9, 15])
def test_reward_orders_the_references(frames):
    # Measured (32 sampled scenes, 1-2 objects): real ~0.98-1.0, frozen 0 exactly, random walk ~0 (-0.05..0.00,
    # std 0.16-0.25: its steps have no mean direction, so with r = clip(speed_ratio) * integrity - ... it pays
    # as little as freezing, on average), mirrored ~-0.98.
    seeds = list(range(12))
    mean = {}
    for kind in ("real", "frozen", "random_walk", "mirrored"):
        videos, prompts = reference_videos(WORLD, None, seeds, frames, kind)
        r = REWARD(videos, prompts)
        assert r.shape == (len(seeds),) and r.dtype == torch.float32 and torch.isfinite(r).all()
        mean[kind] = r.mean().item()
    assert mean["real"] > 0.9 and abs(mean["frozen"]) < 1e-6 and mean["mirrored"] < -0.8
    assert mean["real"] > max(mean["random_walk"], mean["frozen"]) + 0.5
    assert min(mean["random_walk"], mean["frozen"]) > mean["mirrored"] + 0.5
    assert abs(mean["random_walk"] - mean["frozen"]) < 0.3


@pytest.mark.parametrize("speed", ["slow", "fast"])
@pytest.mark.parametrize("direction", ["left", "up"])
def test_objects_crossing_the_edges_are_paid(direction, speed):
    s = scene(direction, speed, start=(0.05, 0.1))  # starts across the top-left corner: wrapped from frame 0
    r = REWARD(WORLD.render(s, 12).video[None], [s.prompt()])
    assert r.item() > 0.9


def test_duplicates_and_moving_backgrounds_are_penalised():
    s = scene()
    real = WORLD.render(s, 12).video
    copy = ObjectSpec("square", "blue", "right", "fast", 0.39, (0.3, 0.9))  # a second copy, apart from the first
    twice = WORLD.render(SceneSpec((*s.objects, copy), s.background, s.tint, 0.5), 12).video
    background = (2 * draw.background(s, WORLD.height, WORLD.width) - 1).float()
    objects = (real - background[:, None]).abs().amax(dim=0) > 1e-4
    moving = torch.stack([background.roll((t, t), (1, 2)) for t in range(12)], dim=1)  # 1 px/frame on both axes
    drifting = torch.where(objects[None], real, moving)
    r = REWARD(torch.stack([real, twice, drifting]), [s.prompt()] * 3)
    # real ~1; duplicated: no frame with one component (integrity 0) and one extra blob per frame: -0.5;
    # moving background: ~1 - 1.2 (its flow, px/frame).
    assert r[0] > 0.95
    assert r[1] < -0.4
    assert r[2] < r[0] - 0.8


def test_unscorable_samples_are_nan():
    s = scene()
    video = WORLD.render(s, 9).video
    broken = video.clone()
    broken[0, 3, 5, 5] = float("nan")
    r = REWARD(torch.stack([video, video, broken]), [s.prompt(), "a photo of a cat", s.prompt()])
    assert r[0] > 0.9 and math.isnan(r[1]) and math.isnan(r[2])
    assert math.isnan(REWARD(video[None, :, :1], [s.prompt()]).item())  # one frame: no motion to judge
    with pytest.raises(ValueError):
        REWARD(video[None], None)
    assert REWARD.name == "toy_motion"
    assert ToyMotionReward(WORLD).world is WORLD
