#!/usr/bin/env bash
# cuda_cli.sh WANCP DATA_DIR: the cuda backend from the command line.
#   - everywhere: a bad --device, --precision or --attention exits 2 with one line;
#   - on a GPU (else exit 77, a skip): `wancp train --device cuda` follows the cpu's training
#     loss within 2% at each of 50 steps (also with --attention fused; bf16 products, with
#     each attention, within 5%), resumes from its own
#     checkpoint, and `wancp bench step --device cuda --json` reports an MFU against cuBLAS's
#     peak (and which attention it timed);
#   - context parallelism on one GPU shared by the ranks (host staging over TCP): 4 ranks in
#     fp32 follow the cpu's 4 ranks within 1e-3 and send the same bytes, their Mode S
#     checkpoints are identical; compressed 2 ranks (products and fused attention) and one
#     process over 4 chunks follow the cpu;
#   - the NCCL transport with one rank (where libnccl.so.2 can be loaded): its identity
#     all-reduce every step leaves the run bit for bit the run without it.
set -uo pipefail
wancp=$1 data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }
expect2() {
  local needle=$1; shift
  "$@" >/dev/null 2>"$work/err"
  local rc=$?
  check "exit 2 and '$needle' for: ${*:2}" '[ $rc = 2 ] && [ "$(wc -l <"$work/err")" = 1 ] && grep -q -- "$needle" "$work/err"'
}
# worst FILE_A FILE_B LIMIT WHAT [STEPS]: the largest relative difference of the training loss
# (column 4; step 0 is the evaluation row) over the common steps, printed; fails above LIMIT,
# or when STEPS is given and the files do not share that many steps.
worst() {
  paste -d, <(grep -v '^#' "$1" | cut -d, -f1,4) <(grep -v '^#' "$2" | cut -d, -f4) \
    | awk -F, -v lim="$3" -v what="$4" -v want="${5:-0}" 'NR > 1 && $2 != "" { r = ($3 - $2) / $2; if (r < 0) r = -r; if (r > w) w = r; n++ }
        END { printf "%s: %d steps, worst relative difference of the training loss cpu vs cuda: %.2e (limit %g)\n", what, n, w, lim;
              exit !(n > 0 && (want == 0 || n == want) && w <= lim) }'
}

[ -f "$data/brown_bytes_train.bin" ] || { echo "no $data/brown_bytes_train.bin: run harness/setup"; exit 1; }
tiny=(--train "$data/brown_bytes_train.bin" --val "$data/brown_bytes_val.bin" --vocab 256 --layers 2 --dim 64
      --heads 4 --kv-heads 2 --ffn 128 --context 128 --attn-block 32 --batch 4 --steps 50 --lr 3e-3 --warmup 5
      --eval-every 25 --val-tokens 2048 --threads 2 --seed 3)

expect2 "expected cpu or cuda" "$wancp" train "${tiny[@]}" --device tpu
expect2 "expected tf32, fp32 or bf16" "$wancp" train "${tiny[@]}" --precision fp16
expect2 "expected cpu or cuda" "$wancp" bench step --device gpu
expect2 "expected tcp or nccl" "$wancp" train "${tiny[@]}" --transport mpi
expect2 "needs --device cuda" "$wancp" train "${tiny[@]}" --transport nccl
expect2 "expected products or fused" "$wancp" train "${tiny[@]}" --attention flash
expect2 "--attention fused needs --device cuda and --precision tf32 or bf16" "$wancp" train "${tiny[@]}" --attention fused
expect2 "--attention fused needs --device cuda and --precision tf32 or bf16" "$wancp" bench step --device cuda \
  --precision fp32 --attention fused

if ! "$wancp" --version 2>&1 | grep -q "kernel ok"; then
  # bf16 with fused attention passes the usage checks and reaches the device, which is absent.
  expect2 "device cuda: " "$wancp" bench step --device cuda --precision bf16 --attention fused
  echo "passed $passes checks; no usable CUDA device here, the rest is skipped:"
  "$wancp" --version 2>&1 | grep -i cuda
  [ "$failures" = 0 ] || exit 1
  exit 77
fi

"$wancp" train "${tiny[@]}" --metrics "$work/cpu.csv" 2>/dev/null
check "cpu run" '[ $? = 0 ]'
"$wancp" train "${tiny[@]}" --device cuda --metrics "$work/cuda.csv" --checkpoint "$work/ck.bin" 2>"$work/cuda.log"
check "cuda run" '[ $? = 0 ] && grep -q "^# device: cuda, " "$work/cuda.csv"'
worst "$work/cpu.csv" "$work/cuda.csv" 0.02 "one process, tf32" 50; rc=$?
check "cuda follows the cpu loss curve within 2% for 50 steps" '[ $rc = 0 ]'
grep -v '^#' "$work/cpu.csv" | tail -n 1 | cut -d, -f1,4,5 | sed 's/^/cpu  last step,train,val: /'
grep -v '^#' "$work/cuda.csv" | tail -n 1 | cut -d, -f1,4,5 | sed 's/^/cuda last step,train,val: /'

