#!/usr/bin/env bash
# scenario_cli.sh WANCP PROFILE_DIR: `wancp check scenario`, the scenario reader that `wancp
# run` starts from: a good scenario prints resolved (every value explicit) and reads back to
# the same; --set overrides apply, arms included; a bad one names every problem at once with
# file:line and key, exit 2.
set -uo pipefail
wancp=$1 profiles=$2
src=$(cd "$profiles/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }

cat >"$work/good.ini" <<INI
; three arms over 4 ranks
[scenario]
name = demo
ranks = 4
steps = 100
target_val_loss = 6.5
dilation = 4

[model]
context = 4096

[train]
sync = A

[arm uncompressed@300mbit]
profile = $profiles/wan-300m.ini

[arm compressed@300mbit]
profile = $profiles/wan-300m.ini
compress = true
warm_steps = 20
straggler = 1:4

[arm unshaped]
profile = none
INI
"$wancp" check scenario "$work/good.ini" --set train.batch=2 --set arm.unshaped.link_model=mesh \
  >"$work/resolved.ini" 2>"$work/log"
check "a good scenario passes and says so" '[ $? = 0 ] && grep -q "ok (3 arms, 4 ranks, 100 steps)" "$work/log"'
check "resolved: defaults explicit, --set applied to train and to an arm" \
  'grep -q "^warmup = 10$" "$work/resolved.ini" && grep -q "^batch = 2$" "$work/resolved.ini" &&
   grep -q "^dilation = 4$" "$work/resolved.ini" && grep -q "^warm_steps = 20$" "$work/resolved.ini" &&
   grep -q "^device = cpu$" "$work/resolved.ini" && grep -q "^precision = tf32$" "$work/resolved.ini" &&
   grep -q "^straggler = 1:4$" "$work/resolved.ini" && [ "$(grep -c "^straggler = none$" "$work/resolved.ini")" = 2 ] &&
   [ "$(grep -c "^link_model = mesh$" "$work/resolved.ini")" = 1 ] && [ "$(grep -c "^sync = A$" "$work/resolved.ini")" = 4 ]'
"$wancp" check scenario "$work/resolved.ini" >"$work/again.ini" 2>/dev/null
check "the resolved scenario reads back to itself" 'diff <(grep -v "^;" "$work/resolved.ini") <(grep -v "^;" "$work/again.ini") >/dev/null'

cat >"$work/bad.ini" <<'INI'
[scenario]
name = Bad Name
ranks = 3
steps = x
colour = red
[model]
context = 4096
heads = 5
[arm a]
profile = nowhere.ini
compress = maybe
straggler = 9:4
[arm c]
profile = none
straggler = 1:x
[arm d]
profile = none
straggler = 1:2
INI
"$wancp" check scenario "$work/bad.ini" --set scenario.seed=-1 --set arm.b.compress=true --set train.device=tpu \
  --set train.precision=fp16 >/dev/null 2>"$work/err"
rc=$?
cat "$work/err"
check "a bad scenario exits 2 with one line" '[ $rc = 2 ] && [ "$(wc -l <"$work/err")" = 1 ]'
for needle in "bad.ini:2: [scenario] name = 'Bad Name'" "bad.ini:4: [scenario] steps = 'x'" \
              "bad.ini:5: [scenario] unknown key 'colour'" "bad.ini:11: [arm a] compress = 'maybe'" \
              "--set scenario.seed=-1: [scenario] seed = '-1'" "--set arm.b.compress=true: no arm 'b'" \
              "does not split into 2 x 3 chunks" "dim = 256 is not divisible by heads = 5" \
              "[arm a] profile: $work/nowhere.ini: cannot open" "[train] device = 'tpu': expected cpu or cuda" \
              "[train] precision = 'fp16': expected tf32, fp32 or bf16" "[arm a] straggler = 9:4: the scenario has ranks 0 to 2" \
              "bad.ini:15: [arm c] straggler = '1:x': expected RANK:K" "[arm d] straggler: an unshaped arm has no rate"; do
  check "names: $needle" 'grep -qF -- "$needle" "$work/err"'
done
printf '[scenario]\nname = x\nranks = 2\nsteps = 1\n' >"$work/noarm.ini"
"$wancp" check scenario "$work/noarm.ini" 2>"$work/err" >/dev/null
check "a scenario without arms is refused" '[ $? = 2 ] && grep -q "no \[arm NAME\] section" "$work/err"'
"$wancp" check scenario "$work/missing.ini" 2>"$work/err" >/dev/null
check "a missing file is named" '[ $? = 2 ] && grep -q "missing.ini: cannot open" "$work/err"'
"$wancp" check scenario "$work/good.ini" --set 2>"$work/err" >/dev/null
check "--set without a value is a usage error" '[ $? = 2 ] && grep -q "needs section.key=value" "$work/err"'

# A file says each thing once: a second [arm X] is not merged into the first, a repeated key
# is not "the last wins", and an arm's name is kept whole up to 63 characters.
cat >"$work/twice.ini" <<'INI'
[scenario]
name = twice
ranks = 2
steps = 10
steps = 20
[arm uncompressed]
profile = none
[arm uncompressed]
compress = true
INI
"$wancp" check scenario "$work/twice.ini" >/dev/null 2>"$work/err"
rc=$?
check "a repeated arm and a repeated key: exit 2, one line naming both lines" \
  '[ $rc = 2 ] && [ "$(wc -l <"$work/err")" = 1 ] &&
   grep -qF "twice.ini:5: [scenario] steps given again (first at line 4)" "$work/err" &&
   grep -qF "twice.ini:8: [arm uncompressed] again (first at line 6)" "$work/err"'
long_a=a123456789b123456789c123456789d123456789e1234567-first-arm-of-63-chars
long_a=${long_a:0:63}
long_b=${long_a:0:50}-second
printf '[scenario]\nname = long\nranks = 2\nsteps = 10\n[arm %s]\nprofile = none\n[arm %s]\nprofile = none\ncompress = true\n' \
  "$long_a" "$long_b" >"$work/long.ini"
"$wancp" check scenario "$work/long.ini" >"$work/long_resolved.ini" 2>"$work/err"
check "arm names of 50 to 63 characters are kept whole and apart" \
  '[ $? = 0 ] && grep -qxF "[arm $long_a]" "$work/long_resolved.ini" && grep -qxF "[arm $long_b]" "$work/long_resolved.ini"'
printf '[scenario]\nname = long\nranks = 2\nsteps = 10\n[arm %s]\nprofile = none\n' "${long_a}x" >"$work/toolong.ini"
"$wancp" check scenario "$work/toolong.ini" >/dev/null 2>"$work/err"
check "an arm name of 64 characters is refused" '[ $? = 2 ] && grep -q "1 to 63 of" "$work/err"'

# The data is checked up front too: a missing shard, or tokens the model's vocabulary lacks.
printf '[scenario]\nname = data\nranks = 2\nsteps = 10\n[train]\ntrain = nowhere_train.bin\n[arm a]\nprofile = none\n' \
  >"$work/noshard.ini"
"$wancp" check scenario "$work/noshard.ini" >/dev/null 2>"$work/err"
check "a missing train shard is named, exit 2" '[ $? = 2 ] && grep -qF "[train] train: $work/nowhere_train.bin" "$work/err"'
if [ -f "$src/data/brown_train.bin" ]; then
  "$wancp" check scenario "$work/good.ini" --set model.vocab=256 >/dev/null 2>"$work/err"
  check "GPT-2 shards under a 256-token vocabulary are refused, exit 2" \
    '[ $? = 2 ] && grep -q "brown_train.bin" "$work/err" && grep -q "brown_val.bin" "$work/err"'
fi

# Every method switch of the run-options table, per arm (and one in [train] for every arm):
# the resolved print carries each, the arm's rank command line carries each as train's
# option, and train takes that command line (run here over 2 local ranks).
cat >"$work/switches.ini" <<INI
[scenario]
name = switches
ranks = 2
steps = 4
[model]
layers = 2
dim = 64
heads = 4
kv_heads = 2
ffn = 128
context = 128
vocab = 256
[train]
train = $src/data/brown_bytes_train.bin
val = $src/data/brown_bytes_val.bin
batch = 1
eval_every = 2
val_tokens = 256
stiefel_every = 3
[arm plain]
profile = none
cp_layout = contiguous
kv_regather = true
[arm every]
profile = none
compress = true
warm_steps = 2
wire = fp32
cp_layout = contiguous
kv_regather = true
rank_k = 3
rank_v = 5
psi_k = 2
planes = 6
cheap_rotation = false
cov_steps = 2
unplug_at = 0.75
check_shared = true
stiefel = true
stiefel_lr = 0.001
INI
"$wancp" check scenario "$work/switches.ini" >"$work/switches_resolved.ini" 2>"$work/err"
check "every method switch per arm: accepted" '[ $? = 0 ]' || cat "$work/err"
sed -n '/^\[arm every\]/,$p' "$work/switches_resolved.ini" >"$work/every.ini"
for kv in "wire = fp32" "cp_layout = contiguous" "kv_regather = true" "rank_k = 3" "rank_v = 5" "psi_k = 2" "planes = 6" \
          "cheap_rotation = false" "cov_steps = 2" "unplug_at = 0.75" "check_shared = true" "stiefel = true" \
          "stiefel_lr = 0.001" "stiefel_every = 3"; do
  check "resolved print of the arm: $kv" 'grep -qxF "$kv" "$work/every.ini"'
done
check "an uncompressed arm's resolved print has no switch of the compression" \
  '! sed -n "/^\[arm plain\]/,/^\[arm every\]/p" "$work/switches_resolved.ini" | grep -q "^rank_k\|^stiefel"'
"$wancp" run "$work/switches.ini" --dry-run >"$work/dry.txt" 2>/dev/null
line=$(grep "^; arm every, each rank: " "$work/dry.txt" | sed 's/^; arm every, each rank: wancp train //')
for flag in "--wire fp32" "--cp-layout contiguous" "--kv-regather" "--rank-k 3" "--rank-v 5" "--psi-k 2" "--planes 6" \
            "--cov-steps 2" "--unplug-at 0.75" "--check-shared" "--stiefel" "--stiefel-lr 0.001" "--stiefel-every 3"; do
  check "the arm's rank command line: $flag" 'grep -qF -- " $flag " <<<" $line "'
done
check "cheap_rotation = false adds no option" '! grep -qF -- "--cheap-rotation" <<<"$line"'
plain_line=$(grep "^; arm plain, each rank: " "$work/dry.txt")
check "a runtime switch set in one arm stays in that arm" '! grep -qF -- "--wire fp32" <<<"$plain_line"'
# shellcheck disable=SC2086
"$wancp" train ${line/DIR\/ARM\/metrics.csv/$work/every.csv} --ranks 2 >/dev/null 2>"$work/train.err"
check "train takes the arm's command line and records the switches" \
  '[ $? = 0 ] && grep -q "rank_k=3 rank_v=5 psi_k=2 planes=6" "$work/every.csv" && grep -q "stiefel=true" "$work/every.csv"' ||
  tail -n 3 "$work/train.err"
# The metrics header's "# method:" line is every switch as the table spells it: pasted into a
# scenario's [train] it is accepted and resolves to the same values.
method=$(grep "^# method:" "$work/every.csv" | sed 's/^# method: //')
check "the metrics header names all 18 switches" '[ "$(wc -w <<<"$method")" = 18 ]'
{ printf '[scenario]\nname = back\nranks = 2\nsteps = 20\n[train]\n'; tr ' ' '\n' <<<"$method" | sed 's/=/ = /'
  printf '[arm c]\nprofile = none\ncompress = true\nwarm_steps = 2\n'; } >"$work/back.ini"
"$wancp" check scenario "$work/back.ini" >"$work/back_resolved.ini" 2>"$work/err"
check "the \"# method:\" line, as a scenario's [train], is accepted" '[ $? = 0 ]' || cat "$work/err"
for kv in "wire = fp32" "cp_layout = contiguous" "rank_k = 3" "rank_v = 5" "psi_k = 2" "planes = 6" "cov_steps = 2" \
          "unplug_at = 0.75" "stiefel_lr = 0.001" "stiefel_every = 3"; do
  check "and resolves as the run ran: $kv" 'grep -qxF "$kv" "$work/back_resolved.ini"'
done
# --help lists every row of the table, with its scenario key.
"$wancp" train --help >"$work/help.txt"
for row in "--wire bf16|fp32 (bf16) [wire]" "--device cpu|cuda (cpu) [device]" "--precision tf32|fp32|bf16 (tf32) [precision]" \
           "--attention products|fused (products) [attention]" "--cp-layout zigzag|contiguous (zigzag) [cp_layout]" "--kv-regather [kv_regather]" "--rank-k N [rank_k]" \
           "--rank-v N [rank_v]" "--psi-k N (1) [psi_k]" "--planes N [planes]" "--cheap-rotation [cheap_rotation]" \
           "--cov-steps N (10) [cov_steps]" "--unplug-at X (0) [unplug_at]" "--check-shared [check_shared]" \
           "--stiefel [stiefel]" "--stiefel-lr X [stiefel_lr]" "--stiefel-every N (10) [stiefel_every]"; do
  check "train --help: $row" 'tr -s " " <"$work/help.txt" | grep -qF -- " $row"'
done
expect_train_refusal() { # WHAT ARGS...: exit 2 and the table's words
  "$wancp" train "${@:2}" >/dev/null 2>"$work/err"
  check "train refuses $1 in the table's words" '[ $? = 2 ] && grep -q "expected" "$work/err"' || cat "$work/err"
}
expect_train_refusal "--cp-layout ring" --cp-layout ring
expect_train_refusal "--psi-k 65" --chunks 2 --compress --psi-k 65
expect_train_refusal "--unplug-at 1.5" --chunks 2 --compress --unplug-at 1.5
printf '[scenario]\nname = x\nranks = 2\nsteps = 4\n[arm u]\nprofile = none\nrank_k = 3\npsi_k = 99\n' >"$work/nocomp.ini"
"$wancp" check scenario "$work/nocomp.ini" >/dev/null 2>"$work/err"
check "a switch of the compression on an uncompressed arm, and one out of range: exit 2 naming them" \
  '[ $? = 2 ] && grep -qF "[arm u] psi_k = '"'"'99'"'"': expected a whole number from 1 to 64" "$work/err" &&
   grep -qF "[arm u] rank_k = 3: a switch of the compression (give the arm compress = true)" "$work/err"'

# Seeds: every arm once per seed, each with its own --seed and folder; the resolved print
# keeps the list and the baseline; bad lists refused with the line.
printf '[scenario]\nname = s\nranks = 2\nsteps = 4\nseeds = 3, 1,2\n[arm u]\nprofile = none\n[arm c]\nprofile = none\ncompress = true\n' \
  >"$work/seeds.ini"
"$wancp" check scenario "$work/seeds.ini" >"$work/seeds_resolved.ini" 2>"$work/err"
check "seeds: accepted; resolved with the list and the default baseline (the uncompressed unshaped arm)" \
  '[ $? = 0 ] && grep -qx "seeds = 3,1,2" "$work/seeds_resolved.ini" && grep -qx "baseline = u" "$work/seeds_resolved.ini"'
"$wancp" run "$work/seeds.ini" --dry-run >"$work/dry_seeds.txt" 2>/dev/null
check "seeds: one rank command per arm and seed, each with its seed and folder" \
  '[ "$(grep -c "^; arm .*, seed .*, each rank: wancp train" "$work/dry_seeds.txt")" = 6 ] &&
   grep "^; arm c, seed 2, each rank:" "$work/dry_seeds.txt" | grep -q -- "--seed 2 .*--metrics DIR/ARM/seed-2/metrics.csv"'
"$wancp" check scenario "$work/seeds.ini" --set scenario.seed=7 --set scenario.baseline=c >"$work/one.ini" 2>/dev/null
check "seeds: --set seed replaces the list, --set baseline names an arm" \
  'grep -qx "seed = 7" "$work/one.ini" && grep -qx "baseline = c" "$work/one.ini"'
bad_seeds() { # WHAT LINES NEEDLE: refused, exit 2, with the needle
  printf '[scenario]\nname = s\nranks = 2\nsteps = 4\n%b[arm u]\nprofile = none\n' "$2" >"$work/bad_seeds.ini"
  "$wancp" check scenario "$work/bad_seeds.ini" >/dev/null 2>"$work/err"
  local status=$? needle=$3
  check "seeds: $1 refused" '[ $status = 2 ] && grep -qF -- "$needle" "$work/err"' || cat "$work/err"
}
bad_seeds "a repeated seed" 'seeds = 1,2,1\n' "bad_seeds.ini:5: [scenario] seeds = '1,2,1': seed 1 is given twice"
bad_seeds "a word" 'seeds = 1,two\n' "bad_seeds.ini:5: [scenario] seeds = '1,two'"
bad_seeds "a list for seed" 'seed = 1,2\n' "[scenario] seed = '1,2': expected a whole number"
bad_seeds "seed and seeds both" 'seed = 1\nseeds = 2,3\n' "bad_seeds.ini:6: [scenario] seeds: the file gives seed already"
bad_seeds "17 seeds" 'seeds = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n' "1 to 16 whole numbers"
bad_seeds "a baseline that is no arm" 'baseline = nosuch\n' "[scenario] baseline = nosuch: no arm of that name"

# [sweep]: each swept arm becomes one arm per value, the key set; a switch of the compression
# sweeps the compressed arms by default; every value checked as the arm's own key.
printf '[scenario]\nname = t3\nranks = 2\nsteps = 40\n[sweep]\nkey = warm_steps\nvalues = 0, 10,25\n[arm u]\nprofile = none\n[arm c]\nprofile = none\ncompress = true\nwarm_steps = 5\n' \
  >"$work/sweep.ini"
"$wancp" check scenario "$work/sweep.ini" >"$work/sweep_resolved.ini" 2>"$work/err"
check "sweep: the compressed arm becomes one arm per value, the uncompressed one stays" \
  '[ $? = 0 ] && [ "$(grep -c "^\[arm " "$work/sweep_resolved.ini")" = 4 ] && grep -qx "\[arm u\]" "$work/sweep_resolved.ini" &&
   [ "$(sed -n "/^\[arm c+warm_steps-25\]/,/^$/p" "$work/sweep_resolved.ini" | grep -cx "warm_steps = 25")" = 1 ]' || cat "$work/err"
"$wancp" check scenario "$work/sweep_resolved.ini" >"$work/sweep_again.ini" 2>/dev/null
check "sweep: the resolved scenario reads back to itself" \
  'diff <(grep -v "^;" "$work/sweep_resolved.ini") <(grep -v "^;" "$work/sweep_again.ini") >/dev/null'
"$wancp" run "$work/sweep.ini" --dry-run >"$work/dry_sweep.txt" 2>/dev/null
check "sweep: each value reaches its arm's rank command" \
  'grep "^; arm c+warm_steps-10, each rank:" "$work/dry_sweep.txt" | grep -q -- "--warm-steps 10 "'
"$wancp" check scenario "$work/sweep.ini" --set sweep.key=sync_every --set sweep.values=5,20 --set sweep.arms=u >"$work/sweep2.ini" 2>/dev/null
check "sweep: --set changes it; arms names the arms" \
  'grep -qx "\[arm u+sync_every-20\]" "$work/sweep2.ini" && grep -qx "\[arm c\]" "$work/sweep2.ini"'
bad_sweep() { # WHAT SETS... -- NEEDLE
  local what=$1 needle=${*: -1} sets=("${@:2:$#-2}")
  "$wancp" check scenario "$work/sweep.ini" "${sets[@]}" >/dev/null 2>"$work/err"
  local status=$?
  check "sweep: $what refused" '[ $status = 2 ] && grep -qF -- "$needle" "$work/err"' || cat "$work/err"
}
bad_sweep "a value the key refuses" --set sweep.values=1,x "[sweep] [arm c+warm_steps-x] warm_steps = 'x'"
bad_sweep "an arm that is not there" --set sweep.arms=nosuch "[sweep] arms: no arm 'nosuch'"
bad_sweep "a value with a space inside" --set "sweep.values=1 2" "[sweep] values = '1 2'"
bad_sweep "17 arms" --set sweep.values=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 "17 arms once swept, more than 16"
bad_sweep "sweeping the profile" --set sweep.key=profile "[sweep] key = 'profile'"

# corpus = NAME: the prepared shards, bytes by the vocabulary; per arm, or swept.
printf '[scenario]\nname = c\nranks = 2\nsteps = 4\n[model]\nvocab = 256\n[train]\ncorpus = sotu\n[arm a]\nprofile = none\n[arm m]\nprofile = none\ncorpus = mail\n' \
  >"$work/corpus.ini"
"$wancp" check scenario "$work/corpus.ini" >"$work/corpus_resolved.ini" 2>"$work/err"
check "corpus: [train]'s and an arm's resolve to the bytes shards in data/" \
  'grep -qx "train = $src/data/sotu_bytes_train.bin" "$work/corpus_resolved.ini" &&
   sed -n "/^\[arm m\]/,\$p" "$work/corpus_resolved.ini" | grep -qx "val = $src/data/mail_bytes_val.bin"' || cat "$work/err"
"$wancp" run "$work/corpus.ini" --dry-run >"$work/dry_corpus.txt" 2>/dev/null
check "corpus: each arm's rank command trains on its own corpus" \
  'grep "^; arm m, each rank:" "$work/dry_corpus.txt" | grep -qF -- "--train $src/data/mail_bytes_train.bin " &&
   grep "^; arm a, each rank:" "$work/dry_corpus.txt" | grep -qF -- "--train $src/data/sotu_bytes_train.bin "'
"$wancp" check scenario "$work/corpus.ini" --set arm.m.corpus=nosuch >/dev/null 2>"$work/err"
check "corpus: one that was never prepared is named with its arm, exit 2" \
  '[ $? = 2 ] && grep -qF "[arm m] train: $src/data/nosuch_bytes_train.bin" "$work/err"'
"$wancp" check scenario "$work/corpus.ini" --set "train.corpus=Bad/name" >/dev/null 2>"$work/err"
check "corpus: a name that is not one refused" '[ $? = 2 ] && grep -qF "[train] corpus = '"'"'Bad/name'"'"'" "$work/err"'

echo "$passes passed, $failures failed"
[ "$failures" = 0 ]
