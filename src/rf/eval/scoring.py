"""Score videos: one row of numbers per video and curves over time, from torchmetrics Metrics and rewards.

Per video, each Metric's forward() gives that video's value (and accumulates, so the same objects serve a
DDP-synced compute later). The numbers of a run's summary are the mean, std and count of the per-video rows,
which for these metrics is what each Metric's compute() returns over the same videos; rows are cached in
OUT/scores/NAME.json, keyed by the scoring settings and the file's size and mtime, so a rerun scores only new or
changed videos.

Optional metrics need local weights: `clip` (a CLIP folder for torchmetrics' CLIPScore) and `videoalign` (a
VideoReward folder or a reward config). A folder that is missing or unreadable skips that metric with a
warning naming it; every other metric still runs.

Toy prompts are scored against the evaluated model's toy world: a wrap world (v2) with rf.eval.toy_metrics,
each span of the prompt schedule with its own prompt (VideoScorer.toy_v2; the reference rows of
rf.eval.references go through the same code), a bounce world (v1) with rf.eval.toy_truth. A generated video is
scored from its lossless frames (OUT/frames/NAME.pt, see rf.evaluate.keep_frames) when they are there, not from
the yuv420p mp4, whose half-resolution chroma smears 32-px toy objects.
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

from rf.eval import toy_metrics
from rf.eval.layout import VIDEO_DIR, VideoEntry
from rf.eval.toy_truth import toy_truth
from rf.eval.weights import build_clip, build_videoalign
from rf.metrics import (
    DynamicDegree,
    MotionSmoothness,
    TemporalFlicker,
    drift,
    dynamics,
    first_frame_copying,
)
from rf.metrics.drift import drift_segments
from rf.toy.world import ToyWorld
from rf.utils.files import atomic_write
from rf.utils.instantiate import instantiate, pick_device, to_dict
from rf.utils.video import read_video

FRAMES_DIR = "frames"  # OUT/frames/NAME.pt: the generated frames, lossless (uint8 [3, T, H, W]), when kept


@dataclass(frozen=True)
class Column:
    label: str
    higher_is_better: bool | None  # None: neither (a property, not a quality), or best near `target`
    description: str
    target: float | None = None  # best near this value (e.g. a ratio to the asked value): neither higher nor lower


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
    # Toy world. v1 (bouncing) worlds: rf.eval.toy_truth; v2 (wrapping) worlds: rf.eval.toy_metrics, per prompt span
    # (see VideoScorer.toy_v2). Three names are shared; the run's info says which scorer made them (toy_metrics).
    "toy_speed_ratio": Column(
        "toy: speed ratio",
        None,
        "mean (v . d) / asked speed: 1 as asked, 0 frozen, -1 the opposite way; best near 1",
        target=1.0,
    ),
    "toy_cross_speed": Column("toy: cross speed (px/frame)", False, "mean speed across the asked axis"),
    "toy_motion_error": Column(
        "toy: motion error (px/frame)",
        False,
        "median |measured - asked velocity| (v1 worlds: toy_truth's optical flow, bounces allowed)",
    ),
    "toy_direction_agreement": Column(
        "toy: direction agreement",
        True,
        "fraction of frame pairs moving the asked way at over half the asked speed (v1: a quarter, bounces allowed)",
    ),
    "toy_persistence": Column(
        "toy: object persistence",
        True,
        "fraction of frames where each object is one component of plausible area (v1: (object, segment) pairs "
        "where it is present)",
    ),
    "toy_area_ratio": Column(
        "toy: area ratio",
        None,
        "median object area / the area the world draws; best near 1 (rendered objects span 0.6-1.4)",
        target=1.0,
    ),
    "toy_shape_accuracy": Column(
        "toy: shape accuracy", True, "fraction of frames whose object mask best matches a template of the asked shape"
    ),
    "toy_background_accuracy": Column(
        "toy: background accuracy", True, "fraction of frames whose background is nearest a texture of the asked type"
    ),
    "toy_background_flow": Column(
        "toy: background flow (px/frame)",
        False,
        "optical flow of the background with the objects painted out (the world's backgrounds are static: 0)",
    ),
    "toy_scene_change": Column(
        "toy: first-chunk scene change",
        None,
        "distance of the first chunk's frames to the later ones over that of later pairs of equal lag; best near 1 "
        "(rendered clips 0.93-1.2; another scene in the first chunk > 1.4)",
        target=1.0,
    ),
    "toy_adherence": Column("toy: adherence after switch", True, "new prompt's objects in, old ones out (v1)"),
}
TOY_V2_COLUMNS = tuple(f"toy_{m}" for m in toy_metrics.METRICS)  # what a wrap (v2) world's videos are scored on


def toy_world(cfg: DictConfig, height: int, width: int, fps: float) -> ToyWorld:
    """The evaluated model's toy world (cfg.model.world; the default, v2, when the model names none) drawn at the
    videos' size and frame rate."""
    return ToyWorld(height=height, width=width, fps=round(fps), **dict(cfg.model.get("world") or {}))