# Resume from the GPU's checkpoint: the state went through host memory and back.
"$wancp" train "${tiny[@]}" --device cuda --steps 60 --resume "$work/ck.bin" --metrics "$work/resumed.csv" 2>/dev/null
check "cuda resumes from its checkpoint" '[ $? = 0 ] && [ "$(grep -v "^#" "$work/resumed.csv" | tail -n 1 | cut -d, -f1)" = 60 ]'

out=$("$wancp" bench step --device cuda --json --layers 2 --dim 512 --heads 4 --context 2048 --vocab 1000 --steps 2)
echo "$out"
field() { printf '%s' "$out" | grep -o "\"$1\": *[^,}]*" | head -n 1 | sed 's/^[^:]*: *//; s/"//g'; }
mfu=$(field mfu) gflops=$(field step_gflops) peak=$(field sgemm_peak_gflops)
awk -v m="$mfu" -v g="$gflops" -v p="$peak" 'BEGIN { d = m - g / p; if (d < 0) d = -d; exit !(m > 0 && m <= 1.05 && d <= 1e-3 * m) }'
check "bench step --device cuda reports an MFU against the cuBLAS peak" '[ $? = 0 ] && printf "%s" "$out" | grep -q "\"device\": \"cuda, "'

# The fused tensor-core attention kernels (TF32): the same curve, named in the metrics, and
# bench step says which attention it timed.
"$wancp" train "${tiny[@]}" --device cuda --attention fused --metrics "$work/fused.csv" 2>"$work/fused.log"
check "cuda run with fused attention" '[ $? = 0 ] && grep -q "^# device: cuda, .*fused attention" "$work/fused.csv" || { tail -n 5 "$work/fused.log"; false; }'
worst "$work/cpu.csv" "$work/fused.csv" 0.02 "one process, tf32, fused attention" 50; rc=$?
check "fused attention follows the cpu loss curve within 2% for 50 steps" '[ $rc = 0 ]'
out=$("$wancp" bench step --device cuda --attention fused --json --layers 2 --dim 512 --heads 4 --context 2048 --vocab 1000 --steps 2)
echo "$out"
check "bench step --attention fused reports it" 'printf "%s" "$out" | grep -q "\"attention\": \"fused\""'
# bf16 operands on the tensor cores (fp32 accumulation): within 5%, with either attention; bench
# step names the precision and measures its peak in bf16.
for kind in products fused; do
  "$wancp" train "${tiny[@]}" --device cuda --precision bf16 --attention $kind --metrics "$work/bf16-$kind.csv" \
    2>"$work/bf16.log"
  check "cuda run, bf16, $kind attention" '[ $? = 0 ] && grep -q "^# device: cuda, .*bf16 products" "$work/bf16-$kind.csv" || { tail -n 5 "$work/bf16.log"; false; }'
  worst "$work/cpu.csv" "$work/bf16-$kind.csv" 0.05 "one process, bf16, $kind attention" 50; rc=$?
  check "bf16 ($kind attention) follows the cpu loss curve within 5% for 50 steps" '[ $rc = 0 ]'
done
out=$("$wancp" bench step --device cuda --precision bf16 --json --layers 2 --dim 512 --heads 4 --context 2048 --vocab 1000 --steps 2)
echo "$out"
check "bench step --precision bf16 reports it, against a bf16 GEMM peak" \
  'printf "%s" "$out" | grep -q "\"precision\": \"bf16\"" && printf "%s" "$out" | grep -q "\"peak_source\": \"cuBLAS bf16 GEMM"'
for kind in products fused; do
  out=$("$wancp" bench attention --device cuda --attention $kind --json --tokens 4096 --heads 8 --head-dim 128)
  echo "$out"
  check "bench attention --attention $kind runs on the GPU" 'printf "%s" "$out" | grep -q "\"attention\": \"$kind\""'
done

# Context parallelism with the ranks sharing this GPU.
# bytes FILE: rank 0's kv-forward, kv-backward and weight-sync byte columns of the last row.
bytes() { grep -v '^#' "$1" | tail -n 1 | cut -d, -f9-11; }
cp4=("${tiny[@]}" --steps 20 --attn-block 16 --wire fp32 --sync S)
"$wancp" train "${cp4[@]}" --ranks 4 --metrics "$work/cp4-cpu.csv" 2>/dev/null
check "cpu, 4 ranks" '[ $? = 0 ]'
"$wancp" train "${cp4[@]}" --ranks 4 --device cuda --precision fp32 --metrics "$work/cp4-cuda.csv" \
  --checkpoint "$work/cp4.bin" 2>"$work/cp4.log"
