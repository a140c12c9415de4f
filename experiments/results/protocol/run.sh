#!/usr/bin/env bash
# The paper's protocol on tinyshakespeare, end to end, from the repository root:
#   bash experiments/results/protocol/run.sh
# 1. a K = 1 base GRU language model; 2. K = 3 perspectives added to it and fine-tuned
# with the base frozen; 3. the K = 1 model fine-tuned the same way (only its decay
# trains), a control with the same budget and learning rate; 4. every model scored on the validation bytes and on
# the four benchmarks. Writes experiments/results/protocol/out/.
set -euo pipefail
exe=build/bin/mtp-exp
data=../shared/data/text/tinyshakespeare.txt
eval_dir=../shared/data/eval
out=experiments/results/protocol/out
common=(--task text --data "$data" --cell gru --width 128 --layers 2 --seq-len 64 --threads 2)

"$exe" "${common[@]}" -K 1 --steps 2000 --out "$out/base-k1"
"$exe" "${common[@]}" -K 3 --steps 500 --lr 1e-2 --init-from "$out/base-k1/model.safetensors" \
  --freeze base --out "$out/k3-frozen-base"
"$exe" "${common[@]}" -K 1 --steps 500 --lr 1e-2 --init-from "$out/base-k1/model.safetensors" \
  --freeze base --out "$out/k1-frozen-base"

for run in base-k1 k1-frozen-base k3-frozen-base; do
  ck="$out/$run/model.safetensors"
  "$exe" eval --checkpoint "$ck" --json > "$out/$run/eval-validation.json"
  "$exe" eval --checkpoint "$ck" --benchmark lambada --data "$eval_dir/lambada_test_plain_text.txt" --json > "$out/$run/eval-lambada.json"
  "$exe" eval --checkpoint "$ck" --benchmark arc-easy --data "$eval_dir/arc_easy_test.jsonl" --json > "$out/$run/eval-arc-easy.json"
  "$exe" eval --checkpoint "$ck" --benchmark piqa --data "$eval_dir/piqa_dev.jsonl" --json > "$out/$run/eval-piqa.json"
  "$exe" eval --checkpoint "$ck" --benchmark winogrande --data "$eval_dir/winogrande_dev.jsonl" --json > "$out/$run/eval-winogrande.json"
done
echo "done: $out"
