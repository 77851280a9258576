#!/usr/bin/env bash
# train_cli.sh WANCP DATA_DIR: `wancp train` end to end on the Brown byte shards:
#   - the same seed gives bitwise the same losses (metrics files agree but for timings);
#   - stopping after 3 steps and resuming gives bitwise the run that never stopped;
#   - bad configs, shards and checkpoints exit 2 with one line naming the file or field.
set -uo pipefail
wancp=$1 data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }
[ -f "$data/brown_bytes_train.bin" ] || { echo "no $data/brown_bytes_train.bin: run harness/setup"; exit 1; }

tiny=(--train "$data/brown_bytes_train.bin" --val "$data/brown_bytes_val.bin" --vocab 256 --layers 2 --dim 64
      --heads 4 --kv-heads 2 --ffn 128 --context 64 --attn-block 16 --batch 2 --steps 6 --lr 3e-3 --warmup 2
      --eval-every 3 --val-tokens 1024 --threads 2)
# the columns that must agree bitwise: step, lr, train_loss, val_loss, grad_norm, tokens
losses() { grep -v '^#' "$1" | cut -d, -f1,3,4,5,6,7; }

"$wancp" train "${tiny[@]}" --seed 5 --metrics "$work/a.csv" 2>"$work/a.log"
check "first run succeeds" '[ $? = 0 ] && [ -f "$work/a.csv" ] && [ ! -e "$work/a.csv.partial" ]'
"$wancp" train "${tiny[@]}" --seed 5 --metrics "$work/b.csv" 2>/dev/null
check "same seed, same losses" 'diff <(losses "$work/a.csv") <(losses "$work/b.csv") >/dev/null'
check "metrics have 7 rows (step 0 and 6 steps) and a header with the commit" \
  '[ "$(losses "$work/a.csv" | wc -l)" = 8 ] && grep -q "^# commit: " "$work/a.csv" && grep -q "^# model: layers=2 dim=64" "$work/a.csv"'
check "validation loss at steps 0, 3, 6" '[ "$(grep -v "^#" "$work/a.csv" | awk -F, "\$5 != \"\"" | wc -l)" = 4 ]'
"$wancp" train "${tiny[@]}" --seed 6 --metrics "$work/c.csv" 2>/dev/null
check "another seed, other losses" '! diff <(losses "$work/a.csv") <(losses "$work/c.csv") >/dev/null'

# Stop after 3 steps, resume to 6: the same as never stopping.
"$wancp" train "${tiny[@]}" --seed 5 --checkpoint "$work/ck.bin" --stop-after 3 --metrics "$work/d1.csv" 2>"$work/d1.log"
check "stop-after exits 0 and says how to continue" '[ $? = 0 ] && grep -q "continue with --resume" "$work/d1.log"'
"$wancp" train "${tiny[@]}" --seed 5 --resume "$work/ck.bin" --metrics "$work/d2.csv" 2>/dev/null
check "resumed run finishes" '[ $? = 0 ]'
check "resume is bitwise" 'diff <(losses "$work/a.csv" | tail -n 3) <(losses "$work/d2.csv" | tail -n 3) >/dev/null'
check "the resumed file's first row has the uninterrupted row's lr" \
  '[ "$(grep -v "^#" "$work/d2.csv" | awk -F, "\$1 == 3 { print \$3 }")" = "$(grep -v "^#" "$work/a.csv" | awk -F, "\$1 == 3 { print \$3 }")" ]'
"$wancp" train "${tiny[@]}" --seed 5 --ranks 2 --resume "$work/ck.bin" >/dev/null 2>"$work/err"
check "a one-process checkpoint resumed over 2 ranks: exit 2, one line" \
  '[ $? = 2 ] && [ "$(wc -l <"$work/err")" = 1 ] && grep -q "a checkpoint of one process" "$work/err"'

