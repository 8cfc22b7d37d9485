"""Which commits the nightly asv run should measure on this machine (scripts/nightly.sh).

asv's own `asv run NEW` starts after the newest commit with results from *any* machine (asv
0.6: `get_existing_hashes` reads the whole results folder), so a commit measured by another node
sharing the folder is skipped here. This module reads this machine's results only.

    python -m nepbench.tracking asv-range --machine NAME [--results-dir .asv/results] [--branch main]

prints the git range for `asv run`: "<last>..<branch>" after the newest commit this machine has a
result for, or "<branch>^!" (the branch head alone) when it has none.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Sequence


def measured_commits(results_dir: Path, machine: str) -> set[str]:
    """Full commit hashes with an asv result file of `machine` (its machine.json aside)."""
    found = set()
    for path in sorted((results_dir / machine).glob("*.json")):
        if path.name == "machine.json":
            continue
        try:
            commit = json.loads(path.read_text(encoding="utf-8")).get("commit_hash")
        except (OSError, ValueError, AttributeError):
            continue  # a result asv itself could not use either
        if isinstance(commit, str) and commit:
            found.add(commit)
    return found


def asv_range(history: Sequence[str], measured: set[str], branch: str = "main") -> str:
    """The range to measure: after the newest commit of `history` (newest first) in `measured`."""
    for commit in history:
        if commit in measured:
            return f"{commit}..{branch}"
    return f"{branch}^!"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nepbench.tracking")
    sub = parser.add_subparsers(dest="command", required=True)
    rng = sub.add_parser("asv-range", help="git range of the commits this machine has not measured")
    rng.add_argument("--machine", required=True)
    rng.add_argument("--results-dir", default=".asv/results")
    rng.add_argument("--branch", default="main")
    args = parser.parse_args(argv)
    history = subprocess.run(["git", "rev-list", args.branch], capture_output=True, text=True,
                             check=True).stdout.split()
    print(asv_range(history, measured_commits(Path(args.results_dir), args.machine), args.branch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
