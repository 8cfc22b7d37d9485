#!/usr/bin/env bash
# `make gpumd`: GPUMD built with NVIDIA's CUDA 13 wheels from PyPI (pins.toml [cuda13]) and checked,
# on a machine with neither a GPU nor a CUDA install (docs/gpumd.md gives the measured times).
#   GPUMD_SRC=/path/to/GPUMD-v5.6 scripts/make_gpumd.sh
# Environment:
#   GPUMD_SRC      a source tree of the pinned release (never committed; a git export may carry the
#                  hash in COMMIT): needed unless GPUMD_PREFIX already holds this build
#   CUDA13_PREFIX  the toolchain folder (default third_party/cuda13, ~1.7 GB)
#   GPUMD_PREFIX   where bin/gpumd, bin/nep and share/ go (default third_party/gpumd-cuda13)
#   GPUMD_ARCHS    compute capabilities, e.g. 90 or 80,90 (default: pins.toml [cuda13] archs)
#   MAKE_JOBS      make's parallelism (default: all cores); FORCE=1 rebuilds a current build
#   PYTHON         a Python >= 3.11 with pip (default python3)
# Steps: (1) scripts/cuda_wheels.py install (nothing when current); (2) its env.sh: the wheels'
# nvcc first on PATH, -L to the libX.so links through NVCC_APPEND_FLAGS, LD_LIBRARY_PATH to run
# and ldd; (3) scripts/build_gpumd.sh, skipped when GPUMD_PREFIX/share/BUILD_INFO already names
# the pinned commit, these archs and this nvcc; (4) scripts/check_gpumd.sh with cuobjdump required.
# The seconds of (1) and (3) go to GPUMD_PREFIX/share/MAKE_GPUMD. Exit: 0 built and checked,
# 1 the build or a check failed, 2 nothing to build from (no GPUMD_SRC) or a bad argument.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
pin() { "$PYTHON" -c "import tomllib, sys; t = tomllib.load(open('pins.toml', 'rb')); print($1)"; }
cuda_prefix=${CUDA13_PREFIX:-third_party/cuda13}
prefix=${GPUMD_PREFIX:-third_party/gpumd-cuda13}
archs=${GPUMD_ARCHS:-$(pin "','.join(t['cuda13']['archs'])")}
commit=$(pin "t['gpumd']['commit']")

start=$(date +%s)
"$PYTHON" scripts/cuda_wheels.py install "$cuda_prefix" --pins pins.toml
toolchain_s=$(( $(date +%s) - start ))
# shellcheck source=/dev/null
. "$cuda_prefix/env.sh"
nvcc_path=$(command -v nvcc)
case "$nvcc_path" in
  "$CUDA_WHEELS_PREFIX"/*) ;;
  *) echo "make_gpumd: nvcc is $nvcc_path, not the wheels' (under $CUDA_WHEELS_PREFIX)" >&2; exit 1 ;;
esac
nvcc_version=$(nvcc --version | tail -n 1)
echo "make_gpumd: $nvcc_path ($nvcc_version), NVCC_APPEND_FLAGS=$NVCC_APPEND_FLAGS"

info=$prefix/share/BUILD_INFO
current=0
if [ -f "$info" ] && [ -x "$prefix/bin/gpumd" ] && [ -x "$prefix/bin/nep" ] \
   && grep -qx "commit=$commit" "$info" && grep -qx "cuda_archs=$archs" "$info" \
   && grep -qxF "nvcc=$nvcc_version" "$info"; then
  current=1
fi
build_s=""
if [ "$current" = 1 ] && [ "${FORCE:-}" != 1 ]; then
  echo "make_gpumd: $prefix already holds GPUMD $commit for sm_${archs//,/ sm_} ($nvcc_version); FORCE=1 rebuilds"
else
  if [ -z "${GPUMD_SRC:-}" ]; then
    echo "make_gpumd: set GPUMD_SRC to a GPUMD source tree at $commit (docs/gpumd.md says how to get one)" >&2
    exit 2
  fi
  start=$(date +%s)
  scripts/build_gpumd.sh "$GPUMD_SRC" "$prefix" "$archs"
  build_s=$(( $(date +%s) - start ))
  printf 'toolchain=%s\ntoolchain_install_s=%s\nbuild_s=%s\nmake_jobs=%s\ncores=%s\ncpu=%s\ndate=%s\n' \
    "$(paste -sd' ' "$cuda_prefix/REQUIREMENTS")" "$toolchain_s" "$build_s" "${MAKE_JOBS:-$(nproc)}" "$(nproc)" \
    "$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n 1)" "$(date -u +%FT%TZ)" > "$prefix/share/MAKE_GPUMD"
  echo "make_gpumd: toolchain ${toolchain_s} s, build ${build_s} s (sm_${archs//,/ sm_}, ${MAKE_JOBS:-$(nproc)} jobs)"
fi
CHECK_CUOBJDUMP=1 scripts/check_gpumd.sh "$prefix" "$archs"
