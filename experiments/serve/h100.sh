#!/usr/bin/env bash
# The served full model on one GPU, measured by measure.py: pace=true then pace=false, each after a warm-up stream.
#   bash experiments/serve/h100.sh OUTDIR        (random weights; writes OUTDIR/h100_{pace,flat}.json and server logs)
set -uo pipefail
out=${1:?OUTDIR}
mkdir -p "$out"
export HF_HUB_OFFLINE=1
S="model=wan_1_3b ckpt=null model.autoencoder.path=null model/text@model.text_encoder_online=toy_wide fast=exact"
P1="a red circle moving fast to the right on a striped background"
P2="a blue square moving slowly to the left on a striped background"
run() {  # $1 pace, $2 port, $3 name
  python -m rf.serve $S port="$2" pace="$1" > "$out/server_$3.log" 2>&1 &
  local pid=$! i
  for i in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$2/" && break; sleep 1; done
  echo "server $3 up after $i s"
  # warm-up, not measured: compiles the first chunks, the steady shapes and a switch
  python experiments/serve/measure.py --url "http://127.0.0.1:$2/" --prompt "$P1" --switch-prompt "$P2" \
    --seconds 12 --switch-at 6 > /dev/null
  python experiments/serve/measure.py --url "http://127.0.0.1:$2/" --prompt "$P1" --switch-prompt "$P2" \
    --seconds 20 --switch-at 10 --out "$out/h100_$3.json"
  kill "$pid"; wait "$pid" 2>/dev/null
}
run true 8765 pace
run false 8766 flat
