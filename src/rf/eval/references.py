"""Reference rows of a toy-world (v2) evaluation: what the same scorer says about clips whose answer is known.

For the evaluated videos (the first `toy.reference_seeds` seed indices of each prompt), the world renders
clips of the same prompt schedule and number of frames (rf.eval.toy_metrics.reference_videos, each
prompt span of the schedule rendered for that span's frames), and VideoScorer.toy_v2, the code that scores
the model's videos, scores them:

    real         the rendered clips: what a model that does as asked scores (not exactly 1: anti-aliasing, overlaps)
    frozen       the first rendered frame held: a null for motion (speed ratio 0)
    random_walk  each object stepping at its asked speed in random directions: a null for direction
    mirrored     every object moving the opposite way (speed ratio -1)

OUT/references.json keeps the per-clip rows and their summaries ({metric: mean, std, count}, as a run's),
keyed by the scoring settings and the clips asked for, so a rerun computes them again only when those change;
the summaries go into the run's summary.json, so comparisons (runs=[a,b]) show them too.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from rf.eval import toy_metrics
from rf.eval.layout import VideoEntry, seed_for
from rf.eval.scoring import VideoScorer, toy_code_version
from rf.utils.files import atomic_write

REFERENCES = "references.json"
LABELS = {
    "real": "rendered clips (as asked)",
    "frozen": "frozen objects (null)",
    "random_walk": "random walk (null)",
    "mirrored": "mirrored direction",
}


def reference_entries(entries: list[VideoEntry], per_prompt: int | None) -> list[VideoEntry]:
    """The entries that get reference clips: seed indices below `per_prompt` (None: all)."""
    return [e for e in entries if per_prompt is None or e.seed_index < per_prompt]


def drawable(world, prompt: str) -> bool:
    try:
        world.scene_from_prompt(prompt)
    except ValueError:
        return False
    return True


def reference_video(scorer: VideoScorer, entry: VideoEntry, kind: str) -> torch.Tensor:
    """One reference clip [3, entry.frames, H, W] of `kind` for an evaluated video: each span of its prompt
    schedule rendered for that span's frames, the scene from the span's prompt and a layout seed from the video's
    prompt and seed index (not its noise seed: evaluations of the same prompts share their references)."""
    seed = seed_for(0, entry.prompt, entry.seed_index)
    switches = entry.switches(scorer.fps)
    parts = []
    for k, (start, prompt) in enumerate(switches):
        stop = min(entry.frames, switches[k + 1][0]) if k + 1 < len(switches) else entry.frames
        if stop > start:
            videos, _ = toy_metrics.reference_videos(scorer.world, [prompt], [seed], stop - start, kind)
            parts.append(videos[0])
    return torch.cat(parts, dim=1)


def compute_references(
    scorer: VideoScorer, entries: list[VideoEntry], out: Path, per_prompt: int | None
) -> dict | None:
    """Reference rows for the evaluated `entries` (their frames recorded), cached in out/references.json ->
    {clips, per_prompt, frames, kinds: {kind: {label, metrics: {column: mean, std, count}}}}; None when the
    videos are not scored with rf.eval.toy_metrics (no toy prompts, or a v1 world)."""
    from rf.eval.report import summarize  # report imports scoring: imported here, not at the top

    if scorer.world is None:
        return None
    # Only videos whose every prompt the world can draw: the grammar admits more objects than a scene may hold
    # (an over-long prompt, truncated for the model, can name 5), and such a video has no reference clip.
    chosen = [
        e
        for e in reference_entries(entries, per_prompt)
        if all(drawable(scorer.world, p) for _, p in e.switches(scorer.fps))
    ]
    if not chosen:
        return None
    asked = [(e.schedule, e.seed_index, e.prompt, e.frames) for e in chosen]
    settings = json.dumps([scorer.settings(), asked, toy_code_version()], sort_keys=True, default=str)
    key = hashlib.sha1(settings.encode()).hexdigest()
    file = out / REFERENCES
    cached = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
    if cached is not None and cached.get("key") == key:
        return cached["references"]
    kinds, rows = {}, {}
    for kind in toy_metrics.KINDS:
        rows[kind] = [{"file": e.file} | scorer.toy_v2(reference_video(scorer, e, kind), e) for e in chosen]
        kinds[kind] = {"label": LABELS[kind], "metrics": summarize(rows[kind])}
    references = {
        "scorer": "rf.eval.toy_metrics",
        "clips": len(chosen),
        "per_prompt": per_prompt,
        "frames": sorted({e.frames for e in chosen}),
        "kinds": kinds,
    }
    clean = {k: [{c: None if isinstance(x, float) and math.isnan(x) else x for c, x in r.items()} for r in v]
             for k, v in rows.items()}  # fmt: skip
    text = json.dumps({"key": key, "references": references, "rows": clean}, indent=1, allow_nan=False)
    atomic_write(file, lambda tmp: tmp.write_text(text, encoding="utf-8"), fsync=False)
    return references
