import pytest
import torch

from rf.toy import VOCABULARY, ObjectSpec, SceneSpec, ToyAutoencoder, ToyTextEncoder, ToyWorld
from rf.toy.rules import COLOURS


def one_object_scene(direction="right", speed="slow", change_speed_at=None, shape="circle"):
    obj = ObjectSpec(shape, "red", direction, speed, size=0.25, start=(0.3, 0.6), change_speed_at=change_speed_at)
    return SceneSpec((obj,), "striped", tint=(0.5, 0.7, 1.0))


def test_sample_is_deterministic_per_seed():
    world = ToyWorld(max_objects=3, preset="v1")
    a, b, c = world.sample(3, 16), world.sample(3, 16), world.sample(4, 16)
    assert a.prompt == b.prompt and torch.equal(a.video, b.video) and torch.equal(a.positions, b.positions)
    assert not torch.equal(a.video, c.video)


def test_clip_shapes_and_range():
    world = ToyWorld(height=32, width=48, max_objects=3, preset="v1")
    for seed in range(10):
        clip = world.sample(seed, 12)
        n = len(clip.scene.objects)
        assert clip.video.shape == (3, 12, 32, 48) and clip.video.dtype == torch.float32
        assert clip.video.min() >= -1 and clip.video.max() <= 1
        assert clip.positions.shape == clip.velocities.shape == (12, n, 2)
        assert clip.prompt == clip.scene.prompt()


