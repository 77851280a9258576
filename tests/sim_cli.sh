#!/usr/bin/env bash
# sim_cli.sh WANCP SOURCE_DIR: `wancp sim` and `wancp bench calibrate` as a user meets them:
# the paper-scale table on a100-bf16 (JSON, read back), this host calibrated on ci-tiny and
# simulated on it, a real run's losses projected onto simulated wall-clock with its figure,
# and bad input (scenario values, hardware names and files, options): one line, exit 2.
set -uo pipefail
wancp=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }
# A JSON number after "KEY": within the object of arm NAME (one-line JSON).
arm_value() { tr '{' '\n' <"$1" | awk -v arm="\"name\": \"$2\"" -v key="\"$3\": " 'index($0, arm) {
    i = index($0, key); if (i) { s = substr($0, i + length(key)); sub(/[,}].*/, "", s); print s; exit } }'; }

"$wancp" sim --help | grep -q -- "--hardware"
check "sim --help" "[ $? -eq 0 ]"

# Paper scale on the A100 profile: six arms; compression over 300M mesh links lands near the
# 100G step; uncompressed at 300M is two orders of magnitude slower.
"$wancp" sim "$src/scenarios/paper-scale.ini" --hardware a100-bf16 --json >"$work/paper.json"
check "paper-scale sim runs" "[ $? -eq 0 ]"
fast=$(arm_value "$work/paper.json" "uncompressed@100G" step_s)
comp=$(arm_value "$work/paper.json" "compressed@300M-mesh" step_s)
slow=$(arm_value "$work/paper.json" "uncompressed@300M" step_s)
check "paper-scale figures present ($fast, $comp, $slow)" "[ -n '$fast' ] && [ -n '$comp' ] && [ -n '$slow' ]"
check "compressed@300M-mesh within 2x of uncompressed@100G" "awk 'BEGIN { exit !($comp < 2 * $fast) }'"
check "uncompressed@300M over 100x uncompressed@100G" "awk 'BEGIN { exit !($slow > 100 * $fast) }'"
"$wancp" sim "$src/scenarios/paper-scale.ini" --hardware a100-bf16 --set train.sync=S --arm compressed@300M-mesh \
    --json >"$work/sync.json"
synced=$(arm_value "$work/sync.json" "compressed@300M-mesh" step_s)
check "a per-step all-reduce at 300M costs over 60 s ($synced)" "awk 'BEGIN { exit !($synced > $comp + 60) }'"
# An arm's own switches reach the simulator: doubling its subspace ranks doubles its K/V bytes
# (the fp32 theta of psi is a few bytes per message next to chunk x rank coordinates).
for r in 4 8; do
  "$wancp" sim "$src/scenarios/paper-scale.ini" --hardware a100-bf16 --arm compressed@300M \
      --set arm.compressed@300M.rank_k=$r --set arm.compressed@300M.rank_v=$r --json >"$work/rank$r.json"
done
kv4=$(grep -o '"kv_forward": [0-9.e+]*' "$work/rank4.json" | sed -n 2p | cut -d' ' -f2)
kv8=$(grep -o '"kv_forward": [0-9.e+]*' "$work/rank8.json" | sed -n 2p | cut -d' ' -f2)
check "an arm's rank_k and rank_v price its K/V (rank 4: $kv4 B, rank 8: $kv8 B)" \
  "[ -n '$kv4' ] && awk 'BEGIN { r = $kv8 / $kv4; exit !(r > 1.99 && r < 2.01) }'"

# This host: calibrate on ci-tiny (its compressed arm's links delayed, so both kinds of
# shaped link are priced), simulate it; the text table names every arm.
"$wancp" bench calibrate "$src/scenarios/ci-tiny.ini" -o "$work/cpu.ini" --steps 1 \
    --set arm.compressed@300M.profile=profiles/wan-300m-jitter.ini >"$work/cal.txt" 2>&1
