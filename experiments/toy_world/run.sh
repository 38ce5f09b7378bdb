#!/usr/bin/env bash
# The toy chain on world v2, each stage measured before the next is trained (README.md has the numbers):
#   teacher -> teacher bars (sweep of CFG and time shift; the best setting is used from here on)
#   -> ODE pairs -> ODE init -> ODE-init bars (60-s EMA-Sink streams)
#   -> the distillation ARMS (plain DMD and Re-DMD with the toy_motion reward), SEEDS seeds each, side by side on one GPU
#   -> student bars and paired comparisons -> fp16 safetensors with sha256 and model cards (export.py)
# Usage:  bash experiments/toy_world/run.sh [teacher|teacher_eval|pairs|ode_init|distill|students|export|all]
# Every size is an environment variable, so the same script smoke-tests on a CPU with small values.
set -euo pipefail
STAGE=${1:-all}
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
export RF_RUNS=${RF_RUNS:-runs/toy_world}
MODEL=${MODEL:-toy_large}
TRAINER=${TRAINER:-gpu}
WORKERS=${WORKERS:-8}
TEACHER_STEPS=${TEACHER_STEPS:-100000}
TEACHER_TIME=${TEACHER_TIME:-00:00:08:00}   # the teacher trains for this long (or TEACHER_STEPS), then stops
TEACHER_BATCH=${TEACHER_BATCH:-192}
TEACHER_LR=${TEACHER_LR:-4e-4}
TEACHER_INIT=${TEACHER_INIT:-null}          # continue from trained weights (a file), or null: from scratch
TEACHER_EMA=${TEACHER_EMA:-0.999}
# every later stage reads the teacher's EMA weights, exported to fp16 as they will be shipped
TEACHER_CKPT=${TEACHER_CKPT:-$RF_RUNS/teacher_fp16/teacher.safetensors}
FRAMES=${FRAMES:-21}                 # frames of teacher clips and latent frames of ODE pairs and rollouts
SWEEP_CFG=${SWEEP_CFG:-2,3,4}
SWEEP_SHIFT=${SWEEP_SHIFT:-2,3,5}
EVAL_PROMPTS=${EVAL_PROMPTS:-64}     # held-out single-object prompts; EVAL_PAIRS two-object prompts beside them
EVAL_PAIRS=${EVAL_PAIRS:-16}
EVAL_SEEDS=${EVAL_SEEDS:-4}
EVAL_SECONDS=${EVAL_SECONDS:-60}
EVAL_STEPS=${EVAL_STEPS:-48}         # Euler steps of the teacher samples
PAIRS=${PAIRS:-2048}
ODE_STEPS=${ODE_STEPS:-24}
ODE_INIT_STEPS=${ODE_INIT_STEPS:-1200}
ODE_INIT_BATCH=${ODE_INIT_BATCH:-64}
ITERATIONS=${ITERATIONS:-300}
GENERATOR_EVERY=${GENERATOR_EVERY:-3}   # 300 / 3 = 100 generator steps
DISTILL_BATCH=${DISTILL_BATCH:-16}
DISTILL_TIME=${DISTILL_TIME:-null}      # e.g. 00:00:02:30: each distillation run also stops after this long
DISTILL_EXTRA=${DISTILL_EXTRA:-}        # more overrides, e.g. callbacks.video_log=null where PyAV is missing
EMA_DECAY=${EMA_DECAY:-0.95}
SEEDS=${SEEDS:-0 1}
# distillation arms, each LABEL[:EXPERIMENT[:OVERRIDE,OVERRIDE...]] (EXPERIMENT defaults to toy_LABEL), SEEDS seeds each,
# e.g. ARMS="dmd re_dmd_norm:toy_re_dmd:method.normalize=true re_dmd_b2:toy_re_dmd:method.normalize=true,method.beta=2"
ARMS=${ARMS:-dmd re_dmd}
ODE_INIT_CKPT=${ODE_INIT_CKPT:-$RF_RUNS/toy_ode_init/checkpoints/last.ckpt}   # or the exported fp16 ode_init
OUT=${EXPORT_OUT:-$RF_RUNS/export}
SHIP=${SHIP:-re_dmd}                 # the distillation arm exported as the student (dmd or re_dmd), first seed
COMMON="model=$MODEL trainer=$TRAINER logger.tensorboard=false"
mkdir -p "$RF_RUNS"
stamp() { echo "[$(date +%T)] $*"; }

# The teacher sweep picks CFG and shift; later stages read them (sampler.shift must equal the teacher's shift:
# the ODE grid passes through the student's timesteps only then).
best() { $PY -c "import json,sys; print(json.load(open('$RF_RUNS/teacher_eval.json'))['best'][sys.argv[1]])" "$1"; }

