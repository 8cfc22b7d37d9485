#!/usr/bin/env bash
# Build GPUMD's `gpumd` and `nep` from a source tree of the pinned release, for the GPU(s) of this
# machine or the compute capabilities given. Both container recipes build with this script too:
#   scripts/build_gpumd.sh SRC PREFIX [ARCHS]
# SRC: a GPUMD checkout or export holding src/makefile (pinned commit: docs/gpumd.md). When SRC is
#      a git checkout its HEAD must be the pinned commit; an export may carry the hash in SRC/COMMIT.
# PREFIX: gets bin/gpumd, bin/nep and share/BUILD_INFO.
# ARCHS: compute capabilities such as "90" or "80,90"; default: those nvidia-smi lists.
# MAKE_JOBS (default: all cores) sets make's parallelism.
set -euo pipefail
PINNED=5fad844f2940b3c5d5f8414ad9dbebad8d65740a
if [ $# -lt 2 ]; then
  echo "usage: $0 SRC PREFIX [ARCHS]" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
prefix=$2
archs=${3:-}
if [ ! -f "$src/src/makefile" ]; then
  echo "$src: no src/makefile here; give the top folder of a GPUMD source tree" >&2
  exit 2
fi
commit=""
if [ -e "$src/.git" ]; then
  commit=$(git -C "$src" rev-parse HEAD)
elif [ -f "$src/COMMIT" ]; then
  commit=$(tr -d '[:space:]' < "$src/COMMIT")
fi
if [ "$commit" != "$PINNED" ]; then
  echo "$src: source is at commit '${commit:-unknown}', not the pinned GPUMD v5.6 ($PINNED)" >&2
  exit 2
fi
if [ -z "$archs" ]; then
  # no nvidia-smi: the pipeline fails, and set -e would end the script without a word
  archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d '.' | sort -u | paste -sd, -) \
    || archs=""
fi
if [ -z "$archs" ]; then
  echo "no GPU listed by nvidia-smi: give the compute capabilities as the third argument (e.g. 90)" >&2
  exit 2
fi
# SASS for every arch plus PTX of the last one; the makefile's -std=c++14 -arch=sm_60 is replaced.
gencode=""
last=""
for arch in ${archs//,/ }; do
  case "$arch" in ''|*[!0-9]*) echo "ARCHS: '$arch' is not a compute capability like 90" >&2; exit 2;; esac
  gencode="$gencode -gencode arch=compute_${arch},code=sm_${arch}"
  last=$arch
done
gencode="$gencode -gencode arch=compute_${last},code=compute_${last}"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp -r "$src/src" "$build/src"
(cd "$build/src" && make -j"${MAKE_JOBS:-$(nproc)}" gpumd nep CFLAGS="-std=c++17 -O3 $gencode" >"$build/make.log" 2>&1) \
  || { tail -n 30 "$build/make.log" >&2; echo "GPUMD build failed (log above)" >&2; exit 1; }
install -D -m 0755 "$build/src/gpumd" "$prefix/bin/gpumd"
install -D -m 0755 "$build/src/nep" "$prefix/bin/nep"
mkdir -p "$prefix/share"  # BUILD_INFO goes there even from a source tree without a LICENCE
if [ -f "$src/LICENCE" ]; then install -m 0644 "$src/LICENCE" "$prefix/share/LICENCE"; fi
printf 'commit=%s\ncuda_archs=%s\nnvcc=%s\n' "$commit" "$archs" "$(nvcc --version | tail -n 1)" \
  > "$prefix/share/BUILD_INFO"
echo "built gpumd and nep for sm_${archs//,/ sm_} into $prefix/bin"