def test_render_piecewise_equals_one_shot():
    world = ToyWorld(preset="v1")
    scene = world.scene_from_prompt("a red circle moving fast to the left while slowing down on a dotted background")
    whole = world.render(scene, 20)
    first, second = world.render(scene, 10), world.render(scene, 10, start=10)
    for field in ("video", "positions", "velocities"):
        pieces = torch.cat([getattr(first, field), getattr(second, field)], dim=1 if field == "video" else 0)
        torch.testing.assert_close(pieces, getattr(whole, field), rtol=0, atol=1e-6)
    late = world.render(scene, 5, start=1000)  # deep into a stream, past many bounces
    torch.testing.assert_close(late.video, world.render(scene, 1005).video[:, -5:], rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
def test_object_is_drawn_at_its_position(shape):
    world = ToyWorld(preset="v1")
    clip = world.render(one_object_scene(shape=shape), 8)
    for t in range(8):
        x, y = clip.positions[t, 0].long().tolist()
        pixel = (clip.video[:, t, y, x] + 1) / 2
        torch.testing.assert_close(pixel, torch.tensor(COLOURS["red"]), rtol=0, atol=1e-5)


def test_fast_moves_faster_than_slow_and_positions_follow_velocity():
    world = ToyWorld(preset="v1")
    slow = world.render(one_object_scene(speed="slow"), 40)
    fast = world.render(one_object_scene(speed="fast"), 40)
    assert fast.velocities.abs().sum(-1).mean() > 2 * slow.velocities.abs().sum(-1).mean()
    for clip in (slow, fast):
        assert torch.all(clip.velocities[:, :, 1] == 0)  # moving right never moves vertically
        torch.testing.assert_close(clip.positions[1:], clip.positions[:-1] + clip.velocities[:-1])


def test_speed_change_switches_speed_class_at_its_frame():
    world = ToyWorld(height=64, width=64, preset="v1")
    clip = world.render(one_object_scene(direction="down", change_speed_at=5), 10)
    speed = clip.velocities[:, 0, 1].abs()
    assert "speeding up" in clip.prompt
    assert torch.allclose(speed[:5], speed[0]) and torch.allclose(speed[5:8], speed[5])
    assert speed[5] > 2 * speed[0]


@pytest.mark.parametrize("direction", ["left", "right", "up", "down"])
def test_bounces_keep_the_object_inside_for_500_frames(direction):
    world = ToyWorld(height=32, width=48, preset="v1")
    clip = world.render(one_object_scene(direction=direction, speed="fast"), 500)
    radius = 0.25 * 32 / 2
    x, y = clip.positions[:, 0, 0], clip.positions[:, 0, 1]
    assert x.min() >= radius - 1e-4 and x.max() <= 48 - radius + 1e-4
    assert y.min() >= radius - 1e-4 and y.max() <= 32 - radius + 1e-4
    axis = 0 if direction in ("left", "right") else 1
    flips = (clip.velocities[1:, 0, axis].sign() != clip.velocities[:-1, 0, axis].sign()).sum()
    assert flips >= 10  # ~800 px of travel over a 36 or 24 px range bounces many times


def test_v2_objects_start_near_their_anchors_and_v1_or_jitter_none_anywhere():
    # v2: the first object within +-10% of the frame centre, the second of the corner (anchor 0 = 1 on the torus)
    world = ToyWorld()
    for seed in range(200):
        for i, obj in enumerate(world.sample_scene(seed, objects=2).objects):
            anchor = (0.5 + 0.5 * i) % 1.0
            offsets = [min(abs(u - anchor), 1 - abs(u - anchor)) for u in obj.start]  # distance on the torus
            assert max(offsets) <= 0.1 + 1e-12, (seed, i, obj.start)
    starts = [ToyWorld(start_jitter=None).sample_scene(seed, objects=1).objects[0].start[0] for seed in range(200)]
    assert min(starts) < 0.1 and max(starts) > 0.9  # anywhere: a uniform draw over 200 seeds covers both ends


def test_prompts_use_only_the_vocabulary_and_round_trip():
    world = ToyWorld(max_objects=3, preset="v1")
    grouped = 0
    for seed in range(200):
        scene = world.sample_scene(seed)
        prompt = scene.prompt()
        assert set(prompt.split()) <= set(VOCABULARY)
        assert world.scene_from_prompt(prompt, seed) == scene
        parsed = world.scene_from_prompt(prompt, seed + 1)  # other layout, same words
        assert parsed.prompt() == prompt and parsed.background == scene.background
        assert [(o.shape, o.colour, o.direction, o.speed) for o in parsed.objects] == [
            (o.shape, o.colour, o.direction, o.speed) for o in scene.objects
        ]
        grouped += " and a " in prompt.split(" moving ")[0]
    assert grouped > 0  # the grammar's "a X and a Y moving ..." form is exercised
    assert world.vocabulary == sorted(VOCABULARY)


@pytest.mark.parametrize(
    "prompt",
    [
        "a red hexagon moving fast to the left on a striped background",  # unknown word
        "a red circle moving fast to the left",  # missing background
        "a red circle moving fast while speeding up to the left on a striped background",  # wrong order
        "a red circle moving fast to the left while speeding up on a striped background",  # contradiction
    ],
)
def test_bad_prompts_raise(prompt):
    with pytest.raises(ValueError):
        ToyWorld(preset="v1").scene_from_prompt(prompt)


def test_unknown_prompt_word_is_named():
    with pytest.raises(ValueError, match="hexagon"):
        ToyWorld(preset="v1").scene_from_prompt("a red hexagon moving fast to the left on a striped background")


@pytest.mark.parametrize(
    "kwargs", [dict(height=31), dict(width=33), dict(height=14), dict(max_objects=4), dict(max_objects=0)]
)
def test_bad_world_settings_raise(kwargs):
    with pytest.raises(ValueError):
        ToyWorld(**kwargs, preset="v1")


def test_bad_specs_raise():
    with pytest.raises(ValueError, match="hexagon"):
        ObjectSpec("hexagon", "red", "left", "slow")
    with pytest.raises(ValueError):
        SceneSpec((), "striped")
    with pytest.raises(ValueError):
        ToyWorld(preset="v1").render(one_object_scene(), 0)


def test_autoencoder_round_trip_is_exact():
    ae = ToyAutoencoder(factor=2, scale=0.5)
    video = (
        ToyWorld(height=32, width=48, preset="v1").sample(0, 5).video[None].repeat(2, 1, 1, 1, 1)
    )  # [2, 3, 5, 32, 48]
    latents = ae.encode(video)
    assert latents.shape == (2, ae.latent_channels, 5, 16, 24) and ae.latent_channels == 12
    assert ae.temporal_factor == 1 and ae.spatial_factor == 2 and ae.num_frames(5) == 5
    torch.testing.assert_close(ae.decode(latents), video, rtol=0, atol=1e-6)
    stream = ae.stream_decoder()
    stream.reset()
    chunks = [stream.decode(latents[:, :, i : i + 2]) for i in range(0, 5, 2)]
    torch.testing.assert_close(torch.cat(chunks, dim=2), video, rtol=0, atol=1e-6)


def test_autoencoder_bad_inputs_raise():
    ae = ToyAutoencoder(factor=2)
    with pytest.raises(ValueError):
        ae.encode(torch.zeros(3, 4, 16, 16))  # 4-D
    with pytest.raises(ValueError):
        ae.encode(torch.zeros(1, 3, 4, 15, 16))  # odd height
    with pytest.raises(ValueError):
        ae.encode(torch.zeros(1, 1, 4, 16, 16))  # not RGB
    with pytest.raises(ValueError):
        ae.decode(torch.zeros(1, 3, 4, 8, 8))  # wrong latent channels
    with pytest.raises(ValueError):
        ToyAutoencoder(factor=0)


def test_text_encoder_shape_padding_and_determinism():
    prompts = [
        "a red circle moving fast to the left on a striped background",
        "a blue square moving slowly upwards",
    ]
    encoder = ToyTextEncoder(dim=32, max_length=16)
    out = encoder(prompts)
    assert out.shape == (2, 16, 32) and out.dtype == torch.float32
    assert torch.all(out[0, 12:] == 0) and torch.all(out[1, 6:] == 0)
    assert torch.all(out[0, :12].abs().sum(-1) > 0) and torch.all(out[1, :6].abs().sum(-1) > 0)
    assert not any(p.requires_grad for p in encoder.parameters()) and len(list(encoder.parameters())) == 0
    torch.testing.assert_close(ToyTextEncoder(dim=32, max_length=16).encode(prompts), out, rtol=0, atol=0)
    _, mask = encoder.tokenize(prompts)
    assert mask.sum(1).tolist() == [12, 6]


def test_text_encoder_distinguishes_prompts_and_word_order():
    encoder = ToyTextEncoder()
    a, b, c = encoder(
        [
            "a red circle and a blue square moving fast upwards on a dotted background",
            "a blue circle and a red square moving fast upwards on a dotted background",
            "a red circle moving fast upwards on a dotted background",
        ]
    )
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_text_encoder_default_fits_every_toy_prompt():
    world, encoder = ToyWorld(max_objects=3, preset="v1"), ToyTextEncoder()
    longest = max(len(world.sample_scene(seed).prompt().split()) for seed in range(500))
    assert longest <= encoder.max_length


def test_text_encoder_warns_and_rejects():
    encoder = ToyTextEncoder(max_length=8)
    with pytest.warns(UserWarning, match="truncated"):
        ids, mask = encoder.tokenize(["a red circle moving fast to the left on a striped background"])
    assert mask.all() and ids.shape == (1, 8)
    with pytest.warns(UserWarning, match="hexagon"):
        ids, _ = encoder.tokenize(["a hexagon"])
    assert ids[0, 1] == encoder.index["<unk>"]
    with pytest.raises(ValueError):
        encoder([" ... "])
    with pytest.raises(ValueError):
        encoder("a red circle")  # a bare string, not a list
