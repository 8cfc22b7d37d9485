#!/usr/bin/env bash
# Nightly tracking with asv: benchmark the commits of main that this machine has not measured yet
# (results per machine under .asv/results/<machine>/; the range comes from this machine's results,
# `python -m nepbench.tracking asv-range`, not asv's NEW, which skips what any machine measured),
# then draw the site
# (`asv publish` → .asv/html). cron and Slurm lines: docs/tracking.md.
#
#   scripts/nightly.sh                      # build each new commit in its own virtualenv (needs the package index)
#   NEPBENCH_ASV_MODE=existing scripts/nightly.sh   # offline: this checkout, in .venv, recorded for HEAD
#
# Environment: ASV (default .venv/bin/asv), NEPBENCH_ASV_MACHINE (machine name; default hostname),
# NEPBENCH_ASV_STEPS (at most this many commits per night, spread over the range; default 5),
# NEPBENCH_ASV_QUICK=1 (one sample per benchmark: a smoke test, not for tracking),
# GPUMD_SRC (a GPUMD source tree: first `make gpumd` builds and checks GPUMD with the pinned CUDA 13
# toolchain, docs/gpumd.md; a failed build fails the night; unset: skipped, as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

ASV="${ASV:-.venv/bin/asv}"
MODE="${NEPBENCH_ASV_MODE:-build}"
STEPS="${NEPBENCH_ASV_STEPS:-5}"
MACHINE=(${NEPBENCH_ASV_MACHINE:+--machine "$NEPBENCH_ASV_MACHINE"})
MACHINE_NAME="${NEPBENCH_ASV_MACHINE:-$(python3 -c 'import platform; print(platform.node())')}"
QUICK=(${NEPBENCH_ASV_QUICK:+--quick})
LOG="$(mktemp -t nepbench-nightly.XXXXXX)"
trap 'rm -f "$LOG"' EXIT

echo "== nightly $(date -u +%FT%TZ) mode=$MODE $(git rev-parse --short HEAD)"
"$ASV" machine --yes "${MACHINE[@]}" > /dev/null

status=0
gpumd_status=0
if [ -n "${GPUMD_SRC:-}" ]; then
  echo "nightly: make gpumd from $GPUMD_SRC"
  make gpumd GPUMD_SRC="$GPUMD_SRC" || { gpumd_status=$?; echo "nightly: make gpumd failed ($gpumd_status)" >&2; }
fi
case "$MODE" in
  build)
    # commits on main after the newest one with results of this machine ("No commit hashes
    # selected" when there is none: a quiet night, not an error)
    RANGE="$(.venv/bin/python -m nepbench.tracking asv-range --machine "$MACHINE_NAME")"
    echo "nightly: measuring $RANGE on $MACHINE_NAME"
    "$ASV" run "$RANGE" --steps "$STEPS" "${MACHINE[@]}" "${QUICK[@]}" 2>&1 | tee "$LOG" || status=${PIPESTATUS[0]}
    if [ "$status" -ne 0 ] && grep -q "No commit hashes selected" "$LOG"; then
      echo "nightly: no new commits on main"; status=0
    fi
    ;;
  existing)
    "$ASV" run -E "existing:.venv/bin/python" --set-commit-hash "$(git rev-parse HEAD)" \
      "${MACHINE[@]}" "${QUICK[@]}" 2>&1 | tee "$LOG" || status=${PIPESTATUS[0]}
    ;;
  *)
    echo "nightly: NEPBENCH_ASV_MODE must be 'build' or 'existing', not '$MODE'" >&2; exit 2 ;;
esac

"$ASV" publish
[ "$gpumd_status" -ne 0 ] && status=$gpumd_status
echo "== nightly done $(date -u +%FT%TZ): site in .asv/html (asv preview to browse); asv run exit $status"
exit "$status"