def toy_code_version() -> str:
    """A hash of the toy metrics' source (rf/eval/toy_*.py) and the world's (rf/toy/*.py): cached v2 scores and
    references are redone when either changes."""
    here = Path(toy_metrics.__file__).parent
    files = sorted(here.glob("toy_*.py")) + sorted((here.parent / "toy").glob("*.py"))
    return hashlib.sha1(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]


def min_frames(metrics: DictConfig) -> int:
    """Frames a video needs for every metric: copying needs a second segment, smoothness three frames."""
    return max(3, (metrics.copying.first_segment_frames or metrics.copying.segment_frames) + 1)


class VideoScorer:
    """Every metric of one evaluation, for videos of one frame rate.

    Toy prompts (`toy`) are scored against the toy world of the evaluated model (`world`; by default
    cfg.model.world at cfg.model.video's size): a wrap world (v2) with rf.eval.toy_metrics (`toy_v2`), a bounce
    world (v1) with rf.eval.toy_truth."""

    def __init__(self, cfg: DictConfig, fps: float, toy: bool, world: ToyWorld | None = None):
        m = cfg.metrics
        self.cfg, self.fps, self.toy = cfg, fps, toy
        if toy and world is None:
            world = toy_world(cfg, cfg.model.video.height, cfg.model.video.width, fps)
        self.world = world if toy and world.rules.edges == "wrap" else None  # None: toy_truth (v1) or no toy
        self.toy_scorer = ("v2" if self.world is not None else "v1") if toy else None
        self.chunk_frames = int(cfg.sink.chunk_frames)  # video frames: the toy autoencoder keeps frames 1:1
        self.grace = round(cfg.toy.switch_grace_seconds * fps)
        self.device = pick_device(cfg.device)
        self.segment_frames = max(1, round(m.segment_seconds * fps))
        self.copy_args = dict(
            segment_frames=m.copying.segment_frames, first_segment_frames=m.copying.first_segment_frames
        )
        self.quality = instantiate(m.quality)  # drift's per-frame scorer
        if isinstance(self.quality, torch.nn.Module):
            self.quality.to(self.device)
        # Copying and drift are scored through their functions (score): their per-segment curves come with them.
        self.metrics = torch.nn.ModuleDict({
            "dynamics": DynamicDegree(fps=fps, flow_side=m.flow_side),
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
        world = self.world
        toy = (
            {"rules": repr(world.rules), "size": [world.height, world.width], "chunk_frames": self.chunk_frames,
             "code": toy_code_version()}
            if world is not None
            else None
        )  # fmt: skip
        return {k: to_dict(self.cfg[k]) if isinstance(self.cfg[k], DictConfig) else self.cfg[k] for k in keys} | {
            "toy_truth": self.toy,
            "toy_v2": toy,
            "fps": self.fps,
        }

    @torch.no_grad()
    def score(self, video: torch.Tensor, entry: VideoEntry) -> tuple[dict[str, float], dict[str, dict]]:
        """video [3, T, H, W] in [-1, 1] -> (row {column: value}, curves {name: {t: [s], y: [...]}})."""
        v = video[None].to(self.device)  # [1, 3, T, H, W]
        frames = v.shape[2]
        dyn = self.metrics["dynamics"](v)
        copying = first_frame_copying(v, **self.copy_args)  # copying [1], curve [1, S]
        quality = drift(v, self.quality, fps=self.fps, seconds_per_segment=self.cfg.metrics.segment_seconds)
        row = {
            "dynamic": dyn["dynamic_degree"],
            "mean_flow": dyn["mean_flow"],
            "copying": copying["copying"][0],
            "drift": quality["drift"][0],
            "quality": quality["quality"][0],
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

        curves = self._curves(v, copying["curve"][0], quality["segment_scores"][0])
        if self.world is not None:
            row |= self.toy_v2(video, entry)
        elif self.toy:
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

    def toy_spans(self, entry: VideoEntry, frames: int) -> list[tuple[int, int, str]]:
        """The prompt spans of a video, [(start, stop, prompt)]: each span of its schedule, those after a switch
        starting `toy.switch_grace_seconds` late; spans under 2 frames are left out."""
        switches = entry.switches(self.fps)
        spans = []
        for k, (start, prompt) in enumerate(switches):
            stop = min(frames, switches[k + 1][0]) if k + 1 < len(switches) else frames
            start = min(stop, start + (self.grace if k else 0))
            if stop - start >= 2:
                spans.append((start, stop, prompt))
        return spans

    def toy_v2(self, video: torch.Tensor, entry: VideoEntry) -> dict[str, float]:
        """rf.eval.toy_metrics.score of each prompt span with its own prompt (toy_spans: a span after a switch is
        scored as a clip of its own, its first chunk the one after the grace), averaged over the spans weighted
        by their frames, NaN left out -> {toy_<metric>: value}. Reference clips go through here too."""
        video = video.detach().float().cpu()
        parts = [
            (b - a, toy_metrics.score(video[:, a:b], prompt, self.world, self.chunk_frames))
            for a, b, prompt in self.toy_spans(entry, video.shape[1])
        ]
        out = {}
        for metric in toy_metrics.METRICS:
            values = [(n, s[metric]) for n, s in parts if not math.isnan(s[metric])]
            total = sum(n for n, _ in values)
            out[f"toy_{metric}"] = sum(n * x for n, x in values) / total if total else math.nan
        return out

    def _mids(self, segments: list[tuple[int, int]]) -> list[float]:
        return [(a + b) / 2 / self.fps for a, b in segments]

    def _curves(self, v: torch.Tensor, copying: torch.Tensor, quality: torch.Tensor) -> dict[str, dict]:
        """Per-segment curves over time: copying [S] and segment quality [S'] as scored for the row, and the
        mean flow of each metric segment."""
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
            "copying": {"t": self._mids(copy_segments), "y": copying.tolist()},
            "quality": {"t": self._mids(quality_segments), "y": quality.tolist()},
            "flow": {"t": self._mids(flow_segments), "y": flow},
        }


def frames_file(folder: Path, file: str) -> Path | None:
    """Where the lossless copy of a generated video lives: OUT/frames/NAME.pt beside OUT/videos/NAME.mp4 (None
    for a videos folder that is not an evaluation's)."""
    return folder.parent / FRAMES_DIR / (Path(file).stem + ".pt") if folder.name == VIDEO_DIR else None


def load_frames(path: Path | None, entry: VideoEntry) -> torch.Tensor | None:
    """A video's lossless frames (uint8 [3, T, H, W]) as [3, T, H, W] in [-1, 1] (read_video's mapping), or None
    when there is none or it does not match the mp4's length and size (then the mp4 is scored)."""
    if path is None or not path.is_file():
        return None
    frames = torch.load(path, map_location="cpu", weights_only=True)
    want = (entry.frames, entry.height, entry.width)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or (None not in want and tuple(frames.shape[1:]) != want):
        return None
    return frames.float() / 127.5 - 1


def score_videos(
    scorer: VideoScorer, entries: list[VideoEntry], folder: Path, out: Path
) -> tuple[list[dict], dict[str, dict]]:
    """Score every entry (cached in out/scores/) -> (rows with the entry's fields first, {file: curves}).

    A generated video is scored from its lossless frames (frames_file, kept while generating) when they are
    there, else from the mp4 read back (yuv420p: chroma at half resolution, which smears 32-px toy objects);
    each row's `scored_from` says which ("frames" or "mp4")."""
    cache = out / "scores"
    cache.mkdir(parents=True, exist_ok=True)
    settings = json.dumps(scorer.settings(), sort_keys=True, default=str)
    rows, curves = [], {}
    for e in tqdm(entries, unit="video", desc="scoring"):
        path = folder / e.file
        stat = path.stat()
        lossless = frames_file(folder, e.file)
        lossless = lossless if lossless is not None and lossless.is_file() else None
        source = f"{lossless.stat().st_size}|{lossless.stat().st_mtime_ns}" if lossless else "mp4"
        key = f"{settings}|{e.schedule}|{e.prompt}|{stat.st_size}|{stat.st_mtime_ns}|{source}"
        key = hashlib.sha1(key.encode()).hexdigest()
        file = cache / (Path(e.file).stem[:100] + f"-{hashlib.sha1(e.file.encode()).hexdigest()[:8]}.json")
        cached = json.loads(file.read_text()) if file.is_file() else None
        if cached is None or cached.get("key") != key:
            video = load_frames(lossless, e)
            scored_from = "mp4" if video is None else "frames"
            if video is None:
                video, _ = read_video(path)
            row, curve = scorer.score(video, e)
            cached = {"key": key, "row": row, "curves": curve, "scored_from": scored_from}
            text = json.dumps(cached)
            atomic_write(file, lambda tmp, text=text: tmp.write_text(text), fsync=False)
        fields = {"file": e.file, "prompt": e.prompt, "seed_index": e.seed_index, "seed": e.seed}
        rows.append(fields | {"scored_from": cached.get("scored_from", "mp4")} | cached["row"])
        curves[e.file] = cached["curves"]
    return rows, curves
