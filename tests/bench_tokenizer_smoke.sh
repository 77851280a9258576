#!/usr/bin/env bash
# bench_tokenizer_smoke.sh WANCP JSONL GPT2_DIR: `wancp bench tokenizer --json` runs end to
# end and prints one JSON object with the promised fields, positive and consistent. Speed
# is not asserted: this machine is shared; the benchmark itself reports the ratio.
set -euo pipefail
out=$("$1" bench tokenizer --json --repeat 1 --text "$2" --encoder "$3")
echo "$out"
node -e '
const r = JSON.parse(process.argv[1]);
for (const k of ["wancp_mb_s", "reference_mb_s", "ratio", "bytes", "tokens"]) {
  if (!(typeof r[k] === "number" && r[k] > 0)) { console.error(`bad or missing ${k}`); process.exit(1); }
}
const ratio = r.wancp_mb_s / r.reference_mb_s;
if (Math.abs(ratio - r.ratio) > 1e-3 * ratio) { console.error("ratio is not wancp_mb_s / reference_mb_s"); process.exit(1); }
' "$out"
