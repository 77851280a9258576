#!/usr/bin/env bash
# run_fuzz.sh FUZZER SECONDS SEED_DIR: runs a libFuzzer target for a bounded time from a
# copy of its seeds (the tracked seeds are never modified) and fails on any finding.
set -euo pipefail
fuzzer=$1 seconds=$2 seeds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus"
cp "$seeds"/* "$work/corpus/"
cd "$work"
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 corpus 2>&1 | tail -n 25
exit "${PIPESTATUS[0]}"
