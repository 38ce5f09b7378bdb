#!/usr/bin/env bash
# Issue 15 on one host with N GPUs (README.md has the numbers and what each means). Stages:
#   scaling  weak scaling at full size (experiment=full_size_random: rf_1_3b_small_teacher with random weights,
#            bf16, activation checkpointing) at each count in COUNTS, the same per-GPU batch -> scaling.json
#   profile  the same run at N GPUs under torch.profiler (+trainer/profiler=pytorch): where an iteration's time
#            goes, per kernel (NCCL all-gathers and reduce-scatters, GEMMs, attention) -> profile_nN.txt
#   paper    experiment=full_size_random_14b (the paper's 14B teacher, random weights) at N and at N/2 GPUs:
#            does it fit, per-GPU peak memory, seconds per iteration -> paper_nN.json
#   resume   toy Re-DMD under FSDP2: saved at N and resumed at N/2 (and the other way), the same global batch,
#            against the uninterrupted run at N -> resume_*.json
#   kill     SIGKILL of rank 1 mid-run at N: how long the job takes to end, whether last.ckpt reads back, and
#            the same command relaunched continuing from it -> kill_*.log
# Usage: GPUS=4 bash experiments/multi_gpu/gpus.sh [scaling|profile|paper|resume|kill|all] ...
#   (GPUS: default all the host's GPUs; COUNTS: default "1 2 4" up to GPUS; ODE_INIT: the toy student's start;
#   EXTRA: more toy overrides, e.g. trainer.accelerator=cpu for a CPU smoke test)
set -uo pipefail
PY=${PY:-python}
N=${GPUS:-$(nvidia-smi -L | wc -l)}
H=$((N / 2))
COUNTS=${COUNTS:-$(for n in 1 2 4 8; do ((n <= N)) && echo -n "$n "; done)}
export RF_RUNS=${RF_RUNS:-runs/multi_gpu} NCCL_NVLS_ENABLE=0   # NVLink multicast stays off (KINDS.md)
RES=${RESULTS:-experiments/multi_gpu/results}
ODE_INIT=${ODE_INIT:-runs/toy_world/export/ode_init.safetensors}
mkdir -p "$RES" "$RF_RUNS"
stamp() { echo "[$(date +%T)] $*"; }
# torchrun sets OMP_NUM_THREADS=1: the random 14B teacher is initialised on the CPU, give each rank its share
run() { local n=$1; shift; OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(($(nproc) / n))} CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((n - 1))) \
        torchrun --standalone --nproc-per-node "$n" -m rf.train "$@"; }
QUIET="logger.tensorboard=false trainer.enable_progress_bar=false"
FULL="experiment=full_size_random trainer=fsdp2 checkpoint_every=null $QUIET"   # full_size_random logs no video
TOY="experiment=toy_re_dmd model=toy_large trainer=fsdp2 $QUIET callbacks.video_log=null checkpoint_every=5 callbacks.generator_ema.start_iteration=2"
TOY="$TOY module.teacher_ckpt=src/rf/toy/weights/teacher.safetensors module.student_ckpt=$ODE_INIT ${EXTRA:-}"
GLOBAL=${GLOBAL:-8}   # toy global batch: data.batch_size = GLOBAL / N
ITERS=${ITERS:-6}    # scaling: iteration 0 is the warm-up, 1-5 one whole cycle (a generator step and 4 critic steps)

for STAGE in "${@:-all}"; do
if [[ $STAGE == scaling || $STAGE == all ]]; then
  dirs=()
  for n in $COUNTS; do
    stamp "scaling N=$n"
    timeout 300 bash -c "$(declare -f run); run $n $FULL name=scale_n$n module.max_iterations=$ITERS" > "$RES/scale_n$n.log" 2>&1
    echo "rc $?"; grep "throughput:" "$RES/scale_n$n.log"; dirs+=("$RF_RUNS/scale_n$n")
  done
  $PY experiments/multi_gpu/scaling.py "${dirs[@]}" --batch 1 --out "$RES/scaling.json" \
      --command "torchrun --nproc-per-node {n} -m rf.train $FULL name=scale_n{n} module.max_iterations=$ITERS"
fi
if [[ $STAGE == profile || $STAGE == all ]]; then
  stamp "profile N=$N: iterations 5-9 under torch.profiler"
  timeout 300 bash -c "$(declare -f run); run $N $FULL name=profile_n$N module.max_iterations=11 +trainer/profiler=pytorch" \
      > "$RES/profile_n$N.log" 2>&1; echo "rc $?"
  cp "$RF_RUNS/profile_n$N/profile/fit-prof.txt" "$RES/profile_n$N.txt" 2>/dev/null || ls "$RF_RUNS/profile_n$N/profile"
fi
if [[ $STAGE == paper || $STAGE == all ]]; then
  for n in $N $H; do
    stamp "paper: experiment=full_size_random_14b at N=$n"
    timeout ${PAPER_TIMEOUT:-420} bash -c "$(declare -f run); run $n experiment=full_size_random_14b checkpoint_every=null $QUIET name=paper_n$n module.max_iterations=6" \
        > "$RES/paper_n$n.log" 2>&1; echo "rc $?"; grep -h "throughput:\|needs about\|Error\|out of memory" "$RES/paper_n$n.log" | head -5
    cp "$RF_RUNS/paper_n$n/throughput.json" "$RES/paper_n$n.json" 2>/dev/null
  done
fi
if [[ $STAGE == resume || $STAGE == all ]]; then
  stamp "resume: uninterrupted N=$N to 10, N=$N -> N=$H at 5, N=$H -> N=$N at 5"
  run $N $TOY name=straight data.batch_size=$((GLOBAL / N)) module.max_iterations=10 > "$RES/resume_straight.log" 2>&1
  run $N $TOY name=down data.batch_size=$((GLOBAL / N)) module.max_iterations=5 > "$RES/resume_down.log" 2>&1
  run $H $TOY name=down data.batch_size=$((GLOBAL / H)) module.max_iterations=10 >> "$RES/resume_down.log" 2>&1
  run $H $TOY name=up data.batch_size=$((GLOBAL / H)) module.max_iterations=5 > "$RES/resume_up.log" 2>&1
  run $N $TOY name=up data.batch_size=$((GLOBAL / N)) module.max_iterations=10 >> "$RES/resume_up.log" 2>&1
  grep -h "resuming from" "$RES"/resume_*.log
  for b in down up; do
    $PY experiments/multi_gpu/compare_ckpt.py "$RF_RUNS/straight/checkpoints/last.ckpt" \
        "$RF_RUNS/$b/checkpoints/last.ckpt" --json "$RES/resume_${b}_n$N.json"
  done
fi
if [[ $STAGE == kill || $STAGE == all ]]; then
  stamp "kill: rank 1 of N=$N gets SIGKILL after the checkpoint at iteration 5"
  CMD="$TOY name=killed data.batch_size=$((GLOBAL / N)) module.max_iterations=400"
  LAST=$RF_RUNS/killed/checkpoints/last.ckpt
  run $N $CMD > "$RES/kill_first.log" 2>&1 &
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
  timeout -s TERM 60 bash -c "$(declare -f run); run $N $CMD" > "$RES/kill_relaunch.log" 2>&1; echo "relaunch rc $?"
  while pgrep -f "rf.train" > /dev/null; do sleep 0.5; done   # the workers save last.ckpt after timeout returns
  grep -h "resuming from" "$RES/kill_relaunch.log"
  $PY -c "import torch,sys; c=torch.load('$LAST', map_location='cpu', weights_only=False); print('after relaunch:', c['rf_loop'])"
fi
done
stamp done
