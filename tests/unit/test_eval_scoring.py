"""rf.eval.scoring, rf.eval.references and rf.eval.weights: the per-video row and curves (toy world v1 through
toy_truth, v2 through toy_metrics, per prompt span), the reference rows (from the scorer), the score cache and
the lossless frames it prefers, and the metrics that need weights (a tiny random CLIP folder and a tiny
VideoReward, both built here; a missing folder is skipped)."""

import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from tokenizers import pre_tokenizers
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

from rf.eval.layout import VideoEntry
from rf.eval.references import compute_references, reference_video
from rf.eval.scoring import COLUMNS, TOY_V2_COLUMNS, VideoScorer, frames_file, score_videos
from rf.toy.world import ToyWorld
from rf.utils.cli import CONF_DIR
from rf.utils.video import write_video
from tests.fixtures.videoalign_tiny import BASE_NAME, build_tiny_videoreward

WORLD = ToyWorld(height=32, width=32, fps=8, max_objects=1, preset="v1")
V2 = ToyWorld(height=32, width=32, fps=8)  # the default world (model/world=v2)
V1 = "model/world=v1"
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
    scorer = VideoScorer(config(V1), fps=8.0, toy=True)
    assert scorer.toy_scorer == "v1" and scorer.world is None  # a bounce world: toy_truth
    clip = WORLD.sample(3, 24)
    entry = VideoEntry("x-0.mp4", clip.prompt)
    moving, curves = scorer.score(clip.video, entry)
    static, _ = scorer.score(clip.video[:, :1].repeat(1, 24, 1, 1), entry)
    v1 = {"toy_motion_error", "toy_direction_agreement", "toy_persistence", "toy_adherence"}
    assert set(moving) == {c for c in COLUMNS if not c.startswith(("clip", "videoalign", "toy_"))} | v1
    assert static["copying"] == pytest.approx(1) and static["mean_flow"] == 0 and static["dynamic"] == 0
    assert static["flicker"] == pytest.approx(1) and static["drift"] == pytest.approx(0, abs=1e-4)
    assert moving["mean_flow"] > 0.1 and moving["copying"] < 1 and moving["toy_motion_error"] < 0.2
    assert static["toy_direction_agreement"] == 0 and moving["toy_direction_agreement"] > 0.9
    assert set(curves) == {"copying", "quality", "flow", "toy_presence", "toy_motion_error"}
    assert curves["copying"]["y"][0] == pytest.approx(1) and len(curves["copying"]["t"]) == 4  # 24 frames / 6
    assert curves["flow"]["t"] == [0.5, 1.5, 2.5] and all(y > 0 for y in curves["flow"]["y"])


def test_wrap_world_rows_come_from_toy_metrics_span_by_span():
    scorer = VideoScorer(config(), fps=8.0, toy=True)
    assert scorer.toy_scorer == "v2" and scorer.world.rules.edges == "wrap"
    a, b = V2.sample_scene(1, objects=1), V2.sample_scene(2, objects=1)
    clip = V2.render(a, 24).video
    row, curves = scorer.score(clip, VideoEntry("x-0.mp4", a.prompt()))
    assert set(TOY_V2_COLUMNS) <= set(row) and "toy_adherence" not in row and "toy_presence" not in curves
    assert row["toy_speed_ratio"] == pytest.approx(1, abs=0.05) and row["toy_persistence"] > 0.9
    # A prompt switch at 2 s (frame 16): the second span is scored with its own prompt from 1 s (grace) later.
    switched = torch.cat([clip[:, :16], V2.render(b, 16).video], dim=1)
    schedule = [{"at": 0.0, "frame": 0, "prompt": a.prompt()}, {"at": 2.0, "frame": 16, "prompt": b.prompt()}]
    entry = VideoEntry("s-0.mp4", a.prompt(), schedule=schedule)
    assert scorer.toy_spans(entry, 32) == [(0, 16, a.prompt()), (24, 32, b.prompt())]
    row = scorer.toy_v2(switched, entry)
    assert row["toy_speed_ratio"] == pytest.approx(1, abs=0.05) and row["toy_background_accuracy"] == 1
    wrong = scorer.toy_v2(switched, VideoEntry("s-0.mp4", a.prompt()))  # scored as one span of the first prompt
    assert wrong["toy_persistence"] < 0.8


def test_reference_rows_come_from_the_scorer(tmp_path):
    scorer = VideoScorer(config(), fps=8.0, toy=True)
    entries = [
        VideoEntry(f"p{i}-{s}.mp4", V2.sample_scene(i, objects=1).prompt(), s, 100 * i + s, frames=16)
        for i in range(3)
        for s in range(2)
    ]
    refs = compute_references(scorer, entries, tmp_path, per_prompt=1)
    assert (
        refs["clips"] == 3
        and refs["frames"] == [16]
        and list(refs["kinds"]) == ["real", "frozen", "random_walk", "mirrored"]
    )
    speed = {kind: refs["kinds"][kind]["metrics"]["toy_speed_ratio"] for kind in refs["kinds"]}
    assert speed["real"]["mean"] == pytest.approx(1, abs=0.05) and speed["real"]["count"] == 3
    assert speed["frozen"]["mean"] == 0 and speed["mirrored"]["mean"] == pytest.approx(-1, abs=0.05)
    assert abs(speed["random_walk"]["mean"]) < 0.5
    # the row of a real clip is the scorer's row of that clip
    real = scorer.toy_v2(reference_video(scorer, entries[0], "real"), entries[0])
    stored = json.loads((tmp_path / "references.json").read_text())
    assert stored["rows"]["real"][0] == {"file": "p0-0.mp4"} | real
    assert compute_references(scorer, entries, tmp_path, per_prompt=1) == refs  # cached: read back
    assert compute_references(VideoScorer(config(V1), 8.0, toy=True), entries, tmp_path, 1) is None


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
    scorer = VideoScorer(config(V1), 8.0, toy=True)
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


def test_lossless_frames_are_scored_instead_of_the_mp4(tmp_path):
    scorer = VideoScorer(config(), 8.0, toy=True)
    folder = tmp_path / "videos"
    folder.mkdir()
    clip = V2.sample(4, 16)
    write_video(folder / "v-0.mp4", clip.video, fps=8)
    entry = VideoEntry("v-0.mp4", clip.prompt, frames=16, height=32, width=32)
    (mp4,), _ = score_videos(scorer, [entry], folder, tmp_path)
    lossless = frames_file(folder, "v-0.mp4")
    assert lossless == tmp_path / "frames" / "v-0.pt"
    lossless.parent.mkdir()
    torch.save(((clip.video + 1) * 127.5).round().to(torch.uint8), lossless)
    (frames,), _ = score_videos(scorer, [entry], folder, tmp_path)  # the new file changes the cache key
    assert mp4["scored_from"] == "mp4" and frames["scored_from"] == "frames"
    assert frames["toy_background_flow"] < 1e-3 < mp4["toy_background_flow"]  # chroma smear moves the background
