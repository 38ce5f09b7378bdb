"""Metric-over-time plots (matplotlib, Agg backend): one line per run, the mean over its videos segment by
segment, with a band of +-1 std across videos, and the prompt switch (if any) as a dashed line.

Per-video curves are {t: segment midpoints in seconds, y: values}; videos of a run are averaged by segment
index (a shorter video simply stops contributing), NaN values (nothing to measure there) left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclass(frozen=True)
class CurveSpec:
    title: str
    ylabel: str
    caption: str  # {n}: videos, {segment}: segment description


CURVES = {
    "copying": CurveSpec(
        "First-frame copying over time",
        "similarity to the first segment (1 = copy)",
        "Each segment's similarity to the video's first segment ({copy_segment}): 1 minus the mean absolute pixel "
        "difference to the nearest frame of the first segment. The first point is 1 by definition; a curve that "
        "stays near 1 means the stream keeps returning to its opening frames.",
    ),
    "quality": CurveSpec(
        "Imaging quality over time",
        "imaging-quality score per segment",
        "Mean per-frame imaging-quality score ({quality}) of each {segment} segment (VBench-Long's split); "
        "drift is the standard deviation of this curve within a video. A falling curve is a degrading stream.",
    ),
    "flow": CurveSpec(
        "Motion over time",
        "mean optical flow (px/frame)",
        "Mean optical-flow magnitude (Lucas-Kanade, input pixels per frame) within each {segment} segment. "
        "A curve falling toward 0 is a stream that freezes.",
    ),
    "toy_presence": CurveSpec(
        "Toy truth: asked objects present",
        "fraction of the prompt's objects present",
        "Fraction of the objects of the prompt in force whose colour is present in at least half of the "
        "frames of each {segment} segment (toy-world colour masks). Object persistence is its mean.",
    ),
    "toy_motion_error": CurveSpec(
        "Toy truth: motion error over time",
        "|measured - asked velocity| (px/frame)",
        "Median over the frame pairs of each {segment} segment of the distance between each object's measured "
        "velocity (optical flow over its colour mask) and the velocity its prompt asked for.",
    ),
}


def aggregate(per_video: list[dict]) -> dict[str, list[float]]:
    """[{t, y}, ...] -> {t, mean, std, count} per segment index (population std; NaN values left out)."""
    length = max((len(c["y"]) for c in per_video), default=0)
    out = {"t": [], "mean": [], "std": [], "count": []}
    for i in range(length):
        values = [c["y"][i] for c in per_video if i < len(c["y"]) and c["y"][i] is not None]
        values = [v for v in values if not math.isnan(v)]
        times = [c["t"][i] for c in per_video if i < len(c["t"])]
        mean = sum(values) / len(values) if values else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) if values else math.nan
        out["t"].append(sorted(times)[len(times) // 2])
        out["mean"].append(mean)
        out["std"].append(std)
        out["count"].append(len(values))
    return out


def plot_curve(
    series: list[tuple[str, dict]], spec: CurveSpec, path: Path, switch_at: float | None = None
) -> Path | None:
    """series [(run label, aggregate(...))] -> a PNG at path; None when no run has a finite value."""
    if not any(any(not math.isnan(m) for m in agg["mean"]) for _, agg in series):
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for k, (label, agg) in enumerate(series):
        colour = f"C{k % 10}"
        t, mean, std = agg["t"], agg["mean"], agg["std"]
        ax.plot(t, mean, marker="o", markersize=3, color=colour, label=label)
        low = [m - s for m, s in zip(mean, std, strict=True)]
        high = [m + s for m, s in zip(mean, std, strict=True)]
        ax.fill_between(t, low, high, color=colour, alpha=0.2, linewidth=0)
    if switch_at is not None:
        ax.axvline(switch_at, color="0.3", linestyle="--", linewidth=1, label=f"prompt switch ({switch_at:g} s)")
    ax.set_title(spec.title)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(spec.ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
