"""VideoAlignReward on a tiny random VideoReward folder (tests.fixtures.videoalign_tiny), loaded through the real
path: folder checks, tokenizer + reward tokens, Qwen2-VL, LoRA, checkpoint keys in the released layout."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from transformers import Qwen2VLImageProcessorPil

import rf.rewards.videoalign as va
from rf.rewards import RewardModel
from rf.rewards.videoalign import HEADS, VideoAlignReward, sample_frame_indices
from rf.utils.instantiate import instantiate
from tests.fixtures.videoalign_tiny import BASE_NAME, build_tiny_videoreward

PROMPTS = ["a red ball rolls across a table", "a dog runs on the beach"]
FRAME = (16, 24)  # multiples of the tiny tower's 4 px patch x 2 merge
YAML = Path(__file__).parents[2] / "conf" / "reward" / "videoalign.yaml"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_tiny_videoreward(tmp_path_factory.mktemp("tiny"))


def load(folder, **kwargs) -> VideoAlignReward:
    kwargs = dict(base_path=folder.parent / BASE_NAME, dtype="fp32", frame_size=FRAME, device="cpu") | kwargs
    return VideoAlignReward(folder, **kwargs)


@pytest.fixture(scope="module")
def reward(folder):
    return load(folder)


def videos(b=2, t=4, seed=0) -> torch.Tensor:
    """[B, 3, T, 48, 64] in [-1, 1], smooth enough to survive the resize."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 3, t, 6, 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(t, 48, 64), mode="trilinear")


def test_batch_gives_one_finite_float32_per_sample(reward):
    out = reward(videos(), PROMPTS)
    assert isinstance(reward, RewardModel) and reward.name == "videoalign_MQ"
    assert out.shape == (2,) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_changing_one_video_changes_only_its_score(reward):
    v = videos()
    before = reward(v, PROMPTS)
    v[1] = videos(1, seed=7)[0]
    after = reward(v, PROMPTS)
    assert abs(after[0] - before[0]) < 1e-5
    assert abs(after[1] - before[1]) > 1e-3


def test_pixels_reach_the_model_as_uint8_0_255_then_clip_normalised(reward, monkeypatch):
    """The released reward code sent [-1, 1] * 255; the judge must get 0..255 (then /255 and CLIP mean/std)."""
    seen = {}

    def spy(frames, prompts):
        seen["frames"], seen["inputs"] = frames, inputs(frames, prompts)
        return seen["inputs"]

    inputs = reward._inputs
    monkeypatch.setattr(reward, "_inputs", spy)
    v = torch.zeros(1, 3, 4, 48, 64)
    v[..., :16, :] = -1.0  # black band, white band, mid grey
    v[..., 32:, :] = 1.0
    reward(v, PROMPTS[:1])
    frames = seen["frames"]
    assert frames.dtype == torch.uint8 and frames.shape == (1, 4, 3, *FRAME)
    assert frames.min() == 0 and frames.max() == 255 and (frames == 128).any()
    pixels = seen["inputs"]["pixel_values_videos"]
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])  # CLIP's, from the base's preprocessor_config.json
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
    assert torch.allclose(pixels.min(), (-mean / std).min())  # black, after /255 and normalisation
    assert torch.allclose(pixels.max(), ((1 - mean) / std).max())  # white


def test_video_patches_match_transformers_qwen2vl_preprocessing(reward):
    """A still video (2 equal frames) must patchify exactly like Qwen2-VL's image processor lays out an image
    (which repeats it over the temporal patch): same rescale, CLIP normalisation, patch order, grid."""
    frame = torch.randint(0, 256, (3, *FRAME), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = reward._inputs(frame.expand(1, 2, -1, -1, -1), [""])
    proc = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2)
    ref = proc(images=[frame.permute(1, 2, 0).numpy()], do_resize=False, return_tensors="pt")
    assert torch.equal(ours["video_grid_thw"], ref["image_grid_thw"])
    assert torch.allclose(ours["pixel_values_videos"], ref["pixel_values"].float(), atol=1e-5)
    n_pad = (ours["input_ids"] == reward.video_token_id).sum().item()
    assert n_pad == ref["image_grid_thw"].prod().item() // 4  # one token per 2x2 merged patch


def test_z_score_uses_the_config_mean_and_std(folder, tmp_path):
    v = videos()
    raw = load(folder).raw_scores(v, PROMPTS)  # [B, 3]
    cfg = json.loads((folder / "model_config.json").read_text())["inference_config"]
    z = (raw[:, 1] - cfg["MQ_mean"]) / cfg["MQ_std"]
    assert torch.allclose(load(folder)(v, PROMPTS), z, atol=1e-5)
    moved = tmp_path / "VideoReward"
    shutil.copytree(folder, moved)
    cfg_file = moved / "model_config.json"
    full = json.loads(cfg_file.read_text())
    full["inference_config"] |= {"MQ_mean": 0.0, "MQ_std": 4.0}
    cfg_file.write_text(json.dumps(full))
    assert torch.allclose(load(moved, base_path=folder.parent / BASE_NAME)(v, PROMPTS), raw[:, 1] / 4, atol=1e-5)


