"""Variants of one bench call compared chunk by chunk: what the bench README's "a steady chunk" rows quote.

    python experiments/bench/paired.py results/bench_steps.json [MORE.json ...] [--policy ema_sink] [--skip 2]
                                       [--against NAME]

Each variant's 10-s stream is one prompt and one noise, chunk for chunk the same across variants, so a steady chunk's
latency is compared paired by chunk index: the mean over the chunks after the first `skip` (chunk 0 has no cache pass
before it, chunk 1 still fills the window), a 95% t-interval, and each variant's difference from the one before it
(or from --against) with its own paired interval. The clip columns give the median clip FPS and every run's first
frame, the first run included (a variant's first clip can still be compiling). The last column: the card's mean SM
clock through the stream and the share of it at the power cap, where the bench recorded them (rf.fast.card).
"""

import argparse
import json
import math
import statistics
from pathlib import Path


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (p > 0.5), by bisection on the CDF; the CDF by Simpson's rule over the density
    (4,000 intervals on [0, x], |x| < 20: error far below the 3 digits the table prints)."""

    def cdf(x: float) -> float:
        c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
        n, h = 4000, x / 4000
        f = [c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(n + 1)]
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))

    lo, hi = 0.0, 20.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def interval(xs: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval."""
    n = len(xs)
    return statistics.mean(xs), t_quantile(0.975, n - 1) * statistics.stdev(xs) / math.sqrt(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", nargs="+", help="bench JSONs (make bench's out=); rows of a later file follow the earlier")
    ap.add_argument("--policy", default="ema_sink")
    ap.add_argument("--skip", type=int, default=2, help="chunks left out at the stream's start")
    ap.add_argument("--against", help="compare every variant with this one instead of the one before it")
    args = ap.parse_args()
    for path in args.bench:
        print(f"{path}: {json.load(open(path))['device']}, policy {args.policy}, chunks from {args.skip} on")
    if len(args.bench) > 1:
        print("Rows of different files are paired across calls: the same prompt and noise, not the same call.")
    print("| variant | clip FPS (runs) | stream FPS | first frame, runs (s) | a steady chunk (ms) | difference (ms) | "
          "SM MHz in the stream (power-capped) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    rows = {}
    for path in args.bench:
        for name, v in json.load(open(path))["variants"].items():
            r = v.get("policies", {}).get(args.policy)
            if r is None:
                continue
            name = name if name not in rows else f"{name} ({Path(path).stem})"  # plain: in every call
            chunks = [1e3 * s for s in r["stream_latency_s"][args.skip :]]  # ms
            rows[name] = chunks
            mean, half = interval(chunks)
            base = args.against or (list(rows)[-2] if len(rows) > 1 else None)
            diff = "-"
            if base and base != name and base in rows:
                d, h = interval([b - a for a, b in zip(rows[base], chunks, strict=True)])
                diff = f"{d:+.1f} vs {base}, 95% CI [{d - h:+.1f}, {d + h:+.1f}]"
            fps = ", ".join(f"{c['fps']:.2f}" for c in r["clip_runs"])
            first = ", ".join(f"{c['first_frame_s']:.3f}" for c in r["clip_runs"])
            steady = f"{mean:.1f} +- {half:.1f}"
            card = r.get("card", {})  # rf.fast.card's summary (bench JSONs from 2026-11-28 on)
            clock = f"{card['sm_mhz_mean']:.0f} ({card['power_capped_fraction']:.0%})" if card.get("samples") else "-"
            print(f"| {name} | {r['clip_fps']:.1f} ({fps}) | {r['stream_fps']:.1f} | {first} | {steady} | {diff} | "
                  f"{clock} |")  # fmt: skip


if __name__ == "__main__":
    main()
