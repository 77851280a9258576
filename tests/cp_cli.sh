#!/usr/bin/env bash
# cp_cli.sh WANCP DATA_DIR: `wancp train --ranks P` end to end on loopback:
#   - P = 2 and 4 follow the single-process losses (Mode S; fp32 rounding only);
#   - Mode A trains too, and the bytes columns count the traffic classes;
#   - kill -9 of one rank: the launcher names it, stops the others, exits 1, leaves nothing.
set -uo pipefail
wancp=$1 data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"; pkill -f "$work" 2>/dev/null' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }

tiny=(--train "$data/brown_bytes_train.bin" --val "$data/brown_bytes_val.bin" --vocab 256 --layers 2 --dim 64
      --heads 4 --kv-heads 2 --ffn 128 --context 256 --attn-block 16 --batch 2 --steps 8 --lr 3e-3 --warmup 2
      --eval-every 4 --val-tokens 2048 --threads 1 --wire fp32)
# step, train_loss, val_loss
losses() { grep -v '^#' "$1" | tail -n +2 | cut -d, -f1,4,5; }
close() { # FILE_A FILE_B: every loss within 1e-4 relative
  paste -d, <(losses "$1") <(losses "$2") | awk -F, '{
    for (i = 2; i <= 3; i++) { a = $i; b = $(i + 3); if (a == "" && b == "") continue;
      d = a - b; if (d < 0) d = -d; if (d > 1e-4 * (b < 0 ? -b : b)) { print "step " $1 ": " a " vs " b; bad = 1 } }
  } END { exit bad }'
}

"$wancp" train "${tiny[@]}" --metrics "$work/p1.csv" 2>/dev/null
check "single process runs" '[ $? = 0 ]'
for P in 2 4; do
  "$wancp" train "${tiny[@]}" --ranks $P --metrics "$work/p$P.csv" 2>"$work/p$P.log"
  check "--ranks $P runs" '[ $? = 0 ]'
  check "--ranks $P follows one process" 'close "$work/p$P.csv" "$work/p1.csv"'
  check "--ranks $P counts kv and sync bytes" \
    '[ "$(grep -v "^#" "$work/p$P.csv" | tail -n 1 | awk -F, "{print (\$9 > 0 && \$10 > 0 && \$11 > 0)}")" = 1 ]'
done
"$wancp" train "${tiny[@]}" --ranks 4 --kv-regather --metrics "$work/g4.csv" 2>/dev/null
check "--kv-regather follows one process" 'close "$work/g4.csv" "$work/p1.csv"'
check "--kv-regather: the metrics say so, and kv-forward bytes grow by the backward's gather" \
  'grep -q "kv_regather=true" "$work/g4.csv" && grep -q "kv_regather=false" "$work/p4.csv" &&
   [ "$(grep -v "^#" "$work/g4.csv" | tail -n 1 | cut -d, -f9)" -gt "$(grep -v "^#" "$work/p4.csv" | tail -n 1 | cut -d, -f9)" ]'
"$wancp" train "${tiny[@]}" --ranks 2 --cp-layout contiguous --metrics "$work/c2.csv" 2>/dev/null
check "contiguous layout follows one process" 'close "$work/c2.csv" "$work/p1.csv"'
"$wancp" train "${tiny[@]}" --ranks 2 --sync A --sync-every 2 --metrics "$work/a2.csv" 2>/dev/null
check "Mode A runs and lowers the loss" \
  '[ $? = 0 ] && awk -F, "!/^#/ && NR > 1 && \$5 != \"\" {v[n++] = \$5} END {exit !(v[n-1] < v[0])}" "$work/a2.csv"'

# kill -9 of rank 1 in a long run
"$wancp" train "${tiny[@]}" --steps 1000000 --eval-every 0 --ranks 4 2>"$work/kill.log" &
launcher=$!
sleep 3
victim=$(pgrep -f -- "--steps 1000000" | while read -r pid; do
  [ "$pid" != "$launcher" ] && tr '\0' '\n' </proc/"$pid"/environ 2>/dev/null | grep -qx RANK=1 && echo "$pid"; done | head -n 1)
check "found rank 1" '[ -n "$victim" ]'
start=$(date +%s)
kill -9 "$victim"
wait $launcher
rc=$?
elapsed=$(( $(date +%s) - start ))
check "launcher exits 1 after a rank is killed" '[ $rc = 1 ]'
check "launcher names the killed rank" 'grep -q "rank 1 was killed by signal 9" "$work/kill.log"'
check "the others stopped within the timeout ($elapsed s)" '[ $elapsed -lt 60 ]'
check "no rank process is left" '! pgrep -f -- "--steps 1000000" >/dev/null'
sed 's/^/    /' "$work/kill.log" | head -n 8

echo "$passes passed, $failures failed"
[ "$failures" = 0 ]
