#!/usr/bin/env bash
# fault_injection.sh WANCP SOURCE_DIR: faults during `wancp run` leave nothing behind (root,
# namespaces; skipped with 77 otherwise). Each case runs one shaped arm of ci-tiny (lengthened,
# so that the fault lands mid-arm), injects one fault, then counts what is left: the run's
# namespaces, its processes (every process of a run names its results folder on its command
# line: ranks by --metrics, the capture and relays as forks of the run), and temporary files
# in the results folder. Every count must be zero; the run must end within its bound.
#   - kill -9 of the parent: ranks stop (SIGTERM through PR_SET_PDEATHSIG) and write their
#     metrics, the capture writes wire.csv; the next `wancp run` removes the orphaned namespaces;
#   - kill -9 of a rank: the arm fails naming it, the run goes on and ends;
#   - kill -9 of the capture: the arm ends, the run ends;
#   - kill -9 of a relay (where the kernel has no netem): the ranks stall, the arm fails;
#   - SIGSTOP of a rank: the others notice the stall within WANCP_COMM_TIMEOUT, the arm fails;
#   - SIGINT to the run process alone, during setup, while ranks start and mid-training:
#     exit 130 within 3 s;
#   - a results folder on a disk that fills (a 160 KiB tmpfs): exit 1 naming the file, no
#     empty or cut figure.
set -uo pipefail
wancp=$1 src=$2
[ "$(id -u)" = 0 ] || { echo "not root: skipped"; exit 77; }
ip netns add wancp-probe$$ 2>/dev/null || { echo "no network namespaces here: skipped"; exit 77; }
ip netns del wancp-probe$$
[ -e "$src/data/brown_bytes_train.bin" ] || { echo "no data/brown_bytes_train.bin (harness/setup makes it)"; exit 1; }
work=$(mktemp -d)
trap 'pkill -KILL -f "$work" 2>/dev/null; "$wancp" shape down --all >/dev/null 2>&1; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }
export WANCP_COMM_TIMEOUT=5

arm=uncompressed@300M
# start NAME [--set ...]: one long arm in the background; sets pid and dir
start() {
  dir=$work/$1
  env --default-signal=INT "$wancp" run "$src/scenarios/ci-tiny.ini" --only "$arm" --set scenario.steps=100000 \
    --set scenario.timeout=60 ${2:-} -o "$dir" >"$work/$1.out" 2>"$work/$1.err" &
  pid=$!
}
# wait_for FILE SECONDS: until FILE exists
wait_for() { local k; for k in $(seq $(($2 * 10))); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }
# leftovers PID DIR: "namespaces processes temporaries"
leftovers() {
  echo "$(ip netns list | awk '{print $1}' | grep -c "^wancp-run$1-") $(pgrep -f "$2" | grep -vc "^$$\$") \
$(find "$2" \( -name '*.tmp.*' -o -name '*.partial' \) 2>/dev/null | wc -l)"
}
# finish PID SECONDS: waits for the run, killing it after SECONDS; sets rc and took (seconds)
finish() {
  local t0 k
  t0=$(date +%s.%N)
  for k in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$1" 2>/dev/null && kill -KILL "$1"
  wait "$1"; rc=$?
  took=$(echo "$(date +%s.%N) - $t0" | bc)
}
in_training() { wait_for "$dir/$arm/metrics.csv.partial" 30 && sleep 1.5; }

# 1. kill -9 of the parent mid-training.
start parent; in_training
kill -KILL $pid; wait $pid 2>/dev/null
sleep 2
read -r ns procs tmps <<<"$(leftovers $pid "$dir")"
echo "parent killed: $ns namespaces (expected until the next run), $procs processes, $tmps temporaries"
check "parent killed: its ranks, capture and relays are gone within 2 s" '[ "$procs" = 0 ]'
check "parent killed: the ranks closed their metrics and the capture wrote wire.csv" \
  '[ -s "$dir/$arm/metrics.csv" ] && [ -s "$dir/$arm/wire.csv" ] && [ "$tmps" = 0 ]'
"$wancp" run "$src/scenarios/ci-tiny.ini" --only "$arm" --set scenario.steps=4 -o "$work/next" >/dev/null 2>"$work/next.err"
check "the next run removes the orphaned namespaces and says so" \
  '[ "$(leftovers $pid "$dir" | cut -d" " -f1)" = 0 ] && grep -q "removed 3 namespaces left by runs that were killed (run$pid)" "$work/next.err"'

