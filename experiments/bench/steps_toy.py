"""Fewer denoising steps, the approximate path's next lever: what they cost on the toy world, where quality can be
measured (the shipped toy student, rf.eval.toy_metrics), paired against the 4 steps it was distilled for.

    bash experiments/bench/steps_toy.sh OUTDIR        # three evaluate.py runs: 4, 3 and 2 steps (CPU, ~20 min)
    python experiments/bench/steps_toy.py OUTDIR      # the Markdown table, paired against 4 steps
    python experiments/bench/steps_toy.py --schedules # the step schedules (what steps_toy.sh reads)

Each run streams the same prompts from the same noise seeds (experiments/toy_world/evaluate.py students); a
prompt's value is the mean over its seeds, and each difference is the mean over prompts with a 95% percentile
bootstrap interval (evaluate.paired). Reference rows (real clips, a frozen object, a random walk, the mirrored
direction) come from the same scoring code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "toy_world"))
from evaluate import STUDENT_BARS, paired  # noqa: E402  (experiments/toy_world/evaluate.py, a script)

RUNS = {"four": [1000, 750, 500, 250], "three": [1000, 667, 333], "two": [1000, 500]}  # steps_toy.sh streams these
METRICS = ["direction_agreement", "speed_ratio", "motion_error", "persistence_last10s", "background_flow",
           "scene_change"]  # fmt: skip
REFERENCES = ["real", "frozen", "random_walk"]


def per_prompt(run: dict, metric: str, seeds: int) -> list[float]:
    rows = run["per_video"]  # prompt-major: prompt j's seeds are rows j*seeds .. j*seeds+seeds-1
    return [sum(r[metric] for r in rows[j : j + seeds]) / seeds for j in range(0, len(rows), seeds)]


def main() -> None:
    if sys.argv[1] == "--schedules":  # for steps_toy.sh: NAME:[t,...] per line, the Hydra override's value
        print("\n".join(f"{name}:[{','.join(map(str, steps))}]" for name, steps in RUNS.items()))
        return
    out = Path(sys.argv[1])
    results = {name: json.loads((out / f"{name}.json").read_text()) for name in RUNS}
    seeds = results["four"]["seeds"]
    runs = {name: r["runs"][name] for name, r in results.items()}
    bars = {m: f"{op} {v}" for m, op, v in STUDENT_BARS}
    lines = ["| metric (bar) | " + " | ".join(f"{n} steps" for n in RUNS) + " | three - four | two - four | "
             + " | ".join(REFERENCES) + " |", "|---" * (len(RUNS) + 3 + len(REFERENCES)) + "|"]  # fmt: skip
    for m in METRICS:
        cells = [f"{runs[n]['means']['single'][m]:.3f}" for n in RUNS]
        base = per_prompt(runs["four"], m, seeds)
        for n in ("three", "two"):
            d = paired(base, per_prompt(runs[n], m, seeds))
            cells.append(f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
        refs = results["four"]["references"]
        cells += [f"{refs[r]['single'].get(m, float('nan')):.3f}" for r in REFERENCES]
        lines.append(f"| {m} ({bars.get(m, '-')}) | " + " | ".join(cells) + " |")
    met = [f"{sum(b['met'] for b in runs[n]['bars'])}/{len(runs[n]['bars'])}" for n in RUNS]
    lines.append("| student bars met | " + " | ".join(met) + " | | |" + " |" * len(REFERENCES))
    prompts = len(runs["four"]["per_video"]) // seeds
    lines += ["", f"{prompts} held-out single-object prompts x {seeds} seeds, {results['four']['seconds']:.0f}-s "
              f"EMA-Sink streams; steps: " + ", ".join(f"{n} {list(s)}" for n, s in RUNS.items())]  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
