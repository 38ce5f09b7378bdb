#!/usr/bin/env bash
# The shipped toy student streamed at 4, 3 and 2 denoising steps, scored on the toy world (CPU, about 20 min):
#   bash experiments/bench/steps_toy.sh OUTDIR && python experiments/bench/steps_toy.py OUTDIR
set -euo pipefail
out=${1:?OUTDIR}
mkdir -p "$out"
PY=${PY:-python}
schedules=$($PY experiments/bench/steps_toy.py --schedules)   # NAME:[t,...] per line; set -e stops on a failure
for spec in $schedules; do
  name=${spec%%:*}
  $PY experiments/toy_world/evaluate.py students "$name=src/rf/toy/weights/student.safetensors" --model toy_large \
    --overrides "sampler.shift=3.0 sampler.denoising_steps=${spec#*:}" --seconds 20 --prompts 32 --pair-prompts 0 \
    --seeds 2 --workers "${WORKERS:-2}" --out "$out/$name.json"
done
