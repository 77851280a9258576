#!/usr/bin/env bash
# gpu_check_flow.sh: tests/gpu_check.sh's own logic, without a GPU, against stand-ins (a wancp
# that reports a working device and prints fixed JSON, a test_ops_cuda and a cuda_cli.sh that
# pass or fail on request), since the real run happens on a GPU machine whose minutes are
# scarce and a script error there costs the whole run:
#   - every benchmark runs (six attention variants, four steps), with the variant's options and
#     environment (WANCP_FUSED_STAGES, WANCP_FUSED_DQ), and gets its summary line; exit 0;
#   - a failing test or benchmark is reported with the end of its log, and the exit status is 1;
#   - a stand-in wancp that reports no usable device gives exit 77 and runs nothing.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }

mkdir -p "$work/scripts" "$work/build/tests"
cp "$here/gpu_check.sh" "$work/scripts/"
# cuda_cli.sh stand-in: FAIL_CLI=1 fails it.
printf '#!/usr/bin/env bash\necho "cuda_cli stand-in: $*"\n[ "${FAIL_CLI:-0}" = 0 ] || { echo "FAIL: a check"; exit 1; }\n' \
  >"$work/scripts/cuda_cli.sh"
printf '#!/usr/bin/env bash\necho "test_ops_cuda stand-in"\n' >"$work/build/tests/test_ops_cuda"
# wancp stand-in: logs each call with the environment that matters; NO_DEVICE=1 reports no
# device; FAIL_BENCH=1 fails bench step with one line on stderr.
cat >"$work/build/wancp" <<'STUB'
#!/usr/bin/env bash
echo "$* | stages=${WANCP_FUSED_STAGES:-} dq=${WANCP_FUSED_DQ:-}" >>"$CALLS"
case $1 in
--version)
  if [ "${NO_DEVICE:-0}" = 1 ]; then echo "cuda: built with runtime 13.0; no usable device (none found)"
  else echo "cuda:0 stand-in GPU, sm_90, 139.8 GiB, 132 SMs, kernel ok"; fi ;;
bench)
  if [ "$2" = attention ]; then
    echo '{"bench": "attention", "forward_gflops": 150000.0, "forward_ratio": 0.341, "backward_gflops": 120000.0, "backward_ratio": 0.273, "gflops": 130000.0, "ratio": 0.295, "matmul_peak_gflops": 440000.0}'
  else
    [ "${FAIL_BENCH:-0}" = 0 ] || { echo "wancp: bench step: out of device memory" >&2; exit 1; }
    echo '{"step_s_median": 0.651, "mfu": 0.397, "sgemm_peak_gflops": 439000.0, "sgemm_peak_shape": "8192x8192x8192"}'
  fi ;;
esac
STUB
chmod +x "$work/build/wancp" "$work/build/tests/test_ops_cuda"
export CALLS=$work/calls

bash "$work/scripts/gpu_check.sh" "$work/build" "$work/out" "$work/data" >"$work/ok.out" 2>&1
rc=$?
check "a passing run exits 0" '[ $rc = 0 ] || { cat "$work/ok.out"; false; }'
check "both tests ran and passed" '[ "$(grep -c ": passed" "$work/ok.out")" = 2 ]'
check "six attention summaries" '[ "$(grep -c "forward  150.0 (0.341)  backward  120.0 (0.273)" "$work/ok.out")" = 6 ]'
check "four step summaries" '[ "$(grep -c "step 0.651 s  MFU 0.397  (peak 439.0 TFLOP/s" "$work/ok.out")" = 4 ]'
check "one buffer per tile asked by environment" \
  'grep -q "bench attention .*--attention fused | stages=1 dq=$" "$CALLS"'
check "dQ recomputing dS asked by environment" \
  'grep -q "bench attention .*--attention fused | stages= dq=recompute$" "$CALLS"'
check "bf16 fused attention benchmarked" 'grep -q "bench attention .*--precision bf16 --attention fused" "$CALLS"'
check "the step at the target shape, bf16 with fused attention" \
  'grep -q "bench step --device cuda --precision bf16 --attention fused --json --dim 2048 --heads 8 --ffn 5632 --context 32768" "$CALLS"'
check "every JSON kept" '[ "$(ls "$work/out"/*.json | wc -l)" = 10 ]'

rm -f "$CALLS"
FAIL_CLI=1 FAIL_BENCH=1 bash "$work/scripts/gpu_check.sh" "$work/build" "$work/out2" "$work/data" >"$work/bad.out" 2>&1
rc=$?
check "failures exit 1" '[ $rc = 1 ]'
check "a failing test is named with its log's end" \
  'grep -q "cuda_cli: FAILED (exit 1" "$work/bad.out" && grep -q "FAIL: a check" "$work/bad.out"'
check "a failing benchmark is named with its error" \
  '[ "$(grep -c "FAILED (wancp: bench step: out of device memory)" "$work/bad.out")" = 4 ]'
check "the attention benchmarks still ran" '[ "$(grep -c "forward  150.0" "$work/bad.out")" = 6 ]'

rm -f "$CALLS"
NO_DEVICE=1 bash "$work/scripts/gpu_check.sh" "$work/build" "$work/out3" "$work/data" >"$work/none.out" 2>&1
rc=$?
check "no device: exit 77, nothing run" \
  '[ $rc = 77 ] && grep -q "no usable CUDA device" "$work/none.out" && ! grep -q "bench" "$CALLS"'

echo "passed $passes checks"
[ "$failures" = 0 ]
