#!/usr/bin/env bash
# run_fuzz.sh FUZZER SECONDS SEED_DIR: runs a libFuzzer target for a bounded time (or, with
# FUZZ_RUNS=N set, until N executions if that comes first) from a
# copy of its seeds (the tracked seeds are never modified) and fails on any finding. A finding
# is kept beside the fuzzer as findings/NAME-crash-..., and printed in hex, so that it can be
# replayed (`FUZZER FILE`) and turned into a test.
set -euo pipefail
fuzzer=$1 seconds=$2 seeds=$3
findings=$(dirname "$fuzzer")/findings
mkdir -p "$findings"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus"
cp "$seeds"/* "$work/corpus/"
cd "$work"
export TMPDIR=$work # the targets' own files (fuzz_input.h) go here too
set +e
"$fuzzer" -max_total_time="$seconds" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$findings/$(basename "$fuzzer")-" corpus >"$work/log" 2>&1
rc=$?
set -e
grep -v '^#[0-9]' "$work/log" | tail -n 40
for f in $(grep -o "Test unit written to [^ ]*" "$work/log" | cut -d' ' -f5); do
  echo "finding: $f ($(stat -c %s "$f") bytes):"
  od -A d -c "$f" | head -n 20
done
exit $rc