def test_head_mix_is_the_weighted_sum_of_z_scored_heads(folder):
    v = videos()
    one = load(folder)
    z = (one.raw_scores(v, PROMPTS) - one.mean) / one.std  # [B, 3] in HEADS order
    assert torch.allclose(one(v, PROMPTS), z[:, HEADS.index("MQ")], atol=1e-5)
    mix = load(folder, heads={"VQ": 0.5, "TA": 2.0})
    assert mix.name == "videoalign_mix"
    assert torch.allclose(mix(v, PROMPTS), 0.5 * z[:, 0] + 2.0 * z[:, 2], atol=1e-5)
    with pytest.raises(ValueError, match="XQ"):
        load(folder, heads={"XQ": 1.0})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_video_scores_nan_and_leaves_the_others_alone(reward, bad):
    v = videos()
    alone = reward(v[:1], PROMPTS[:1])
    v[1, 0, 2, 5, 5] = bad
    out = reward(v, PROMPTS)
    assert torch.isnan(out[1]) and torch.allclose(out[0], alone[0], atol=1e-5)
    assert torch.isnan(reward(v[1:], PROMPTS[1:])).all()


def test_a_one_frame_clip_is_too_short_to_judge(reward):
    assert torch.isnan(reward(videos(t=1), PROMPTS)).all()


def test_lora_is_applied(folder):
    v = videos()
    reward = load(folder)
    with_lora = reward(v, PROMPTS)
    lora_b = [p for n, p in reward.vlm.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)
    for p in lora_b:
        p.data.zero_()
    assert (reward(v, PROMPTS) - with_lora).abs().min() > 1e-4


def test_both_released_checkpoint_layouts_load_the_same_weights(folder, tmp_path):
    full = build_tiny_videoreward(tmp_path, layout="full")
    v = videos()
    from_full, from_lora = load(full), load(folder)
    assert torch.allclose(from_full(v, PROMPTS), from_lora(v, PROMPTS), atol=1e-5)
    saved = torch.load(folder / "checkpoint-1" / "non_lora_state_dict.pth", weights_only=True)
    assert torch.equal(from_lora.rm_head.weight, saved["base_model.model.rm_head.weight"])


def test_output_dim_3_takes_each_tokens_own_head(tmp_path):
    """VideoAlign's diagonal: VQ from head 0 at <|VQ_reward|>, MQ from head 1 at <|MQ_reward|>, ..."""
    reward = load(build_tiny_videoreward(tmp_path, output_dim=3))
    states = []
    reward.rm_head.register_forward_hook(lambda module, args, out: states.append(args[0]))  # [B, 3, D]
    raw = reward.raw_scores(videos(), PROMPTS)
    assert raw.shape == (2, 3)
    assert torch.allclose(raw, torch.einsum("bhd,hd->bh", states[0], reward.rm_head.weight), atol=1e-5)


def test_missing_folder_or_files_fail_early_with_one_line(folder, tmp_path, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("loaded weights before checking the folder")

    monkeypatch.setattr(va.Qwen2VLForConditionalGeneration, "from_pretrained", no_load)
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    broken = tmp_path / "VideoReward"
    shutil.copytree(folder, broken)
    (broken / "model_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="model_config.json") as err:
        load(broken, base_path=folder.parent / BASE_NAME)
    assert str(broken) in str(err.value) and "\n" not in str(err.value)
    shutil.copy(folder / "model_config.json", broken)
    (broken / "checkpoint-1" / "non_lora_state_dict.pth").unlink()
    with pytest.raises(FileNotFoundError, match="non_lora_state_dict.pth"):
        load(broken, base_path=folder.parent / BASE_NAME)
    with pytest.raises(FileNotFoundError, match="base_path"):  # the release names a hub id, not a folder
        VideoAlignReward(folder, dtype="fp32", frame_size=FRAME)


def test_a_prompt_holding_a_reward_token_is_refused(reward):
    with pytest.raises(ValueError, match="reward token"):
        reward(videos(), ["<|MQ_reward|> twice", PROMPTS[1]])


def test_frame_sampling_follows_videoalign():
    assert sample_frame_indices(81, video_fps=16) == torch.linspace(0, 80, 10).round().long().tolist()
    assert sample_frame_indices(4, video_fps=16) == [0, 1, 2, 3]  # at least 4 frames, when there are
    assert sample_frame_indices(3, video_fps=16) == [0, 2]  # an even count
    assert len(sample_frame_indices(81, video_fps=16, num_frames=16)) == 16
    with pytest.raises(ValueError):
        sample_frame_indices(1, video_fps=16)


def test_config_instantiates(folder):
    cfg = OmegaConf.merge(
        {"paths": {"weights": str(folder.parent)}},
        {"reward": OmegaConf.load(YAML)},
        {"reward": {"dtype": "fp32", "frame_size": list(FRAME), "device": "cpu"}},
    )
    assert cfg.reward.head == "MQ" and cfg.reward.dtype == "fp32" and list(cfg.reward.frame_size) == list(FRAME)
    assert OmegaConf.load(YAML).frame_size == [336, 588]
    reward = instantiate(cfg.reward)
    assert np.isfinite(reward(videos(), PROMPTS).numpy()).all()
