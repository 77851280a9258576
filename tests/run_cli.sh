#!/usr/bin/env bash
# run_cli.sh WANCP SOURCE_DIR: `wancp run`, `wancp plot` and `wancp check RESULTS` on what
# needs no root:
#   - a bad scenario: every problem with file:line, exit 2, no results folder created;
#   - --dry-run prints each arm's rank command and creates nothing; --only names a real arm;
#   - a hand-made results folder (run.json, metrics.csv, wire.csv): summary.json's fields,
#     figures drawn, `wancp check` passes on volumes that equal METHOD.md's formulas and
#     fails, with a readable diff, when a class grew against a reference or a formula;
#   - bad input to plot and check: exit 2 with the file named.
set -uo pipefail
wancp=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }

cat >"$work/bad.ini" <<'INI'
[scenario]
name = bad
ranks = 3
steps = 10
colour = blue

[arm a]
profile = nowhere.ini
INI
"$wancp" run "$work/bad.ini" -o "$work/out" >/dev/null 2>"$work/err"
check "bad scenario: exit 2" '[ $? = 2 ]'
check "bad scenario: file:line and key" 'grep -q "bad.ini:5: \[scenario\] unknown key .colour." "$work/err"'
check "bad scenario: the arm's profile named" 'grep -q "nowhere.ini" "$work/err"'
check "bad scenario: nothing created" '[ ! -e "$work/out" ]'
"$wancp" run "$src/scenarios/ci-tiny.ini" --set model.dim=65 -o "$work/out" >/dev/null 2>"$work/err"
check "bad --set: exit 2, nothing created" '[ $? = 2 ] && [ ! -e "$work/out" ] && grep -q "dim" "$work/err"'
"$wancp" run "$src/scenarios/ci-tiny.ini" --only nosuch -o "$work/out" >/dev/null 2>"$work/err"
check "--only names a real arm" '[ $? = 2 ] && grep -q "nosuch" "$work/err" && [ ! -e "$work/out" ]'
"$wancp" run >/dev/null 2>"$work/err"
check "no scenario: usage error" '[ $? = 2 ] && grep -q "missing the SCENARIO" "$work/err"'
"$wancp" run --help | grep -q "Usage: wancp run"
check "run --help" '[ $? = 0 ]'

