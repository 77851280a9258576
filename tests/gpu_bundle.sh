#!/usr/bin/env bash
# gpu_bundle.sh [BUILD_DIR] [ARCHIVE]: packs what tests/gpu_check.sh needs into one archive
# for a GPU machine that has an NVIDIA driver and CUDA 13's libraries but none of this
# project's Debian packages and no compiler for it (a cluster node, a bare cloud image):
#   wancp-gpu/wancp, wancp-gpu/tests/test_ops_cuda   built here (BUILD_DIR, default build)
#   wancp-gpu/lib/                the shared libraries they load (OpenBLAS, LAPACK, jansson,
#                                 PCRE2, inih, libpcap and theirs), but not the C runtime's
#                                 or CUDA's: those must be the machine's own, matching its
#                                 driver (its glibc must be at least as new as this one's)
#   wancp-gpu/data/               the Brown byte shards cuda_cli.sh trains on
#   wancp-gpu/tests/              gpu_check.sh and cuda_cli.sh
#   wancp-gpu/run [OUT_DIR]       sets the library path (lib/, then CUDA's) and runs
#                                 gpu_check.sh on the bundle
# On the GPU machine: tar -xJf wancp-gpu.tar.xz && wancp-gpu/run /tmp/gpu-check
# ARCHIVE defaults to wancp-gpu.tar.xz in the current folder. Exit status 2 on bad use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
archive=${2:-wancp-gpu.tar.xz}
case ${1:-} in -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
data=$here/../data
die() { echo "gpu_bundle: $*" >&2; exit 2; }
for f in "$build/wancp" "$build/tests/test_ops_cuda"; do
  [ -x "$f" ] || die "no $f: build first (harness/setup, or cmake)"
done
! "$build/wancp" --version 2>&1 | grep -q "^cuda: not built" ||
  die "$build/wancp was built without CUDA (no nvcc at build time): nothing to check on a GPU"
for f in brown_bytes_train.bin brown_bytes_val.bin; do
  [ -f "$data/$f" ] || die "no $data/$f: run harness/setup"
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/wancp-gpu
mkdir -p "$root/lib" "$root/tests" "$root/data"
cp "$build/wancp" "$root/"
cp "$build/tests/test_ops_cuda" "$root/tests/"
cp "$here/gpu_check.sh" "$here/cuda_cli.sh" "$root/tests/"
cp "$data/brown_bytes_train.bin" "$data/brown_bytes_val.bin" "$root/data/"

# The libraries the machine supplies itself: the C and C++ runtimes and the loader, and
# CUDA's (libcuda comes with the driver; cuBLAS and NCCL must match it).
system_lib='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libnccl)\.so'
for binary in "$root/wancp" "$root/tests/test_ops_cuda"; do
  ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | while read -r name path; do
    [[ $name =~ $system_lib ]] && continue
    cp -L "$path" "$root/lib/$name"
  done
done

cat >"$root/run" <<'EOF'
#!/usr/bin/env bash
# run [OUT_DIR]: tests/gpu_check.sh on this bundle, with its libraries and CUDA's.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cuda=${CUDA_HOME:-/usr/local/cuda}
export LD_LIBRARY_PATH=$here/lib:$cuda/lib64:$cuda/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
missing=$(ldd "$here/wancp" "$here/tests/test_ops_cuda" | awk '/not found/ { print $1 }' | sort -u | tr '\n' ' ')
if [ -n "$missing" ]; then
  echo "run: not found on this machine: ${missing}(CUDA 13's libraries: set CUDA_HOME, or add their folder to LD_LIBRARY_PATH)" >&2
  exit 2
fi
exec bash "$here/tests/gpu_check.sh" "$here" "${1:-$(mktemp -d /tmp/wancp-gpu-check-XXXXXX)}" "$here/data"
EOF
chmod +x "$root/run"
XZ_OPT=${XZ_OPT:--6 -T0} tar -C "$stage" -cJf "$archive" wancp-gpu
echo "gpu_bundle: $archive ($(du -h "$archive" | cut -f1); $(ls "$root/lib" | wc -l) libraries); on the GPU machine:"
echo "  tar -xJf $(basename "$archive") && wancp-gpu/run /tmp/gpu-check"
