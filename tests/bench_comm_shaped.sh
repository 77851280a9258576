#!/usr/bin/env bash
# bench_comm_shaped.sh WANCP PROFILES: `wancp bench comm` with every rank in its own
# namespace behind a 100 Mbit/s link (needs root; skipped with 77 otherwise), where the link
# and not this host's CPU is the ceiling. (At 300 Mbit/s it need not be: four shaped links'
# packet work, MTU-size frames through htb, takes 1.6 of two cores on a fast 2-core host and
# all of them on a slower one, where iperf3 and the collectives then measure the host.)
#   - iperf3 between the ranks carries 0.8 .. 1.0 of the link rate (TCP's payload is at most
#     0.956 of it; measured 0.85-0.95 on the hosts seen; a shaper at the wrong rate, or none,
#     is far outside);
#   - the ring collectives carry at least 0.95 of what iperf3 carries between the same
#     endpoints at the same time (ratio_min, sizes >= 4 MiB; each time a median of 5; on a
#     shared 2-core machine one run in several dips below, so a run under the bound is
#     measured once more and the better of the two counts, both printed);
#   - the CP step over that link is faster than its compute and its exchange measured
#     apart (overlap fraction > 0), the exchange weighing at least half the compute;
#   - bad input: exit 2 with one line; Ctrl-C: exit 130; nothing left behind either way.
# Under the sanitizers (WANCP_SANITIZED=1) the run must complete and report; the bounds are
# the plain build's.
set -uo pipefail
wancp=$1
profiles=$2
[ "$(id -u)" = 0 ] || { echo "not root: skipped"; exit 77; }
ip netns add wancp-probe$$ 2>/dev/null || { echo "no network namespaces here: skipped"; exit 77; }
ip netns del wancp-probe$$
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }
left() { ip netns list | awk '{print $1}' | grep -c '^wancp-bc' ; }
before=$(left)

bench() { # OUT: the measured run, its JSON into OUT
  "$wancp" bench comm --profile "$profiles/rate-100m.ini" --max-bytes 4194304 --iters 5 --json >"$1" 2>"$work/err"
}
bench "$work/out.json"
status=$?
cat "$work/out.json" "$work/err"
field() { # EXPR [FILE]: a JavaScript expression over the run's JSON (r)
  node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1])); console.log(eval(process.argv[2]))' \
    "${2:-$work/out.json}" "$1"
}
check "exit 0 and one JSON object of 18 rows, in namespaces" \
  '[ $status = 0 ] && [ "$(field "r.rows.length")" = 18 ] && [ "$(field "r.path")" = namespaces ] &&
   [ "$(field "r.link.startsWith(\"rate-100m\")")" = true ]'
check "iperf3 between the ranks carried 0.8 .. 1.0 of the 100 Mbit/s link: $(field "r.iperf3_gbit_per_link") Gbit/s" \
  '[ "$(field "r.iperf3_gbit_per_link > 0.08 && r.iperf3_gbit_per_link <= 0.1")" = true ]'
if [ "${WANCP_SANITIZED:-0}" = 1 ]; then
  check "under the sanitizers: a ratio and an overlap fraction reported" \
    '[ "$(field "r.ratio_min > 0 && Number.isFinite(r.overlap_fraction)")" = true ]'
else
  ratio=$(field "r.ratio_min")
  if [ "$(field "r.ratio_min < 0.95")" = true ]; then
    bench "$work/again.json" && ratio=$(field "Math.max($ratio, r.ratio_min)" "$work/again.json")
    echo "ratio_min $(field "r.ratio_min") in the first run, $(field "r.ratio_min" "$work/again.json") in a second"
  fi
  check "ratio_min >= 0.95 (busbw / iperf3 over sizes >= 4 MiB): $ratio" '[ "$(field "$ratio >= 0.95")" = true ]'
  check "the exchange weighs at least half the compute, and the step hides part of it" \
    '[ "$(field "r.cp_exchange_ms >= 0.5 * r.cp_compute_ms && r.overlap_fraction > 0 &&
         r.cp_step_ms < r.cp_compute_ms + r.cp_exchange_ms")" = true ]'
fi
check "nothing left behind" '[ "$(left)" = "$before" ]'

"$wancp" bench comm --path namespaces --profile "$work/none.ini" >"$work/bad.out" 2>"$work/bad.err"
status=$?
check "a missing profile: exit 2, one line naming it" \
  '[ $status = 2 ] && [ "$(wc -l <"$work/bad.err")" = 1 ] && grep -q "none.ini" "$work/bad.err"'

"$wancp" bench comm --profile "$profiles/wan-300m-rate.ini" >"$work/int.out" 2>&1 &
pid=$!
sleep 4
kill -INT $pid
wait $pid
status=$?
check "Ctrl-C: exit 130" '[ $status = 130 ]'
check "Ctrl-C: no namespace left" '[ "$(left)" = "$before" ]'
check "Ctrl-C: no rank or iperf3 left" '! pgrep -f "bench comm --profile" >/dev/null && ! pgrep -x iperf3 >/dev/null'

echo "$passes passed, $failures failed"
[ $failures = 0 ]
