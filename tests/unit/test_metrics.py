import math
import re

import pytest
import torch

from rf.metrics import (
    Drift,
    DynamicDegree,
    FirstFrameCopying,
    LaplacianSharpness,
    MotionSmoothness,
    TemporalFlicker,
    drift,
    dynamics,
    first_frame_copying,
    motion_smoothness,
    temporal_flicker,
)
from rf.metrics.drift import drift_segments
from rf.metrics.dynamics import vbench_rule
from rf.toy.scene import ObjectSpec, SceneSpec
from rf.toy.world import ToyWorld


def _texture(h: int, w: int, seed: int, shift_x: float = 0.0) -> torch.Tensor:
    """A smooth periodic random texture [H, W] (std 0.25) translated by shift_x px: a phase ramp in Fourier
    space, so the subpixel motion is exact."""
    g = torch.Generator().manual_seed(seed)
    ky = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    kx = torch.fft.fftfreq(w, dtype=torch.float64)[None]
    f = torch.sqrt(kx**2 + ky**2)
    spectrum = torch.fft.fft2(torch.randn(h, w, generator=g, dtype=torch.float64))
    spectrum = spectrum / (f + 2 / max(h, w)) * torch.exp(-((f / 0.25) ** 2))
    image = torch.fft.ifft2(spectrum * torch.exp(-2j * math.pi * kx * shift_x)).real
    return 0.25 * image / image.std()


def _sliding(positions: list[float], side: int = 64, seed: int = 0) -> torch.Tensor:
    """The texture at x offsets `positions` (one per frame): [1, 3, T, side, side] grey, in [-1, 1]."""
    frames = torch.stack([_texture(side, side, seed, p) for p in positions]).float()
    return frames[None, None].expand(1, 3, len(positions), side, side).contiguous()


def _toy(speed: str, frames: int = 16, background: str = "gradient") -> torch.Tensor:
    """A white square moving right over a static background, 64 x 64 at 8 fps: [1, 3, T, 64, 64]."""
    scene = SceneSpec((ObjectSpec("square", "white", "right", speed, 0.3, (0.1, 0.5)),), background)
    return ToyWorld(64, 64, fps=8, preset="v1").render(scene, frames).video[None]


def _static(frames: int = 24) -> torch.Tensor:
    return ToyWorld(32, 32, preset="v1").sample(3, 1).video[None].expand(2, 3, frames, 32, 32).contiguous()


def test_static_video_scores():
    video = _static()
    d = dynamics(video)
    assert d["dynamic"].tolist() == [0.0, 0.0] and d["mean_flow"].max() < 1e-3
    assert torch.allclose(first_frame_copying(video)["copying"], torch.ones(2), atol=1e-6)
    assert torch.allclose(temporal_flicker(video), torch.ones(2), atol=1e-6)
    assert torch.allclose(motion_smoothness(video), torch.ones(2), atol=1e-6)
    assert torch.allclose(drift(video, segment_frames=8)["drift"], torch.zeros(2), atol=1e-6)


def test_vbench_rule():
    assert vbench_rule(64, 64, 16) == (1.5, 4)
    assert vbench_rule(480, 832, 81) == (11.25, 20)  # min side 480; round(20.25) = 20
    # Python's round, as VBench: half to even
    assert [vbench_rule(256, 256, f)[1] for f in (2, 6, 10)] == [0, 2, 2]


@pytest.mark.parametrize("speed", [1.0, 2.5])
def test_translation_speed_and_dynamic_threshold(speed):
    # threshold at 64 x 64: 1.5 px/frame; 16 frames need 4 moving pairs
    d = dynamics(_sliding([speed * t for t in range(16)]))
    assert d["mean_flow"].item() == pytest.approx(speed, rel=0.15)
    assert d["top_flow"].item() == pytest.approx(speed, rel=0.15)
    assert d["dynamic"].item() == float(speed > 1.5)


def test_downsampled_flow_is_in_input_pixels():
    # 256 x 256 is shrunk to 128 for the flow; the threshold is 6 px/frame of the input
    slow, fast = (dynamics(_sliding([v * t for t in range(8)], side=256)) for v in (4.0, 9.0))
    assert slow["mean_flow"].item() == pytest.approx(4.0, rel=0.15) and slow["dynamic"].item() == 0
    assert fast["mean_flow"].item() == pytest.approx(9.0, rel=0.15) and fast["dynamic"].item() == 1