for f in "$src"/scenarios/*.ini; do
    "$wancp" check scenario "$f" >/dev/null 2>"$work/err"
    check "$(basename "$f") is a valid scenario" '[ $? = 0 ]' || cat "$work/err"
done
"$wancp" run "$src/scenarios/quickstart.ini" --dry-run -o "$work/out" >"$work/dry" 2>&1
check "dry-run: exit 0" '[ $? = 0 ]'
check "dry-run: resolved scenario and one rank command per arm" \
      '[ "$(grep -c "^; arm .*, each rank: wancp train" "$work/dry")" = 3 ] && grep -q "^dilation = auto" "$work/dry"'
check "dry-run: the compressed arm compresses every layer" 'grep "arm compressed@300M" "$work/dry" | grep -q -- "--compress .*--compress-last"'
check "dry-run: creates nothing" '[ ! -e "$work/out" ]'

# A results folder made by hand: two ranks, 2 layers, dim 64, 2 heads, seq 256, bf16.
# Uncompressed K/V per sequence and layer: mu0 = 2 x 64 x 64 x 2 = 16384 B; rank 0 sends
# (P-1) = 1 message forward and 2(P-1) = 2 backward per layer: 32768 and 65536 B per step.
mkrun() { # DIR FWD_PER_STEP BWD_PER_STEP
    mkdir -p "$1/a"
    cat >"$1/run.json" <<JSON
{"scenario": "hand", "dilation": 2, "target_val_loss": 4.0, "master_port": 20000,
 "arms": [{"name": "a", "outcome": "ok", "link": "test link", "sync": "A", "sync_every": 4, "compress": false},
          {"name": "b", "outcome": "not-run"}]}
JSON
    {
        echo "# wancp train metrics"
        echo "# model: layers=2 dim=64 heads=2 kv_heads=2 ffn_dim=128 vocab=256 context=256 attn_block=64"
        echo "# data: train=x val=y batch=1 seq=256 val_tokens=512"
        echo "# cp: ranks=2 layout=zigzag sync=A sync_every=4 chunks=0 wire=bf16 kv=cached (bytes)"
        echo "# compression: psi_k=0 rank_k=0 rank_v=0 planes=0 warm_steps=0 cov_steps=0 compress_last=0"
        echo "step,wall_s,lr,train_loss,val_loss,grad_norm,tokens,step_ms,kv_fwd_tx_bytes,kv_bwd_tx_bytes,sync_tx_bytes,control_tx_bytes,compressed,compute_ms,comm_ms,kv_fwd_wait_ms,kv_bwd_wait_ms,sync_wait_ms,unix_s"
        echo "0,0.1,0,,5.0,,0,0,0,0,0,0,0,0,0,0,0,0,1000.0"
        for s in 1 2 3 4 5 6; do
            val=""; [ $((s % 2)) = 0 ] && val=$(echo "5 - $s * 0.25" | bc)
            echo "$s,$s.5,0.001,4.5,$val,1,256,1000,$(($2 * s)),$(($3 * s)),$((100 * s)),8,0,800,200,100,80,20,100$s.0"
        done
    } >"$1/a/metrics.csv"
    {
        echo "# wancp wire capture: switch x, 2 ports"
        echo "# start_unix: 1000.0 (second 0 begins here)"
        echo "second,src_rank,dst_rank,port,frames,wire_bytes,payload_bytes"
        # rank 0's K/V ports are 20001 (kv-forward) and 20002 (kv-backward) of rank 0 itself
        echo "1,0,1,20001,100,$(($2 * 6 + 6600)),$(($2 * 6))"
        echo "1,0,1,20002,100,$(($3 * 6 + 6600)),$(($3 * 6))"
        echo "1,1,0,20001,100,9999,9999"
    } >"$1/a/wire.csv"
}
mkrun "$work/r1" 32768 65536
"$wancp" plot "$work/r1" 2>"$work/err"
check "plot: exit 0" '[ $? = 0 ]'
check "plot: four figures, PNG and SVG" '[ "$(ls "$work/r1"/*.png "$work/r1"/*.svg 2>/dev/null | wc -l)" = 8 ]'
check "plot: summary.json has the per-arm fields" \
      'node -e "const s=require(process.argv[1]); const a=s.arms[0];
        for (const k of [\"outcome\",\"steps\",\"final_val_loss\",\"time_to_target_s\",\"kv_bytes_per_step_app\",\"kv_bytes_per_step_wire\",\"sync_bytes_per_step\",\"step_time_s_median\",\"dilation\"]) if (!(k in a)) process.exit(1);
        if (a.steps !== 6 || a.kv_bytes_per_step_app !== 98304 || a.dilation !== 2 || s.arms[1].outcome !== \"not-run\") process.exit(1);
        if (Math.abs(a.step_time_s_median - 0.5) > 1e-9 || Math.abs(a.final_val_loss - 3.5) > 1e-9) process.exit(1);
        // val 4.5 at step 2 (1 s dilated), 4.0 at step 4 (2 s): the target 4.0 is met at 2 s
        if (Math.abs(a.time_to_target_s - 2.0) > 1e-9) process.exit(1);
        if (Math.abs(a.sync_bytes_per_step - 100) > 1e-9) process.exit(1);" "$work/r1/summary.json"'
# The simulator beside a run: sim.json's prediction for arm a (0.55 s: compute 0.40 s as
# measured, 0.15 s exposed where 0.10 s was measured) beside the measured 0.5 s step.
cp -r "$work/r1" "$work/sim"
sed -i 's/"master_port": 20000,/"master_port": 20000, "simulation": {"calibrated": true, "note": "test"},/' "$work/sim/run.json"
cat >"$work/sim/sim.json" <<'JSON'
{"scenario": "hand", "hardware": {"name": "cpu-local", "source": "hardware.ini"},
 "arms": [{"name": "a", "step_s": 0.55, "compute_s": 0.40, "exposed_comm_s": 0.15}]}
JSON
"$wancp" plot "$work/sim" >/dev/null 2>"$work/err"
check "simulated: the summary puts the prediction beside the measured step and names the part that misses" \
      '[ $? = 0 ] && grep -qF "| a | 0.5500 | 0.5000 | +10.0% | 0.4000 / 0.4000 | 0.1500 / 0.1000 | link: more exposed communication predicted than measured |" "$work/sim/summary.md" &&
       node -e "const p=require(process.argv[1]).predicted_vs_measured[0];
                if (p.name!==\"a\" || Math.abs(p.rel_diff-0.1)>1e-9 || p.within_aim!==false || !/^link/.test(p.misses)) process.exit(1)" "$work/sim/summary.json" &&
       grep -qx "has_prediction = 1" "$work/sim/plot-data/arms.gp" && grep -q "^.a. .* 0.55$" "$work/sim/plot-data/time.dat"' ||
      { cat "$work/err"; grep "^| a" "$work/sim/summary.md"; }
rm "$work/sim/sim.json"
"$wancp" plot "$work/sim" >/dev/null 2>"$work/err"
check "simulated run without sim.json: the summary says why" 'grep -q "No prediction beside this run: test" "$work/sim/summary.md"'
echo '{"arms": [{"name": "a"}]}' >"$work/sim/sim.json"
"$wancp" plot "$work/sim" >/dev/null 2>"$work/err"
check "a malformed sim.json: exit 2, named" '[ $? = 2 ] && grep -q "sim.json: arm 0 has no name or step_s" "$work/err"'

"$wancp" check "$work/r1" >"$work/out.txt" 2>&1
check "check: volumes equal to the formulas pass" '[ $? = 0 ] && grep -q "communication volume: ok" "$work/out.txt"'
mkrun "$work/r2" 32768 70000
"$wancp" check "$work/r1" --against "$work/r2" >"$work/out.txt" 2>&1
check "check: a reference folder without summary.json is named" '[ $? = 2 ] && grep -q "wancp plot RESULTS_DIR writes it" "$work/out.txt"'
"$wancp" plot "$work/r2" >/dev/null 2>&1
"$wancp" check "$work/r2" --against "$work/r1" >"$work/out.txt" 2>&1
check "check: a grown class fails" '[ $? = 1 ] && grep -q "kv-backward (app) .* GREW" "$work/out.txt" && grep -q "DIFFERS from the formula" "$work/out.txt"'
"$wancp" check "$work/r1" --against "$work/r2" --tolerance 1 >"$work/out.txt" 2>&1
check "check: a shrunk class against a reference passes" '[ $? = 0 ]'
"$wancp" check "$work/r1" --against "$work/nothing.json" >/dev/null 2>"$work/err"
check "check: unreadable reference: exit 2, named" '[ $? = 2 ] && grep -q "nothing.json" "$work/err"'
echo "1,2,3" >>"$work/r2/a/metrics.csv"
"$wancp" plot "$work/r2" >/dev/null 2>"$work/err"
check "plot: a malformed row is named file:line" '[ $? = 2 ] && grep -q "a/metrics.csv:14" "$work/err"'
# A seeded results folder made by hand: arms u (the baseline) and c, seeds 1, 2, 3, each in
# ARM/seed-S. Final validation losses: u 3.5, 3.6, 3.7 (mean 3.6, sd 0.1, 95% half width
# t(2) 0.1 / sqrt 3 = 0.248414); c 3.4, 3.6, 3.5 (c - u per seed: -0.1, 0, -0.2; mean -0.1,
# sd 0.1). Seed 2 of u spikes at step 8 (training loss 9.5 against a median of 4.5).
mkseeded() { # DIR
    local seeds=(1 2 3) ufinal=(3.5 3.6 3.7) cfinal=(3.4 3.6 3.5)
    cat >"$1/run.json" <<JSON
{"scenario": "seeded", "dilation": 1, "target_val_loss": 0, "master_port": 20000, "seeds": [1, 2, 3], "baseline": "u",
 "arms": [{"name": "u", "seed": 1, "outcome": "ok", "link": "l", "sync": "S", "sync_every": 1, "compress": false},
          {"name": "c", "seed": 1, "outcome": "ok", "link": "l", "sync": "S", "sync_every": 1, "compress": true},
          {"name": "u", "seed": 2, "outcome": "ok", "link": "l", "sync": "S", "sync_every": 1, "compress": false},
          {"name": "c", "seed": 2, "outcome": "ok", "link": "l", "sync": "S", "sync_every": 1, "compress": true},
          {"name": "u", "seed": 3, "outcome": "ok", "link": "l", "sync": "S", "sync_every": 1, "compress": false},
          {"name": "c", "seed": 3, "outcome": "ok", "link": "l", "sync": "S", "sync_every": 1, "compress": true}]}
JSON
    for k in 0 1 2; do
        for arm in u c; do
            local d="$1/$arm/seed-${seeds[$k]}" final
            [ $arm = u ] && final=${ufinal[$k]} || final=${cfinal[$k]}
            mkdir -p "$d"
            {
                echo "# wancp train metrics"
                echo "# model: layers=2 dim=64 heads=2 kv_heads=2 ffn_dim=128 vocab=256 context=256 attn_block=64"
                echo "# data: train=x val=y batch=1 seq=256 val_tokens=512"
                echo "# cp: ranks=2 layout=zigzag sync=S sync_every=1 chunks=0 wire=bf16 kv=cached (bytes)"
                echo "# compression: psi_k=0 rank_k=0 rank_v=0 planes=0 warm_steps=0 cov_steps=0 compress_last=0"
                echo "step,wall_s,lr,train_loss,val_loss,grad_norm,tokens,step_ms,kv_fwd_tx_bytes,kv_bwd_tx_bytes,sync_tx_bytes,control_tx_bytes,compressed,compute_ms,comm_ms,kv_fwd_wait_ms,kv_bwd_wait_ms,sync_wait_ms,unix_s"
                echo "0,0.1,0,,5.0,,0,0,0,0,0,0,0,0,0,0,0,0,1000.0"
                for s in 1 2 3 4 5 6 7 8 9 10; do
                    local loss=4.5 val=""
                    [ $arm = u ] && [ $k = 1 ] && [ $s = 8 ] && loss=9.5
                    [ $s = 5 ] && val=4.0
                    [ $s = 10 ] && val=$final
                    echo "$s,$s.5,0.001,$loss,$val,1,256,1000,$((32768 * s)),$((65536 * s)),$((100 * s)),8,0,800,200,100,80,20,100$s.0"
                done
            } >"$d/metrics.csv"
            printf '# start_unix: 1000.0\nsecond,src_rank,dst_rank,port,frames,wire_bytes,payload_bytes\n1,0,1,20001,10,10000,9000\n' \
              >"$d/wire.csv"
        done
    done
}
mkdir "$work/seeded"
mkseeded "$work/seeded"
"$wancp" plot "$work/seeded" 2>"$work/err"
check "seeded plot: exit 0, four figures" '[ $? = 0 ] && [ "$(ls "$work/seeded"/*.png | wc -l)" = 4 ]' || cat "$work/err"
check "seeded summary: each arm over its seeds, t intervals and the paired difference" \
      'node -e "const s=require(process.argv[1]); const near=(x,y)=>Math.abs(x-y)<1e-6;
        const [u,c]=s.over_seeds; if (s.arms.length!==6 || u.name!==\"u\" || c.name!==\"c\" || s.baseline!==\"u\") process.exit(1);
        if (!near(u.final_val_loss.mean,3.6) || !near(u.final_val_loss.half_width_95,0.248414) || u.final_val_loss.n!==3) process.exit(2);
        if (!near(u.final_val_perplexity.mean,(Math.exp(3.5)+Math.exp(3.6)+Math.exp(3.7))/3)) process.exit(3);
        const d=c.minus_baseline_paired.final_val_loss; if (!near(d.mean,-0.1) || !near(d.half_width_95,0.248414)) process.exit(4);
        if (\"minus_baseline_paired\" in u) process.exit(5);
        if (u.seeds_with_spikes!==1 || c.seeds_with_spikes!==0) process.exit(6);
        const spiky=s.arms.find(a=>a.name===\"u\"&&a.seed===2); if (spiky.train_loss_spikes!==1 || spiky.first_spike_step!==8 || spiky.dir!==\"u/seed-2\") process.exit(7);" \
        "$work/seeded/summary.json"' || node -e 'console.log(JSON.stringify(require(process.argv[1]).over_seeds))' "$work/seeded/summary.json"
check "seeded summary.md: the paired difference in words, and the spike flagged" \
      'grep -qF "c − u, seed by seed: final validation loss -0.1000 nats, 95% interval [-0.3484, +0.1484] over 3 seeds: no difference shown" "$work/seeded/summary.md" &&
       grep -q "FLAG u seed 2: training loss spiked above twice its running median at 1 step (first at step 8)" "$work/seeded/summary.md"' ||
      cat "$work/seeded/summary.md"
check "seeded curves: the mean over seeds with its band" \
      'awk '"'"'$1 == 10 {found = 1; if ($3 < 3.5999 || $3 > 3.6001 || $4 > 3.3516 || $4 < 3.3515 || $5 < 3.8484 || $5 > 3.8485) exit 1} END {exit !found}'"'"' "$work/seeded/plot-data/u.val"'

# The same runs as if a [sweep] had made arm c (warm_steps = 10 from an arm c0): a table per value.
cp -r "$work/seeded" "$work/swept"
sed -i 's/"name": "c", \("seed": [0-9]\)/"name": "c", "sweep": {"key": "warm_steps", "value": "10", "from": "c0"}, \1/' "$work/swept/run.json"
"$wancp" plot "$work/swept" >/dev/null 2>"$work/err"
check "sweep: summary.md has a table per swept value, summary.json the sweep" \
      '[ $? = 0 ] && grep -q "^## Sweep over warm_steps" "$work/swept/summary.md" &&
       grep -qF "| c0 | 10 | 3.5000 ± 0.2484 | 33.23 ± 8.24 |" "$work/swept/summary.md" &&
       node -e "const s=require(process.argv[1]); if (s.over_seeds[1].sweep.value!==\"10\" || \"sweep\" in s.over_seeds[0]) process.exit(1)" "$work/swept/summary.json"' ||
      cat "$work/err" "$work/swept/summary.md"

# A sweep over corpus (one seed): one panel per corpus, each arm paired with its corpus's baseline.
mkdir -p "$work/panels"
for arm in u c; do for v in a b; do cp -r "$work/seeded/$arm/seed-1" "$work/panels/$arm+corpus-$v"; done; done
{
    printf '{"scenario": "panels", "dilation": 1, "target_val_loss": 0, "master_port": 20000, "seeds": [1],\n'
    printf ' "baseline": "u+corpus-a", "arms": [\n'
    sep=""
    for v in a b; do for arm in u c; do
        printf '%s{"name": "%s+corpus-%s", "seed": 1, "outcome": "ok", "link": "l", "sync": "S", "sync_every": 1,' "$sep" $arm $v
        printf ' "compress": %s, "sweep": {"key": "corpus", "value": "%s", "from": "%s"}}\n' "$([ $arm = c ] && echo true || echo false)" $v $arm
        sep=","
    done; done
    printf ']}\n'
} >"$work/panels/run.json"
"$wancp" plot "$work/panels" >/dev/null 2>"$work/err"
check "corpus sweep: one panel per corpus, short legends, each arm paired with its own corpus's baseline" \
      '[ $? = 0 ] && grep -qx "npanels = 2" "$work/panels/plot-data/arms.gp" && grep -qx "arm_panel\[4\] = 2" "$work/panels/plot-data/arms.gp" &&
       grep -qx "arm_short\[4\] = \"c\"" "$work/panels/plot-data/arms.gp" && [ -s "$work/panels/loss_vs_time.png" ] &&
       node -e "const s=require(process.argv[1]); if (s.over_seeds[3].minus_baseline_paired.against!==\"u+corpus-b\" ||
                s.over_seeds[1].minus_baseline_paired.against!==\"u+corpus-a\" || \"minus_baseline_paired\" in s.over_seeds[2]) process.exit(1)" "$work/panels/summary.json"' ||
      cat "$work/err"

mkdir "$work/empty"
"$wancp" check "$work/empty" >/dev/null 2>"$work/err"
check "check: a folder without run.json: exit 2" '[ $? = 2 ] && grep -q "run.json" "$work/err"'

echo "run_cli: $passes passed, $failures failed"
[ "$failures" = 0 ]
