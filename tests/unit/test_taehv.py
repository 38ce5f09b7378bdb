"""TAEHV decoder: streaming equals one-shot, output range, the latent convention, and loading the published layout."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from safetensors.torch import save_file

from rf.fast.fast_path import FastPath, decoder_names
from rf.fast.taehv import TAEHVAutoencoder, TAEHVStreamDecoder
from rf.stream import build_decoder
from rf.utils.instantiate import instantiate, to_dict

CONF = Path(__file__).resolve().parents[2] / "conf" / "decoder" / "taehv.yaml"


def random_taehv(seed: int = 0) -> TAEHVAutoencoder:
    """Random weights, scaled so frames are neither flat nor clamped and the MemBlocks matter."""
    torch.manual_seed(seed)
    ae = TAEHVAutoencoder.from_pretrained(None, torch_dtype="fp32")
    with torch.no_grad():
        for p in ae.parameters():
            p.mul_(1.5)
        ae.decoder[-1].bias.fill_(0.5)  # raw output around the middle of [0, 1]
    return ae


def latents(b: int = 1, f: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 16, f, 2, 4, generator=torch.Generator().manual_seed(seed))  # [B, C, f, h, w]


def published_state(ae: TAEHVAutoencoder) -> dict[str, torch.Tensor]:
    """The published file's layout: the full TAEHV state dict, decoder.* and encoder.* keys."""
    encoder = {"encoder.0.weight": torch.randn(64, 3, 3, 3), "encoder.0.bias": torch.randn(64)}
    return {**ae.state_dict(), **encoder}


def test_stream_decode_equals_one_shot():
    ae, z = random_taehv(), latents()
    one_shot = ae.decode(z)
    dec = ae.stream_decoder()
    streamed = torch.cat([dec.decode(z[:, :, i : i + 3]) for i in (0, 3)], dim=2)
    assert streamed.shape == one_shot.shape == (1, 3, ae.num_frames(6), 16, 32)
    assert ae.num_frames(6) == 1 + 4 * 5
    assert (streamed - one_shot).abs().max() < 1e-5
    # forgetting the MemBlocks' frames at the chunk boundary gives a different video
    dec.reset()
    first = dec.decode(z[:, :, :3])
    dec.memory.clear()
    assert (torch.cat([first, dec.decode(z[:, :, 3:])], dim=2) - one_shot).abs().max() > 1e-3
    # reset() starts a new stream: trimmed again, same frames
    dec.reset()
    assert (torch.cat([dec.decode(z[:, :, i : i + 2]) for i in (0, 2, 4)], dim=2) - one_shot).abs().max() < 1e-5


def test_output_shape_and_range():
    ae, z = random_taehv(), latents(b=2, f=2)
    with torch.no_grad():
        ae.decoder[-1].weight.mul_(100)  # saturate: raw frames beyond [0, 1] on both sides
    video = ae.decode(z)
    assert video.shape == (2, 3, 5, 8 * 2, 8 * 4)
    assert video.min() == -1 and video.max() == 1


def test_decodes_normalised_latents_as_they_are():
    """TAEHV decodes what the diffusion model sees, i.e. rf's Wan-normalised latents, with no mean / std."""
    ae, z = random_taehv(), latents(f=2)
    raw = ae.decoder(z.transpose(1, 2), {})  # [B, 4f, 3, H, W] in [0, 1], untrimmed
    expected = raw[:, 3:].transpose(1, 2) * 2 - 1
    torch.testing.assert_close(ae.decode(z), expected, atol=0, rtol=0)


def test_from_pretrained_round_trip(tmp_path):
    ae, z = random_taehv(), latents(f=1)
    expected, state = ae.decode(z), published_state(ae)
    torch.save(state, tmp_path / "taew2_1.pth")
    save_file(state, tmp_path / "model.safetensors")
    for path in (tmp_path / "taew2_1.pth", tmp_path / "model.safetensors", tmp_path):
        loaded = TAEHVAutoencoder.from_pretrained(path, torch_dtype="fp32")
        torch.testing.assert_close(loaded.decode(z), expected, atol=0, rtol=0)
    assert next(TAEHVAutoencoder.from_pretrained(tmp_path).parameters()).dtype == torch.bfloat16


def test_config_builds_the_decoder(tmp_path):
    (tmp_path / "taehv").mkdir()
    torch.save(published_state(random_taehv()), tmp_path / "taehv" / "taew2_1.pth")
    cfg = OmegaConf.create({"paths": {"weights": str(tmp_path)}, "model": {"dtype": "fp32"}})
    cfg.decoder = OmegaConf.load(CONF)
    ae = instantiate(cfg.decoder)
    assert isinstance(ae, TAEHVAutoencoder) and next(ae.parameters()).dtype == torch.float32


def test_fast_decoder_names_the_config_file_the_stream_builds(tmp_path):
    """fast=approximate (fast.decoder=taehv): rf.stream.build_decoder instantiates conf/decoder/taehv.yaml, its
    ${paths.weights} and ${model.dtype} resolved against the run's config; the bench's path=None: random weights."""
    (tmp_path / "taehv").mkdir()
    torch.save(published_state(random_taehv()), tmp_path / "taehv" / "taew2_1.pth")
    no_overlap = ["fast.overlap=false", "fast.decode_priority=false"]  # the CPU has no second CUDA stream
    with initialize_config_dir(config_dir=str(CONF.parents[1]), version_base="1.3"):
        cfg = compose("generate", overrides=["fast=approximate", *no_overlap, f"paths.weights={tmp_path}"])
    fast = FastPath(**to_dict(cfg.fast))
    assert fast.decoder == "taehv" and "taehv" in decoder_names()
    decoder = build_decoder(fast, None, cfg, torch.device("cpu"))
    assert isinstance(decoder, TAEHVStreamDecoder)
    assert torch.equal(decoder.decoder[1].weight, random_taehv().decoder[1].weight)  # the file's weights
    random = build_decoder(fast, None, cfg, torch.device("cpu"), path=None)
    assert not torch.equal(random.decoder[1].weight, decoder.decoder[1].weight)


def test_missing_weights_name_the_path(tmp_path):
    for path in (tmp_path / "nowhere" / "taew2_1.pth", tmp_path):
        with pytest.raises(FileNotFoundError, match="madebyollin/taehv") as err:
            TAEHVAutoencoder.from_pretrained(path)
        assert str(path) in str(err.value)


def test_wrong_keys_give_one_clear_error(tmp_path):
    state = published_state(random_taehv())
    state["decoder.99.weight"] = state.pop("decoder.22.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(ValueError, match=r"missing \(1\): decoder\.22\.weight; unexpected \(1\): decoder\.99\.weight"):
        TAEHVAutoencoder.from_pretrained(tmp_path / "renamed.pth")
    state = published_state(random_taehv())
    state["decoder.1.weight"] = torch.zeros(256, 48, 3, 3)  # a 48-channel (Wan 2.2) decoder
    torch.save(state, tmp_path / "wan22.pth")
    with pytest.raises(ValueError, match=r"wrong shape \(1\): decoder\.1\.weight \(256, 48, 3, 3\)"):
        TAEHVAutoencoder.from_pretrained(tmp_path / "wan22.pth")


def test_decoder_only_and_bad_latents():
    ae = random_taehv()
    with pytest.raises(NotImplementedError, match="only decodes"):
        ae.encode(torch.zeros(1, 3, 5, 32, 48))
    with pytest.raises(ValueError, match=r"need \[B, 16, f >= 1, h, w\]"):
        ae.decode(torch.zeros(1, 4, 2, 2, 4))
