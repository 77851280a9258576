#!/usr/bin/env bash
# compress_cli.sh WANCP DATA_DIR: `wancp train --compress` end to end (Brown byte shards):
#   - one process over 8 chunks and 4 ranks over loopback give the same losses (the model
#     depends on the chunk length only), bf16 wire included;
#   - the compressed column is 0 during warm-up, 1 after, 0 again after --unplug-at;
#   - per-step kv bytes of rank 0 equal METHOD.md section 5's formulas, with the last block
#     exact and with it compressed;
#   - a run stopped after the warm start resumes bitwise (the bases travel in checkpoints);
#   - bad compression options: one line, exit 2.
set -uo pipefail
wancp=$1 data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }
expect2() { # NEEDLE CMD...: exit status 2 and one line on stderr naming the problem
  local needle=$1; shift
  "$@" >/dev/null 2>"$work/err"
  local rc=$?
  check "exit 2 and '$needle' from: ${*:2}" '[ $rc = 2 ] && grep -qF -- "$needle" "$work/err"'
}

plain=(--train "$data/brown_bytes_train.bin" --val "$data/brown_bytes_val.bin" --vocab 256 --layers 2 --dim 64
       --heads 4 --kv-heads 2 --ffn 128 --context 256 --attn-block 16 --batch 2 --steps 24 --lr 3e-3 --warmup 2
       --eval-every 8 --val-tokens 2048 --threads 1)
tiny=("${plain[@]}" --compress --warm-steps 6 --cov-steps 3)
# step, train_loss, val_loss
losses() { grep -v '^#' "$1" | tail -n +2 | cut -d, -f1,4,5; }
column() { grep -v '^#' "$1" | tail -n +2 | cut -d, -f"$2" | tr '\n' ' '; }

"$wancp" train "${tiny[@]}" --chunks 8 --metrics "$work/c8.csv" 2>"$work/c8.log"
check "one process over 8 chunks runs" '[ $? = 0 ]'
"$wancp" train "${tiny[@]}" --ranks 4 --check-shared --metrics "$work/r4.csv" 2>"$work/r4.log"
check "4 ranks run with the shared-state check" '[ $? = 0 ]'
check "4 ranks follow one process over the same chunks" \
  'paste -d, <(losses "$work/c8.csv") <(losses "$work/r4.csv") | awk -F, "{for (i = 2; i <= 3; i++) {
     a = \$i; b = \$(i + 3); d = a - b; if (d < 0) d = -d; if (d > 1e-4 * (b < 0 ? -b : b)) bad = 1 }} END {exit bad}"'
check "compressed from the warm start on" \
  '[ "$(column "$work/r4.csv" 13)" = "0 0 0 0 0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 " ]'

# Per-step kv-forward bytes of rank 0 (p = 0 sends P-1 = 3 messages per layer and sequence):
# a basis per KV head (2 heads of d_head = 16): r_K = 1 + 1, r_V = 1 + 1, k = 1 + 1; m = 32, bf16:
# mu = 32*4*2 + 4*2*2 = 272, mu0 = 2*32*32*2 = 4096. One basis over d_kv = 32 (--basis layer):
# r_K = 1, r_V = 2, k = 1, fp32: mu = 32*3*4 + 4*1*2 = 392.
step_bytes() { # FILE STEP: kv_fwd_tx of STEP minus STEP-1
  grep -v '^#' "$1" | tail -n +2 | awk -F, -v s="$2" '$1 == s - 1 {a = $9} $1 == s {b = $9} END {print b - a}'
}
check "uncompressed step: 3 x 2 seq x 2 layers x mu0" '[ "$(step_bytes "$work/r4.csv" 3)" = $((3 * 2 * (4096 + 4096))) ]'
check "compressed step, last block exact: 3 x 2 x (mu + mu0)" '[ "$(step_bytes "$work/r4.csv" 10)" = $((3 * 2 * (272 + 4096))) ]'
"$wancp" train "${tiny[@]}" --ranks 4 --compress-last --unplug-at 0.75 --metrics "$work/last.csv" 2>/dev/null
check "--compress-last runs" '[ $? = 0 ]'
check "compressed step, every block: 3 x 2 x 2 mu" '[ "$(step_bytes "$work/last.csv" 10)" = $((3 * 2 * 2 * 272)) ]'
check "unplugged from 75% of the steps" \
  '[ "$(column "$work/last.csv" 13)" = "0 0 0 0 0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 0 0 0 0 0 0 " ]'
