#!/usr/bin/env bash
# Issue 15 on one host with 2 GPUs (README.md has the numbers and what each means):
#   scaling  weak scaling at full size (experiment=full_size_random: rf_1_3b_small_teacher with random weights,
#            bf16, activation checkpointing), N = 1 and 2, the same per-GPU batch -> results/scaling.json
#   resume   toy Re-DMD under FSDP2 on real GPUs: saved at N = 2 and resumed at N = 1 (and the other way), the same
#            global batch, against the uninterrupted N = 2 run -> results/resume_*.json
#   kill     SIGKILL of rank 1 mid-run at N = 2: how long the job takes to end, whether last.ckpt reads back,
#            and the same command relaunched continuing from it -> results/kill.log
# Usage: bash experiments/multi_gpu/two_gpus.sh [scaling|resume|kill|all]   (ODE_INIT: the student's start;
# EXTRA: more toy overrides, e.g. trainer.accelerator=cpu for a CPU smoke test)
set -uo pipefail
STAGE=${1:-all}
PY=${PY:-python}
export RF_RUNS=${RF_RUNS:-runs/multi_gpu} NCCL_NVLS_ENABLE=0   # NVLink multicast stays off (KINDS.md)
RES=${RESULTS:-experiments/multi_gpu/results}
ODE_INIT=${ODE_INIT:-runs/toy_world/export/ode_init.safetensors}
mkdir -p "$RES" "$RF_RUNS"
stamp() { echo "[$(date +%T)] $*"; }
run() { local n=$1; shift; torchrun --standalone --nproc-per-node "$n" -m rf.train "$@"; }
QUIET="logger.tensorboard=false trainer.enable_progress_bar=false"
FULL="experiment=full_size_random trainer=fsdp2 checkpoint_every=null $QUIET"   # full_size_random logs no video
TOY="experiment=toy_re_dmd model=toy_large trainer=fsdp2 $QUIET callbacks.video_log=null checkpoint_every=5 callbacks.generator_ema.start_iteration=2"
TOY="$TOY module.teacher_ckpt=src/rf/toy/weights/teacher.safetensors module.student_ckpt=$ODE_INIT ${EXTRA:-}"
GLOBAL=${GLOBAL:-8}   # toy global batch: data.batch_size = GLOBAL / N

if [[ $STAGE == scaling || $STAGE == all ]]; then
  for n in 1 2; do
    stamp "scaling N=$n"
    timeout 300 bash -c "$(declare -f run); run $n $FULL name=scale_n$n module.max_iterations=11" > "$RES/scale_n$n.log" 2>&1
    echo "rc $?"; grep "throughput:" "$RES/scale_n$n.log"
  done
  $PY experiments/multi_gpu/scaling.py "$RF_RUNS"/scale_n1 "$RF_RUNS"/scale_n2 --batch 1 --out "$RES/scaling.json" \
      --command "torchrun --nproc-per-node {n} -m rf.train $FULL name=scale_n{n} module.max_iterations=11"
fi
if [[ $STAGE == resume || $STAGE == all ]]; then
  stamp "resume: uninterrupted N=2 to 10, N=2 -> N=1 at 5, N=1 -> N=2 at 5"
  run 2 $TOY name=straight data.batch_size=$((GLOBAL / 2)) module.max_iterations=10 > "$RES/resume_straight.log" 2>&1
  run 2 $TOY name=two_one data.batch_size=$((GLOBAL / 2)) module.max_iterations=5 > "$RES/resume_two_one.log" 2>&1
  run 1 $TOY name=two_one data.batch_size=$GLOBAL module.max_iterations=10 >> "$RES/resume_two_one.log" 2>&1
  run 1 $TOY name=one_two data.batch_size=$GLOBAL module.max_iterations=5 > "$RES/resume_one_two.log" 2>&1
  run 2 $TOY name=one_two data.batch_size=$((GLOBAL / 2)) module.max_iterations=10 >> "$RES/resume_one_two.log" 2>&1
  grep -h "resuming from" "$RES"/resume_*.log
  for b in two_one one_two; do
    $PY experiments/multi_gpu/compare_ckpt.py "$RF_RUNS/straight/checkpoints/last.ckpt" \
        "$RF_RUNS/$b/checkpoints/last.ckpt" --json "$RES/resume_$b.json"
  done
fi
if [[ $STAGE == kill || $STAGE == all ]]; then
  stamp "kill: rank 1 of N=2 gets SIGKILL after the checkpoint at iteration 5"
  CMD="$TOY name=killed data.batch_size=$((GLOBAL / 2)) module.max_iterations=400"
  LAST=$RF_RUNS/killed/checkpoints/last.ckpt
  run 2 $CMD > "$RES/kill_first.log" 2>&1 &
  agent=$!
  for _ in $(seq 240); do [[ -f $LAST ]] && break; sleep 0.5; done
  sleep 3
  victim=$(for p in $(pgrep -f "rf.train"); do tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "RANK=1" && echo $p; done | head -1)
  t0=$(date +%s%N); kill -9 "$victim"; stamp "killed rank 1 (pid $victim)"
  timeout 300 tail --pid=$agent -f /dev/null; ended=$?
  wait $agent; rc=$?
  echo "job ended $(( ($(date +%s%N) - t0) / 1000000 )) ms after the kill (torchrun rc $rc; 124 = still running at 300 s: $ended)"
  $PY -c "import torch,sys; c=torch.load('$LAST', map_location='cpu', weights_only=False); print('last.ckpt reads back:', c['rf_loop'])"
  stamp "relaunch the same command (stopped by SIGTERM after 60 s)"
  timeout -s TERM 60 bash -c "$(declare -f run); run 2 $CMD" > "$RES/kill_relaunch.log" 2>&1; echo "relaunch rc $?"
  while pgrep -f "rf.train" > /dev/null; do sleep 0.5; done   # the workers save last.ckpt after timeout returns
  grep -h "resuming from" "$RES/kill_relaunch.log"
  $PY -c "import torch,sys; c=torch.load('$LAST', map_location='cpu', weights_only=False); print('after relaunch:', c['rf_loop'])"
fi
stamp done
