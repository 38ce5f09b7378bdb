import math

import pytest
import torch

from rf.rewards import MotionReward, RewardModel, calibrate
from rf.toy.world import ToyWorld
from rf.utils.optical_flow import flow_magnitude, optical_flow


def _texture(h: int, w: int, seed: int, shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """A smooth 1/f random texture [H, W] (std 0.25) translated by shift (x, y) px: a phase ramp in Fourier
    space, so the subpixel motion is exact and the ground truth is the shift itself."""
    g = torch.Generator().manual_seed(seed)
    ky = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    kx = torch.fft.fftfreq(w, dtype=torch.float64)[None]
    f = torch.sqrt(kx**2 + ky**2)
    spectrum = torch.fft.fft2(torch.randn(h, w, generator=g, dtype=torch.float64))
    spectrum = spectrum / (f + 2 / max(h, w)) * torch.exp(-((f / 0.25) ** 2))
    image = torch.fft.ifft2(spectrum * torch.exp(-2j * math.pi * (kx * shift[0] + ky * shift[1]))).real
    return 0.25 * image / image.std()


def _box(h: int, w: int, centre: tuple[float, float], half: float) -> torch.Tensor:
    """Exact area coverage [H, W] of the square |x - cx|, |y - cy| <= half (pixel i spans [i, i + 1])."""

    def cover(n: int, c: float) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float64)
        return (torch.clamp(i + 1, max=c + half) - torch.clamp(i, min=c - half)).clamp(0, 1)

    return cover(h, centre[1])[:, None] * cover(w, centre[0])[None]


def _moving_square(h, w, frames, start, velocity, half, seed=0) -> torch.Tensor:
    """A textured square gliding over a static textured background: [1, 3, T, H, W] in [-1, 1]."""
    background = _texture(h, w, seed)
    video = []
    for t in range(frames):
        shift = (velocity[0] * t, velocity[1] * t)
        inside = _box(h, w, (start[0] + shift[0], start[1] + shift[1]), half)
        video.append(background + inside * (_texture(h, w, seed + 1, shift) - background))
    return torch.stack(video).float()[None, None].expand(1, 3, frames, h, w).clamp(-1, 1)


def _centre_flow(flow, start, velocity, t) -> torch.Tensor:
    x, y = start[0] + velocity[0] * t, start[1] + velocity[1] * t
    return flow[0, t, :, int(y), int(x)]


def test_static_video_has_no_flow_and_the_lowest_score():
    world = ToyWorld(preset="v1")
    clips = torch.stack([world.sample(seed, 9).video for seed in range(4)])  # [4, 3, T, H, W]
    static = clips[:1, :, :1].expand(1, 3, 9, 32, 32)
    flow = optical_flow(static)
    assert flow.shape == (1, 8, 2, 32, 32)
    assert flow.abs().max() < 0.05
    scores = MotionReward().score(torch.cat([static, clips]))
    assert scores[0] < 0.05 and scores[0] < scores[1:].min()


@pytest.mark.parametrize("velocity", [(1.5, 0.0), (-1.5, 0.0), (0.0, -1.5), (0.6, 1.2)])
def test_translating_square_on_32x32(velocity):
    start = (15.5, 15.5)
    video = _moving_square(32, 32, 4, start, velocity, half=6)
    flow = optical_flow(video)
    truth = torch.tensor(velocity)
    for t in range(3):
        estimate = _centre_flow(flow, start, velocity, t)
        assert (estimate - truth).norm() < 0.3, (t, estimate)
        for axis in range(2):
            if truth[axis] != 0:
                assert estimate[axis].sign() == truth[axis].sign()


def test_large_motion_on_128x128_needs_the_pyramid():
    start, velocity = (40.5, 64.5), (6.0, 0.0)
    video = _moving_square(128, 128, 3, start, velocity, half=20)
    for t in range(2):
        assert (_centre_flow(optical_flow(video), start, velocity, t) - torch.tensor(velocity)).norm() < 1.0
    # a single level cannot follow 6 px/frame: the pyramid is what recovers it
    single = _centre_flow(optical_flow(video, levels=1), start, velocity, 0)
    assert (single - torch.tensor(velocity)).norm() > 1.0