# 2. kill -9 of a rank: the arm fails naming it, the run ends.
start rank; in_training
kill -KILL "$(pgrep -f -- "--metrics $dir/$arm/metrics.csv" | tail -n 1)"
finish $pid 30
echo "rank killed: exit $rc after $took s"
check "rank killed: the run ends failed, the rank named" '[ "$rc" = 1 ] && grep -q "rank [01]" "$dir/run.json"'
check "rank killed: nothing left" '[ "$(leftovers $pid "$dir")" = "0 0 0" ]'

# 3. kill -9 of the capture (a fork of the run that is not a rank).
start capture; in_training
capture=$(pgrep -P $pid -f -- "-o $dir" | head -n 1)
kill -KILL "$capture"
sleep 2
kill -INT $pid
finish $pid 10
echo "capture killed: exit $rc after $took s"
check "capture killed: the run still stops and ends" '[ "$rc" = 130 ]'
check "capture killed: nothing left" '[ "$(leftovers $pid "$dir")" = "0 0 0" ]'

# 3b. kill -9 of a relay (the user-space delay of a profile with delay, on a kernel without
# netem; the relays are the run's children that lead their own session).
start relay "--set arm.$arm.profile=profiles/wan-300m.ini"; in_training
relay=$(ps -o pid=,sid= --ppid $pid | awk '$1 == $2 { print $1; exit }')
if [ -n "$relay" ]; then
  kill -KILL "$relay"
  finish $pid 40
  echo "relay killed: exit $rc after $took s"
  check "relay killed: the arm fails on the stall, within 12 s" '[ "$rc" = 1 ] && awk -v t="$took" "BEGIN { exit !(t < 12) }"'
else
  echo "no relay (this kernel has netem): delay comes from netem"
  kill -INT $pid; finish $pid 10
fi
check "relay case: nothing left" '[ "$(leftovers $pid "$dir")" = "0 0 0" ]'

# 4. SIGSTOP of a rank: a stall, noticed within the communicator's timeout (5 s here).
start stop; in_training
kill -STOP "$(pgrep -f -- "--metrics $dir/$arm/metrics.csv" | tail -n 1)"
finish $pid 40
echo "rank stopped: exit $rc after $took s"
check "rank stopped: the arm fails on the stall, within 12 s" \
  '[ "$rc" = 1 ] && awk -v t="$took" "BEGIN { exit !(t < 12) }" && grep -q "stalled\|did not exit\|timed out\|nothing received" "$dir/run.json"'
check "rank stopped: nothing left" '[ "$(leftovers $pid "$dir")" = "0 0 0" ]'

# 5. SIGINT to the run process alone, at each phase.
for phase in setup ranks training; do
  start "int-$phase"
  case $phase in
    setup) sleep 0.2 ;;
    ranks) wait_for "$dir/$arm/rank0.log" 30 ;;
    training) in_training ;;
  esac
  kill -INT $pid
  finish $pid 10
  echo "SIGINT during $phase: exit $rc after $took s"
  check "SIGINT during $phase: exit 130 within 3 s" '[ "$rc" = 130 ] && awk -v t="$took" "BEGIN { exit !(t < 3) }"'
  check "SIGINT during $phase: nothing left" '[ "$(leftovers $pid "$dir")" = "0 0 0" ]'
done

# 6. A results folder on a disk that fills: the run fails naming the file, leaves no empty or
# cut figure and no temporary file, and never says "figures:".
mkdir "$work/full"
if mount -t tmpfs -o size=160k wancp-full "$work/full" 2>/dev/null; then
  "$wancp" run "$src/scenarios/ci-tiny.ini" --only uncompressed@unshaped -o "$work/full/r" >/dev/null 2>"$work/full.err"
  rc=$?
  check "full disk: exit 1 naming the file, no figures line" \
    '[ "$rc" = 1 ] && grep -q "left it empty or cut\|cannot write\|No space left" "$work/full.err" && ! grep -q "^figures:" "$work/full.err"'
  check "full disk: every figure left is whole, nothing temporary" \
    'for f in "$work"/full/r/*.png; do [ -e "$f" ] || continue; tail -c 12 "$f" | grep -q IEND || exit 1; done;
     [ -z "$(find "$work/full/r" -size 0 -name "*.png" -o -size 0 -name "*.svg" -o -name "*.tmp.*" -o -name "*.partial")" ]'
  umount "$work/full"
fi

echo "$passes passed, $failures failed"
[ "$failures" = 0 ]