def test_fps_sampling_follows_vbench():
    video = _sliding([1.0 * t for t in range(32)])  # 1 px/frame at 16 fps: 2 px per 8-fps frame
    assert dynamics(video)["dynamic"].item() == 0
    sampled = dynamics(video, fps=16)
    assert sampled["dynamic"].item() == 1 and sampled["mean_flow"].item() == pytest.approx(2.0, rel=0.15)


def test_toy_object_speed():
    # fast: 0.5 frame widths per second = 4 px/frame; slow: 1.2 px/frame, below the 1.5 threshold
    fast, slow = dynamics(_toy("fast")), dynamics(_toy("slow"))
    assert fast["top_flow"].item() == pytest.approx(4.0, rel=0.15) and fast["dynamic"].item() == 1
    assert slow["top_flow"].item() == pytest.approx(1.2, rel=0.15) and slow["dynamic"].item() == 0
    assert 0 < slow["mean_flow"] < fast["mean_flow"] < fast["top_flow"]  # the background does not move


def test_copying_cross_fade_has_the_expected_curve():
    a, b = _texture(32, 32, 1), _texture(32, 32, 2)
    alpha = torch.cat([torch.zeros(4), torch.linspace(0, 1, 13)[1:]])  # [16]: 4 frames of a, then fade to b
    video = ((1 - alpha)[:, None, None] * a + alpha[:, None, None] * b).float()[None, None].expand(1, 3, 16, 32, 32)
    out = first_frame_copying(video, segment_frames=4)
    step = (b - a).abs().mean().item() / 2  # distance to a per unit of alpha, in [0, 1] units
    expected = 1 - alpha.view(4, 4).mean(dim=1) * step  # [S]: the nearest first-segment frame is a itself
    assert torch.allclose(out["curve"][0], expected, atol=1e-5)
    assert (out["curve"][0].diff() < 0).all()
    assert out["copying"].item() == pytest.approx(expected[1:].mean().item(), abs=1e-5)


def test_copying_of_a_loop_and_of_a_change():
    first = _toy("fast", frames=8)
    looped = torch.cat([first, first.flip(2), first], dim=2)  # returns to frames of the first segment
    assert first_frame_copying(looped, segment_frames=8)["copying"].item() == pytest.approx(1.0, abs=1e-6)
    moving = _toy("fast", frames=24)  # the square leaves its first positions
    assert first_frame_copying(moving, segment_frames=8)["copying"].item() < 0.99
    assert first_frame_copying(moving, segment_frames=12, first_segment_frames=4)["curve"].shape == (1, 3)
    with pytest.raises(ValueError, match="single segment"):
        first_frame_copying(moving, segment_frames=24)


def test_drift_of_linearly_fading_stripes():
    # Grey stripes 127.5 + a sin(pi x / 2 + pi / 4): the 4-neighbour Laplacian is -2 a sin(...) = +-sqrt(2) a,
    # balanced over any even number of columns, so its variance is exactly 2 a^2. For a sinusoid any
    # symmetric blur only scales the amplitude, so a falling amplitude is a blur that grows per segment.
    x = torch.arange(32, dtype=torch.float64)
    stripes = torch.sin(math.pi * x / 2 + math.pi / 4).expand(16, 32)
    amplitudes = [40.0, 30.0, 20.0, 10.0]  # grey levels, one per 3-frame segment
    video = torch.stack([a * stripes / 127.5 for a in amplitudes for _ in range(3)]).float()
    video = video[None, None].expand(1, 3, 12, 16, 32)
    out = drift(video, segment_frames=3)
    expected = torch.tensor([100 * 2 * a**2 / (2 * a**2 + 100) for a in amplitudes])
    assert torch.allclose(out["segment_scores"][0], expected.float(), rtol=1e-4)
    assert out["drift"].item() == pytest.approx(expected.std(correction=0).item(), rel=1e-4)
    assert out["quality"].item() == pytest.approx(expected.mean().item(), rel=1e-4)


