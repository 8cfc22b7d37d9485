#!/usr/bin/env bash
# Grow the CP2K reference data in the background (resumable: rerun it whenever it is unfinished):
# first the DIRECT-selected single-point labels, then the AIMD trajectories segment by segment.
#   nohup scripts/reference_background.sh > reference_data/build.log 2>&1 &
# Finished items are cached under reference_data/; commit them as they come.
set -u
cd "$(dirname "$0")/.."
BIN=.venv/bin
echo "== labels $(date -u +%FT%TZ)"
$BIN/nepbench reference build reference_data/spec.toml || echo "labels stopped with $?"
echo "== aimd $(date -u +%FT%TZ)"
$BIN/nepbench reference aimd reference_data/aimd.toml ${AIMD_MAX_MINUTES:+--max-minutes $AIMD_MAX_MINUTES} \
  || echo "aimd stopped with $?"
echo "== done $(date -u +%FT%TZ)"
