#!/usr/bin/env bash
# Full-size Re-DMD iterations on one GPU with random weights (experiment=full_size_random: 1.3B student,
# critic and teacher, 21 latent frames at 480x832, bf16-mixed, activation checkpointing), then the same
# under FSDP2 on one process. Writes throughput JSON and logs to $1 (default experiments/full_size/results).
#   bash experiments/full_size/run.sh [OUTDIR] [ITERATIONS]
set -euo pipefail
out=${1:-experiments/full_size/results}
iterations=${2:-6}
only=${3:-both}   # both | gpu | fsdp2
mkdir -p "$out"
export RF_RUNS=${RF_RUNS:-/tmp/rf_runs} HF_HUB_OFFLINE=1
common=(logger.tensorboard=false ckpt_path=null trainer.enable_progress_bar=false)

if [ "$only" != fsdp2 ]; then
start=$(date +%s)
python -m rf.train experiment=full_size_random "module.max_iterations=$iterations" "${common[@]}" checkpoint_every=100000 \
  2>&1 | tee "$out/train_gpu.log" | grep -E "throughput|error|Error" || true
echo "single GPU: $(( $(date +%s) - start )) s wall, model build and the final 40-GB checkpoint included" | tee -a "$out/train_gpu.log"
cp "$RF_RUNS/full_size_random/throughput.json" "$out/throughput_gpu.json"
ls -l "$RF_RUNS/full_size_random/checkpoints/" | tee -a "$out/train_gpu.log"
rm -rf "$RF_RUNS/full_size_random"
fi
[ "$only" = gpu ] && exit 0

start=$(date +%s)
torchrun --nproc-per-node 1 -m rf.train experiment=full_size_random trainer=fsdp2 name=full_size_fsdp2 \
  "module.max_iterations=$iterations" "${common[@]}" checkpoint_every=null 2>&1 | tee "$out/train_fsdp2.log" | grep -E "throughput|error|Error" || true
echo "FSDP2, 1 process: $(( $(date +%s) - start )) s wall (no checkpoint)" | tee -a "$out/train_fsdp2.log"
cp "$RF_RUNS/full_size_fsdp2/throughput.json" "$out/throughput_fsdp2.json" || true
rm -rf "$RF_RUNS/full_size_fsdp2"
