"""The nightly's commit range comes from this machine's asv results only (nepbench.tracking)."""

from __future__ import annotations

import json
from pathlib import Path

from nepbench.tracking import asv_range, measured_commits

HISTORY = ["c" * 40, "b" * 40, "a" * 40]  # newest first


def _result(folder: Path, name: str, commit: str | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({"commit_hash": commit, "results": {}}))


def test_only_this_machines_results_count(tmp_path):
    _result(tmp_path / "gpu-node", "cccccccc-virtualenv-py3.11.json", "c" * 40)  # another machine
    _result(tmp_path / "ws", "aaaaaaaa-virtualenv-py3.11.json", "a" * 40)
    _result(tmp_path / "ws", "machine.json", None)
    (tmp_path / "ws" / "broken.json").write_text("{not json")
    assert measured_commits(tmp_path, "ws") == {"a" * 40}
    assert asv_range(HISTORY, measured_commits(tmp_path, "ws")) == f"{'a' * 40}..main"
    assert asv_range(HISTORY, measured_commits(tmp_path, "gpu-node")) == f"{'c' * 40}..main"  # nothing new


def test_a_machine_without_results_measures_the_branch_head(tmp_path):
    assert measured_commits(tmp_path, "new-node") == set()
    assert asv_range(HISTORY, set(), branch="main") == "main^!"
    # results of commits no longer on the branch (rebased away) do not count
    assert asv_range(HISTORY, {"f" * 40}) == "main^!"
