"""The ladder climbed in segments: bench calls that each ran a stretch of consecutive rungs, chained into one table.

    python experiments/bench/ladder.py SEGMENT.json [...] [--variants conf/variants/ladder.yaml]
                                       [--predicted experiments/bench/ladder_predictions.yaml] [--policy ema_sink]

A whole ladder does not fit one device call (a cold first rung takes about 200 s, each rung that changes the decoder
130-210 s), so it runs as segments, in parallel on the cards of one host or in turn: each segment starts at the rung
the one before it ended on (.device_in-style: `run.sh OUT variants=ladder '~variants.X' ...`). Each rung is then
compared with the rung below it where one segment holds both: same card, same prompt and noise, paired chunk by
chunk (paired.py's steady chunks and t-interval). A rung at a segment's edge was measured on two cards: its steady
chunk on each is the card-to-card spread that a comparison across segments would carry, and that the paired one
does not. A rung whose lower neighbour is in no segment of its own is reported unpaired ("not paired").
Predictions (rung -> what its own section predicted, and where) come from a YAML file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from paired import interval


def steady(record: dict, policy: str, skip: int) -> list[float] | None:
    """A variant's steady chunk latencies in ms (its 10-s stream after the first `skip` chunks), None if absent."""
    r = record.get("policies", {}).get(policy)
    return None if r is None else [1e3 * s for s in r["stream_latency_s"][skip:]]


def chain(segments: dict[str, dict], order: list[str], policy: str, skip: int) -> list[dict]:
    """One row a rung (in `order`, the variants file's) that some segment measured: its steady chunk (mean and 95%
    half-width) in every segment that has it, and each paired difference against the rung below it, per segment
    holding both."""
    rows = []
    for i, rung in enumerate(order):
        seen = {label: seg["variants"][rung] for label, seg in segments.items()
                if "policies" in seg["variants"].get(rung, {})}  # fmt: skip
        if not seen:
            continue
        below = next((r for r in reversed(order[:i]) if any(r in s["variants"] for s in segments.values())), None)
        row = {"rung": rung, "below": below, "steady": {}, "paired": {}, "clip_fps": {}, "stream_fps": {}}
        for label, record in seen.items():
            chunks = steady(record, policy, skip)
            row["steady"][label] = interval(chunks)
            row["clip_fps"][label] = record["policies"][policy]["clip_fps"]
            row["stream_fps"][label] = record["policies"][policy]["stream_fps"]
            lower = segments[label]["variants"].get(below, {})
            if below is not None and "policies" in lower:
                base = steady(lower, policy, skip)
                row["paired"][label] = interval([b - a for a, b in zip(base, chunks, strict=True)])
        rows.append(row)
    return rows


def table(rows: list[dict], predicted: dict[str, str]) -> str:
    lines = ["| rung | steady chunk, ms (segment) | clip / stream FPS | paired against the rung below (segment) | "
             "predicted |", "|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        each = "; ".join(f"{m:.1f} +- {h:.1f} ({label})" for label, (m, h) in row["steady"].items())
        if len(row["steady"]) > 1:
            means = [m for m, _ in row["steady"].values()]
            each += f"; spread {max(means) - min(means):.1f}"
        fps = "; ".join(f"{row['clip_fps'][k]:.1f} / {row['stream_fps'][k]:.1f}" for k in row["steady"])
        paired = "; ".join(
            f"{d:+.1f} [{d - h:+.1f}, {d + h:+.1f}] ({label})" for label, (d, h) in row["paired"].items()
        )
        if not paired:
            paired = "-" if row["below"] is None else f"not paired (no segment holds {row['below']} too)"
        lines.append(f"| `{row['rung']}` | {each} | {fps} | {paired} | {predicted.get(row['rung'], 'none recorded')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("segments", nargs="+", help="bench JSONs, each a stretch of the ladder (labelled by file stem)")
    ap.add_argument("--variants", default="conf/variants/ladder.yaml", help="the ladder, in its rungs' order")
    ap.add_argument("--predicted", help="YAML: rung -> its prediction and where it came from")
    ap.add_argument("--policy", default="ema_sink")
    ap.add_argument("--skip", type=int, default=2, help="chunks left out at the stream's start (as paired.py)")
    args = ap.parse_args()
    order = list(yaml.safe_load(Path(args.variants).read_text()))
    segments = {Path(p).stem: json.loads(Path(p).read_text()) for p in args.segments}
    unknown = {v for s in segments.values() for v in s["variants"]} - set(order)
    if unknown:
        raise SystemExit(f"rungs {sorted(unknown)} are not in {args.variants}: pass the variants file they came from")
    predicted = yaml.safe_load(Path(args.predicted).read_text()) if args.predicted else {}
    for label, seg in segments.items():
        print(f"{label}: {seg['device']}, rungs {', '.join(seg['variants'])}")
    print(f"policy {args.policy}, steady chunks from {args.skip} on\n")
    print(table(chain(segments, order, args.policy, args.skip), predicted))


if __name__ == "__main__":
    main()
