#!/usr/bin/env bash
# tests/fuzz/fuzz.sh [SECONDS] [BUILD]: every libFuzzer target for SECONDS each (default 600),
# one after the other, from its seeds; prints each one's executions and exits non-zero on the
# first finding (kept in BUILD/tests/fuzz/findings/). FUZZ_RUNS=N stops each at N executions
# if that comes first. ctest runs the same targets for 15 s each.
set -uo pipefail
seconds=${1:-600}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${2:-$here/../../build}
[ -d "$build/tests/fuzz" ] || { echo "fuzz.sh: no $build/tests/fuzz (run harness/setup)" >&2; exit 2; }
status=0
for fuzzer in "$build"/tests/fuzz/fuzz_*; do
  [ -x "$fuzzer" ] || continue
  name=$(basename "$fuzzer")
  out=$(bash "$here/run_fuzz.sh" "$fuzzer" "$seconds" "$here/seeds/$name" 2>&1)
  rc=$?
  runs=$(grep -o 'number_of_executed_units: [0-9]*' <<<"$out" | grep -o '[0-9]*$')
  printf '%-18s %10s executions in %s s: %s\n' "$name" "${runs:-?}" "$seconds" "$([ $rc = 0 ] && echo clean || echo FINDING)"
  if [ $rc != 0 ]; then echo "$out" | tail -n 30; status=1; fi
done
exit $status
