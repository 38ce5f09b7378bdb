"""Score videos: one row of numbers per video and curves over time, from torchmetrics Metrics and rewards.

Per video, each Metric's forward() gives that video's value (and accumulates, so the same objects serve a
DDP-synced compute later). The numbers of a run's summary are the mean, std and count of the per-video rows,
which for these metrics is what each Metric's compute() returns over the same videos; rows are cached in
OUT/scores/NAME.json, keyed by the scoring settings and the file's size and mtime, so a rerun scores only new or
changed videos.

Optional metrics need local weights: `clip` (a CLIP folder for torchmetrics' CLIPScore) and `videoalign` (a
VideoReward folder or a reward config). A folder that is missing or unreadable skips that metric with a
warning naming it; every other metric still runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from rf.eval.layout import VideoEntry
from rf.eval.toy_truth import toy_truth
from rf.eval.weights import build_clip, build_videoalign
from rf.metrics import (
    Drift,
    DynamicDegree,
    FirstFrameCopying,
    MotionSmoothness,
    TemporalFlicker,
    drift,
    dynamics,
    first_frame_copying,
)
from rf.metrics.drift import drift_segments
from rf.utils.instantiate import instantiate, pick_device, to_dict
from rf.utils.video import read_video


@dataclass(frozen=True)
class Column:
    label: str
    higher_is_better: bool | None  # None: neither (a property, not a quality)
    description: str


COLUMNS = {
    "dynamic": Column("dynamic degree", True, "fraction of videos VBench's rule calls dynamic (our LK flow, not RAFT)"),
    "mean_flow": Column("mean flow (px/frame)", None, "optical-flow magnitude over all pixels and frame pairs"),
    "copying": Column("first-frame copying", False, "similarity of later segments to the first (1 = a copy)"),
    "drift": Column("drift", False, "std over segments of the per-segment imaging-quality score"),
    "quality": Column("imaging quality", True, "mean per-segment imaging-quality score (a proxy unless replaced)"),
    "flicker": Column("temporal flicker", True, "1 - mean |frame change| / 2 (1 = no flicker)"),
    "smoothness": Column("motion smoothness", True, "1 - error of constant-motion interpolation of odd frames"),
    "motion_score": Column("motion score (%diag/frame)", None, "motion reward's raw score"),
    "motion_reward": Column("motion reward (z)", True, "motion reward, z-scored with its calibration"),
    "clip_score": Column("CLIP score", True, "torchmetrics CLIPScore of sampled frames against the prompt"),
    "videoalign_VQ": Column("VideoAlign VQ (z)", True, "visual quality head, z-scored"),
    "videoalign_MQ": Column("VideoAlign MQ (z)", True, "motion quality head, z-scored"),
    "videoalign_TA": Column("VideoAlign TA (z)", True, "text alignment head, z-scored"),
    "videoalign_reward": Column("VideoAlign reward", True, "the configured reward (head or weighted heads)"),
    "toy_motion_error": Column("toy: motion error (px/frame)", False, "|measured - asked velocity|, median"),
    "toy_direction_agreement": Column("toy: direction agreement", True, "pairs moving the asked way"),
    "toy_persistence": Column("toy: object persistence", True, "(object, segment) pairs where it is present"),
    "toy_adherence": Column("toy: adherence after switch", True, "new prompt's objects in, old ones out"),
}


def min_frames(metrics: DictConfig) -> int:
    """Frames a video needs for every metric: copying needs a second segment, smoothness three frames."""
    return max(3, (metrics.copying.first_segment_frames or metrics.copying.segment_frames) + 1)


class VideoScorer:
    """Every metric of one evaluation, for videos of one frame rate."""

    def __init__(self, cfg: DictConfig, fps: float, toy: bool):
        m = cfg.metrics
        self.cfg, self.fps, self.toy = cfg, fps, toy
        self.device = pick_device(cfg.device)
        self.segment_frames = max(1, round(m.segment_seconds * fps))
        self.copy_args = dict(
            segment_frames=m.copying.segment_frames, first_segment_frames=m.copying.first_segment_frames
        )
        self.quality = instantiate(m.quality)
        self.metrics = torch.nn.ModuleDict({
            "dynamics": DynamicDegree(fps=fps, flow_side=m.flow_side),
            "copying": FirstFrameCopying(**self.copy_args),
            "drift": Drift(scorer=self.quality, fps=fps, seconds_per_segment=m.segment_seconds),
            "flicker": TemporalFlicker(static_threshold=m.flicker_static_threshold, flow_side=m.flow_side),
            "smoothness": MotionSmoothness(flow_side=m.flow_side),
        })  # fmt: skip
        self.skipped: dict[str, str] = {}
        self.clip = build_clip(cfg.clip, self.skipped)
        if self.clip is not None:
            self.metrics["clip"] = self.clip
        self.metrics.to(self.device)
        self.motion = instantiate(cfg.motion_reward)
        self.videoalign = build_videoalign(cfg.videoalign, fps, str(self.device), self.skipped)

    def settings(self) -> dict:
        """What the scores depend on (the cache key), besides the video file."""
        keys = ("metrics", "motion_reward", "clip", "videoalign", "toy")
        return {k: to_dict(self.cfg[k]) if isinstance(self.cfg[k], DictConfig) else self.cfg[k] for k in keys} | {
            "toy_truth": self.toy,
            "fps": self.fps,
        }

    @torch.no_grad()
    def score(self, video: torch.Tensor, entry: VideoEntry) -> tuple[dict[str, float], dict[str, dict]]:
        """video [3, T, H, W] in [-1, 1] -> (row {column: value}, curves {name: {t: [s], y: [...]}})."""
        v = video[None].to(self.device)  # [1, 3, T, H, W]
        frames = v.shape[2]
        dyn = self.metrics["dynamics"](v)
        quality = self.metrics["drift"](v)
        row = {
            "dynamic": dyn["dynamic_degree"],
            "mean_flow": dyn["mean_flow"],
            "copying": self.metrics["copying"](v),
            "drift": quality["drift"],
            "quality": quality["quality"],
            "flicker": self.metrics["flicker"](v),
            "smoothness": self.metrics["smoothness"](v),
            "motion_score": self.motion.score(v)[0],
            "motion_reward": self.motion(v, [entry.prompt])[0],
        }
        if self.clip is not None:
            index = torch.linspace(0, frames - 1, min(frames, self.cfg.metrics.clip_frames)).round().long()
            images = ((v[0, :, index].transpose(0, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            row["clip_score"] = self.metrics["clip"](images, [entry.prompt] * len(index))
        if self.videoalign is not None:
            z = (self.videoalign.raw_scores(v, [entry.prompt]) - self.videoalign.mean) / self.videoalign.std  # [1, 3]
            row |= {f"videoalign_{h}": z[0, i] for i, h in enumerate(("VQ", "MQ", "TA"))}
            row["videoalign_reward"] = self.videoalign(v, [entry.prompt])[0]
        row = {k: float(x) for k, x in row.items()}

        curves = self._curves(v)
        if self.toy:
            toy = self.cfg.toy
            grace = round(toy.switch_grace_seconds * self.fps)
            values, toy_curves = toy_truth(
                video, self.fps, entry.switches(self.fps), self.segment_frames, toy.min_area, toy.tolerance, grace
            )
            row |= values
            mids = self._mids(
                [(s, min(frames, s + self.segment_frames)) for s in range(0, frames, self.segment_frames)]
            )
            curves |= {name: {"t": mids, "y": y} for name, y in toy_curves.items()}
        return row, curves

    def _mids(self, segments: list[tuple[int, int]]) -> list[float]:
        return [(a + b) / 2 / self.fps for a, b in segments]

    def _curves(self, v: torch.Tensor) -> dict[str, dict]:
        frames = v.shape[2]
        seg, first = (
            self.copy_args["segment_frames"],
            self.copy_args["first_segment_frames"] or self.copy_args["segment_frames"],
        )
        copy_segments = [(0, min(first, frames))] + [(s, min(frames, s + seg)) for s in range(first, frames, seg)]
        quality_segments = [(s.start, s.stop) for s in drift_segments(frames, self.segment_frames)]
        flow_segments = [(s, min(frames, s + self.segment_frames)) for s in range(0, frames, self.segment_frames)]
        flow = [
            dynamics(v[:, :, a : min(frames, b + 1)], flow_side=self.cfg.metrics.flow_side)["mean_flow"][0].item()
            if min(frames, b + 1) - a >= 2
            else math.nan
            for a, b in flow_segments
        ]
        return {
            "copying": {
                "t": self._mids(copy_segments),
                "y": first_frame_copying(v, **self.copy_args)["curve"][0].tolist(),
            },
            "quality": {
                "t": self._mids(quality_segments),
                "y": drift(v, self.quality, fps=self.fps, seconds_per_segment=self.cfg.metrics.segment_seconds)[
                    "segment_scores"
                ][0].tolist(),
            },
            "flow": {"t": self._mids(flow_segments), "y": flow},
        }


def score_videos(
    scorer: VideoScorer, entries: list[VideoEntry], folder: Path, out: Path
) -> tuple[list[dict], dict[str, dict]]:
    """Score every entry (cached in out/scores/) -> (rows with the entry's fields first, {file: curves})."""
    cache = out / "scores"
    cache.mkdir(parents=True, exist_ok=True)
    settings = json.dumps(scorer.settings(), sort_keys=True, default=str)
    rows, curves = [], {}
    for e in tqdm(entries, unit="video", desc="scoring"):
        path = folder / e.file
        stat = path.stat()
        key = hashlib.sha1(f"{settings}|{e.schedule}|{e.prompt}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
        file = cache / (Path(e.file).stem[:100] + f"-{hashlib.sha1(e.file.encode()).hexdigest()[:8]}.json")
        cached = json.loads(file.read_text()) if file.is_file() else None
        if cached is None or cached.get("key") != key:
            video, _ = read_video(path)
            row, curve = scorer.score(video, e)
            cached = {"key": key, "row": row, "curves": curve}
            tmp = file.with_suffix(".tmp")
            tmp.write_text(json.dumps(cached))
            tmp.replace(file)
        rows.append({"file": e.file, "prompt": e.prompt, "seed_index": e.seed_index, "seed": e.seed} | cached["row"])
        curves[e.file] = cached["curves"]
    return rows, curves
