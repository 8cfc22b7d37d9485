"""scripts/ensure_python_build.sh: what a fresh machine lacks to make the .venv is named, not guessed.

Run with stand-ins: a `python` that lacks venv and headers, and an `id` that says we are not root
(so the script prints how to install instead of calling apt-get)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ensure_python_build.sh"


def _stand_in(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _run(tmp_path: Path, python: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _stand_in(bin_dir / "id", 'echo 1000\n')
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHON": python}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)


def test_a_complete_machine_passes(tmp_path):
    done = _run(tmp_path, sys.executable)
    assert done.returncode == 0 and done.stderr == ""


def test_missing_venv_and_headers_are_named_with_the_install_line(tmp_path):
    # imports fail (no ensurepip/venv) and the header check prints False
    bare = _stand_in(tmp_path / "python", 'case "$2" in *ensurepip*) exit 1;; *) echo False;; esac\n')
    done = _run(tmp_path, str(bare))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing python3-venv python3-dev" in lines[0]
    assert "sudo apt-get install python3-venv python3-dev" in lines[0]
