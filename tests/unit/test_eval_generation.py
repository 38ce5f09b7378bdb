"""rf.eval.generation in-process on a one-block toy model: fixed seeds give the same video again, a video finished
but not yet recorded is adopted (not made again), a stale .partial.mp4 is removed, and a folder made with other
settings is refused before anything is touched."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from rf.eval.generation import StreamGenerator, generate_missing
from rf.eval.layout import MANIFEST, VIDEO_DIR, plan_videos
from rf.utils.cli import CONF_DIR
from rf.utils.video import read_video, write_video

PROMPTS = [
    "a red circle moving fast to the left on a striped background",
    "a blue square moving slowly upwards on a dotted background",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def config(tmp_path, *overrides):
    tiny = ["model.transformer.num_layers=1", "model.transformer.ffn_dim=64", "seconds=1", "device=cpu"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("eval", overrides=[*tiny, f"out={tmp_path}", *overrides])


def test_resume_adopts_finished_videos_and_refuses_other_settings(tmp_path, monkeypatch, capsys):
    cfg = config(tmp_path)
    entries, done = generate_missing(cfg, tmp_path, plan_videos(PROMPTS, 1, 0, None), None)
    folder = tmp_path / VIDEO_DIR
    assert done and [e.frames for e in entries] == [9, 9]  # 1 s at 8 fps, rounded up to 3-frame chunks
    first, second = (folder / e.file for e in entries)
    original = read_video(second)[0]

    # killed after renaming the second video but before recording it, with a stale partial file beside it
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    del manifest["videos"][second.name]
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    write_video(folder / "stale.partial.mp4", torch.zeros(3, 2, 32, 32), fps=8)
    made = []
    monkeypatch.setattr(StreamGenerator, "generate", lambda self, e, path: made.append(e.file))
    stamps = {p.name: p.stat().st_ino for p in (first, second)}
    entries, done = generate_missing(cfg, tmp_path, plan_videos(PROMPTS, 1, 0, None), None)
    assert done and made == [] and not (folder / "stale.partial.mp4").exists()
    assert {p.name: p.stat().st_ino for p in (first, second)} == stamps
    assert len(json.loads((tmp_path / MANIFEST).read_text())["videos"]) == 2 and entries[1].frames == 9
    assert "removing stale.partial.mp4" in capsys.readouterr().out

    with pytest.raises(ValueError, match=r"other settings \(seconds: 1 -> 2\)"):
        generate_missing(config(tmp_path, "seconds=2"), tmp_path, plan_videos(PROMPTS, 1, 0, None), None)
    monkeypatch.undo()

    # the same seed (and, without ckpt=, the same random weights) makes the same video again
    second.unlink()
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    del manifest["videos"][second.name]
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    generate_missing(cfg, tmp_path, plan_videos(PROMPTS, 1, 0, None), None)
    assert torch.equal(read_video(second)[0], original)


def test_a_finished_video_of_another_length_is_not_adopted(tmp_path):
    cfg = config(tmp_path)
    entries = plan_videos(PROMPTS[:1], 1, 0, None)
    (tmp_path / VIDEO_DIR).mkdir()
    write_video(tmp_path / VIDEO_DIR / entries[0].file, torch.zeros(3, 4, 32, 32), fps=8)
    with pytest.raises(ValueError, match="is 4 frames of 32x32, not the 9 frames"):
        generate_missing(cfg, tmp_path, entries, None)


def test_max_videos_stops_and_a_switch_is_recorded_in_frames(tmp_path):
    cfg = config(tmp_path, "seconds=2", "switch_at=1")
    entries, done = generate_missing(cfg, tmp_path, plan_videos(PROMPTS, 1, 0, 1.0), 1)
    assert not done and len(list((tmp_path / VIDEO_DIR).glob("*.mp4"))) == 1
    recorded = json.loads((tmp_path / MANIFEST).read_text())["videos"][entries[0].file]
    assert [(s["at"], s["frame"]) for s in recorded["schedule"]] == [(0.0, 0), (1.0, 9)]  # the chunk at/after 1 s
