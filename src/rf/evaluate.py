"""python -m rf.evaluate (make eval): generate with fixed seeds, score, and report; or compare evaluations.

    python -m rf.evaluate ckpt=runs/toy_re_dmd/checkpoints/last.ckpt use_ema=true     # toy prompts
    python -m rf.evaluate ckpt=... model=wan_1_3b prompts=prompts/vbench_all_dimension.txt seconds=5
    python -m rf.evaluate videos=DIR prompts=FILE      # score videos made elsewhere (VBench layout)
    python -m rf.evaluate 'runs=[ema_sink,sink,window]'  # several evaluations side by side

A generation run writes OUT/videos/ in VBench's layout (rf.eval.layout) through the same StreamSampler as
rf.generate, resumable video by video (rf.eval.generation); then every video is scored (rf.eval.scoring) and
OUT/results.csv, summary.json and report.md are written (rf.eval.report). OUT defaults to ${paths.runs}/eval/NAME.

Toy prompts are scored against the evaluated model's toy world (cfg.model.world): a wrap world (v2, the default)
with rf.eval.toy_metrics, plus reference rows (rf.eval.references: rendered clips, frozen and random-walk nulls,
mirrored direction, scored by the same code; OUT/references.json); a bounce world (v1) with rf.eval.toy_truth.

mp4 files are yuv420p: chroma at half resolution smears the 32-px toy world's objects (on rendered v2 clips
read back from mp4, area ratios move by ~10% and the static background shows ~0.06 px/frame of flow). With
`lossless` (auto: on for toy prompts) every generated video is also kept as OUT/frames/NAME.pt (uint8
[3, T, H, W], the 8-bit frames the mp4 encodes), and scoring reads those instead of the mp4 (keep_frames).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from rf.eval import generation
from rf.eval.generation import generate_missing
from rf.eval.inputs import check_videos, load_prompts, out_dir, run_folders, run_name, use_toy_truth
from rf.eval.layout import VIDEO_DIR, index_folder, plan_videos
from rf.eval.references import compute_references
from rf.eval.report import contact_sheets, load_run, write_report, write_run
from rf.eval.scoring import VideoScorer, frames_file, min_frames, score_videos, toy_world
from rf.toy.shipped import is_shipped, use_shipped
from rf.toy.text import check_toy_prompts, is_toy_encoder
from rf.utils.cli import entry
from rf.utils.files import atomic_write
from rf.utils.instantiate import pick_device


@contextmanager
def keep_frames(enabled: bool) -> Iterator[None]:
    """While on, every video rf.eval.generation streams to OUT/videos/NAME.mp4 is also saved losslessly as
    OUT/frames/NAME.pt (scoring.frames_file): uint8 [3, T, H, W], the 8-bit frames the encoder is given, written
    before the mp4 takes its final name, so every finished mp4 has its copy. rf.eval.generation writes mp4 only:
    its writer class is wrapped for the duration of the call."""
    if not enabled:
        yield
        return
    base = generation.StreamingVideoWriter

    class KeepingWriter(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.kept: list[torch.Tensor] = []

        def write(self, frames: torch.Tensor) -> None:
            super().write(frames)
            frames = frames[0] if frames.ndim == 5 else frames
            self.kept.append(((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())

        def close(self) -> Path:
            if self.kept:
                file = frames_file(self.path.parent, self.path.name)
                file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(file, lambda tmp: torch.save(torch.cat(self.kept, dim=1), tmp), fsync=False)
                self.kept = []
            return super().close()

    generation.StreamingVideoWriter = KeepingWriter
    try:
        yield
    finally:
        generation.StreamingVideoWriter = base


def compare(cfg: DictConfig, out: Path) -> Path:
    runs = [load_run(folder) for folder in run_folders(cfg)]
    seen: set[str] = set()
    for r in runs:  # two runs of the same name: tell them apart by folder
        r.name = r.folder.name if r.name in seen else r.name
        seen.add(r.name)
    out.mkdir(parents=True, exist_ok=True)
    report = write_report(out, runs, f"Comparison: {', '.join(r.name for r in runs)}", sheets_per_run=2)
    print(f"report: {report}")
    return report


def describe(cfg: DictConfig, entries, fps: float, scorer: VideoScorer) -> dict:
    first = entries[0]
    if cfg.videos:
        source = f"videos={cfg.videos}"
    else:
        source = f"ckpt={cfg.ckpt}" + (" (generator EMA)" if cfg.use_ema else "") if cfg.ckpt else "random weights"
    sink = (
        None
        if cfg.videos
        else f"{cfg.sink.policy}" + (f" (alpha {cfg.sink.alpha})" if cfg.sink.policy == "ema_sink" else "")
    )
    copy = cfg.metrics.copying
    return {
        "source": source,
        "mode": "videos" if cfg.videos else "generate",
        "videos": len(entries),
        "prompts": len({e.prompt for e in entries}),
        "seeds": max(e.seed_index for e in entries) + 1,
        "seconds": first.frames / fps,
        "fps": fps,
        "height": first.height,
        "width": first.width,
        "sink": sink,
        "switch_at": None if cfg.videos else cfg.switch_at,
        "segment_seconds": cfg.metrics.segment_seconds,
        "copy_segment": f"first {copy.first_segment_frames or copy.segment_frames} frames, then "
        f"{copy.segment_frames}-frame segments",
        "quality_scorer": type(scorer.quality).__name__,
        "toy_truth": scorer.toy,
        "toy_metrics": scorer.toy_scorer,  # v2: rf.eval.toy_metrics (wrap world); v1: rf.eval.toy_truth; None
        "toy_world": {"preset": scorer.world.preset, "edges": scorer.world.rules.edges} if scorer.world else None,
    }


@entry("eval")
def main(cfg: DictConfig) -> Path:
    if is_shipped(cfg.ckpt):  # ckpt=shipped: the shipped toy student, checked against its sha256
        cfg.ckpt = str(use_shipped(cfg))
    if cfg.runs and (cfg.ckpt or cfg.videos):
        raise ValueError("runs= compares finished evaluations: give it alone, without ckpt= or videos=")
    if cfg.ckpt and cfg.videos:
        raise ValueError("give ckpt= (generate, then score) or videos= (score those), not both")
    if cfg.ckpt and not Path(cfg.ckpt).exists():
        raise FileNotFoundError(f"ckpt={cfg.ckpt}: no such checkpoint file or folder")
    if not cfg.runs:  # generating and scoring run on it: a device this machine lacks is refused before any work
        pick_device(cfg.device)
    name = run_name(cfg)
    out = out_dir(cfg, name)
    if cfg.runs:
        return compare(cfg, out)

    if cfg.videos:
        folder = Path(cfg.videos)
        entries = index_folder(folder, load_prompts(cfg) if cfg.prompts is not None else None)
        size = None
    else:
        prompts = load_prompts(cfg)
        if cfg.prompts is not None and is_toy_encoder(cfg.model.get("text_encoder_online") or cfg.model.text_encoder):
            check_toy_prompts(prompts, cfg.strict_prompts, f"prompts={cfg.prompts}")
        entries = plan_videos(prompts, cfg.seeds, cfg.seed, cfg.switch_at)
        folder, size = out / VIDEO_DIR, (cfg.model.video.height, cfg.model.video.width)
    toy = use_toy_truth(cfg.toy_truth, entries)
    if not cfg.videos:
        lossless = toy if cfg.lossless == "auto" else bool(cfg.lossless)
        with keep_frames(lossless):
            entries, complete = generate_missing(cfg, out, entries, cfg.max_videos)
        if not complete:
            return out
    fps = check_videos(folder, entries, min_frames(cfg.metrics), size)
    out.mkdir(parents=True, exist_ok=True)
    world = toy_world(cfg, entries[0].height, entries[0].width, fps) if toy else None
    scorer = VideoScorer(cfg, fps, toy, world)
    rows, curves = score_videos(scorer, entries, folder, out)
    references = compute_references(scorer, entries, out, cfg.toy.reference_seeds)
    sheets = contact_sheets(out, entries, folder, cfg.sheets)
    settings = OmegaConf.to_container(cfg, resolve=True)
    info = describe(cfg, entries, fps, scorer) | {"scored_from": dict(Counter(r["scored_from"] for r in rows))}
    run = write_run(out, name, rows, curves, info, scorer.skipped, sheets, settings, references)
    report = write_report(out, [run], f"Evaluation: {name}")
    print(f"results: {out / 'results.csv'} ({len(rows)} videos)")
    print(f"report: {report}")
    return report


if __name__ == "__main__":
    main()
