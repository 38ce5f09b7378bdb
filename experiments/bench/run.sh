#!/usr/bin/env bash
# make bench on this GPU, every cache policy; JSON and log to $1 (default experiments/bench/results).
#   bash experiments/bench/run.sh [OUTDIR] [extra rf.bench overrides...]
set -euo pipefail
out=${1:-experiments/bench/results}
shift || true
mkdir -p "$out"
export HF_HUB_OFFLINE=1
# progress bars end in carriage returns, not newlines: split them off so a variant's "variant NAME: N s" line
# (printed after a bar on the same line) survives the filter
python -m rf.bench "out=$out/bench.json" "$@" 2>&1 | tr '\r' '\n' | grep -v -e "chunk/s" -e '^[[:space:]]*$' | tee "$out/bench.log"
