#!/usr/bin/env bash
# One segment of a variants file on one card: its rows FIRST..LAST (in the file's order), through run.sh.
#   [STREAM=10] [MINUTES='[]'] [REPEATS=3] [WARM=8] [SEG_TIMEOUT=500] \
#     bash experiments/bench/segment.sh GPU OUTDIR VARIANTS FIRST LAST [more rf.bench overrides...]
# The whole ladder (conf/variants/ladder.yaml) does not fit one device call, so it runs as segments, each starting at
# the rung the one before ended on, in parallel on a host's cards (one segment a card, its own Inductor cache), and
# experiments/bench/ladder.py chains them. OUTDIR gets run.sh's bench.json and bench.log, and args.txt (the rows
# dropped and the exit status; 124: stopped at SEG_TIMEOUT seconds, bench.json keeps every row finished by then).
set -uo pipefail
gpu=$1 out=$2 file=$3 first=$4 last=$5
shift 5
drop=$(python3 - "$file" "$first" "$last" <<'PY'
import sys, yaml
names = list(yaml.safe_load(open(f"conf/variants/{sys.argv[1]}.yaml")))
i, j = names.index(sys.argv[2]), names.index(sys.argv[3])
print(" ".join(f"~variants.{n}" for k, n in enumerate(names) if not i <= k <= j))
PY
) || exit 1
mkdir -p "$out"
echo "gpu $gpu: variants=$file $first..$last; dropped: $drop" > "$out/args.txt"
# shellcheck disable=SC2086  # $drop: one override a word
PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=$gpu TORCHINDUCTOR_CACHE_DIR=/tmp/ind$gpu timeout -k 10 "${SEG_TIMEOUT:-500}" \
  bash experiments/bench/run.sh "$out" "variants=$file" $drop "stream_seconds=${STREAM:-10}" "minutes=${MINUTES:-[]}" \
  "repeats=${REPEATS:-3}" "warmup_chunks=${WARM:-8}" "$@" > "$out/stdout.txt" 2>&1
echo "gpu $gpu rc=$?" >> "$out/args.txt"
rm -f "$out/stdout.txt"  # run.sh's bench.log holds the same lines
