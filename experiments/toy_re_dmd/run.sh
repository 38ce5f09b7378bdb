#!/usr/bin/env bash
# The toy Re-DMD chain at GPU size (experiments/toy_re_dmd/README.md has the numbers it produced):
#   toy teacher -> ODE pairs -> ODE init -> plain DMD and Re-DMD (same seed, same iterations) -> 60-s evaluation
# Usage:  bash experiments/toy_re_dmd/run.sh [teacher|distill|all]
# Every size is an environment variable, so the same script smoke-tests on a CPU with small values.
set -euo pipefail
STAGE=${1:-all}
PY=${PY:-python}
export RF_RUNS=${RF_RUNS:-runs/toy_gpu}
MODEL=${MODEL:-toy_large}
TRAINER=${TRAINER:-gpu}
TEACHER_STEPS=${TEACHER_STEPS:-3000}
TEACHER_BATCH=${TEACHER_BATCH:-64}
PAIRS=${PAIRS:-1024}
ODE_INIT_STEPS=${ODE_INIT_STEPS:-1000}
ODE_INIT_BATCH=${ODE_INIT_BATCH:-32}
ITERATIONS=${ITERATIONS:-300}
DISTILL_BATCH=${DISTILL_BATCH:-16}
FRAMES=${FRAMES:-21}          # latent frames per training rollout (7 chunks: EMA-Sink evicts from chunk 4 on)
EVAL_SECONDS=${EVAL_SECONDS:-60}
EVAL_PROMPTS=${EVAL_PROMPTS:-32}
WORKERS=${WORKERS:-8}
COMMON="model=$MODEL trainer=$TRAINER logger.tensorboard=false"

if [[ $STAGE == teacher || $STAGE == all ]]; then
  $PY -m rf.train experiment=toy_teacher $COMMON trainer.max_steps=$TEACHER_STEPS \
      data.frames=$FRAMES data.batch_size=$TEACHER_BATCH data.num_workers=$WORKERS checkpoint_every=500
fi
if [[ $STAGE == distill || $STAGE == all ]]; then
  $PY -m rf.make_ode_pairs experiment=toy_ode_pairs model=$MODEL num_pairs=$PAIRS latent_frames=$FRAMES \
      batch_size=128 shard_size=256
  $PY -m rf.train experiment=toy_ode_init $COMMON trainer.max_steps=$ODE_INIT_STEPS data.batch_size=$ODE_INIT_BATCH \
      checkpoint_every=500
  for method in dmd re_dmd; do
    $PY -m rf.train experiment=toy_$method $COMMON module.max_iterations=$ITERATIONS module.latent_frames=$FRAMES \
        data.batch_size=$DISTILL_BATCH checkpoint_every=100 callbacks.video_log.every_n_iterations=$ITERATIONS \
        callbacks.generator_ema.start_iteration=$((ITERATIONS / 3))
  done
  $PY experiments/toy_re_dmd/evaluate.py --model $MODEL --seconds $EVAL_SECONDS --prompts $EVAL_PROMPTS \
      --out "$RF_RUNS/toy_re_dmd_eval.json" \
      ode_init="$RF_RUNS/toy_ode_init/checkpoints/last.ckpt" \
      dmd="$RF_RUNS/toy_dmd/checkpoints/last.ckpt" re_dmd="$RF_RUNS/toy_re_dmd/checkpoints/last.ckpt"
fi
