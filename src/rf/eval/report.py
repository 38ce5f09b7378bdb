"""An evaluation's results on disk, and the Markdown report of one run or several side by side.

    OUT/results.csv     one row per video: file, prompt, seed index, seed, then every metric
    OUT/curves.json     per video, every metric-over-time curve {t: segment midpoints (s), y}
    OUT/summary.json    per metric mean, std (population) and count of non-NaN videos; the curves averaged over
                        videos; the metrics skipped and why; run information, the resolved config, versions; for a
                        toy-world v2 evaluation the reference rows (rf.eval.references, OUT/references.json)
    OUT/report.md       a results table, metric-over-time plots (OUT/plots/*.png) with captions, contact sheets
                        (OUT/sheets/*.png)

A comparison (`runs=[a, b]`) reads only the runs' summary.json files: one table with a column per run (best
in bold), every curve overlaid, each run's first contact sheets.

Toy-world v2 metrics (rf.eval.toy_metrics, scoring.TOY_V2_COLUMNS) get a table of their own, a row per run and
below them the reference rows (rendered clips, frozen and random-walk nulls, mirrored direction) scored by the
same code on the same prompts and lengths, shown once; the other metrics keep the table with a column per run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from PIL import Image

from rf.eval.layout import VideoEntry
from rf.eval.plots import CURVES, aggregate, plot_curve
from rf.eval.scoring import COLUMNS, TOY_V2_COLUMNS
from rf.utils.video import contact_sheet, read_video

SUMMARY = "summary.json"


def _clean(x):
    """JSON has no NaN: None instead, all the way down."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


def _nan(x):
    """The inverse of _clean for curves read back: None -> NaN."""
    if isinstance(x, dict):
        return {k: _nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan(v) for v in x]
    return math.nan if x is None else x


def summarize(rows: list[dict]) -> dict[str, dict]:
    """{column: {mean, std, count}} over the rows' non-NaN values, for every metric column present."""
    out = {}
    for column in COLUMNS:
        values = [r[column] for r in rows if column in r and r[column] is not None and not math.isnan(r[column])]
        if any(column in r for r in rows):
            mean = sum(values) / len(values) if values else math.nan
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) if values else math.nan
            out[column] = {"mean": _clean(mean), "std": _clean(std), "count": len(values)}
    return out


def versions() -> dict[str, str]:
    names = ("rf", "torch", "torchmetrics", "diffusers", "av")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found | {"python": platform.python_version()}


@dataclass
class Run:
    name: str
    folder: Path
    summary: dict


def write_run(
    out: Path,
    name: str,
    rows: list[dict],
    curves: dict,
    info: dict,
    skipped: dict,
    sheets: list,
    settings: dict,
    references: dict | None = None,
) -> Run:
    """results.csv, curves.json and summary.json of one run (`references`: rf.eval.references.compute_references)."""
    columns = ["file", "prompt", "seed_index", "seed"] + ["scored_from"] * any("scored_from" in r for r in rows)
    columns += [c for c in COLUMNS if any(c in r for r in rows)]
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "curves.json").write_text(json.dumps(_clean(curves), allow_nan=False), encoding="utf-8")
    names = sorted({n for c in curves.values() for n in c})
    summary = {
        "name": name,
        "info": info,
        "metrics": summarize(rows),
        "skipped": skipped,
        "curves": {n: aggregate([c[n] for c in curves.values() if n in c]) for n in names},
        "prompts": sorted({r["prompt"] for r in rows}),
        "sheets": sheets,
        "references": references,
        "settings": settings,
        "versions": versions(),
    }
    text = json.dumps(_clean(summary), indent=1, default=str, allow_nan=False)
    (out / SUMMARY).write_text(text, encoding="utf-8")
    return Run(name, out, summary)


