#!/bin/bash
# The cross-architecture study (issue 17; the design is README.md beside this file):
# every sweep and report, in the design's order. Resumable: a finished run is skipped and
# an interrupted one redone, so running this again continues where a stop left off.
#
#   bash experiments/study/run.sh              all parts, then every report
#   bash experiments/study/run.sh lag-recall   one part: lag-recall | text | protocol | reports
#
# Runs from the repository root; MTP_EXP names the binary (default build/bin/mtp-exp).
set -euo pipefail
cd "$(dirname "$0")/../.."
mtp_exp=${MTP_EXP:-build/bin/mtp-exp}
study=experiments/study
cells=gru,lstm,rwkv,ssm
seeds=0,1,2,3,4
# One thread per run, two at a time: --threads is part of what makes a rerun bit-exact.
jobs=(--jobs 2 --threads 1)

# sweep_grids PART FLAG... -- GRID...: each grid into experiments/study/PART, every run
# with the shared flags (one folder: the same flags for every grid in it).
sweep_grids() {
  local part=$1 shared=()
  shift
  while [ "$1" != -- ]; do
    shared+=("$1")
    shift
  done
  shift
  local grid
  for grid in "$@"; do
    "$mtp_exp" sweep --grid "$grid" "${shared[@]}" --out $study/$part "${jobs[@]}"
  done
}

lag_recall() {
  sweep_grids lag-recall --task lag-recall --lags 4,8,16,32 --seq-len 64 --steps 1500 -- \
    "cell=$cells;perspectives=1,2,3,4;seed=$seeds" \
    "cell=$cells;perspectives=3;decay-spread=0;seed=$seeds" \
    "cell=$cells;perspectives=1;width=192;seed=$seeds" \
    "cell=$cells;perspectives=3;aggregator=mean,fixed;seed=$seeds" \
    "cell=$cells;perspectives=3;noise=0.1,0.5;seed=$seeds" \
    "cell=$cells;perspectives=3;noise-mode=learned;top-k=0,1;seed=$seeds"
}

text_data=(--task text --data ../shared/data/text/tinyshakespeare.txt)
# Text runs validate along the way (not only at the end) so that each report can show
# that its curves flattened; evaluating does not change the training.

text() {
  sweep_grids text "${text_data[@]}" --steps 3000 --eval-every 250 -- \
    "cell=$cells;perspectives=1,3;seed=$seeds" \
    "cell=$cells;perspectives=3;decay-spread=0;seed=$seeds"
}

# The paper's protocol: each fine-tune starts from the text K = 1 run of its own cell and
# seed, the base frozen (`text` first).
protocol() {
  sweep_grids protocol "${text_data[@]}" --steps 500 --eval-every 100 \
    --init-from "$study/text/runs/cell-{cell}_perspectives-1_seed-{seed}/model.safetensors" \
    --freeze base -- \
    "cell=$cells;perspectives=1,3;seed=$seeds" \
    "cell=rwkv;perspectives=3;combine=head;per-perspective=shift;seed=$seeds"
}

reports() {
  local part
  for part in lag-recall text protocol; do
    if [ -f $study/$part/sweep.json ]; then
      "$mtp_exp" report $study/$part --hypotheses $study/hypotheses/$part.json
    fi
  done
}

case "${1:-all}" in
  lag-recall) lag_recall ;;
  text) text ;;
  protocol) protocol ;;
  reports) reports ;;
  all) lag_recall && text && protocol && reports ;;
  *) echo "usage: $0 [lag-recall | text | protocol | reports]" >&2; exit 2 ;;
esac
