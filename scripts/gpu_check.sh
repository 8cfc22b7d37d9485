#!/usr/bin/env bash
# The GPU checks in one command, on a GPU node with nepbench installed (`make setup`, or inside the
# container, where gpumd is already built):
#   scripts/gpu_check.sh [OUT]            (default OUT: reports/gpu-check)
# 1. gpumd on PATH, or built from GPUMD_SRC (a source tree of the pinned release) into
#    GPUMD_PREFIX (default third_party/gpumd) with scripts/build_gpumd.sh;
# 2. `nepbench selftest --skip-cp2k`: the GPUMD single point agrees with the CPU NEP one;
# 3. the GPU tests (`pytest -m gpu`): real GPUMD single point and MD through the engine;
# 4. suites/gpu-check.toml (GPUMD speed vs size; the Si@C protocol on GPUMD) and `nepbench verify`.
# GPU_CHECK_TASKS="id id ..." runs only those suite tasks (default: all).
# Exit status: 0 when every step passed, else the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-reports/gpu-check}
NEPBENCH=${NEPBENCH:-nepbench}
PYTHON=${PYTHON:-python3}
if ! command -v gpumd >/dev/null; then
  if [ -z "${GPUMD_SRC:-}" ]; then
    echo "gpumd is not on PATH: set GPUMD_SRC to a GPUMD v5.6 source tree to build it (docs/gpumd.md)" >&2
    exit 2
  fi
  prefix=${GPUMD_PREFIX:-$PWD/third_party/gpumd}
  start=$(date +%s)
  scripts/build_gpumd.sh "$GPUMD_SRC" "$prefix" || exit 2
  echo "GPUMD build: $(( $(date +%s) - start )) s"
  export PATH="$prefix/bin:$PATH"
fi
failed=0
step() {
  echo "== $* ($(date -u +%TZ))"
  "$@" || { echo "== FAILED: $*"; failed=$((failed + 1)); }
}
step "$NEPBENCH" selftest --skip-cp2k
step "$PYTHON" -m pytest -m gpu tests/test_gpumd.py -ra -p no:cacheprovider
tasks=()
for id in ${GPU_CHECK_TASKS:-}; do tasks+=(--task "$id"); done
step "$NEPBENCH" run suites/gpu-check.toml --out "$out" "${tasks[@]}"
step "$NEPBENCH" verify "$out"
echo "== done: $failed step(s) failed"
exit "$failed"
