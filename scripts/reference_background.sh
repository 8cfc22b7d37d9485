#!/usr/bin/env bash
# Grow the CP2K reference data in the background (resumable: rerun it whenever it is unfinished):
#   nohup scripts/reference_background.sh > logs/reference_build.log 2>&1 &
# Two jobs side by side, one CP2K rank each: the DIRECT-selected single-point labels and an AIMD
# grower. When the labels are done, a second AIMD grower takes the freed core; growers share the
# runs through per-run locks. On 2 cores a 1-rank label took ~1.3x the time of a 2-rank one
# (docs/cp2k_settings.md, "Ranks"), so two 1-rank jobs get ~1.5x as much done per hour.
# Finished items are cached under reference_data/; commit them with scripts/commit_reference.sh.
# Stop the growers with SIGTERM (`pkill -TERM -f "nepbench reference aimd"`): each commits the
# segment it is running, then exits. AIMD_MAX_MINUTES=N: start no new segment after N minutes.
set -u
cd "$(dirname "$0")/.."
mkdir -p logs
BIN=.venv/bin
aimd() {
  $BIN/nepbench reference aimd reference_data/aimd.toml --ranks 1 \
    ${AIMD_MAX_MINUTES:+--max-minutes $AIMD_MAX_MINUTES} > "logs/aimd-$1.log" 2>&1 \
    || echo "aimd grower $1 stopped with $?"
}
echo "== start $(date -u +%FT%TZ)"
aimd 1 &
first=$!
$BIN/nepbench reference build reference_data/spec.toml --ranks 1 || echo "labels stopped with $?"
echo "== labels done $(date -u +%FT%TZ)"
aimd 2
wait "$first"
echo "== done $(date -u +%FT%TZ)"