def test_flow_matches_the_toy_worlds_ground_truth():
    world, errors = ToyWorld(preset="v1"), []
    for seed in range(6):
        clip = world.sample(seed, 7)
        flow = optical_flow(clip.video[None])[0]  # [T-1, 2, H, W]
        for t in range(6):
            (x, y), velocity = clip.positions[t, -1].tolist(), clip.velocities[t, -1]  # the top object
            errors.append((flow[t, :, int(y), int(x)] - velocity).norm())
    errors = torch.stack(errors)
    assert errors.median() < 0.15 and errors.max() < 0.6, errors


def test_fast_toy_clips_score_higher_than_slow_ones():
    world = ToyWorld(height=32, width=32, fps=8, max_objects=2, preset="v1")

    def clips(speed: str) -> torch.Tensor:
        prompt = f"a red circle moving {speed} to the right on a striped background"
        return torch.stack([world.render(world.scene_from_prompt(prompt, seed), 21).video for seed in range(8)])

    reward = MotionReward()
    fast, slow = reward.score(clips("fast")), reward.score(clips("slowly"))
    assert fast.mean() > 1.5 * slow.mean(), (fast, slow)


@pytest.mark.parametrize("side", [64, 160])
def test_score_does_not_depend_on_resolution(side):
    prompt = "a blue square moving fast downwards on a dotted background"
    small, large = ToyWorld(32, 32, preset="v1"), ToyWorld(side, side, preset="v1")
    scores = [
        MotionReward().score(world.render(world.scene_from_prompt(prompt, 3), 6).video[None])
        for world in (small, large)
    ]
    assert scores[1].item() == pytest.approx(scores[0].item(), rel=0.2)


def test_reward_is_z_scored_per_sample():
    world = ToyWorld(preset="v1")
    video = torch.stack([world.sample(seed, 9).video for seed in (1, 2)])
    reward = MotionReward(mean=2.0, std=0.5)
    assert isinstance(reward, RewardModel)
    r = reward(video, ["a", "b"])
    assert r.shape == (2,) and r.dtype == torch.float32
    torch.testing.assert_close(r, (reward.score(video) - 2.0) / 0.5)

    changed = video.clone()
    changed[1] = world.sample(3, 9).video
    r2 = reward(changed)
    assert r2[0] == pytest.approx(r[0].item(), abs=1e-5) and r2[1] != r[1]

    broken = video.clone()
    broken[1, :, 4] = float("nan")
    r3 = reward(broken)
    assert r3[1].isnan() and r3[0] == pytest.approx(r[0].item(), abs=1e-5)


def test_calibrate_returns_the_mean_and_std_of_raw_scores():
    world = ToyWorld(preset="v1")
    videos = [world.sample(seed, 5).video for seed in range(4)]  # clips [3, T, H, W] are accepted too
    scores = MotionReward().score(torch.stack(videos))
    mean, std = calibrate(videos)
    assert mean == pytest.approx(scores.mean().item(), rel=1e-4)
    assert std == pytest.approx(scores.std().item(), rel=1e-4)


@pytest.mark.parametrize("std", [0.0, -1.0])
def test_std_must_be_positive(std):
    with pytest.raises(ValueError, match="std"):
        MotionReward(std=std)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="T=1"):
        optical_flow(torch.zeros(1, 3, 1, 32, 32))
    with pytest.raises(ValueError, match="B, 3, T, H, W"):
        optical_flow(torch.zeros(3, 4, 32, 32))
    with pytest.raises(ValueError, match="B, 3, T, H, W"):
        MotionReward()(torch.zeros(3, 4, 32, 32))
    with pytest.raises(ValueError, match="T=1"):
        MotionReward()(torch.zeros(2, 3, 1, 32, 32))
    with pytest.raises(ValueError, match="top_fraction"):
        MotionReward(top_fraction=0.0)


def test_tiny_frames_use_fewer_levels():
    video = _moving_square(12, 12, 3, (5.5, 5.5), (0.5, 0.0), half=3)
    flow = optical_flow(video, levels=4)
    assert flow.shape == (1, 2, 2, 12, 12) and torch.isfinite(flow).all()
    assert flow_magnitude(flow).shape == (1, 2, 12, 12)
