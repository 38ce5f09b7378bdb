"""rf.eval.plots and rf.eval.report: averaged curves, plots that are not blank and draw one line per run, the
files of a run, the Markdown of one run and of several side by side, and the toy-world v2 table with its
reference rows."""

import csv
import json
import math

import numpy as np
from PIL import Image

from rf.eval.plots import CURVES, aggregate, plot_curve
from rf.eval.report import Run, load_run, summarize, write_report, write_run

BLUE, ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's C0 and C1


def has_colour(png, rgb, tolerance=30) -> bool:
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return bool((np.abs(pixels - rgb).sum(axis=-1) < tolerance).sum() > 50)


def test_aggregate_by_segment_with_nan_and_unequal_lengths():
    agg = aggregate([{"t": [1, 3, 5], "y": [1.0, 2.0, math.nan]}, {"t": [1, 3], "y": [3.0, 4.0]}])
    assert agg["t"] == [1, 3, 5] and agg["mean"][:2] == [2.0, 3.0] and agg["std"][:2] == [1.0, 1.0]
    assert math.isnan(agg["mean"][2]) and agg["count"] == [2, 2, 0]


def test_plots_are_drawn_one_line_per_run(tmp_path):
    a = aggregate([{"t": [0.5, 1.5, 2.5], "y": [1.0, 0.8, 0.6]}])
    b = aggregate([{"t": [0.5, 1.5, 2.5], "y": [1.0, 0.9, 0.95]}])
    one = plot_curve([("a", a)], CURVES["copying"], tmp_path / "one.png")
    two = plot_curve([("a", a), ("b", b)], CURVES["copying"], tmp_path / "two.png", switch_at=1.0)
    for png in (one, two):
        pixels = np.asarray(Image.open(png).convert("L"))
        assert png.stat().st_size > 5000 and pixels.std() > 5
    assert has_colour(one, BLUE) and not has_colour(one, ORANGE)
    assert has_colour(two, BLUE) and has_colour(two, ORANGE)
    assert plot_curve([("a", aggregate([{"t": [1], "y": [math.nan]}]))], CURVES["flow"], tmp_path / "x.png") is None


def rows(offset=0.0):
    return [
        {"file": "p-0.mp4", "prompt": "p", "seed_index": 0, "seed": 1, "copying": 0.5 + offset, "drift": 1.0},
        {"file": "q-0.mp4", "prompt": "q", "seed_index": 0, "seed": 2, "copying": 0.7 + offset, "drift": math.nan},
    ]


def test_summary_counts_values_and_leaves_nan_out():
    s = summarize(rows())
    assert (
        s["copying"]["count"] == 2 and abs(s["copying"]["mean"] - 0.6) < 1e-9 and abs(s["copying"]["std"] - 0.1) < 1e-9
    )
    assert s["drift"] == {"mean": 1.0, "std": 0.0, "count": 1}


def write(folder, name, offset, prompts_suffix=""):
    folder.mkdir()
    curves = {f"{r['file']}": {"copying": {"t": [0.5, 1.5], "y": [1.0, r["copying"]]}} for r in rows(offset)}
    data = rows(offset)
    for r in data:
        r["prompt"] += prompts_suffix
    info = {"videos": 2, "prompts": 2, "seeds": 1, "seconds": 2.0, "fps": 8.0, "width": 32, "height": 32}
    return write_run(
        folder, name, data, curves, info | {"source": "test"}, {"clip_score": "clip=/x: no such folder"}, [], {}
    )


def test_a_run_and_a_comparison(tmp_path):
    run = write(tmp_path / "a", "a", 0.0)
    with open(tmp_path / "a" / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and table[1]["drift"] == "nan"
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())  # strict JSON: no NaN
    assert {"name", "info", "metrics", "skipped", "curves", "prompts", "settings", "versions"} <= set(summary)
    report = write_report(tmp_path / "a", [run], "Evaluation: a").read_text()
    assert "| first-frame copying ↓ | 0.6 ± 0.1 (n=2) |" in report and "clip=/x: no such folder" in report
    assert "![First-frame copying over time](plots/copying.png)" in report
    assert (tmp_path / "a" / "plots" / "copying.png").stat().st_size > 0

    write(tmp_path / "b", "b", -0.3, prompts_suffix=" again")
    runs = [load_run(tmp_path / "a"), load_run(tmp_path / "b")]
    assert isinstance(runs[0], Run) and runs[1].name == "b"
    report = (
        write_report(tmp_path / "cmp", runs, "Comparison").read_text() if (tmp_path / "cmp").mkdir() is None else ""
    )
    assert "| metric | a | b |" in report and "**0.3** ± 0.1 (n=2)" in report  # lower copying is better
    assert "not paired" in report
    png = tmp_path / "cmp" / "plots" / "copying.png"
    assert has_colour(png, BLUE) and has_colour(png, ORANGE)


def toy_run(folder, name, speed, references):
    """A run scored with toy world v2: toy_metrics columns and stored reference rows."""
    folder.mkdir()
    data = [{"file": f"p{i}-0.mp4", "prompt": f"p{i}", "seed_index": 0, "seed": i, "scored_from": "frames",
             "copying": 0.5, "toy_speed_ratio": speed + 0.1 * i, "toy_persistence": 1.0,
             "toy_area_ratio": math.nan if i else 1.2} for i in range(2)]  # fmt: skip
    info = {"videos": 2, "prompts": 2, "seeds": 1, "source": "test", "toy_metrics": "v2", "scored_from": {"frames": 2}}
    return write_run(folder, name, data, {}, info, {}, [], {}, references)


def test_toy_v2_table_with_reference_rows_once(tmp_path):
    references = {
        "clips": 2,
        "per_prompt": 2,
        "frames": [24],
        "kinds": {
            "real": {"label": "rendered clips (as asked)", "metrics": summarize([{"toy_speed_ratio": 1.0}] * 2)},
            "frozen": {"label": "frozen objects (null)", "metrics": summarize([{"toy_speed_ratio": 0.0}] * 2)},
        },
    }
    a = toy_run(tmp_path / "a", "a", 0.85, references)
    with open(tmp_path / "a" / "results.csv") as f:
        assert list(csv.DictReader(f))[0]["scored_from"] == "frames"
    report = write_report(tmp_path / "a", [a], "Evaluation: a").read_text()
    assert "| run | videos | speed ratio →1 | object persistence ↑ | area ratio →1 |" in report
    assert "| **a** | 2 | 0.9 ± 0.05 | 1 ± 0 | 1.2 ± 0 (n=1) |" in report  # n only where a value is missing
    assert "| *reference: rendered clips (as asked)* | 2 | 1 ± 0 | - | - |" in report
    assert "| *reference: frozen objects (null)* | 2 | 0 ± 0 | - | - |" in report
    assert "toy: speed ratio" not in report and "scored from frames (2)" in report  # not in the main table

    b = toy_run(tmp_path / "b", "b", 1.25, references)
    report = write_report(tmp_path / "cmp", [a, b], "Comparison").read_text()
    assert "| **a** | 2 | **0.9** ± 0.05 |" in report  # 0.9 is nearer 1 than 1.3: best, though lower
    assert report.count("reference: rendered clips") == 1  # the same references: shown once
