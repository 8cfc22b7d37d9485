"""Atomic writes: the file appears whole or not at all, with the mode a plain write would give it."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from nepbench.files import atomic_write_bytes, atomic_write_json
from nepbench.provenance import canonical_json


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_new_file_gets_the_mode_of_a_plain_write(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "report.html", b"<html/>")
        with open(tmp_path / "plain.html", "wb") as handle:
            handle.write(b"<html/>")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "report.html") == _mode(tmp_path / "plain.html") == 0o666 & ~umask


def test_a_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("{}")
    target.chmod(0o640)
    atomic_write_json(target, {"a": 1})
    assert _mode(target) == 0o640 and target.read_text().strip().startswith("{")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text('{"old": true}')

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_write_json(target, {"new": 1})
    assert target.read_text() == '{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


@pytest.mark.parametrize("bad", [np.float64("nan"), np.float32("inf"), float("-inf")])
def test_non_finite_numpy_and_python_floats_are_written_as_null_never_as_bare_nan(tmp_path, bad):
    """Metrics are often numpy scalars: json.dumps writes np.float64('nan') as NaN, which strict
    JSON readers refuse, and a NaN metric in a record would then break every tool that reads it."""
    target = tmp_path / "task.json"
    atomic_write_json(target, {"metrics": {"m": bad, "ok": np.float64(1.5)}})
    assert json.loads(target.read_text(), parse_constant=lambda name: pytest.fail(f"bare {name}")) == \
        {"metrics": {"m": None, "ok": 1.5}}
    assert canonical_json({"m": bad}) == '{"m":null}'
