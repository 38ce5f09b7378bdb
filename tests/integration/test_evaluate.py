"""`python -m rf.evaluate`: generate, score and report (toy world v2: rf.eval.toy_metrics columns scored from
the lossless frames, and reference rows); a killed evaluation resumes without redoing finished videos; existing
videos (toy-world v1 ground truth) are scored with near-zero motion error; two evaluations side by side, the
reference rows shown once; and one clear line for each bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from rf.eval.layout import Manifest, VideoEntry, video_name
from rf.eval.scoring import TOY_V2_COLUMNS
from rf.toy.world import ToyWorld
from rf.utils.video import probe, write_video

PROMPTS = [
    "a red circle moving fast to the left on a striped background",
    "a blue square moving slowly upwards on a dotted background",
    "a yellow triangle and a green circle moving fast to the right on a checkered background",
]
TINY = ["model.transformer.num_layers=1", "model.transformer.ffn_dim=64"]
BLUE = (31, 119, 180)  # matplotlib's first line colour (C0); orange (C1) is the second run's
ORANGE = (255, 127, 14)
WORLD = ToyWorld(height=32, width=32, fps=8, max_objects=2, preset="v1")


def environment(runs) -> dict:
    # One thread: these are tiny tensors, and on a busy 2-core machine two OpenMP threads spend their time
    # waiting on each other (a 20-s toy evaluation took 153 s with 2 threads, 17 s with 1).
    return {**os.environ, "RF_RUNS": str(runs), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run_rf(module: str, *overrides: str, runs, timeout: int = 300) -> subprocess.CompletedProcess:
    """tests.cli.run_rf with one thread (see environment)."""
    command = [sys.executable, "-m", f"rf.{module}", *overrides]
    return subprocess.run(command, capture_output=True, text=True, env=environment(runs), cwd=runs, timeout=timeout)


def pixels(png) -> np.ndarray:
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def has_colour(png, rgb) -> bool:
    return bool((np.abs(pixels(png) - rgb).sum(axis=-1) < 30).sum() > 50)


def read_rows(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def stamp(path) -> tuple[int, int]:
    info = path.stat()
    return info.st_ino, info.st_mtime_ns


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """An evaluation stopped by max_videos=1, then SIGKILLed in the middle of its second video, then rerun."""
    runs = tmp_path_factory.mktemp("runs")
    prompts = runs / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    args = [f"prompts={prompts}", "seeds=1", "seconds=10", "name=student", *TINY]
    videos = runs / "eval" / "student" / "videos"

    stopped = run_rf("evaluate", *args, "max_videos=1", runs=runs)
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    stopped_report = (runs / "eval" / "student" / "report.md").exists()
    first = videos / video_name(PROMPTS[0], 0)
    before = stamp(first)

    proc = subprocess.Popen([sys.executable, "-m", "rf.evaluate", *args], cwd=runs, env=environment(runs),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(videos.glob("*.partial.mp4")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = {"finished": sorted(p.name for p in videos.glob("*.mp4") if ".partial" not in p.name),
              "partial": sorted(p.name for p in videos.glob("*.partial.mp4"))}  # fmt: skip

    start = time.time()
    done = run_rf("evaluate", *args, runs=runs)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(runs=runs, out=runs / "eval" / "student", stopped=stopped, stopped_report=stopped_report,
                killed=killed, done=done, first=first, before=before, start=start)  # fmt: skip


def test_killed_evaluation_resumes_without_redoing_finished_videos(resumed):
    assert "stopped after max_videos=1: 2 videos left" in resumed["stopped"].stdout
    assert not resumed["stopped_report"]  # a stopped generation scores nothing yet
    assert resumed["killed"] == {"finished": [video_name(PROMPTS[0], 0)], "partial": [video_name(PROMPTS[1], 0)[:-4]
                                 + ".partial.mp4"]}  # fmt: skip
    out = resumed["done"].stdout
    assert "resuming: 1 of 3 videos already made" in out and "removing" in out and "made again" in out
    assert "generated 2 videos" in out
    assert stamp(resumed["first"]) == resumed["before"]  # the finished video was not touched
    videos = sorted((resumed["out"] / "videos").iterdir())
    assert [p.name for p in videos] == sorted(video_name(p, 0) for p in PROMPTS)  # no .partial.mp4 left
    for p in videos:
        assert probe(p)["frames"] == 81 and (p == resumed["first"] or p.stat().st_mtime >= resumed["start"])
    manifest = Manifest.load(resumed["out"])
    assert sorted(manifest.videos) == [p.name for p in videos] and {e.frames for e in manifest.videos.values()} == {81}


def test_report_table_plots_and_sheets(resumed):
    out = resumed["out"]
    rows = read_rows(out / "results.csv")
    assert sorted(r["prompt"] for r in rows) == sorted(PROMPTS) and {r["seed_index"] for r in rows} == {"0"}
    assert {"dynamic", "copying", "drift", "flicker", "smoothness", "motion_reward", *TOY_V2_COLUMNS} <= set(rows[0])
    assert "toy_adherence" not in rows[0] and {r["scored_from"] for r in rows} == {"frames"}  # the lossless copies
    assert sorted(p.name for p in (out / "frames").iterdir()) == sorted(video_name(p, 0)[:-4] + ".pt" for p in PROMPTS)
    summary = json.loads((out / "summary.json").read_text())
    assert {"name", "info", "metrics", "skipped", "curves", "settings", "versions", "references"} <= set(summary)
    assert summary["metrics"]["copying"]["count"] == 3 and summary["info"]["videos"] == 3
    assert summary["info"]["seconds"] == pytest.approx(81 / 8) and summary["settings"]["seconds"] == 10
    assert summary["info"]["toy_metrics"] == "v2" and summary["info"]["scored_from"] == {"frames": 3}
    # reference rows: the same scorer on rendered clips of the same prompts and length, stored beside the scores
    refs = summary["references"]
    assert refs["clips"] == 3 and refs["frames"] == [81] and (out / "references.json").is_file()
    speed = {k: refs["kinds"][k]["metrics"]["toy_speed_ratio"]["mean"] for k in refs["kinds"]}
    assert speed["real"] == pytest.approx(1, abs=0.05) and speed["frozen"] == 0 and speed["mirrored"] < -0.9
    report = (out / "report.md").read_text()
    assert "| metric | student |" in report and "| first-frame copying ↓ |" in report
    assert "| toy: object persistence" not in report  # the v2 toy columns have their own table
    assert "| run | videos | speed ratio →1 | cross speed (px/frame) ↓ |" in report and "| **student** | 3 |" in report
    for label in ("rendered clips (as asked)", "frozen objects (null)", "random walk (null)", "mirrored direction"):
        assert report.count(f"| *reference: {label}* | 3 |") == 1
    for name in ("copying", "quality", "flow"):
        png = out / "plots" / f"{name}.png"
        assert f"](plots/{name}.png)" in report and png.stat().st_size > 5000
        assert pixels(png).std() > 5 and has_colour(png, BLUE)  # not blank, and the run's line is drawn
    curves = summary["curves"]["copying"]
    assert curves["mean"][0] == pytest.approx(1.0) and len(curves["t"]) == 7  # 81 frames: 12 + 5 x 12 + 9
    sheet = out / "sheets" / "000.png"
    assert "](sheets/000.png)" in report and pixels(sheet).std() > 5


def truth_videos(folder):
    """Toy-world renders of prompts (ground truth) as mp4, and one that switches prompts at 2 s."""
    folder.mkdir()
    for i, prompt in enumerate(PROMPTS):
        write_video(folder / video_name(prompt, 0), WORLD.render(WORLD.scene_from_prompt(prompt, i), 32).video, 8)
    a, b = (WORLD.scene_from_prompt(p, 7) for p in PROMPTS[:2])
    switched = torch.cat([WORLD.render(a, 16).video, WORLD.render(b, 16).video], dim=1)
    write_video(folder / "switch-0.mp4", switched, 8)
    schedule = [{"at": 0.0, "frame": 0, "prompt": PROMPTS[0]}, {"at": 2.0, "frame": 16, "prompt": PROMPTS[1]}]
    Manifest(folder, {}, {"switch-0.mp4": VideoEntry("switch-0.mp4", PROMPTS[0], 0, None, schedule)}).save()
    return folder


def test_existing_toy_videos_score_near_zero_motion_error_and_skip_a_missing_clip(resumed):
    runs = resumed["runs"]
    folder = truth_videos(runs / "truth_clips")
    missing = runs / "no" / "clip-vit"
    r = run_rf("evaluate", f"videos={folder}", f"clip={missing}", "name=truth", "metrics.segment_seconds=1",
               "metrics.copying.segment_frames=8", "toy.switch_grace_seconds=0.5", "model/world=v1",
               runs=runs)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"warning: clip={missing}: no such folder" in r.stderr
    rows = {row["file"]: row for row in read_rows(runs / "eval" / "truth" / "results.csv")}
    assert len(rows) == 4 and "clip_score" not in rows["switch-0.mp4"]
    for prompt in PROMPTS:
        row = rows[video_name(prompt, 0)]
        assert float(row["toy_motion_error"]) < 0.3 and float(row["toy_direction_agreement"]) > 0.9, row
        assert float(row["toy_persistence"]) == 1.0 and float(row["copying"]) < 1
    assert float(rows["switch-0.mp4"]["toy_adherence"]) == 1.0
    summary = json.loads((runs / "eval" / "truth" / "summary.json").read_text())
    assert summary["info"]["toy_metrics"] == "v1" and summary["references"] is None  # v1: toy_truth, no references
    assert summary["skipped"] == {"clip_score": f"clip={missing}: no such folder"}
    assert summary["metrics"]["drift"]["count"] == 4 and summary["info"]["mode"] == "videos"
    assert f"clip={missing}: no such folder" in (runs / "eval" / "truth" / "report.md").read_text()


def test_two_evaluations_side_by_side(resumed):
    runs = resumed["runs"]
    if not (runs / "eval" / "truth" / "summary.json").is_file():
        pytest.skip("needs the evaluation of the test before")
    r = run_rf("evaluate", "runs=[student,truth]", runs=runs)
    assert r.returncode == 0, r.stderr[-2000:]
    out = runs / "eval" / "compare-student-truth"
    report = (out / "report.md").read_text()
    assert "| metric | student | truth |" in report and "not paired" not in report  # the same prompts
    # student (world v2) in the toy table with the reference rows once; truth (v1, toy_truth) in the main table
    assert "| toy: object persistence ↑ | - | 1 ± 0 (n=4) |" in report and "different toy worlds" in report
    assert "| **student** | 3 |" in report and report.count("| *reference: rendered clips (as asked)* | 3 |") == 1
    for name in ("copying", "flow"):
        png = out / "plots" / f"{name}.png"
        assert has_colour(png, BLUE) and has_colour(png, ORANGE)  # both runs' curves are drawn
    png = out / "plots" / "toy_presence.png"  # a toy_truth (v1) curve: truth's line only
    assert has_colour(png, BLUE) and not has_colour(png, ORANGE)
    assert "](../student/sheets/000.png)" in report and "](../truth/sheets/000.png)" in report


def bad_folder(tmp_path, sizes):
    folder = tmp_path / "clips"
    folder.mkdir()
    for prompt, (h, w) in zip(PROMPTS, sizes, strict=False):
        write_video(folder / video_name(prompt, 0), torch.zeros(3, 16, h, w), 8)
    return folder


@pytest.mark.parametrize(
    "case, needle",
    [
        ("empty prompt file", "holds no prompts"),
        ("more prompts than videos", "holds videos for only 1 of them; none for 'a blue square"),
        ("wrong-size video", "is 64x48, the others 32x32"),
    ],
)
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, case, needle):
    prompts = tmp_path / "prompts.txt"
    if case == "empty prompt file":
        prompts.write_text("\n\n")
        args = [f"prompts={prompts}", *TINY]
    elif case == "more prompts than videos":
        prompts.write_text("\n".join(PROMPTS[:2]))
        args = [f"videos={bad_folder(tmp_path, [(32, 32)])}", f"prompts={prompts}"]
    else:
        args = [f"videos={bad_folder(tmp_path, [(32, 32), (32, 32), (48, 64)])}"]
    r = run_rf("evaluate", *args, runs=tmp_path)
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "eval").exists()
