"""rf.eval.layout and rf.eval.inputs: VBench names, seeds, the manifest, matching a videos folder to prompts, and
the checks that refuse videos before anything is scored."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from rf.eval.inputs import check_videos, load_prompts, run_list, run_name, use_toy_truth
from rf.eval.layout import (
    MAX_NAME_BYTES,
    Manifest,
    VideoEntry,
    index_folder,
    plan_videos,
    prompt_from_name,
    safe_name,
    video_name,
)
from rf.utils.video import write_video

PROMPTS = ["a red circle moving fast to the left on a striped background", "A cat, 4K. It's 'ok'?"]


def test_names_follow_vbench_and_read_back():
    for prompt in PROMPTS:
        for i in range(5):
            assert prompt_from_name(video_name(prompt, i)) == (prompt, i)  # VBench: stem minus -<number>
    assert prompt_from_name("plain.mp4") == ("plain", 0)
    assert safe_name("a/b\x00c") == "a_b_c" and safe_name(".hidden") == "_hidden"


def test_long_prompts_are_cut_uniquely_within_the_file_name_limit():
    a, b = "é" * 300 + "one", "é" * 300 + "two"  # two-byte characters: the cut must not split one
    name_a, name_b = video_name(a, 4), video_name(b, 4)
    assert name_a != name_b
    for name in (name_a, name_b):
        stem = name[: -len("-4.mp4")]
        assert len(stem.encode()) <= MAX_NAME_BYTES and len((name + ".partial.mp4").encode()) < 255
        stem.encode().decode()


def test_seeds_are_fixed_per_prompt_and_index_whatever_the_order():
    one = plan_videos(PROMPTS, 3, 0, None)
    other = plan_videos(list(reversed(PROMPTS)), 3, 0, None)
    assert {(e.file, e.seed) for e in one} == {(e.file, e.seed) for e in other}
    assert len({e.seed for e in one}) == 6
    assert {e.seed for e in plan_videos(PROMPTS, 3, 1, None)}.isdisjoint({e.seed for e in one})
    switched = plan_videos(PROMPTS, 1, 0, 2.5)
    assert [s["prompt"] for s in switched[0].schedule] == PROMPTS and switched[1].schedule[1]["prompt"] == PROMPTS[0]
    with pytest.raises(ValueError, match="switch_at"):
        plan_videos(PROMPTS[:1], 1, 0, 2.0)


def test_manifest_round_trip_and_index(tmp_path):
    entries = plan_videos(PROMPTS, 2, 0, None)
    manifest = Manifest(tmp_path, {"seed": 0}, {e.file: e for e in entries})
    manifest.save()
    again = Manifest.load(tmp_path)
    assert again.settings == {"seed": 0} and again.videos == manifest.videos
    assert (tmp_path / "index.csv").read_text().count("\n") == 5  # header + 4 videos
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not an rf evaluation manifest"):
        Manifest.load(tmp_path)


def _folder(tmp_path, names, size=(32, 32), frames=8):
    folder = tmp_path / "videos"
    folder.mkdir(exist_ok=True)
    for name in names:
        write_video(folder / name, torch.zeros(3, frames, *size), fps=8)
    return folder


def test_videos_folder_matches_prompts_by_manifest_or_name(tmp_path):
    folder = _folder(tmp_path, [video_name(PROMPTS[0], 0), video_name(PROMPTS[0], 1), "other-0.mp4"])
    (folder / "x-0.partial.mp4").write_bytes(b"")
    assert [e.file for e in index_folder(folder, None)] == sorted(p.name for p in folder.glob("*-[01].mp4"))
    chosen = index_folder(folder, [PROMPTS[0]])
    assert [(e.prompt, e.seed_index) for e in chosen] == [(PROMPTS[0], 0), (PROMPTS[0], 1)]
    with pytest.raises(ValueError, match=r"2 prompts but .* videos for only 1 of them; none for"):
        index_folder(folder, PROMPTS)
    switch = [{"at": 0.0, "prompt": "other"}, {"at": 1.0, "frame": 8, "prompt": PROMPTS[0]}]
    Manifest(tmp_path, {}, {"other-0.mp4": VideoEntry("other-0.mp4", "other", 0, 7, switch)}).save()  # OUT/manifest
    found = {e.file: e for e in index_folder(folder, None)}
    assert found["other-0.mp4"].seed == 7 and found["other-0.mp4"].switches(8.0) == [(0, "other"), (8, PROMPTS[0])]


def test_check_videos_refuses_a_video_of_another_size_or_too_short(tmp_path):
    folder = _folder(tmp_path, ["a-0.mp4", "b-0.mp4"])
    entries = index_folder(folder, None)
    assert check_videos(folder, entries, 3, None) == 8.0 and entries[0].frames == 8
    with pytest.raises(ValueError, match="needs at least 13|need at least 13"):
        check_videos(folder, entries, 13, None)
    _folder(tmp_path, ["c-0.mp4"], size=(48, 64))
    with pytest.raises(ValueError, match=r"c-0.mp4 is 64x48, the others 32x32"):
        check_videos(folder, index_folder(folder, None), 3, None)
    (folder / "d-0.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="d-0.mp4 is not a readable video"):
        check_videos(folder, index_folder(folder, None), 3, None)


def _cfg(**kw):
    base = dict(prompts=None, toy_prompts=3, model={"name": "toy", "video": {"height": 32, "width": 32, "fps": 8}},
                name=None, runs=None, videos=None, ckpt=None, use_ema=False, sink={"policy": "ema_sink"},
                paths={"prompts": "prompts", "runs": "runs"})  # fmt: skip
    return OmegaConf.create(base | kw)


def test_prompts_toy_default_file_errors_and_duplicates(tmp_path, capsys):
    toy = load_prompts(_cfg())
    assert len(toy) == 3 and use_toy_truth("auto", plan_videos(toy, 1, 0, None))
    with pytest.raises(ValueError, match="give a prompt file"):
        load_prompts(_cfg(model={"name": "wan_1_3b"}))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match=f"prompts={empty} holds no prompts"):
        load_prompts(_cfg(prompts=str(empty)))
    with pytest.raises(FileNotFoundError, match="prompts=/no/file.txt"):
        load_prompts(_cfg(prompts="/no/file.txt"))
    file = tmp_path / "p.txt"
    file.write_text("a dog\na cat\na dog\n")
    assert load_prompts(_cfg(prompts=str(file))) == ["a dog", "a cat"] and "1 duplicate" in capsys.readouterr().out
    assert not use_toy_truth("auto", plan_videos(["a dog"], 1, 0, None))
    with pytest.raises(ValueError, match="not a toy-world prompt"):
        use_toy_truth(True, plan_videos(["a dog"], 1, 0, None))


def test_run_names_and_lists():
    assert run_name(_cfg(ckpt="runs/toy_re_dmd/checkpoints/last.ckpt", use_ema=True)) == "toy_re_dmd-ema_sink-ema"
    assert run_name(_cfg()) == "random-toy-ema_sink"
    assert run_name(_cfg(videos="/x/myrun/videos")) == "myrun"
    assert run_list(_cfg(runs="a, b,c")) == ["a", "b", "c"] and run_list(_cfg(runs=["a", "b"])) == ["a", "b"]
    assert json.dumps(run_name(_cfg(runs=["x/a", "b"]))) == '"compare-a-b"'