def test_drift_of_growing_blur_matches_the_scorer_per_segment():
    frames = ToyWorld(64, 64, preset="v1").sample(5, 1).video  # [3, 1, 64, 64]
    radius = torch.arange(-3, 4, dtype=torch.float32)
    segments = []
    for sigma in (0.3, 0.8, 1.3, 1.8, 2.3):  # fps 2, 2 s per segment: 4 frames each
        kernel = torch.exp(-0.5 * (radius / sigma) ** 2)
        kernel = (kernel[:, None] * kernel[None]) / kernel.sum() ** 2
        blurred = torch.nn.functional.conv2d(frames[:, 0, None], kernel[None, None], padding=3)  # [3, 1, 64, 64]
        segments.append(blurred.transpose(0, 1).expand(4, 3, 64, 64))
    video = torch.cat(segments).transpose(0, 1)[None].contiguous()  # [1, 3, 20, 64, 64]
    out = drift(video, fps=2, seconds_per_segment=2)
    per_segment = torch.stack([LaplacianSharpness()(s[:1]) for s in segments]).squeeze(1)
    assert torch.allclose(out["segment_scores"][0], per_segment, rtol=1e-5)
    assert (per_segment.diff() < 0).all() and out["drift"].item() > 1
    assert out["drift"].item() == pytest.approx(per_segment.std(correction=0).item(), rel=1e-5)


def test_drift_segments_follow_vbench_long():
    assert drift_segments(10, 4) == [slice(0, 4), slice(4, 8), slice(6, 10)]  # the last borrows 2 frames
    assert drift_segments(8, 4) == [slice(0, 4), slice(4, 8)]
    assert drift_segments(3, 4) == [slice(0, 3)]
    with pytest.raises(ValueError, match="segment_frames"):
        drift(_static(), fps=None)
    with pytest.raises(ValueError, match="scorer returned"):
        drift(_static(), segment_frames=4, scorer=lambda frames: frames.mean(dim=(2, 3)))  # [N, 3]


def test_flicker_and_smoothness_known_answers():
    base = _texture(32, 32, 4).float()
    flicker = torch.stack([base + (0.1 if t % 2 else 0.0) for t in range(9)])[None, None].expand(1, 3, 9, 32, 32)
    assert temporal_flicker(flicker).item() == pytest.approx(1 - 0.1 / 2, abs=1e-6)
    smooth = _sliding([1.5 * t for t in range(9)])
    jitter = _sliding([1.5 * t + (0.75 if t % 2 else 0.0) for t in range(9)])  # odd frames off the path
    s_smooth, s_jitter = motion_smoothness(torch.cat([smooth, jitter])).tolist()
    assert s_smooth > 0.99 and s_jitter < s_smooth - 0.01
    # the moving texture leaves no static pixel: the static-only flicker has nothing to score
    assert temporal_flicker(smooth, static_threshold=0.5).isnan().all()
    assert temporal_flicker(_static(), static_threshold=0.5).tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "make",
    [
        DynamicDegree,
        lambda: FirstFrameCopying(segment_frames=4),
        lambda: Drift(segment_frames=4),
        TemporalFlicker,
        MotionSmoothness,
    ],
)
def test_metric_accumulates_like_one_batch(make):
    world = ToyWorld(32, 32, preset="v1")
    videos = torch.stack([world.sample(seed, 12).video for seed in range(3)])  # [3, 3, 12, 32, 32]
    split, whole = make(), make()
    split.update(videos[:2])
    split.update(videos[2:])
    whole.update(videos)
    a, b = split.compute(), whole.compute()
    a, b = (a, b) if isinstance(a, dict) else ({"value": a}, {"value": b})
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-6), key


@pytest.mark.parametrize(
    "fn", [dynamics, first_frame_copying, drift, temporal_flicker, motion_smoothness, DynamicDegree().update]
)
@pytest.mark.parametrize("shape", [(3, 8, 16, 16), (1, 1, 8, 16, 16), (1, 4, 8, 16, 16)])
def test_bad_shapes_raise(fn, shape):
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        fn(torch.zeros(shape), segment_frames=4) if fn is drift else fn(torch.zeros(shape))
