#!/usr/bin/env bash
# Regenerates tests/tokenizer/neox_reference.json, the reference ids that mtp's BPE
# tokenizer is tested against (issue 16), with an independent implementation: Hugging
# Face's tokenizers.js (npm @huggingface/tokenizers, pure JavaScript, pinned below),
# installed into a scratch folder. Needs node and npm; mtp itself never does.
# texts.json holds the inputs: hand-written cases (Unicode, NFC, whitespace runs of the
# tokenizer's added space tokens, digits, contractions, emoji, newlines, special-token
# text, code) and excerpts of ../shared/data (tinyshakespeare, LAMBADA-OpenAI). Each
# reference case records its ids (no special tokens added) and their decoding without
# tokenizers' space clean-up, which equals the text up to NFC.
#
#   bash tests/tokenizer/make_reference.sh [path/to/gpt-neox-20b_tokenizer.json]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tokenizer="${1:-$here/../../../shared/data/tokenizers/gpt-neox-20b_tokenizer.json}"
version=0.2.0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm install --silent --no-audit --no-fund "@huggingface/tokenizers@$version" >/dev/null)
cp "$here/reference.mjs" "$work/"
node "$work/reference.mjs" "$tokenizer" "$here/texts.json" "$version" > "$here/neox_reference.json.tmp"
mv "$here/neox_reference.json.tmp" "$here/neox_reference.json"
echo "wrote $here/neox_reference.json"
