"""experiments/bench/paired.py: the steady-chunk columns the bench README quotes, from a bench JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "bench" / "paired.py"


def load():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import paired
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return paired


@pytest.mark.parametrize(("df", "quantile"), [(1, 12.7062), (11, 2.2010), (30, 2.0423)])
def test_t_quantile_matches_the_tables(df, quantile):
    # Student's t, 97.5%: the printed tables give 4 decimals
    assert load().t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-4)


def test_a_variant_faster_by_a_constant_is_paired_to_exactly_that(tmp_path):
    """Chunk latencies that vary a lot along the stream but differ by 5 ms chunk for chunk: the paired difference is
    -5.0 with a zero-width interval, where the unpaired means' intervals are wide."""
    base = [0.300 + 0.02 * (i % 3) for i in range(14)]  # s

    def record(latency: list[float]) -> dict:
        runs = [{"fps": 30.0, "first_frame_s": 0.15}]
        return {"policies": {"ema_sink": {"stream_latency_s": latency, "clip_runs": runs, "clip_fps": 30.0,
                                          "stream_fps": 29.0}}}  # fmt: skip

    bench = {"device": "test", "variants": {"a": record(base), "b": record([x - 0.005 for x in base])}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    out = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("| b |"))
    assert "-5.0 vs a, 95% CI [-5.0, -5.0]" in row
    assert "+- 0.0" not in row  # the unpaired interval of the varying chunks is not zero


def test_two_calls_are_paired_across_and_their_shared_variant_names_kept_apart(tmp_path):
    """Two bench files: rows of the second follow the first's, a name both have (plain) is labelled with its file,
    and --against pairs a variant of one call with a variant of the other, chunk by chunk."""
    base = [0.150 + 0.01 * (i % 4) for i in range(14)]  # s

    def record(latency: list[float]) -> dict:
        runs = [{"fps": 80.0, "first_frame_s": 0.1}]
        return {"policies": {"ema_sink": {"stream_latency_s": latency, "clip_runs": runs, "clip_fps": 80.0,
                                          "stream_fps": 79.0}}}  # fmt: skip

    paths = []
    for name, shift in (("one", 0.0), ("two", -0.004)):
        bench = {"device": "test", "variants": {"plain": record([0.7] * 14), name: record([x + shift for x in base])}}
        paths.append(tmp_path / f"bench_{name}.json")
        paths[-1].write_text(json.dumps(bench))
    cmd = [sys.executable, str(SCRIPT), *map(str, paths), "--against", "one"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "paired across calls" in out and "| plain (bench_two) |" in out
    row = next(line for line in out.splitlines() if line.startswith("| two |"))
    assert "-4.0 vs one, 95% CI [-4.0, -4.0]" in row


def test_the_clock_the_card_held_is_its_own_column_where_the_bench_recorded_it(tmp_path):
    """rf.fast.card's summary, when a variant's record has one: mean SM clock and the power-capped share; "-" for
    bench files from before it."""
    runs = [{"fps": 40.0, "first_frame_s": 0.14}]
    record = {"stream_latency_s": [0.3] * 8, "clip_runs": runs, "clip_fps": 40.0, "stream_fps": 39.0}
    card = {"samples": 40, "sm_mhz_mean": 1645.4, "power_capped_fraction": 0.975}
    bench = {"device": "test", "variants": {"old": {"policies": {"ema_sink": record}},
                                            "new": {"policies": {"ema_sink": {**record, "card": card}}}}}  # fmt: skip
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    out = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, check=True).stdout
    rows = {line.split(" | ")[0]: line for line in out.splitlines() if line.startswith("| ")}
    assert rows["| new"].endswith("| 1645 (98%) |")
    assert rows["| old"].endswith("| - |")
