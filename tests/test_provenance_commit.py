"""The commit a record names: git's HEAD in a checkout, the kit's $NEPBENCH_COMMIT in a tree without .git."""

from __future__ import annotations

import subprocess

from nepbench import provenance


def test_a_checkout_names_its_head_and_ignores_the_variable(monkeypatch):
    monkeypatch.setenv(provenance.COMMIT_ENV, "f" * 40)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=provenance.PROJECT_ROOT).stdout.strip()
    assert provenance.git_commit() == head != "f" * 40


def test_a_tree_without_git_names_the_kits_commit_only_when_it_is_one(monkeypatch, tmp_path):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp_path
    monkeypatch.setenv(provenance.COMMIT_ENV, "AB" * 20)
    assert provenance.git_commit(tmp_path) == "ab" * 20
    for bad in ("abc", "g" * 40, ""):
        monkeypatch.setenv(provenance.COMMIT_ENV, bad)
        assert provenance.git_commit(tmp_path) is None
    monkeypatch.delenv(provenance.COMMIT_ENV)
    assert provenance.git_commit(tmp_path) is None
