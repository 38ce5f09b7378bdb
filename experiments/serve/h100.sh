#!/usr/bin/env bash
# The served model measured from a client on the same machine: pace=true then pace=false, each after a warm-up
# stream; measure.py (headless client) and, given a Chromium, browser.py (the page drawn in a real browser).
#   bash experiments/serve/h100.sh OUTDIR     writes OUTDIR/h100_{pace,flat}.json (+ browser_*.json) and server logs
# SERVE_ARGS: the server's overrides (default: the full model, random weights, fast=exact; "" for the CPU toy).
# CHROMIUM, CHROMIUM_LIB, CHROMIUM_FONTS: a Chromium binary, its library folder and its fontconfig folder
# (experiments/serve/chromium.sh unpack).
set -uo pipefail
out=${1:?OUTDIR}
mkdir -p "$out"
export HF_HUB_OFFLINE=1
S=${SERVE_ARGS-"model=wan_1_3b ckpt=null model.autoencoder.path=null model/text@model.text_encoder_online=toy_wide fast=exact"}
P1="a red circle moving fast to the right on a striped background"
P2="a blue square moving slowly to the left on a striped background"
run() {  # $1 pace, $2 port, $3 name
  python -m rf.serve $S port="$2" pace="$1" > "$out/server_$3.log" 2>&1 &
  local pid=$! i url="http://127.0.0.1:$2/"
  for i in $(seq 120); do curl -s -o /dev/null "$url" && break; sleep 1; done
  echo "server $3 up after $i s"
  # warm-up, not measured: compiles the first chunks, the steady shapes and a switch
  python experiments/serve/measure.py --url "$url" --prompt "$P1" --switch-prompt "$P2" --seconds 12 --switch-at 6 \
    > /dev/null
  python experiments/serve/measure.py --url "$url" --prompt "$P1" --switch-prompt "$P2" --seconds 20 --switch-at 10 \
    --out "$out/h100_$3.json"
  if [ -n "${CHROMIUM:-}" ] && [ "$1" = true ]; then  # flat out, the page plays the growing backlog at the fps
    python experiments/serve/browser.py --url "$url" --chromium "$CHROMIUM" --library-path "${CHROMIUM_LIB:-}" \
      --fonts "${CHROMIUM_FONTS:-}" \
      --prompt "$P1" --switch-prompt "$P2" --seconds 20 --switch-at 10 --out "$out/browser_$3.json"
  fi
  kill "$pid"; wait "$pid" 2>/dev/null
}
run true 8765 pace
run false 8766 flat
