"""Training curves of the toy chain: reward and Re-DMD weights per iteration, DMD against Re-DMD.

python experiments/toy_re_dmd/plot.py experiments/toy_re_dmd/results
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def series(path: Path, key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            if row.get(key) and row.get("train/iteration"):
                xs.append(float(row["train/iteration"]))
                ys.append(float(row[key]))
    return xs, ys


folder = Path(sys.argv[1])
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for name in ("dmd", "re_dmd"):
    csv_path = folder / f"{name}_metrics.csv"
    for ax, key in zip(axes, ("reward/mean", "train/weight_mean", "sink/drift_from_first_chunk"), strict=True):
        ax.plot(*series(csv_path, key), marker=".", label=name)
        ax.set_title(key)
        ax.set_xlabel("iteration")
axes[0].set_ylabel("z-scored motion reward of the rollouts")
axes[1].set_yscale("log")
axes[1].set_ylabel("mean exp(r / beta) (1 for DMD)")
axes[2].set_ylabel("||S - S0|| / ||S0||, first block")
for ax in axes:
    ax.legend()
    ax.grid(alpha=0.3)
fig.suptitle("Toy chain on one H100: plain DMD vs Re-DMD (motion reward, beta 0.5), EMA-Sink rollouts of 21 frames")
fig.tight_layout()
fig.savefig(folder / "curves.png", dpi=100)
print(folder / "curves.png")
