"""Weak-scaling table from the Throughput callback's RUN/throughput.json of runs at N = 1, 2, ... GPUs.

    python experiments/multi_gpu/scaling.py runs/multi_gpu/scale_n1 runs/multi_gpu/scale_n2 --batch 1 \
        --command "torchrun --nproc-per-node {n} -m rf.train ..." --out experiments/multi_gpu/results/scaling.json

seconds_per_iteration is the mean over the timed iterations (after the warm-up), which hold whole cycles of
`generator_every` iterations (one generator step and generator_every - 1 critic steps), so it is the cost of
the average iteration; samples/s = N x per-GPU batch / seconds_per_iteration; efficiency = samples/s at N over
N x samples/s at 1.
"""

import argparse
import json
import statistics
from pathlib import Path


def row(run: Path, batch: int, command: str) -> dict:
    t = json.loads((run / "throughput.json").read_text())
    timed = t["records"][t["summary"]["skipped_warmup"] :]
    seconds = statistics.mean(r["seconds"] for r in timed)
    n = t["world_size"]
    return {
        "gpus": n,
        "seconds_per_iteration": seconds,
        "samples_per_second": n * batch / seconds,
        "peak_memory_gib": t["summary"].get("peak_memory_gib"),
        "device": t["device"],
        "command": command.format(n=n),
        "timed_iterations": len(timed),
        "generator_steps_timed": sum(r["generator_step"] for r in timed),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--batch", type=int, default=1, help="per-GPU batch (data.batch_size x module.accumulate)")
    ap.add_argument("--command", default="", help="the command, {n} for the GPU count")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = sorted((row(r, args.batch, args.command) for r in args.runs), key=lambda r: r["gpus"])
    one = next((r for r in rows if r["gpus"] == 1), None)
    for r in rows:
        r["efficiency"] = r["samples_per_second"] / (r["gpus"] * one["samples_per_second"]) if one else None
        print(f"N={r['gpus']}: {r['seconds_per_iteration']:.2f} s/it, {r['samples_per_second']:.3f} samples/s, "
              f"peak {r['peak_memory_gib']:.1f} GiB, efficiency {r['efficiency']:.3f}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
