#!/usr/bin/env bash
# The GPU checks in one command, on a GPU node, from a repository checkout with nepbench installed
# (`make setup`). It is not a check of the container image: it needs the checkout's scripts/ and
# tests/, which the image does not hold. The image checks itself with `apptainer test --nv
# nepbench.sif` (GPUMD vs CPU NEP single point) and the paper suite + `verify --strict`
# (docs/container.md).
#   scripts/gpu_check.sh [OUT]            (default OUT: reports/gpu-check)
# 0. `nvidia-smi -L` must list a GPU, else it stops at once (exit 2): every check below is a GPU
#    check and would otherwise skip and look like a pass;
# 1. gpumd on PATH, or built from GPUMD_SRC (a source tree of the pinned release) into
#    GPUMD_PREFIX (default third_party/gpumd) with scripts/build_gpumd.sh;
# 2. `nepbench selftest --skip-cp2k`: the GPUMD single point agrees with the CPU NEP one;
# 3. the GPU tests (`pytest -m gpu`): real GPUMD single point and MD through the engine;
# 4. suites/gpu-check.toml (GPUMD speed vs size; the Si@C protocol on GPUMD), then
#    `nepbench verify --strict`: every criterion must be measured (a skipped task fails it).
# GPU_CHECK_TASKS="id id ..." runs only those suite tasks (default: all; verify then fails on
# the criteria of the tasks left out, which have no record).
# Exit status: 2 no GPU or no gpumd; else 0 when every step passed, else 1 (the log counts the failed steps).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-reports/gpu-check}
venv_bin=.venv/bin  # `make setup`'s venv, when the caller has not activated it
if [ -x "$venv_bin/nepbench" ] && ! command -v nepbench >/dev/null; then
  NEPBENCH=${NEPBENCH:-$venv_bin/nepbench}
  PYTHON=${PYTHON:-$venv_bin/python}
fi
NEPBENCH=${NEPBENCH:-nepbench}
PYTHON=${PYTHON:-python3}
if ! gpus=$(nvidia-smi -L 2>/dev/null) || ! grep -q '^GPU ' <<<"$gpus"; then
  echo "gpu_check: no GPU visible (nvidia-smi -L lists none or is missing): run it on a GPU node" >&2
  exit 2
fi
echo "== GPUs: $(grep -c '^GPU ' <<<"$gpus") ($(grep -m1 '^GPU ' <<<"$gpus"))"
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
step "$NEPBENCH" verify --strict "$out"
echo "== done: $failed step(s) failed"
exit $(( failed > 0 ? 1 : 0 ))  # 2 means "no GPU / no gpumd" (above), never a count of failures
