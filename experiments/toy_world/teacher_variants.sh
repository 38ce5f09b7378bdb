#!/usr/bin/env bash
# Why does the toy teacher ignore its direction words? Fine-tune variants side by side on one GPU, each from
# the same weights for the same time, then probe each (direction_probe.py, up to s = 0.995) and score its
# samples (evaluate.py teacher). README.md ("Why direction is missed") has the numbers.
#   VARIANTS="name:start_jitter:time_shift[:init] ..."   start_jitter "null": objects start anywhere; init: weights
#   to start from (default INIT). With several GPUs each variant gets its own (round robin), else they share one.
# Usage:  INIT=src/rf/toy/weights/teacher.safetensors MINUTES=6 bash experiments/toy_world/teacher_variants.sh
set -euo pipefail
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
export RF_RUNS=${RF_RUNS:-runs/teacher_variants}
INIT=${INIT:-src/rf/toy/weights/teacher.safetensors}
MINUTES=${MINUTES:-6}
VARIANTS=${VARIANTS:-"centre_shift3:0.1:3 centre_shift1:0.1:1 anywhere_shift3:null:3"}
BATCH=${BATCH:-192}
LR=${LR:-3e-4}
WORKERS=${WORKERS:-4}
EVAL=${EVAL:---prompts 32 --pair-prompts 8 --seeds 2 --cfg 3,5 --shift 3,5}
mkdir -p "$RF_RUNS"
stamp() { echo "[$(date +%T)] $*"; }

stamp "train ${VARIANTS} for ${MINUTES} min each, side by side"
GPUS=$($PY -c "import torch; print(max(torch.cuda.device_count(), 1))")
pids=()
i=0
for v in $VARIANTS; do
  IFS=: read -r name jitter shift init <<< "$v"
  CUDA_VISIBLE_DEVICES=$((i % GPUS)) $PY -m rf.train experiment=toy_teacher model=${MODEL:-toy_large} trainer=${TRAINER:-gpu} logger.tensorboard=false name=$name \
      trainer.max_steps=${STEPS:-1000000} +trainer.max_time=00:00:$(printf %02d "$MINUTES"):00 optim.lr=$LR \
      module.init_ckpt=${init:-$INIT} module.ema_decay=0.998 module.time_shift=$shift ++model.world.start_jitter=$jitter \
      data.frames=21 data.batch_size=$BATCH data.num_workers=$WORKERS checkpoint_every=500 \
      trainer.enable_progress_bar=false > "$RF_RUNS/$name.log" 2>&1 &
  pids+=($!)
  i=$((i + 1))
done
for pid in "${pids[@]}"; do wait "$pid"; done

i=0
for v in $VARIANTS; do
  IFS=: read -r name jitter shift init <<< "$v"
  export CUDA_VISIBLE_DEVICES=$((i % GPUS))
  i=$((i + 1))
  stamp "probe and score $name"
  $PY "$HERE/export.py" --runs "$RF_RUNS" --out "$RF_RUNS/$name/fp16" --model ${MODEL:-toy_large} \
      teacher="$RF_RUNS/$name/checkpoints/last.ckpt:ema"
  $PY "$HERE/direction_probe.py" "$RF_RUNS/$name/fp16/teacher.safetensors" --model ${MODEL:-toy_large} \
      --overrides "++model.world.start_jitter=$jitter" --out "$RF_RUNS/${name}_probe.json"
  # shellcheck disable=SC2086
  $PY "$HERE/evaluate.py" teacher "$RF_RUNS/$name/fp16/teacher.safetensors" --model ${MODEL:-toy_large} \
      --overrides "++model.world.start_jitter=$jitter" $EVAL --workers 4 --out "$RF_RUNS/${name}_eval.json" &
done
wait
stamp done