check "cuda, 4 ranks on one GPU" '[ $? = 0 ] || { tail -n 5 "$work/cp4.log"; false; }'
worst "$work/cp4-cpu.csv" "$work/cp4-cuda.csv" 1e-3 "4 ranks, fp32, Mode S"; rc=$?
check "cuda's 4 ranks follow the cpu's within 1e-3 (fp32)" '[ $rc = 0 ]'
echo "bytes per class, cpu: $(bytes "$work/cp4-cpu.csv"); cuda: $(bytes "$work/cp4-cuda.csv")"
check "cuda's ranks send the cpu's bytes, per class" '[ -n "$(bytes "$work/cp4-cuda.csv")" ] && [ "$(bytes "$work/cp4-cpu.csv")" = "$(bytes "$work/cp4-cuda.csv")" ]'
check "Mode S leaves the same weights on every rank (checkpoints identical)" \
  'cmp -s "$work/cp4.bin.rank0" "$work/cp4.bin.rank1" && cmp -s "$work/cp4.bin.rank0" "$work/cp4.bin.rank3"'

comp=("${tiny[@]}" --steps 30 --compress --warm-steps 5 --cov-steps 5 --compress-last --stiefel)
"$wancp" train "${comp[@]}" --ranks 2 --metrics "$work/c2-cpu.csv" 2>/dev/null
"$wancp" train "${comp[@]}" --ranks 2 --device cuda --metrics "$work/c2-cuda.csv" 2>"$work/c2.log"
check "cuda, 2 ranks compressed (the last step ran compressed)" \
  '[ $? = 0 ] && [ "$(grep -v "^#" "$work/c2-cuda.csv" | tail -n 1 | cut -d, -f13)" = 1 ] || { tail -n 5 "$work/c2.log"; false; }'
worst "$work/c2-cpu.csv" "$work/c2-cuda.csv" 0.02 "2 ranks, compressed K/V with the Stiefel step, tf32"; rc=$?
check "compressed cuda ranks follow the cpu's within 2%" '[ $rc = 0 ]'
check "compressed cuda ranks send the cpu's kv bytes" \
  '[ "$(bytes "$work/c2-cpu.csv" | cut -d, -f1,2)" = "$(bytes "$work/c2-cuda.csv" | cut -d, -f1,2)" ]'
"$wancp" train "${comp[@]}" --ranks 2 --device cuda --attention fused --metrics "$work/c2-fused.csv" 2>"$work/c2f.log"
check "cuda, 2 ranks compressed, fused attention" '[ $? = 0 ] || { tail -n 5 "$work/c2f.log"; false; }'
worst "$work/c2-cpu.csv" "$work/c2-fused.csv" 0.02 "2 ranks, compressed, tf32, fused attention"; rc=$?
check "compressed cuda ranks with fused attention follow the cpu's within 2%" '[ $rc = 0 ]'

"$wancp" train "${tiny[@]}" --steps 20 --chunks 4 --metrics "$work/ch-cpu.csv" 2>/dev/null
"$wancp" train "${tiny[@]}" --steps 20 --chunks 4 --device cuda --precision fp32 --metrics "$work/ch-cuda.csv" 2>/dev/null
check "cuda, one process over 4 chunks" '[ $? = 0 ]'
worst "$work/ch-cpu.csv" "$work/ch-cuda.csv" 1e-3 "one process, 4 chunks, fp32"; rc=$?
check "cuda over 4 chunks follows the cpu within 1e-3" '[ $rc = 0 ]'

# The NCCL transport, one rank on this GPU: Mode S all-reduces the gradients through NCCL
# every step (the identity with one rank), so the losses must equal the TCP run's exactly.
one=("${tiny[@]}" --steps 10 --device cuda --precision fp32)
"$wancp" train "${one[@]}" --metrics "$work/tcp1.csv" 2>/dev/null
"$wancp" train "${one[@]}" --transport nccl --metrics "$work/nccl1.csv" 2>"$work/nccl1.log"
rc=$?
if [ $rc = 2 ] && grep -q "cannot load" "$work/nccl1.log"; then
  echo "NCCL transport not checked: $(cat "$work/nccl1.log")"
else
  check "one rank over NCCL runs" '[ $rc = 0 ] || { cat "$work/nccl1.log"; false; }'
  grep "^# transport" "$work/nccl1.csv"
  check "the metrics name NCCL as the weight-sync transport" 'grep -q "^# transport: .*weight sync over NCCL 2\." "$work/nccl1.csv"'
  check "NCCL's identity all-reduce leaves the losses bit for bit" \
    'diff <(grep -v "^#" "$work/tcp1.csv" | cut -d, -f1,4,5,6) <(grep -v "^#" "$work/nccl1.csv" | cut -d, -f1,4,5,6)'
fi

echo "passed $passes checks, failed $failures"
[ "$failures" = 0 ]