check "bench calibrate writes a profile" "[ $? -eq 0 ] && grep -q '^host = true' '$work/cpu.ini'"
if [ "$(id -u)" = 0 ] && ip netns add wancp-simprobe$$ 2>/dev/null; then
    ip netns del wancp-simprobe$$
    check "as root the byte cost comes through the rank namespaces, and they are gone after" \
        "grep -q 'through the rank namespaces' '$work/cal.txt' && ! ip netns list | grep -q '^wancp-cal'"
    # the shaped links' price: iperf3 through the first shaped arm's links, spinners on every core
    cost=$(awk -F' = ' '$1 == "link_cost_s" { sub(/@.*/, "", $2); print $2 }' "$work/cpu.ini")
    check "as root the shaped links are priced (link_cost_s $cost: positive, under 100 ns a byte)" \
        "grep -q '^# shaped links at .*(arm uncompressed@300M)' '$work/cal.txt' && awk 'BEGIN { exit !($cost > 0 && $cost < 100e-9) }'"
    delayed=$(awk -F' = ' '$1 == "delay_link_cost_s" { sub(/@.*/, "", $2); print $2 }' "$work/cpu.ini")
    check "as root the delayed links are priced apart (delay_link_cost_s $delayed: positive, under 100 ns a byte)" \
        "grep -q '^# shaped links at wan-300m-jitter: .*(arm compressed@300M).*(delay_link_cost_s)' '$work/cal.txt' && awk 'BEGIN { exit !($delayed > 0 && $delayed < 100e-9) }'"
    # a calibration this short can floor either price; sim is checked with set ones
    sed '/^link_cost_s/s/=.*/= 1e-09/; /^delay_link_cost_s/s/=.*/= 2e-08/' "$work/cpu.ini" >"$work/cpu-delay.ini"
    sed '/^link_cost_s/s/=.*/= 1e-09/; /^delay_link_cost_s/s/=.*/= 0/' "$work/cpu.ini" >"$work/cpu-nodelay.ini"
    "$wancp" sim "$src/scenarios/jitter.ini" --hardware "$work/cpu-delay.ini" --arm uncompressed@300M+jitter --json >"$work/jit-priced.json"
    "$wancp" sim "$src/scenarios/jitter.ini" --hardware "$work/cpu-nodelay.ini" --arm uncompressed@300M+jitter --json >"$work/jit-plain.json"
    priced_s=$(arm_value "$work/jit-priced.json" "uncompressed@300M+jitter" step_s)
    plain_s=$(arm_value "$work/jit-plain.json" "uncompressed@300M+jitter" step_s)
    check "sim charges delayed links their own price ($plain_s s with the rate-shaped 1 ns a byte, $priced_s s with 20)" \
        "awk 'BEGIN { exit !($priced_s > $plain_s) }'"
fi
check "the profile keeps both kinds of price" "grep -q '^link_cost_s = ' '$work/cpu.ini' && grep -q '^delay_link_cost_s = ' '$work/cpu.ini'"
check "the profile gives the host's cores to the step model" \
    "grep -q '^cores = $(getconf _NPROCESSORS_ONLN)\$' '$work/cpu.ini'"
"$wancp" bench calibrate "$src/scenarios/ci-tiny.ini" -o "$work/cpu-lo.ini" --steps 1 --path loopback >"$work/cal-lo.txt" 2>&1
check "--path loopback calibrates on loopback" "[ $? -eq 0 ] && grep -q 'exchange on loopback' '$work/cal-lo.txt'"
check "--path loopback leaves the shaped links unpriced" \
    "grep -q '^# shaped links: not priced' '$work/cal-lo.txt' && grep -q '^link_cost_s = 0\$' '$work/cpu-lo.ini' &&
     grep -q '^delay_link_cost_s = 0\$' '$work/cpu-lo.ini'"
"$wancp" sim "$src/scenarios/ci-tiny.ini" --hardware "$work/cpu.ini" >"$work/tiny.txt"
check "sim on the calibrated host" "[ $? -eq 0 ] && grep -q '^compressed@unshaped\|^uncompressed' '$work/tiny.txt'"
WANCP_HARDWARE="$work/cpu.ini" "$wancp" sim "$src/scenarios/ci-tiny.ini" --json >"$work/tiny.json"
check "cpu-local is what WANCP_HARDWARE names" "[ $? -eq 0 ] && grep -q '\"name\": \"cpu-local\"' '$work/tiny.json'"

# Losses of a real run (one process, 6 steps) projected onto each arm's simulated time.
"$wancp" train --train "$src/data/brown_bytes_train.bin" --val "$src/data/brown_bytes_val.bin" --vocab 256 \
    --layers 2 --dim 64 --heads 2 --ffn 128 --context 256 --batch 2 --steps 6 --eval-every 2 --val-tokens 1024 \
    --metrics "$work/loss.csv" 2>/dev/null
"$wancp" sim "$src/scenarios/ci-tiny.ini" --hardware "$work/cpu.ini" --loss "$work/loss.csv" -o "$work/proj" >/dev/null
check "--loss writes the figure" "[ $? -eq 0 ] && [ -s '$work/proj/sim_loss_vs_time.png' ] && [ -s '$work/proj/sim_loss_vs_time.svg' ]"
check "--loss writes increasing projected times" \
    "awk '/^#/ { last = 0; next } { if (\$2 < last) bad = 1; last = \$2; n++ } END { exit bad || n < 4 }' '$work/proj/plot-data/'*.sim"

# V5 against a committed bandwidth sweep: the knee (the rate where the step time is twice
# the unshaped arm's, log-linear between the bracketing arms), computed here from the
# summary alone, is what sim reports as measured.
sweep=$src/results/reference/bandwidth-sweep-2core
"$wancp" sim "$src/scenarios/bandwidth-sweep.ini" --hardware "$work/cpu.ini" --against "$sweep" --json >"$work/knee.json"
node -e '
const fs = require("fs");
const sim = JSON.parse(fs.readFileSync(process.argv[1], "utf8")), sum = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const rate = { "50M": 50e6, "100M": 100e6, "300M": 300e6, "1G": 1e9 };
const pts = sum.arms.filter(a => a.name.startsWith("uncompressed@") && rate[a.name.split("@")[1]])
  .map(a => [rate[a.name.split("@")[1]], a.step_time_s_median]).sort((x, y) => x[0] - y[0]);
