#!/usr/bin/env bash
# tokenizer_reference.sh WANCP SOURCE_DIR GPT2_DIR BROWN_DIR
# wancp's GPT-2 ids against the npm gpt-3-encoder, token for token, on
#   1. the whole Brown corpus as plain text (500 documents),
#   2. hand-picked edge cases (tests/data/edge_cases.jsonl),
#   3. 400 seeded random documents mixing scripts, marks, digits, emoji and whitespace.
set -euo pipefail
wancp=$1 src=$2 gpt2=$3 brown=$4
ref="$src/harness/gpt2_reference.js"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export WANCP_CACHE=/nonexistent # every path is given explicitly below

"$wancp" data brown --corpus "$brown" --encoder "$gpt2" --out "$work" 2>/dev/null
"$wancp" data encode --encoder "$gpt2" --val-every 0 -o "$work/brown_all" "$work/brown.jsonl" 2>/dev/null
echo "Brown corpus:"
node "$ref" compare --module "$gpt2" --jsonl "$work/brown.jsonl" --shard "$work/brown_all.bin"

echo "edge cases:"
"$wancp" data encode --encoder "$gpt2" --val-every 0 -o "$work/edge" "$src/tests/data/edge_cases.jsonl" 2>/dev/null
node "$ref" compare --module "$gpt2" --jsonl "$src/tests/data/edge_cases.jsonl" --shard "$work/edge.bin"

echo "random documents (seed 20261122):"
node "$ref" random --seed 20261122 --count 400 --out "$work/random.jsonl"
"$wancp" data encode --encoder "$gpt2" --val-every 0 -o "$work/random" "$work/random.jsonl" 2>/dev/null
node "$ref" compare --module "$gpt2" --jsonl "$work/random.jsonl" --shard "$work/random.bin"

# The split shards hold exactly the documents the split rule names, in order.
echo "train/val split:"
node -e '
const fs = require("fs");
const docs = fs.readFileSync(process.argv[1], "utf8").trim().split("\n");
const train = [], val = [];
docs.forEach((d, i) => ((i % 10 === 9) ? val : train).push(d));
fs.writeFileSync(process.argv[2], train.join("\n") + "\n");
fs.writeFileSync(process.argv[3], val.join("\n") + "\n");
' "$work/brown.jsonl" "$work/train.jsonl" "$work/val.jsonl"
node "$ref" compare --module "$gpt2" --jsonl "$work/train.jsonl" --shard "$work/brown_train.bin"
node "$ref" compare --module "$gpt2" --jsonl "$work/val.jsonl" --shard "$work/brown_val.bin"
