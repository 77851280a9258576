#!/usr/bin/env bash
# gpu_bundle_test.sh BUILD_DIR: tests/gpu_bundle.sh makes a bundle that needs nothing of this
# machine's but the C runtime's and CUDA's libraries:
#   - a missing build folder exits 2 with one line; a build without CUDA is refused the same way;
#   - every library wancp and test_ops_cuda load, with the bundle's library path, is the
#     bundle's own or one the bundle leaves to the machine (C runtime, CUDA);
#   - the bundle's run script starts gpu_check.sh on the bundle: without a GPU it exits 77 after
#     the binaries have started (so their libraries resolved); a missing CUDA library is named
#     in one line with exit 2.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }
export XZ_OPT=-0 # a fast archive: what is in it is under test, not its size

bash "$here/gpu_bundle.sh" "$work/no-such-build" "$work/x.tar.xz" >/dev/null 2>"$work/err"
rc=$?
check "a missing build folder: exit 2, one line naming it" \
  '[ $rc = 2 ] && [ "$(wc -l <"$work/err")" = 1 ] && grep -q "no-such-build/wancp" "$work/err"'

if "$build/wancp" --version 2>&1 | grep -q "^cuda: not built"; then
  bash "$here/gpu_bundle.sh" "$build" "$work/x.tar.xz" >/dev/null 2>"$work/err"
  rc=$?
  check "a build without CUDA is refused: exit 2, one line" \
    '[ $rc = 2 ] && [ "$(wc -l <"$work/err")" = 1 ] && grep -q "without CUDA" "$work/err" && [ ! -e "$work/x.tar.xz" ]'
  echo "passed $passes checks (this build has no CUDA: nothing more to bundle)"
  [ "$failures" = 0 ]
  exit
fi

(cd "$work" && bash "$here/gpu_bundle.sh" "$build" "$work/wancp-gpu.tar.xz") >"$work/out" 2>&1
rc=$?
check "the bundle is made" '[ $rc = 0 ] && [ -s "$work/wancp-gpu.tar.xz" ] || { cat "$work/out"; false; }'
[ "$failures" = 0 ] || exit 1
mkdir "$work/x" && tar -C "$work/x" -xJf "$work/wancp-gpu.tar.xz"
b=$work/x/wancp-gpu
for f in wancp tests/test_ops_cuda tests/gpu_check.sh tests/cuda_cli.sh run data/brown_bytes_train.bin \
  data/brown_bytes_val.bin; do
  check "the bundle holds $f" '[ -s "$b/$f" ]'
done

# Every library resolved with the bundle's path comes from the bundle or is the machine's own.
system_lib='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libnccl)\.so'
LD_LIBRARY_PATH=$b/lib ldd "$b/wancp" "$b/tests/test_ops_cuda" | awk '$2 == "=>" { print $1, $3 }' | sort -u >"$work/libs"
outside=$(awk -v lib="$b/lib/" -v sys="$system_lib" '$1 !~ sys && index($2, lib) != 1' "$work/libs")
check "every other library is the bundle's own ($(wc -l <"$work/libs") loaded)" \
  '[ -z "$outside" ] || { echo "from outside the bundle: $outside"; false; }'
check "the bundle's libraries include OpenBLAS, jansson and PCRE2" \
  'grep -q "libopenblas" "$work/libs" && grep -q "libjansson" "$work/libs" && grep -q "libpcre2-8" "$work/libs"'

if "$build/wancp" --version 2>&1 | grep -q "kernel ok"; then
  echo "passed $passes checks; a GPU is here: run $b/run by hand for the whole check (minutes)"
  [ "$failures" = 0 ]
  exit
fi
"$b/run" "$work/check" >"$work/run.out" 2>&1
rc=$?
check "without a GPU the bundle's run says so and exits 77" \
  '[ $rc = 77 ] && grep -q "no usable CUDA device" "$work/run.out" || { cat "$work/run.out"; false; }'
# A CUDA library the machine lacks (ldd, as run's shell finds it, reports one not found).
ldd() { command ldd "$@"; printf '\tlibcublas.so.13 => not found\n'; }
export -f ldd
"$b/run" "$work/check2" >"$work/run2.out" 2>&1
rc=$?
unset -f ldd
check "a missing CUDA library is named: exit 2, one line" \
  '[ $rc = 2 ] && [ "$(wc -l <"$work/run2.out")" = 1 ] && grep -q "not found on this machine: libcublas.so.13" "$work/run2.out" || { cat "$work/run2.out"; false; }'

echo "passed $passes checks"
[ "$failures" = 0 ]
