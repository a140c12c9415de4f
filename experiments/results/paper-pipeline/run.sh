#!/usr/bin/env bash
# The paper's pipeline at token level, end to end, from the repository root:
#   bash experiments/results/paper-pipeline/run.sh [RUN ...]
# 1. a K = 1 RWKV-4 base language model on SimpleBooks-92 (its valid and test files, 1.8 MB,
#    joined into out/simplebooks92.txt) with the GPT-NeoX tokenizer;
# 2. K = 3 perspectives added to it and fine-tuned with the base frozen, in mtp's variant
#    (a decay per perspective, combined in every layer), in the authors' released variant
#    (a token-shift mix per perspective, one shared decay, K streams combined after the
#    head) and with both per-perspective token shift and decay in every layer;
# 3. the K = 1 model fine-tuned the same way (only its decay trains), the control;
# 4. every model scored on the validation tokens and the five benchmarks' files that are
#    here (HellaSwag's data is not), with standard errors.
# One thread, so that a rerun reproduces every number. Writes
# experiments/results/paper-pipeline/out/; naming runs reruns only those (and their
# evaluations). The token cache goes to out/tokens (not committed).
set -euo pipefail
exe=${MTP_EXP:-build/bin/mtp-exp}
shared=../shared/data
out=experiments/results/paper-pipeline/out
tokenizer=$shared/tokenizers/gpt-neox-20b_tokenizer.json
corpus=$out/simplebooks92.txt
mkdir -p "$out"
[ -f "$corpus" ] || cat "$shared/text/simplebooks92-valid.txt" "$shared/text/simplebooks92-test.txt" \
  > "$corpus"
common=(--task text --data "$corpus" --tokenizer "$tokenizer"
  --token-cache "$out/tokens" --cell rwkv --width 64 --layers 2 --seq-len 128 --batch 8
  --threads 1)
base=$out/base-k1/model.safetensors
finetune=(--steps 300 --lr 1e-2 --init-from "$base" --freeze base)

declare -A train=(
  [base-k1]="-K 1 --steps 900 --eval-every 100"
  [k3-layer-decay]="-K 3 --combine layer --per-perspective decay ${finetune[*]}"
  [k3-head-shift]="-K 3 --combine head --per-perspective shift ${finetune[*]}"
  [k3-layer-both]="-K 3 --combine layer --per-perspective both ${finetune[*]}"
  [k1-control]="-K 1 ${finetune[*]}"
)
order=(base-k1 k3-layer-decay k3-head-shift k3-layer-both k1-control)
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=("${order[@]}")

for run in "${runs[@]}"; do
  [ -n "${train[$run]+x}" ] || { echo "unknown run '$run' (known: ${order[*]})" >&2; exit 2; }
  # shellcheck disable=SC2086  # the table's flags split on spaces (no path has one)
  "$exe" "${common[@]}" ${train[$run]} --out "$out/$run"
  ck=$out/$run/model.safetensors
  "$exe" eval --checkpoint "$ck" --threads 1 --json > "$out/$run/eval-validation.json"
  "$exe" eval --checkpoint "$ck" --threads 1 --json --benchmark lambada-openai \
    --data "$shared/eval/lambada_openai_test.jsonl" > "$out/$run/eval-lambada-openai.json"
  "$exe" eval --checkpoint "$ck" --threads 1 --json --benchmark arc-easy \
    --data "$shared/eval/arc_easy_test.jsonl" > "$out/$run/eval-arc-easy.json"
  "$exe" eval --checkpoint "$ck" --threads 1 --json --benchmark piqa \
    --data "$shared/eval/piqa_dev.jsonl" > "$out/$run/eval-piqa.json"
  "$exe" eval --checkpoint "$ck" --threads 1 --json --benchmark winogrande \
    --data "$shared/eval/winogrande_dev.jsonl" > "$out/$run/eval-winogrande.json"
done
echo "done: $out"
