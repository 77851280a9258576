#!/usr/bin/env bash
# run_ci_tiny.sh WANCP SOURCE_DIR: the harness end to end on scenarios/ci-tiny.ini (needs
# root for the namespaces; skipped with 77 otherwise):
#   - three arms run in shaped namespaces: results folder with run.json, per-arm metrics and
#     wire captures, summary.json, the figures; `wancp check` against METHOD.md's formulas and
#     against results/reference/ci-tiny.json (exit 0); the simulator beside the run
#     (hardware.ini before the arms, sim.json after, the summary's table); nothing left behind;
#   - a rank killed with SIGKILL: its arm is failed with the rank named; the other arms complete;
#   - Ctrl-C (SIGINT) during an arm: exit non-zero, every namespace removed, the partial
#     results folder summarised and plotted.
set -uo pipefail
wancp=$1 src=$2
[ "$(id -u)" = 0 ] || { echo "not root: skipped"; exit 77; }
ip netns add wancp-probe$$ 2>/dev/null || { echo "no network namespaces here: skipped"; exit 77; }
ip netns del wancp-probe$$
[ -e "$src/data/brown_bytes_train.bin" ] || { echo "no data/brown_bytes_train.bin (harness/setup makes it)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }
left() { ip netns list | awk '{print $1}' | grep -c "^wancp-run$1-" ; }
json() { node -e "const s=require(process.argv[1]); $1" "$2"; }

# 1. The whole scenario.
start=$(date +%s)
"$wancp" run "$src/scenarios/ci-tiny.ini" -o "$work/ok" >"$work/ok.out" 2>"$work/ok.err"
status=$? took=$(($(date +%s) - start))
echo "ci-tiny ran in $took s (exit $status)"
check "ci-tiny: exit 0" '[ $status = 0 ]' || cat "$work/ok.err"
check "ci-tiny: results folder" '[ -s "$work/ok/run.json" ] && [ -s "$work/ok/scenario.ini" ] && [ -s "$work/ok/summary.md" ]'
for arm in uncompressed@300M compressed@300M uncompressed@unshaped; do
    check "ci-tiny: $arm has metrics, wire capture and rank logs" \
          '[ -s "$work/ok/$arm/metrics.csv" ] && [ -s "$work/ok/$arm/wire.csv" ] && [ -e "$work/ok/$arm/rank1.log" ]'
done
check "ci-tiny: every arm ok in summary.json" 'json "for (const a of s.arms) if (a.outcome !== \"ok\" || a.steps !== 12) process.exit(1)" "$work/ok/summary.json"'
check "ci-tiny: figures" '[ "$(ls "$work/ok"/*.png "$work/ok"/*.svg | wc -l)" = 8 ]'
check "ci-tiny: compressed K/V on the wire <= 8% of uncompressed (tiny chunks carry theta)" \
      'json "const [u,c]=s.arms; if (!(c.kv_bytes_per_step_wire < 0.08 * u.kv_bytes_per_step_wire)) process.exit(1)" "$work/ok/summary.json"'
"$wancp" check "$work/ok" --against "$src/results/reference/ci-tiny.json" >"$work/check.out" 2>&1
check "ci-tiny: wancp check against the formulas and the reference" '[ $? = 0 ]' || cat "$work/check.out"
check "ci-tiny: the simulator beside the run (calibration before, prediction after, in the summary and figure)" \
      '[ -s "$work/ok/hardware.ini" ] && [ -s "$work/ok/sim.json" ] && grep -q "^## Predicted against measured step time" "$work/ok/summary.md" &&
       json "if (s.predicted_vs_measured.length !== 3 || !s.predicted_vs_measured.every(p => p.predicted_step_s > 0 && p.measured_step_s > 0)) process.exit(1)" "$work/ok/summary.json" &&
       grep -qx "has_prediction = 1" "$work/ok/plot-data/arms.gp"' || cat "$work/ok.err"
check "ci-tiny: nothing left behind" '[ "$(ip netns list | grep -c "^wancp-run")" = 0 ]'
check "ci-tiny: within 3 minutes" '[ $took -le 180 ]'

# 2. A rank killed in the first arm: that arm fails naming it, the others complete.
"$wancp" run "$src/scenarios/ci-tiny.ini" --set scenario.steps=600 --set arm.compressed@300M.warm_steps=2 \
    --set train.eval_every=1000 -o "$work/kill" >"$work/kill.out" 2>"$work/kill.err" &
runner=$!
prefix=$((runner % 100000))
for _ in $(seq 200); do
    pids=$(ip netns pids "wancp-run$prefix-r1" 2>/dev/null)
    [ -n "$pids" ] && [ -s "$work/kill/uncompressed@300M/metrics.csv.partial" ] && break
    sleep 0.1
done
kill -9 $pids 2>/dev/null
# the other arms then run their 600 tiny steps
wait $runner
status=$?
check "killed rank: exit non-zero" '[ $status != 0 ]'
check "killed rank: the arm is failed, rank 1 named" \
      'json "const a=s.arms[0]; if (a.outcome !== \"failed\" || !/rank 1 was killed by signal 9/.test(a.reason)) process.exit(1)" "$work/kill/run.json"' \
      || grep reason "$work/kill/run.json"
check "killed rank: the other arms complete" \
      'json "if (s.arms[1].outcome !== \"ok\" || s.arms[2].outcome !== \"ok\") process.exit(1)" "$work/kill/run.json"'
check "killed rank: nothing left behind" '[ "$(left $prefix)" = 0 ]'

# 3. Ctrl-C in the middle of the first arm.
"$wancp" run "$src/scenarios/ci-tiny.ini" --set scenario.steps=100000 -o "$work/int" >"$work/int.out" 2>"$work/int.err" &
runner=$!
prefix=$((runner % 100000))
for _ in $(seq 200); do
    [ -n "$(awk -F, '$1 >= 5' "$work/int/uncompressed@300M/metrics.csv.partial" 2>/dev/null)" ] && break
    sleep 0.1
done
kill -INT $runner
wait $runner
status=$?
check "Ctrl-C: exit non-zero" '[ $status != 0 ]'
check "Ctrl-C: every namespace removed" '[ "$(left $prefix)" = 0 ]'
check "Ctrl-C: run.json says interrupted" \
      'json "if (s.interrupted !== true || s.arms[0].outcome !== \"interrupted\" || s.arms[1].outcome !== \"not-run\") process.exit(1)" "$work/int/run.json"'
check "Ctrl-C: the partial results are summarised and plotted" \
      '[ -s "$work/int/summary.json" ] && [ -s "$work/int/loss_vs_step.png" ] && [ -s "$work/int/uncompressed@300M/metrics.csv" ]'
check "Ctrl-C: no rank process left" '! pgrep -f "wancp train.*$work/int" >/dev/null'

# 4. Seeds and dilation = auto, end to end: one arm, two seeds, D chosen on this host.
"$wancp" run "$src/scenarios/ci-tiny.ini" --only uncompressed@300M --set scenario.seeds=1,2 --set scenario.steps=8 \
    --set scenario.dilation=auto -o "$work/seeds" >"$work/seeds.out" 2>"$work/seeds.err"
check "seeds + auto: exit 0, one folder per seed" \
      '[ $? = 0 ] && [ -s "$work/seeds/uncompressed@300M/seed-1/metrics.csv" ] && [ -s "$work/seeds/uncompressed@300M/seed-2/metrics.csv" ]' ||
      cat "$work/seeds.err"
check "seeds: each seed its own --seed, initialisation and data (different losses)" \
      'grep -q "^# seed: 2" "$work/seeds/uncompressed@300M/seed-2/metrics.csv" &&
       [ "$(grep -v "^#" "$work/seeds/uncompressed@300M/seed-1/metrics.csv" | cut -d, -f4 | sed -n 3p)" != \
         "$(grep -v "^#" "$work/seeds/uncompressed@300M/seed-2/metrics.csv" | cut -d, -f4 | sed -n 3p)" ]'
check "seeds: summary.json has the arm over both seeds, with an interval" \
      'json "const g=s.over_seeds.find(g=>g.name===\"uncompressed@300M\"); if (g.seeds_ok!==2 || g.final_val_loss.n!==2 || !(g.final_val_loss.half_width_95>0)) process.exit(1)" "$work/seeds/summary.json"'
check "auto: D follows the rule from the numbers run.json records, and every record says so" \
      'json "const c=s.dilation_choice, d=Math.max(1, c.exchange_ratio*c.compute_s*c.rate_bps/(8*c.exchange_bytes));
             if (!(c.compute_s>0) || c.exchange_bytes!==196608 || Math.abs(s.dilation-Math.round(d*100)/100)>1e-9) process.exit(1)" "$work/seeds/run.json" &&
       grep -q "^dilation = [0-9.]*$" "$work/seeds/scenario.ini" && grep -q "^; dilation auto: " "$work/seeds/scenario.ini" &&
       grep -q "^Dilation D = .*auto: the uncompressed exchange" "$work/seeds/summary.md"'

echo "run_ci_tiny: $passes passed, $failures failed"
[ "$failures" = 0 ]
