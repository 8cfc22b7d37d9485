"""asv benchmarks of nepbench: `time_*` (speed) and `track_*` (accuracy) over commits.

Run them with `make bench` (quick, in .venv), `scripts/nightly.sh` (every new commit on main) or
`asv continuous --factor 1.1 main HEAD` before a merge; docs/tracking.md explains each.
"""
