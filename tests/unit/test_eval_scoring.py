"""rf.eval.scoring and rf.eval.weights: the per-video row and curves, the score cache, and the metrics that need
weights (a tiny random CLIP folder and a tiny VideoReward, both built here; a missing folder is skipped)."""

import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from tokenizers import pre_tokenizers
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

from rf.eval.layout import VideoEntry
from rf.eval.scoring import COLUMNS, VideoScorer, score_videos
from rf.rewards.videoalign_tiny import BASE_NAME, build_tiny_videoreward
from rf.toy.world import ToyWorld
from rf.utils.cli import CONF_DIR
from rf.utils.video import write_video

WORLD = ToyWorld(height=32, width=32, fps=8, max_objects=1, preset="v1")
BASE = ["metrics.segment_seconds=1", "metrics.copying.segment_frames=6", "device=cpu"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def config(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("eval", overrides=[*BASE, *overrides])


def tiny_clip(folder):
    """A random CLIP (16-wide, one layer) with a byte-level tokenizer and 32-px image processor, saved as a folder."""
    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    image = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image, tokenizer=CLIPTokenizer(vocab=vocab, merges=[])).save_pretrained(folder)
    tower = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    text = tower | dict(vocab_size=len(vocab), bos_token_id=len(vocab) - 2, eos_token_id=len(vocab) - 1)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=tower | dict(image_size=32, patch_size=8))).save_pretrained(
        folder
    )
    return folder


def test_row_and_curves_of_a_static_and_a_moving_clip():
    scorer = VideoScorer(config(), fps=8.0, toy=True)
    clip = WORLD.sample(3, 24)
    entry = VideoEntry("x-0.mp4", clip.prompt)
    moving, curves = scorer.score(clip.video, entry)
    static, _ = scorer.score(clip.video[:, :1].repeat(1, 24, 1, 1), entry)
    assert set(moving) == {c for c in COLUMNS if not c.startswith(("clip", "videoalign"))}
    assert static["copying"] == pytest.approx(1) and static["mean_flow"] == 0 and static["dynamic"] == 0
    assert static["flicker"] == pytest.approx(1) and static["drift"] == pytest.approx(0, abs=1e-4)
    assert moving["mean_flow"] > 0.1 and moving["copying"] < 1 and moving["toy_motion_error"] < 0.2
    assert static["toy_direction_agreement"] == 0 and moving["toy_direction_agreement"] > 0.9
    assert set(curves) == {"copying", "quality", "flow", "toy_presence", "toy_motion_error"}
    assert curves["copying"]["y"][0] == pytest.approx(1) and len(curves["copying"]["t"]) == 4  # 24 frames / 6
    assert curves["flow"]["t"] == [0.5, 1.5, 2.5] and all(y > 0 for y in curves["flow"]["y"])


def test_clip_score_from_a_local_folder_and_a_missing_one(tmp_path, capsys):
    clip = WORLD.sample(1, 12)
    entry = VideoEntry("x-0.mp4", clip.prompt)
    folder = tiny_clip(tmp_path / "clip")
    row, _ = VideoScorer(config(f"clip={folder}"), 8.0, toy=False).score(clip.video, entry)
    assert math.isfinite(row["clip_score"]) and "toy_persistence" not in row

    missing = tmp_path / "no_clip_here"
    scorer = VideoScorer(config(f"clip={missing}"), 8.0, toy=False)
    err = capsys.readouterr().err
    assert f"clip={missing}" in err and "skipped" in err
    assert scorer.skipped == {"clip_score": f"clip={missing}: no such folder"}
    row, _ = scorer.score(clip.video, entry)
    assert "clip_score" not in row and {"copying", "drift", "dynamic", "motion_reward"} <= set(row)


def test_videoalign_heads_from_a_reward_config(tmp_path, capsys):
    folder = build_tiny_videoreward(tmp_path)
    cfg = config(f"videoalign={{_target_:rf.rewards.videoalign.VideoAlignReward,path:'{folder}',"
                 f"base_path:'{tmp_path / BASE_NAME}',dtype:fp32,frame_size:[16,24],video_fps:8}}")  # fmt: skip
    row, _ = VideoScorer(cfg, 8.0, toy=False).score(WORLD.sample(2, 8).video, VideoEntry("x-0.mp4", "a dog"))
    assert all(math.isfinite(row[k]) for k in ("videoalign_VQ", "videoalign_MQ", "videoalign_TA", "videoalign_reward"))
    scorer = VideoScorer(config(f"videoalign={tmp_path / 'nothing'}"), 8.0, toy=False)
    assert "videoalign_MQ" in scorer.skipped and str(tmp_path / "nothing") in capsys.readouterr().err


def test_scores_are_cached_until_the_video_changes(tmp_path, monkeypatch):
    scorer = VideoScorer(config(), 8.0, toy=True)
    entries = []
    for seed in range(2):
        clip = WORLD.sample(seed, 12)
        write_video(tmp_path / f"v{seed}-0.mp4", clip.video, fps=8)
        entries.append(VideoEntry(f"v{seed}-0.mp4", clip.prompt))
    rows, curves = score_videos(scorer, entries, tmp_path, tmp_path / "out")
    assert [r["file"] for r in rows] == ["v0-0.mp4", "v1-0.mp4"] and set(curves) == {"v0-0.mp4", "v1-0.mp4"}

    scored = []
    real = scorer.score
    monkeypatch.setattr(scorer, "score", lambda video, e: scored.append(e.file) or real(video, e))
    again, _ = score_videos(scorer, entries, tmp_path, tmp_path / "out")
    assert scored == [] and json.dumps(again) == json.dumps(rows)
    write_video(tmp_path / "v1-0.mp4", WORLD.sample(5, 12).video, fps=8)  # replaced: scored again
    score_videos(scorer, entries, tmp_path, tmp_path / "out")
    assert scored == ["v1-0.mp4"]