if [[ $STAGE == teacher || $STAGE == all ]]; then
  stamp teacher
  $PY -m rf.train experiment=toy_teacher $COMMON trainer.max_steps=$TEACHER_STEPS +trainer.max_time=$TEACHER_TIME \
      optim.lr=$TEACHER_LR module.init_ckpt=$TEACHER_INIT module.ema_decay=$TEACHER_EMA \
      data.frames=$FRAMES data.batch_size=$TEACHER_BATCH data.num_workers=$WORKERS checkpoint_every=500 \
      trainer.enable_progress_bar=false
  $PY "$HERE/export.py" --runs "$RF_RUNS" --out "$(dirname "$TEACHER_CKPT")" --model $MODEL \
      teacher="$RF_RUNS/toy_teacher/checkpoints/last.ckpt:ema"
fi
if [[ $STAGE == teacher_eval || $STAGE == all ]]; then
  stamp teacher_eval
  $PY "$HERE/evaluate.py" teacher "$TEACHER_CKPT" --model $MODEL \
      --cfg $SWEEP_CFG --shift $SWEEP_SHIFT --frames $FRAMES --prompts $EVAL_PROMPTS --pair-prompts $EVAL_PAIRS \
      --seeds $EVAL_SEEDS --steps $EVAL_STEPS --workers $WORKERS --out "$RF_RUNS/teacher_eval.json"
fi
if [[ $STAGE == pairs || $STAGE == all ]]; then
  stamp "ODE pairs (cfg $(best cfg), shift $(best shift))"
  $PY -m rf.make_ode_pairs experiment=toy_ode_pairs model=$MODEL teacher_ckpt=$TEACHER_CKPT num_pairs=$PAIRS latent_frames=$FRAMES \
      ode_steps=$ODE_STEPS guidance=$(best cfg) sampler.shift=$(best shift) batch_size=512 shard_size=512
fi
if [[ $STAGE == ode_init || $STAGE == all ]]; then
  stamp ode_init
  $PY -m rf.train experiment=toy_ode_init $COMMON trainer.max_steps=$ODE_INIT_STEPS data.batch_size=$ODE_INIT_BATCH \
      module.teacher_ckpt=$TEACHER_CKPT sampler.shift=$(best shift) checkpoint_every=400 trainer.enable_progress_bar=false
fi
if [[ $STAGE == distill || $STAGE == all ]]; then
  stamp "distill: arms $ARMS, seeds $SEEDS, side by side"
  pids=()
  for arm in $ARMS; do
    IFS=: read -r label experiment extra <<< "$arm"
    for seed in $SEEDS; do
      $PY -m rf.train experiment=${experiment:-toy_$label} $COMMON name=toy_${label}_s$seed seed=$seed \
          module.teacher_ckpt=$TEACHER_CKPT module.student_ckpt=$ODE_INIT_CKPT \
          module.max_iterations=$ITERATIONS module.generator_every=$GENERATOR_EVERY module.latent_frames=$FRAMES \
          module.guidance=$(best cfg) sampler.shift=$(best shift) data.batch_size=$DISTILL_BATCH \
          checkpoint_every=100 callbacks.video_log.every_n_iterations=$ITERATIONS +trainer.max_time=$DISTILL_TIME \
          callbacks.generator_ema.decay=$EMA_DECAY callbacks.generator_ema.start_iteration=$((ITERATIONS / 3)) \
          trainer.enable_progress_bar=false ${extra//,/ } $DISTILL_EXTRA > "$RF_RUNS/toy_${label}_s$seed.log" 2>&1 &
      pids+=($!)
    done
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
fi
if [[ $STAGE == students || $STAGE == all ]]; then
  stamp students
  runs=("ode_init=$ODE_INIT_CKPT")
  first=${SEEDS%% *}
  for arm in $ARMS; do
    label=${arm%%:*}
    for seed in $SEEDS; do runs+=("${label}_s$seed=$RF_RUNS/toy_${label}_s$seed/checkpoints/last.ckpt:ema"); done
    runs+=("${label}_s${first}_raw=$RF_RUNS/toy_${label}_s$first/checkpoints/last.ckpt")
  done
  $PY "$HERE/evaluate.py" students "${runs[@]}" --model $MODEL --overrides "sampler.shift=$(best shift)" \
      --seconds $EVAL_SECONDS --prompts $EVAL_PROMPTS --pair-prompts $EVAL_PAIRS --seeds $EVAL_SEEDS \
      --workers $WORKERS --sheets --out "$RF_RUNS/students_eval.json"
fi
if [[ $STAGE == export || $STAGE == all ]]; then
  stamp export
  first=${SEEDS%% *}
  $PY "$HERE/export.py" --runs "$RF_RUNS" --out "$OUT" --model $MODEL --shift $(best shift) --cfg $(best cfg) \
      --student-run "${SHIP}_s$first" teacher="$TEACHER_CKPT" \
      ode_init="$ODE_INIT_CKPT" \
      student="$RF_RUNS/toy_${SHIP}_s$first/checkpoints/last.ckpt:ema"
fi
stamp done
