"""Two rf training checkpoints side by side: counters, optimiser steps, weights, EMA and reward statistics.

    python experiments/multi_gpu/compare_ckpt.py A/last.ckpt B/last.ckpt [--json out.json]

Used for resume across GPU counts: A the uninterrupted run, B the run saved at one GPU count and resumed at
another. Prints the largest absolute difference of every group of tensors (0 means bit-equal).
"""

import argparse
import json

import torch


def summary(path: str) -> dict:
    c = torch.load(path, map_location="cpu", weights_only=False)
    adam = [float(s["step"]) for o in c["optimizer_states"] for s in o["state"].values() if "step" in s]
    return {"ckpt": c, "loop": c.get("rf_loop", {}), "adam_steps": sorted(set(adam))}


def max_diff(a: dict, b: dict, prefix: str = "") -> float:
    keys = [k for k in a if k.startswith(prefix) and torch.is_tensor(a[k])]
    if set(keys) != {k for k in b if k.startswith(prefix) and torch.is_tensor(b[k])}:
        return float("nan")  # not the same tensors
    return max((a[k].float() - b[k].float()).abs().max().item() for k in keys) if keys else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    a, b = summary(args.a), summary(args.b)
    ca, cb = a["ckpt"], b["ckpt"]
    ema_a, ema_b = ca["callbacks"]["GeneratorEMA"], cb["callbacks"]["GeneratorEMA"]
    reward = ["Reward"] if "Reward" in ca["callbacks"] else []
    out = {
        "loop": [a["loop"], b["loop"]],
        "adam_steps": [a["adam_steps"], b["adam_steps"]],
        "ema_updates": [ema_a["updates"], ema_b["updates"]],
        "generator_max_abs_diff": max_diff(ca["state_dict"], cb["state_dict"], "generator."),
        "critic_max_abs_diff": max_diff(ca["state_dict"], cb["state_dict"], "critic."),
        "ema_max_abs_diff": max_diff(ema_a["shadow"], ema_b["shadow"]),
        "reward_stats": [
            {k: v for k, v in c["callbacks"][r].items() if not torch.is_tensor(v)} for c in (ca, cb) for r in reward
        ],  # fmt: skip
        "generator_scale": max(
            v.float().abs().max().item() for k, v in ca["state_dict"].items() if k.startswith("generator.")
        ),  # fmt: skip
    }
    print(json.dumps(out, indent=1, default=str))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