# expect NEEDLE COMMAND...: exit 2 and one stderr line containing NEEDLE
expect2() {
  local needle=$1; shift
  "$@" >/dev/null 2>"$work/err"
  local rc=$?
  if [ $rc = 2 ] && [ "$(wc -l <"$work/err")" = 1 ] && grep -qF -- "$needle" "$work/err"; then
    passes=$((passes + 1))
  else
    echo "FAIL: $* -> $rc, wanted '$needle' in:"; sed 's/^/    /' "$work/err"; failures=$((failures + 1))
  fi
}
expect2 "dim = 250 is not divisible by heads = 4" "$wancp" train "${tiny[@]}" --dim 250
expect2 "heads = 4 is not divisible by kv_heads = 3" "$wancp" train "${tiny[@]}" --kv-heads 3
expect2 "context = 64 is not divisible by attn_block = 24" "$wancp" train "${tiny[@]}" --attn-block 24
expect2 "missing.bin: cannot open" "$wancp" train "${tiny[@]}" --train "$work/missing.bin"
expect2 "outside the vocabulary of 256" "$wancp" train "${tiny[@]}" --train "$data/brown_train.bin"
expect2 "field dim is 64 but this run has 128" "$wancp" train "${tiny[@]}" --dim 128 --resume "$work/ck.bin"
cp "$work/ck.bin" "$work/bad.bin"
printf '\x55' | dd of="$work/bad.bin" bs=1 seek=5000 conv=notrunc 2>/dev/null
expect2 "bad.bin: field checksum" "$wancp" train "${tiny[@]}" --resume "$work/bad.bin"
head -c 3000 "$work/ck.bin" >"$work/short.bin"
expect2 "short.bin: truncated" "$wancp" train "${tiny[@]}" --resume "$work/short.bin"
expect2 "--lr 'fast'" "$wancp" train "${tiny[@]}" --lr fast
# A flipped byte in the header is corruption, not a shape that disagrees.
cp "$work/ck.bin" "$work/head.bin"
printf '\x07' | dd of="$work/head.bin" bs=1 seek=20 conv=notrunc 2>/dev/null
expect2 "head.bin: field checksum does not match the contents (corrupt)" "$wancp" train "${tiny[@]}" --resume "$work/head.bin"
expect2 "ck.bin: field step is 3, beyond this run's 2 steps" "$wancp" train "${tiny[@]}" --steps 2 --warmup 0 --resume "$work/ck.bin"
expect2 "--warmup 9 is longer than the run's 6 steps" "$wancp" train "${tiny[@]}" --warmup 9
expect2 "--checkpoint $work/nowhere/ck.bin: folder $work/nowhere does not exist" \
  "$wancp" train "${tiny[@]}" --checkpoint "$work/nowhere/ck.bin"
# A checkpoint write killed half way leaves PATH.tmp.PID; the next write of PATH removes it.
dead=$(sh -c 'echo $$') # a PID that has exited
head -c 100000 /dev/zero >"$work/ck2.bin.tmp.$dead"
"$wancp" train "${tiny[@]}" --steps 1 --warmup 0 --checkpoint "$work/ck2.bin" 2>/dev/null
check "a killed writer's temporary checkpoint is removed by the next write" '[ -f "$work/ck2.bin" ] && [ ! -e "$work/ck2.bin.tmp.$dead" ]'
# Control bytes in input never reach the terminal.
"$wancp" train "${tiny[@]}" --lr $'\e[31mred\a' >/dev/null 2>"$work/err"
check "control bytes in a message are shown as ?" '[ $? = 2 ] && ! grep -q $'"'"'\e'"'"' "$work/err" && grep -qF "?[31mred?" "$work/err"'
check "no metrics file left by refused runs" '! ls "$work"/*.partial >/dev/null 2>&1'

# Ctrl-C: the run stops between steps with a checkpoint, exit 1; resuming finishes it.
"$wancp" train "${tiny[@]}" --steps 100000 --eval-every 0 --checkpoint "$work/int.bin" 2>"$work/int.log" &
pid=$!
sleep 3
kill -INT $pid
wait $pid
rc=$?
check "SIGINT exits 1 with a checkpoint" '[ $rc = 1 ] && [ -f "$work/int.bin" ] && grep -q "interrupted at step" "$work/int.log"'
"$wancp" train "${tiny[@]}" --steps 100000 --eval-every 0 --resume "$work/int.bin" --stop-after 1 2>/dev/null
check "the interrupted run resumes" '[ $? = 0 ]'

# A full disk fails the run naming the file, and leaves nothing under the final name (root:
# a 64 KiB tmpfs; elsewhere skipped).
if [ "$(id -u)" = 0 ] && mkdir "$work/full" && mount -t tmpfs -o size=64k wancp-full "$work/full" 2>/dev/null; then
  head -c 60000 /dev/zero >"$work/full/filler" 2>/dev/null
  "$wancp" train "${tiny[@]}" --steps 40 --eval-every 0 --metrics "$work/full/m.csv" >/dev/null 2>"$work/err"
  rc=$?
  check "metrics on a full disk: exit 1 naming the file, nothing left" \
    '[ $rc = 1 ] && grep -q "m.csv.partial: cannot write: No space left on device" "$work/err" &&
     [ ! -e "$work/full/m.csv" ] && [ ! -e "$work/full/m.csv.partial" ]'
  umount "$work/full"
fi

echo "$passes passed, $failures failed"
[ "$failures" = 0 ]
