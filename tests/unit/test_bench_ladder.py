"""experiments/bench/ladder.py: a ladder climbed in segments (one bench JSON each), chained into one table."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "bench" / "ladder.py"
WAVE = [0.02 * (i % 3) for i in range(14)]  # s: chunk latencies that vary along the stream, the same in every run


def record(offset: float) -> dict:
    """A bench variant whose steady chunks are WAVE + offset seconds."""
    latency = [offset + w for w in WAVE]
    return {"policies": {"ema_sink": {"stream_latency_s": latency, "clip_fps": 30.0, "stream_fps": 29.0}}}


def run(tmp_path: Path, segments: dict[str, dict[str, float]], *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "ladder.yaml").write_text("a: {}\nb: {}\nc: {}\nd: {}\n")  # the rungs' order
    paths = []
    for label, rungs in segments.items():
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps({"device": "test", "variants": {k: record(v) for k, v in rungs.items()}}))
        paths.append(str(path))
    cmd = [sys.executable, str(SCRIPT), *paths, "--variants", str(tmp_path / "ladder.yaml"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True)


def row(out: str, rung: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"| `{rung}` |"))


def test_segments_chain_each_rung_paired_on_its_own_card_and_the_edge_rung_shows_the_card_spread(tmp_path):
    """Two cards: one ran a, b; the other b, c, 4 ms slower in every chunk. b pairs against a on the first card
    (-5 ms exactly), c against b on the second (-2 ms exactly): the 4 ms between cards enters neither, and shows as
    b's spread. d, run nowhere, is not in the table."""
    out = run(tmp_path, {"one": {"a": 0.300, "b": 0.295}, "two": {"b": 0.299, "c": 0.297}}).stdout
    assert "| -5.0 [-5.0, -5.0] (one) |" in row(out, "b")
    assert "spread 4.0" in row(out, "b")
    assert "-2.0 [-2.0, -2.0] (two)" in row(out, "c")
    assert "| `a` |" in out and "`d`" not in out
    assert "+- 0.0" not in row(out, "a")  # the unpaired interval of varying chunks is not zero


def test_a_rung_whose_lower_neighbour_shares_no_segment_is_reported_unpaired(tmp_path):
    out = run(tmp_path, {"one": {"a": 0.300, "b": 0.295}, "two": {"c": 0.290}}).stdout
    assert "not paired (no segment holds b too)" in row(out, "c")


def test_predictions_are_quoted_and_a_rung_outside_the_ladder_is_refused(tmp_path):
    (tmp_path / "predicted.yaml").write_text('b: "about -5 ms"\n')
    out = run(tmp_path, {"one": {"a": 0.3, "b": 0.295}}, "--predicted", str(tmp_path / "predicted.yaml")).stdout
    assert row(out, "b").endswith("| about -5 ms |") and row(out, "a").endswith("| none recorded |")
    refused = run(tmp_path, {"one": {"a": 0.3, "e": 0.2}})
    assert refused.returncode != 0 and "rungs ['e'] are not in" in refused.stderr