def load_run(folder: Path) -> Run:
    file = folder / SUMMARY
    if not file.is_file():
        raise FileNotFoundError(f"runs: {folder} has no {SUMMARY}; evaluate it first (python -m rf.evaluate name=...)")
    summary = json.loads(file.read_text(encoding="utf-8"))
    summary["curves"] = _nan(summary.get("curves", {}))
    return Run(summary.get("name") or folder.name, folder, summary)


def contact_sheets(out: Path, entries: list[VideoEntry], folder: Path, count: int) -> list[dict]:
    """Contact sheets of the first seed of the first `count` prompts -> [{file, prompt, png (relative)}]."""
    chosen = list({e.prompt: e for e in reversed([e for e in entries if e.seed_index == 0] or entries)}.values())
    chosen = sorted(chosen, key=entries.index)[:count]
    (out / "sheets").mkdir(exist_ok=True)
    sheets = []
    for k, e in enumerate(chosen):
        video, fps = read_video(folder / e.file)  # [3, T, H, W]
        image = Image.fromarray(contact_sheet(video, columns=8, max_frames=16).numpy())
        zoom = max(1, 96 // min(video.shape[-2:]))  # toy frames are 32 px: enlarge so a person can see them
        image = image.resize((image.width * zoom, image.height * zoom), Image.NEAREST)
        png = Path("sheets") / f"{k:03d}.png"
        image.save(out / png)
        seconds = video.shape[1] / fps if fps else math.nan
        sheets.append(
            {"file": e.file, "prompt": e.prompt, "png": str(png), "frames": video.shape[1], "seconds": seconds}
        )
    return sheets


def _cell(stats: dict | None, best: bool, count: bool = True) -> str:
    if not stats or stats["count"] == 0 or stats["mean"] is None:
        return "-"
    mean = f"**{stats['mean']:.4g}**" if best else f"{stats['mean']:.4g}"
    return f"{mean} ± {stats['std']:.2g}" + (f" (n={stats['count']})" if count else "")


def _arrow(column: str) -> str:
    spec = COLUMNS[column]
    if spec.target is not None:
        return f" →{spec.target:g}"
    return {True: " ↑", False: " ↓", None: ""}[spec.higher_is_better]


def _best(column: str, means: list[float | None]) -> float | None:
    """The best of several means (None where a run has none): highest, lowest or nearest the target."""
    spec, valid = COLUMNS[column], [m for m in means if m is not None]
    if len(valid) < 2 or len(set(valid)) < 2:
        return None
    if spec.target is not None:
        return min(valid, key=lambda m: abs(m - spec.target))
    if spec.higher_is_better is None:
        return None
    return max(valid) if spec.higher_is_better else min(valid)


def _toy_v2(run: Run) -> bool:
    """Scored with rf.eval.toy_metrics (a wrap world): its toy columns go to the toy table."""
    return run.summary.get("info", {}).get("toy_metrics") == "v2"


def _table(runs: list[Run]) -> list[str]:
    lines = ["| metric | " + " | ".join(r.name for r in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for column, spec in COLUMNS.items():
        stats = [None if column in TOY_V2_COLUMNS and _toy_v2(r) else r.summary["metrics"].get(column) for r in runs]
        if not any(s and s["count"] for s in stats):
            continue
        means = [s["mean"] if s and s["count"] else None for s in stats]
        best = _best(column, means) if len(runs) > 1 else None
        cells = [_cell(s, m is not None and m == best) for s, m in zip(stats, means, strict=True)]
        lines.append(f"| {spec.label}{_arrow(column)} | " + " | ".join(cells) + " |")
    return lines


def _toy_row(label: str, metrics: dict, columns: list[str], n: int, best: dict) -> str:
    cells = []
    for c in columns:
        stats = metrics.get(c)
        cell = _cell(stats, stats is not None and best.get(c) is not None and stats["mean"] == best[c], count=False)
        if stats and 0 < stats["count"] < n:
            cell += f" (n={stats['count']})"
        cells.append(cell)
    return f"| {label} | {n} | " + " | ".join(cells) + " |"


def _toy_table(runs: list[Run]) -> list[str]:
    """Toy-world v2 metrics: a row per run, then the reference rows (each distinct set once)."""
    toy = [r for r in runs if _toy_v2(r)]
    if not toy:
        return []
    columns = [c for c in TOY_V2_COLUMNS if any(c in r.summary["metrics"] for r in toy)]
    best = {c: _best(c, [(r.summary["metrics"].get(c) or {}).get("mean") for r in toy]) for c in columns}
    header = [COLUMNS[c].label.removeprefix("toy: ") + _arrow(c) for c in columns]
    lines = [
        "## Toy world (v2): does the video show what the prompt asked for?",
        "",
        "Per video, each span of its prompt schedule is scored with its prompt by `rf.eval.toy_metrics` (after a "
        "prompt switch from the grace time on) and the spans averaged by length; mean ± std over videos. "
        "↑ higher is better, ↓ lower, →1 best near 1. *Reference* rows are not models: the same scorer on clips "
        "the world renders for the same prompt schedules and number of frames (rendered clips, as asked; "
        "objects frozen on the first frame; a random walk at the asked speed; every object moving the opposite way).",
        "",
        "| run | videos | " + " | ".join(header) + " |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for r in toy:
        metrics = {c: r.summary["metrics"].get(c) for c in columns}
        lines.append(_toy_row(f"**{r.name}**", metrics, columns, r.summary.get("info", {}).get("videos", 0), best))
    sets: list[tuple[dict, list[str]]] = []
    for r in toy:
        ref = r.summary.get("references")
        if not ref:
            continue
        same = next((names for known, names in sets if known == ref), None)
        if same is None:
            sets.append((ref, [r.name]))
        else:
            same.append(r.name)
    for ref, names in sets:
        whose = f" ({', '.join(names)})" if len(sets) > 1 else ""
        for kind in ref["kinds"].values():
            lines.append(_toy_row(f"*reference{whose}: {kind['label']}*", kind["metrics"], columns, ref["clips"], {}))
    if not sets:
        lines.append(f"| *no reference rows stored* | | {' | ' * (len(columns) - 1)}|")
    lines.append("")
    lines += [f"- {COLUMNS[c].label.removeprefix('toy: ')}{_arrow(c)}: {COLUMNS[c].description}" for c in columns]
    if sets:
        ref = sets[0][0]
        frames = ", ".join(str(f) for f in ref.get("frames", []))
        per = ref.get("per_prompt")
        seeds = "every seed" if per is None else f"seed indices below {per}"
        lines.append(f"- reference clips: {ref['clips']} of each kind ({seeds} of each prompt), {frames} frames, "
                     "like the evaluated videos")  # fmt: skip
    return [*lines, ""]


def _describe(run: Run) -> str:
    i = run.summary.get("info", {})
    seeds = i.get("seeds", "?")
    parts = [
        f"{i.get('videos', '?')} videos ({i.get('prompts', '?')} prompts x {seeds} seed{'' if seeds == 1 else 's'})"
    ]
    if i.get("seconds") is not None:
        parts.append(f"{i['seconds']:.1f} s at {i.get('fps', '?'):g} fps, {i.get('width')}x{i.get('height')}")
    parts.append(f"source: {i.get('source', '?')}")
    if i.get("sink"):
        parts.append(f"cache: {i['sink']}")
    if i.get("switch_at") is not None:
        parts.append(f"prompt switch at {i['switch_at']:g} s")
    toy = {"v2": "toy world v2 (rf.eval.toy_metrics)", "v1": "toy world v1 (rf.eval.toy_truth)"}
    if i.get("toy_metrics") in toy:
        parts.append(f"toy metrics: {toy[i['toy_metrics']]}")
    if i.get("scored_from"):
        parts.append("scored from " + ", ".join(f"{k} ({n})" for k, n in sorted(i["scored_from"].items())))
    return f"- **{run.name}**: " + "; ".join(parts)


def write_report(out: Path, runs: list[Run], title: str, sheets_per_run: int | None = None) -> Path:
    """report.md (and plots/) in `out` for one run or several side by side (each with its first sheets)."""
    lines = [f"# {title}", "", *[_describe(r) for r in runs], ""]
    prompt_sets = {tuple(r.summary.get("prompts", [])) for r in runs}
    if len(prompt_sets) > 1:
        lines += ["> The runs scored different prompts: the comparison is not paired.", ""]
    lines += ["## Results", "", "Mean ± std over videos (n = videos with a value); ↑ higher is better, ↓ lower.", ""]
    lines += [*_table(runs), ""]
    if len({r.summary.get("info", {}).get("toy_metrics") for r in runs} - {None}) > 1:
        lines += ["> The runs' toy columns come from different toy worlds (v1: rf.eval.toy_truth, v2: "
                  "rf.eval.toy_metrics): shared names mean different things; compare within a world.", ""]  # fmt: skip
    for r in runs:
        for column, reason in r.summary.get("skipped", {}).items():
            lines.append(f"- skipped in {r.name}: {COLUMNS[column].label if column in COLUMNS else column} ({reason})")
    lines += ["", *_toy_table(runs)]
    lines += ["", "## Over time", ""]
    info = runs[0].summary.get("info", {})
    fill = {
        "segment": f"{info.get('segment_seconds', 2):g}-s",
        "copy_segment": info.get("copy_segment", "its first frames"),
        "quality": info.get("quality_scorer", "the configured scorer"),
    }
    switch = (
        info.get("switch_at")
        if all(r.summary.get("info", {}).get("switch_at") == info.get("switch_at") for r in runs)
        else None
    )
    figure = 0
    for name, spec in CURVES.items():
        series = [(r.name, r.summary["curves"][name]) for r in runs if name in r.summary.get("curves", {})]
        if not series or plot_curve(series, spec, out / "plots" / f"{name}.png", switch) is None:
            continue
        figure += 1
        n = ", ".join(f"{label}: {max(agg['count'], default=0)} videos" for label, agg in series)
        caption = spec.caption.format(**fill)
        lines += [f"![{spec.title}](plots/{name}.png)", "", f"*Figure {figure}. {spec.title}.* {caption} "
                  f"Lines: mean over videos ({n}); band: ±1 std across videos.", ""]  # fmt: skip
    if any(r.summary.get("sheets") for r in runs):
        lines += ["## Contact sheets", ""]
        for r in runs:
            for s in r.summary.get("sheets", [])[:sheets_per_run]:
                png = os.path.relpath(r.folder / s["png"], out)
                shown = min(s["frames"], 16)
                about = f"seed 0; {shown} of its {s['frames']} frames evenly spaced over {s['seconds']:.1f} s"
                lines += [f'**{r.name}**: "{s["prompt"]}" ({about}, row by row)', "", f"![contact sheet]({png})", ""]
    if len(runs) == 1:
        lines += [
            "## Files",
            "",
            "- `results.csv`: one row per video; `summary.json`: means, std, counts, settings, versions; "
            "`curves.json`: per-video curves",
            "- `videos/`: VBench layout (`{prompt}-{seed index}.mp4`); `manifest.json`, `index.csv`: file -> prompt, "
            "seed, length",
        ]
        if runs[0].summary.get("info", {}).get("scored_from", {}).get("frames"):
            lines.append("- `frames/`: the generated frames, lossless (uint8 `.pt`), scored instead of the yuv420p mp4")
        if runs[0].summary.get("references"):
            lines.append("- `references.json`: the reference clips' rows (per clip and summarized)")
        lines.append("")
    else:
        links = [f"- {r.name}: [{r.folder}]({os.path.relpath(r.folder / 'report.md', out)})" for r in runs]
        lines += ["## Runs", "", *links, ""]
    report = out / "report.md"
    out.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
