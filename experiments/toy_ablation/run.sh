#!/usr/bin/env bash
# The paper's Table 3 at toy scale (experiments/toy_ablation/README.md): from one toy teacher and one ODE-init
# student, nine Re-DMD variants trained side by side on one GPU (the toy model is launch-bound, so they share
# it well), each evaluated on 60-s streams as soon as it is trained, then one comparison report.
#   bash experiments/toy_ablation/run.sh OUTDIR       (TEACHER=path/to/toy_teacher last.ckpt, or trains one)
# Sizes are environment variables, so the same script smoke-tests on a CPU.
set -euo pipefail
OUT=${1:-experiments/toy_ablation/results}
PY=${PY:-python}
export RF_RUNS=${RF_RUNS:-runs/toy_ablation} HF_HUB_OFFLINE=1
MODEL=${MODEL:-toy_large}
TRAINER=${TRAINER:-gpu}
TEACHER=${TEACHER:-}
TEACHER_STEPS=${TEACHER_STEPS:-3000}
PAIRS=${PAIRS:-512}
ODE_INIT_STEPS=${ODE_INIT_STEPS:-600}
ODE_INIT_BATCH=${ODE_INIT_BATCH:-32}
ITERATIONS=${ITERATIONS:-150}
BATCH=${BATCH:-16}
FRAMES=${FRAMES:-21}
SECONDS_=${EVAL_SECONDS:-60}
FULL_SECONDS=${FULL_SECONDS:-10}
PROMPTS=${EVAL_PROMPTS:-8}
# nine processes share the machine: more threads each only fight (optical flow slows 50x oversubscribed)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT" "$RF_RUNS/logs"
COMMON=(model=$MODEL trainer=$TRAINER logger.tensorboard=false)

if [[ -n $TEACHER ]]; then
  mkdir -p "$RF_RUNS/toy_teacher/checkpoints" && cp "$TEACHER" "$RF_RUNS/toy_teacher/checkpoints/last.ckpt"
elif [[ ! -f $RF_RUNS/toy_teacher/checkpoints/last.ckpt ]]; then
  $PY -m rf.train experiment=toy_teacher "${COMMON[@]}" trainer.max_steps=$TEACHER_STEPS data.frames=$FRAMES \
      data.batch_size=64 checkpoint_every=500
fi
t0=$(date +%s)
$PY -m rf.make_ode_pairs experiment=toy_ode_pairs model=$MODEL num_pairs=$PAIRS latent_frames=$FRAMES \
    batch_size=128 shard_size=256 > "$RF_RUNS/logs/ode_pairs.log" 2>&1
$PY -m rf.train experiment=toy_ode_init "${COMMON[@]}" trainer.max_steps=$ODE_INIT_STEPS data.batch_size=$ODE_INIT_BATCH \
    checkpoint_every=300 trainer.enable_progress_bar=false > "$RF_RUNS/logs/ode_init.log" 2>&1
echo "ODE pairs + ODE init: $(( $(date +%s) - t0 )) s"

# name | cache overrides (training and evaluation alike) | training-only overrides
VARIANTS=(
  "ema_sink|sink=ema_sink|"
  "sink|sink=sink|"
  "window|sink=window|"
  "full|sink=full|"
  "dmd|sink=ema_sink|experiment=toy_dmd"
  "beta_1|sink=ema_sink|method.beta=1"
  "beta_0.2|sink=ema_sink|method.beta=0.2"
  "alpha_0.5|sink=ema_sink sink.alpha=0.5|"
  "alpha_0.9|sink=ema_sink sink.alpha=0.9|"
)
variant() {
  local name=$1 cache=$2 train=$3 seconds=$SECONDS_
  [[ $name == full ]] && seconds=$FULL_SECONDS   # `full` attends over the whole stream: short streams only
  [[ $train == experiment=* ]] || train="experiment=toy_re_dmd $train"
  # shellcheck disable=SC2086
  $PY -m rf.train $train name=abl_$name "${COMMON[@]}" $cache module.max_iterations=$ITERATIONS \
      module.latent_frames=$FRAMES data.batch_size=$BATCH checkpoint_every=$ITERATIONS "~callbacks.video_log" \
      callbacks.generator_ema.start_iteration=$((ITERATIONS / 3)) trainer.enable_progress_bar=false \
      > "$RF_RUNS/logs/train_$name.log" 2>&1
  # shellcheck disable=SC2086
  $PY -m rf.evaluate ckpt="$RF_RUNS/abl_$name/checkpoints/last.ckpt" use_ema=true model=$MODEL $cache \
      seconds=$seconds seeds=1 toy_prompts=$PROMPTS name=$name > "$RF_RUNS/logs/eval_$name.log" 2>&1
  echo "$name done: $(( $(date +%s) - t0 )) s"
}
t0=$(date +%s)
for v in "${VARIANTS[@]}"; do IFS='|' read -r n c t <<< "$v"; variant "$n" "$c" "$t" & done
wait
runs=$(printf '%s,' "${VARIANTS[@]%%|*}")
$PY -m rf.evaluate "runs=[${runs%,}]" name=toy_ablation > "$RF_RUNS/logs/compare.log" 2>&1
# one archive back: the comparison report and plots, every variant's summary and per-video CSV, the logs
(cd "$RF_RUNS" && tar czf - eval/toy_ablation $(for v in "${VARIANTS[@]}"; do n=${v%%|*}; \
    echo eval/$n/summary.json eval/$n/results.csv; done) logs 2>/dev/null) > "$OUT/toy_ablation.tar.gz" || true
cat "$RF_RUNS/eval/toy_ablation/report.md" 2>/dev/null | head -40 || true
