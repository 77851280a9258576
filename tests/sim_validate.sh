#!/usr/bin/env bash
# sim_validate.sh WANCP: `wancp sim validate` on this machine's kernel (needs root; skipped
# with 77 otherwise), the part of SIMULATION.md's V1 and V2 this two-core host emulates
# faithfully (see the README for the rest and why):
#   - one message rank 0 -> rank 1 at 100 Mbit/s without delay, 64 KiB .. 4 MiB: every case
#     within max(2%, 2 ms) of the link model (TCP's framing, ACKs, htb's bucket);
#   - ring all-gather, reduce-scatter and all-reduce over 4 ranks at 100 Mbit/s, 1 MiB:
#     within 5%;
#   - V6, time dilation: a 4 MiB message and ring all-gather over 4 ranks at 100 Mbit/s and
#     5 ms, and at D = 4 (25 Mbit/s, 20 ms): time / D within 5%;
#   - Ctrl-C in the middle: exit 130 and no namespace left; nothing left after a full run.
# Under the sanitizers (WANCP_SANITIZED=1) the runs must complete; the bounds are the plain
# build's. In the plain build a run that misses a bound (exit 1) is measured once more and
# the second run is the one checked (the first is printed): on this shared 2-core machine a
# 64 KiB message that takes 0.3-0.5 ms has twice taken 2.3-3 ms, median of 3, with nothing
# else running; a model that is wrong is wrong twice. (Each repetition of a message follows
# a send of the same size; after the 4 MiB one, BBR paced the 64 KiB one to 1.2-4.5 ms.)
set -uo pipefail
wancp=$1
[ "$(id -u)" = 0 ] || { echo "not root: skipped"; exit 77; }
ip netns add wancp-probe$$ 2>/dev/null || { echo "no network namespaces here: skipped"; exit 77; }
ip netns del wancp-probe$$
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }
validators() { ip netns list | awk '{print $1}' | grep -c '^wancp-val' ; }
before=$(validators)

validate() { # NAME ARGS...: `sim validate ARGS` into NAME.out and NAME.err; its exit status
  local name=$1
  shift
  "$wancp" sim validate "$@" >"$work/$name.out" 2>"$work/$name.err"
  local rc=$?
  if [ $rc = 1 ] && [ "${WANCP_SANITIZED:-0}" != 1 ]; then
    cat "$work/$name.out"
    echo "$name missed a bound: measuring once more"
    "$wancp" sim validate "$@" >"$work/$name.out" 2>"$work/$name.err"
    rc=$?
  fi
  return $rc
}
validate v1 --only v1 --rates 100mbit --delays 0 --max-bytes 4mib
v1=$?
validate v2 --only v2 --ranks 4 --rates 100mbit --delays 0 --collective-max-bytes 1mib
v2=$?
validate v6 --only v6 --ranks 4 --rates 100mbit --delays 5ms --dilations 1,4
v6=$?
cat "$work/v1.out" "$work/v1.err" "$work/v2.out" "$work/v2.err" "$work/v6.out"
if [ "${WANCP_SANITIZED:-0}" = 1 ]; then
  # Under AddressSanitizer the ranks' every byte costs several times the CPU, so on two cores
  # times are the sanitizer's: here the runs must complete and report (exit 0 or 1); the
  # bounds are the plain build's to check.
  check "V1, V2, V6 run to their verdicts under the sanitizers" \
    '[ $v1 -le 1 ] && [ $v2 -le 1 ] && [ $v6 -le 1 ] && grep -q "^4 of 4 checks\|^[0-3] of 4 checks" "$work/v1.out" &&
     grep -q "of 3 checks" "$work/v2.out" && [ "$(grep -c "^V6 " "$work/v6.out")" = 2 ]'
else
  check "V1: exit 0, 4 messages within their bounds" \
    '[ $v1 = 0 ] && grep -q "^4 of 4 checks within their bounds" "$work/v1.out" && [ "$(grep -c "^message .* pass$" "$work/v1.out")" = 4 ]'
  check "V2: exit 0, 3 collectives within their bounds" '[ $v2 = 0 ] && grep -q "^3 of 3 checks within their bounds" "$work/v2.out"'
  check "V6: exit 0, time / D within 5% for the message and the all-gather" \
    '[ $v6 = 0 ] && [ "$(grep -c "^V6 .*: pass$" "$work/v6.out")" = 2 ] && [ "$(grep -c "D = [14]: " "$work/v6.out")" = 4 ]'
fi
check "every case measured" '! grep -q "not measured" "$work/v1.out" "$work/v2.out" && ! grep -q "ranks: " "$work/v1.err" "$work/v2.err" "$work/v6.err"'
check "nothing left behind" '[ "$(validators)" = "$before" ]'

"$wancp" sim validate --only v1 --rates 100mbit --delays 0 --max-bytes 64mib >"$work/int.out" 2>&1 &
pid=$!
sleep 3
kill -INT $pid
wait $pid
status=$?
check "Ctrl-C: exit 130" '[ $status = 130 ]'
check "Ctrl-C: no namespace left" '[ "$(validators)" = "$before" ]'
check "Ctrl-C: no rank left" '! pgrep -f "sim validate" >/dev/null'

echo "$passes passed, $failures failed"
[ $failures = 0 ]
