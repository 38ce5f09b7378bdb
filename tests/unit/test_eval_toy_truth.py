"""rf.eval.toy_truth on rendered toy clips (the ground truth) written to mp4 and read back: near-zero motion
error; and on clips that break the prompt on purpose: frozen, moving the wrong way, losing the object, not
switching. Each check must tell the two apart."""

import math

import pytest
import torch

from rf.eval.toy_truth import colour_masks, toy_truth
from rf.toy.scene import ObjectSpec, SceneSpec
from rf.toy.world import ToyWorld
from rf.utils.video import read_video, write_video

WORLD = ToyWorld(height=32, width=32, fps=8, max_objects=2, preset="v1")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def through_mp4(video: torch.Tensor, tmp_path, name="clip.mp4") -> torch.Tensor:
    return read_video(write_video(tmp_path / name, video, fps=8))[0]


def scene(direction="right", speed="fast", colour="red", start=(0.1, 0.5), background="striped") -> SceneSpec:
    return SceneSpec((ObjectSpec("circle", colour, direction, speed, 0.25, start),), background)


def test_rendered_clips_give_near_zero_motion_error(tmp_path):
    errors, agreements = [], []
    for seed in range(10):
        clip = WORLD.sample(seed, 40)
        values, curves = toy_truth(through_mp4(clip.video, tmp_path), 8, [(0, clip.prompt)], 16)
        assert values["toy_persistence"] == 1.0 and math.isnan(values["toy_adherence"])
        assert curves["toy_presence"] == [1.0, 1.0, 1.0]
        if not math.isnan(values["toy_motion_error"]):  # NaN: objects sharing a colour
            errors.append(values["toy_motion_error"])
            agreements.append(values["toy_direction_agreement"])
    assert len(errors) >= 8
    assert sum(errors) / len(errors) < 0.15 and max(errors) < 0.3  # px/frame; fast is 2 px/frame here
    assert sum(agreements) / len(agreements) > 0.95


@pytest.mark.parametrize("speed", ["slow", "fast"])
def test_bounces_are_followed_and_a_frozen_object_is_caught(tmp_path, speed):
    s = scene(speed=speed)
    truth = WORLD.render(s, 48).video  # fast: bounces off both side walls within 48 frames
    good, _ = toy_truth(through_mp4(truth, tmp_path), 8, [(0, s.prompt())], 16)
    assert good["toy_motion_error"] < 0.15 and good["toy_direction_agreement"] > 0.95
    frozen, _ = toy_truth(truth[:, :1].repeat(1, 48, 1, 1), 8, [(0, s.prompt())], 16)
    asked = {"slow": 0.6, "fast": 2.0}[speed]  # px/frame on a 32-px frame at 8 fps
    assert frozen["toy_direction_agreement"] == 0 and abs(frozen["toy_motion_error"] - asked) < 0.05


def test_moving_the_wrong_way_is_caught():
    s = scene(speed="slow", start=(0.5, 0.5))  # 12 px from either wall: no bounce in 16 frames
    truth = WORLD.render(s, 16).video
    mirrored, _ = toy_truth(truth.flip(-1), 8, [(0, s.prompt())], 8)  # the same motion, to the left
    assert mirrored["toy_direction_agreement"] == 0 and abs(mirrored["toy_motion_error"] - 1.2) < 0.15
    # turning back in mid-frame is no bounce: every pair after the turn moves the wrong way
    turn = torch.cat([truth, truth.flip(1)], dim=1)
    turned, _ = toy_truth(turn, 8, [(0, s.prompt())], 8)
    assert 0.35 < turned["toy_direction_agreement"] < 0.65


def test_persistence_drops_when_the_object_fades(tmp_path):
    clip = WORLD.render(scene(), 64)
    video = clip.video.clone()
    video[:, 32:] = -0.7  # a dim empty frame: the object is gone for the second half
    values, curves = toy_truth(video, 8, [(0, clip.prompt)], 16)
    assert values["toy_persistence"] == 0.5 and curves["toy_presence"] == [1.0, 1.0, 0.0, 0.0]


def test_adherence_after_a_switch(tmp_path):
    red, blue = scene(colour="red"), scene(colour="blue", direction="up", start=(0.5, 0.8), background="dotted")
    schedule = [(0, red.prompt()), (32, blue.prompt())]
    switched = torch.cat([WORLD.render(red, 32).video, WORLD.render(blue, 32).video], dim=1)
    ignored = WORLD.render(red, 64).video  # keeps showing the first prompt
    ok, curves = toy_truth(through_mp4(switched, tmp_path), 8, schedule, 8, grace_frames=8)
    bad, _ = toy_truth(through_mp4(ignored, tmp_path, "b.mp4"), 8, schedule, 8, grace_frames=8)
    both = torch.cat(
        [WORLD.render(red, 32).video, WORLD.render(SceneSpec((*red.objects, *blue.objects), "dotted"), 32, 32).video], 1
    )
    half, _ = toy_truth(through_mp4(both, tmp_path, "c.mp4"), 8, schedule, 8, grace_frames=8)
    assert ok["toy_adherence"] == 1.0 and bad["toy_adherence"] == 0.0 and half["toy_adherence"] == 0.5
    assert math.isnan(curves["toy_presence"][4])  # the grace segment right after the switch is not judged
    assert ok["toy_motion_error"] < 0.2


def test_colour_noise_is_not_an_object():
    noise = torch.rand(3, 16, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    area = (colour_masks(noise) > 0).flatten(2).sum(dim=2)  # [colours, frames] px
    assert area.max() < 0.005 * 32 * 32  # below the presence threshold in every frame
    values, _ = toy_truth(noise, 8, [(0, scene().prompt())], 8)
    assert values["toy_persistence"] == 0 and math.isnan(values["toy_motion_error"])
