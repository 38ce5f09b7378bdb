#!/usr/bin/env bash
# The shipped toy student streamed under each run of steps_toy.py's RUNS (or the NAMEs given), scored on the toy world
# (CPU, about 7 min a run):
#   bash experiments/bench/steps_toy.sh OUTDIR [NAME ...] && python experiments/bench/steps_toy.py OUTDIR
set -euo pipefail
out=${1:?OUTDIR}
shift
mkdir -p "$out"
PY=${PY:-python}
runs=$($PY experiments/bench/steps_toy.py --runs)   # NAME OVERRIDES... per line; set -e stops on a failure
while read -r name overrides; do
  if [ $# -gt 0 ] && [[ ! " $* " == *" $name "* ]]; then continue; fi
  $PY experiments/toy_world/evaluate.py students "$name=src/rf/toy/weights/student.safetensors" --model toy_large \
    --overrides "sampler.shift=3.0 $overrides" --seconds 20 --prompts 32 --pair-prompts 0 \
    --seeds 2 --workers "${WORKERS:-2}" --out "$out/$name.json"
done <<< "$runs"
