#!/usr/bin/env bash
# gpu_check.sh [BUILD_DIR] [OUT_DIR] [DATA_DIR]: everything the GPU backend's issue asks to
# verify and measure on a machine with an NVIDIA GPU, in one run (a few minutes):
#   1. the GPU tests: test_ops_cuda (every op, the fused attention kernels included, against
#      the cpu) and cuda_cli (training, ranks sharing the GPU, NCCL); run directly, not through
#      ctest, so that a bundle from tests/gpu_bundle.sh runs them too (test_fused_emulated,
#      the kernels' source under the warp emulator, needs no GPU: ctest runs it everywhere);
#   2. attention alone at the MFU target's shape (32K tokens, 8 heads of 256): the products
#      path, the fused kernels with two buffers per tile, with one (WANCP_FUSED_STAGES=1), and
#      with dQ recomputing dS rather than reading it (WANCP_FUSED_DQ=recompute); TF32, then the
#      products path and the fused kernels with bf16 operands;
#   3. the training step at the target (dim 2048, 8 heads, ffn 5632, 32K tokens, 4 layers):
#      MFU against cuBLAS's peak at the same precision in the same run, products and fused,
#      TF32 and bf16.
# BUILD_DIR holds wancp and tests/test_ops_cuda (default: build); DATA_DIR the Brown byte
# shards (default: data beside this script's folder). Each log and benchmark JSON goes to
# OUT_DIR (default: a new folder under /tmp) and a summary to stdout. Exit status: 1 when a
# test failed or a benchmark did not run, else 0; speed is reported, not asserted. Without a
# GPU it says so and exits 77.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
out=${2:-$(mktemp -d /tmp/wancp-gpu-check-XXXXXX)}
data=${3:-$here/../data}
wancp=$build/wancp
for f in "$wancp" "$build/tests/test_ops_cuda"; do
  [ -x "$f" ] || { echo "gpu_check: no $f: build first (harness/setup, or cmake)"; exit 1; }
done
mkdir -p "$out"
if ! "$wancp" --version 2>&1 | grep -q "kernel ok"; then
  echo "gpu_check: no usable CUDA device here:"
  "$wancp" --version 2>&1 | grep -i cuda
  exit 77
fi
"$wancp" --version 2>&1 | grep -i -E "cuda|device" | tee "$out/version.txt"
failed=0

echo "== GPU tests (at ${SECONDS} s)"
# run_test NAME COMMAND...: its output in OUT_DIR/NAME.log; a skip (77) is a failure here,
# where the GPU is known to work, and so is running past 300 s (a hang must not eat the
# machine's time: the benchmarks below get 180 s each).
run_test() {
  local name=$1; shift
  local start=$SECONDS
  timeout 300 "$@" >"$out/$name.log" 2>&1
  local rc=$?
  if [ $rc = 0 ]; then
    echo "  $name: passed ($((SECONDS - start)) s)"
  else
    echo "  $name: FAILED (exit $rc, $((SECONDS - start)) s); the end of $out/$name.log:"
    tail -n 15 "$out/$name.log" | sed 's/^/    /'
    failed=1
  fi
}
run_test test_ops_cuda "$build/tests/test_ops_cuda"
run_test cuda_cli bash "$here/cuda_cli.sh" "$wancp" "$data"

# field FILE NAME: a number or string field of a one-line JSON object; tera FILE NAME: a
# GFLOP/s field in TFLOP/s.
field() { grep -o "\"$2\": *[^,}]*" "$1" | head -n 1 | sed 's/^[^:]*: *//; s/"//g'; }
tera() { awk -v g="$(field "$1" "$2")" 'BEGIN { printf "%.1f", g / 1000 }'; }

echo "== attention alone: 32768 tokens, 8 heads of 256 (TFLOP/s, and the share of the matmul peak; at ${SECONDS} s)"
shape=(--tokens 32768 --heads 8 --head-dim 256 --reps 3)
run_attention() { # NAME ENV... -- ARGS...
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  if timeout 180 env "${envs[@]}" "$wancp" bench attention --device cuda --json "${shape[@]}" "$@" >"$out/attention-$name.json" \
    2>"$out/attention-$name.log"; then
    local f="$out/attention-$name.json"
    printf '  %-15s forward %6s (%.3f)  backward %6s (%.3f)  both %6s (%.3f)  peak %s\n' "$name" \
      "$(tera "$f" forward_gflops)" "$(field "$f" forward_ratio)" "$(tera "$f" backward_gflops)" \
      "$(field "$f" backward_ratio)" "$(tera "$f" gflops)" "$(field "$f" ratio)" "$(tera "$f" matmul_peak_gflops)"
  else
    echo "  $name: FAILED ($(tail -n 1 "$out/attention-$name.log"))"
    failed=1
  fi
}
run_attention products --
run_attention fused -- --attention fused
run_attention fused-1-stage WANCP_FUSED_STAGES=1 -- --attention fused
run_attention fused-recompute WANCP_FUSED_DQ=recompute -- --attention fused
run_attention bf16-products -- --precision bf16
run_attention bf16-fused -- --precision bf16 --attention fused

echo "== training step: dim 2048, 8 heads, ffn 5632, 32768 tokens, 4 layers (MFU against cuBLAS's peak; at ${SECONDS} s)"
step=(--dim 2048 --heads 8 --ffn 5632 --context 32768 --vocab 50257 --layers 4 --steps 3)
for precision in tf32 bf16; do
  for kind in products fused; do
    name=$precision-$kind
    if timeout 180 "$wancp" bench step --device cuda --precision "$precision" --attention "$kind" --json "${step[@]}" \
      >"$out/step-$name.json" 2>"$out/step-$name.log"; then
      f="$out/step-$name.json"
      printf '  %-14s step %.3f s  MFU %.3f  (peak %s TFLOP/s, %s)\n' "$name" "$(field "$f" step_s_median)" \
        "$(field "$f" mfu)" "$(tera "$f" sgemm_peak_gflops)" "$(field "$f" sgemm_peak_shape)"
    else
      echo "  $name: FAILED ($(tail -n 1 "$out/step-$name.log"))"
      failed=1
    fi
  done
done
echo "== results in $out (${SECONDS} s in all)"
exit $failed