const target = 2 * sum.arms.find(a => a.name === "uncompressed@unshaped").step_time_s_median;
let knee = NaN;
for (let i = 0; i + 1 < pts.length; i++)
  if (pts[i][1] >= target && pts[i + 1][1] <= target)
    knee = Math.exp(Math.log(pts[i][0]) + (pts[i][1] - target) / (pts[i][1] - pts[i + 1][1]) * Math.log(pts[i + 1][0] / pts[i][0]));
const k = sim.knee.find(x => x.arms === "uncompressed");
console.log(`knee of the sweep: here ${(knee / 1e6).toFixed(1)} Mbit/s, sim measured ${(k.measured_bps / 1e6).toFixed(1)}, predicted ${k.predicted_bps === null ? "none" : (k.predicted_bps / 1e6).toFixed(1)}`);
process.exit(Math.abs(k.measured_bps / knee - 1) < 1e-3 ? 0 : 1); /* the summary rounds to 6 digits */
' "$work/knee.json" "$sweep/summary.json"
check "sim --against: the sweep's knee as computed from its summary" '[ $? = 0 ]'

# A straggler arm's key reaches the simulator: rank 3 at 75 Mbit/s slows uncompressed CP.
"$wancp" sim "$src/scenarios/straggler.ini" --hardware a100-bf16 --json >"$work/strag.json"
even=$(arm_value "$work/strag.json" "uncompressed@300M" step_s)
slow=$(arm_value "$work/strag.json" "uncompressed@300M+slow3" step_s)
check "a straggler at B/4 makes the step over 1.5x slower ($even -> $slow)" "awk 'BEGIN { exit !($slow > 1.5 * $even) }'"

# Bad input: one line, exit 2.
expect_2() {
    local name=$1; shift
    "$@" >"$work/out" 2>"$work/err"
    local st=$?
    check "$name: exit 2 (got $st)" "[ $st -eq 2 ]"
    check "$name: one line naming it ($(head -c 200 "$work/err"))" "[ \$(wc -l <'$work/err') -eq 1 ] && grep -q '$2' '$work/err'"
}
printf '[hardware]\nname = x\npeak_flops = fast\n' >"$work/bad.ini"
expect_2 "no scenario" "$wancp" sim
expect_2 "missing scenario" "$wancp" sim "$work/none.ini"
expect_2 "unknown hardware" "$wancp" sim "$src/scenarios/ci-tiny.ini" --hardware tpu-v9
expect_2 "bad hardware file" "$wancp" sim "$src/scenarios/ci-tiny.ini" --hardware "$work/bad.ini"
WANCP_HARDWARE="$work/nothing.ini" "$wancp" sim "$src/scenarios/ci-tiny.ini" >/dev/null 2>"$work/err"
check "cpu-local before calibration: exit 2, says what to run" "[ $? -eq 2 ] && grep -q 'wancp bench calibrate' '$work/err'"
expect_2 "bad --straggler" "$wancp" sim "$src/scenarios/ci-tiny.ini" --hardware a100-bf16 --straggler x
expect_2 "straggler beyond the ranks" "$wancp" sim "$src/scenarios/ci-tiny.ini" --hardware a100-bf16 --straggler 7:4
expect_2 "bad --routing" "$wancp" sim "$src/scenarios/ci-tiny.ini" --hardware a100-bf16 --routing ring
expect_2 "unknown arm" "$wancp" sim "$src/scenarios/ci-tiny.ini" --hardware a100-bf16 --arm nope
expect_2 "bad scenario value" "$wancp" sim "$src/scenarios/ci-tiny.ini" --hardware a100-bf16 --set scenario.ranks=0
expect_2 "missing --against folder" "$wancp" sim "$src/scenarios/ci-tiny.ini" --hardware a100-bf16 --against "$work/no"
expect_2 "missing --loss file" "$wancp" sim "$src/scenarios/ci-tiny.ini" --hardware a100-bf16 --loss "$work/no.csv"
expect_2 "calibrate without a scenario" "$wancp" bench calibrate
expect_2 "calibrate: bad --path" "$wancp" bench calibrate "$src/scenarios/ci-tiny.ini" --path wifi
expect_2 "validate: bad --rates" "$wancp" sim validate --rates 5x
expect_2 "validate: rate out of range" "$wancp" sim validate --rates 20gbit
expect_2 "validate: bad --delays" "$wancp" sim validate --delays 2s
expect_2 "validate: one rank" "$wancp" sim validate --ranks 1
expect_2 "validate: bad --only" "$wancp" sim validate --only v3
expect_2 "validate: --max-bytes below 64 KiB" "$wancp" sim validate --max-bytes 1kib
expect_2 "validate: stray argument" "$wancp" sim validate extra
expect_2 "validate: one dilation" "$wancp" sim validate --only v6 --dilations 4
expect_2 "validate: dilation 0" "$wancp" sim validate --only v6 --dilations 0,4
"$wancp" sim validate --help | grep -q -- "--collective-max-bytes"
check "validate --help says its options" "[ $? -eq 0 ]"

echo "sim_cli: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