"$wancp" train "${tiny[@]}" --ranks 4 --wire fp32 --basis layer --metrics "$work/fp32.csv" 2>/dev/null
check "fp32 wire, one basis per layer: mu = 32*3*4 + 8" '[ "$(step_bytes "$work/fp32.csv" 10)" = $((3 * 2 * (392 + 8192))) ]'

# Options that move the shared state or the weights apart: every rank must still agree.
"$wancp" train "${tiny[@]}" --ranks 4 --stiefel --stiefel-every 3 --check-shared 2>"$work/stiefel.log"
check "Stiefel steps on U0 keep every rank's shared state equal" \
  '[ $? = 0 ] && grep -q "orthonormal to .*; shared state [0-9a-f]* on every rank" "$work/stiefel.log"'
"$wancp" train "${tiny[@]}" --ranks 2 --sync A --sync-every 3 --check-shared --metrics "$work/modeA.csv" 2>/dev/null
check "Mode A with compression trains" \
  '[ $? = 0 ] && awk -F, "!/^#/ && NR > 1 && \$5 != \"\" {v[n++] = \$5} END {exit !(v[n-1] < v[0])}" "$work/modeA.csv"'

"$wancp" train "${tiny[@]}" --ranks 2 --cheap-rotation --check-shared --metrics "$work/cheap.csv" 2>/dev/null
check "the cheaper rotation trains and says so" '[ $? = 0 ] && grep -q "cheap_rotation=true" "$work/cheap.csv"'

# Stop after the warm start, resume: the same as never stopping.
"$wancp" train "${tiny[@]}" --chunks 8 --checkpoint "$work/ck.bin" --stop-after 12 2>/dev/null
"$wancp" train "${tiny[@]}" --chunks 8 --resume "$work/ck.bin" --metrics "$work/resumed.csv" 2>/dev/null
check "resumed after the warm start" '[ $? = 0 ]'
check "resume after the warm start is bitwise" \
  'diff <(losses "$work/c8.csv" | tail -n 3) <(losses "$work/resumed.csv" | tail -n 3) >/dev/null'

base=(--train "$data/brown_bytes_train.bin" --val "$data/brown_bytes_val.bin" --vocab 256 --layers 2 --dim 64
      --heads 4 --kv-heads 2 --context 256 --steps 2)
expect2 "--compress needs chunks" "$wancp" train "${base[@]}" --compress
expect2 "compression options need --compress" "$wancp" train "${base[@]}" --chunks 4 --rank-k 2
expect2 "rank_k = 40 must be 1..d_kv = 32" "$wancp" train "${base[@]}" --chunks 4 --compress --basis layer --rank-k 40
expect2 "ranks per basis 17 (K) and 1 (V) must be 1..its width 16" \
  "$wancp" train "${base[@]}" --chunks 4 --compress --rank-k 17
expect2 "--basis 'kv': expected head or layer" "$wancp" train "${base[@]}" --chunks 4 --compress --basis kv
expect2 "--rank-v '0'" "$wancp" train "${base[@]}" --chunks 4 --compress --rank-v 0
expect2 "--wire 'fp16': expected bf16 or fp32" "$wancp" train "${base[@]}" --wire fp16
expect2 "--planes 17: 2 x planes must not exceed d_kv = 32" \
  "$wancp" train "${base[@]}" --chunks 4 --compress --basis layer --planes 17
expect2 "--planes 9: 2 x planes must not exceed d_head = 16" "$wancp" train "${base[@]}" --chunks 4 --compress --planes 9
expect2 "--cheap-rotation fixes the planes" "$wancp" train "${base[@]}" --chunks 4 --compress --cheap-rotation --stiefel
expect2 "--cheap-rotation needs 2 x rank <= d_kv = 32 (rank_v is 20)" \
  "$wancp" train "${base[@]}" --chunks 4 --compress --basis layer --cheap-rotation --rank-v 20
expect2 "--cheap-rotation needs 2 x rank <= d_head = 16 (rank_v is 9)" \
  "$wancp" train "${base[@]}" --chunks 4 --compress --cheap-rotation --rank-v 9
expect2 "--chunks is for one process" "$wancp" train "${base[@]}" --chunks 4 --ranks 2
expect2 "--chunks 3" "$wancp" train "${base[@]}" --chunks 3
expect2 "field psi_k is 2 but this run has 0" "$wancp" train "${plain[@]}" --chunks 8 --resume "$work/ck.bin"
expect2 "field psi_k is 2 but this run has 1" "$wancp" train "${tiny[@]}" --chunks 8 --basis layer --resume "$work/ck.bin"

echo "$passes passed, $failures failed"
[ "$failures" = 0 ]
