"""scripts/build_gpumd.sh, the one GPUMD build both container recipes and GPU machines use.

GPUMD cannot compile here (no cuRAND headers), so the script runs against stand-in `make`, `nvcc`
and `nvidia-smi` programs: `make` records the command line it was given and writes the two
binaries. What is checked is the script's own logic: the pinned-commit refusal, the compute
capabilities turned into -gencode flags, and what lands under PREFIX.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build_gpumd.sh"
PINNED = tomllib.loads((ROOT / "pins.toml").read_text())["gpumd"]["commit"]


def _tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture()
def fakebin(tmp_path: Path) -> Path:
    """`make` logs its arguments to $MAKE_LOG and writes gpumd and nep; `nvcc` prints a version."""
    folder = tmp_path / "bin"
    folder.mkdir()
    _tool(folder, "make", 'printf "%s\\n" "$@" > "$MAKE_LOG"\n'
                          '[ -n "${MAKE_FAIL:-}" ] && { echo "nvcc fatal: cannot find curand_kernel.h"; exit 2; }\n'
                          'echo gpumd > gpumd; echo nep > nep\n')
    _tool(folder, "nvcc", 'echo "Cuda compilation tools, release 12.6, V12.6.85"\n')
    return folder


def _source(tmp_path: Path, commit: str | None = PINNED, makefile: bool = True) -> Path:
    src = tmp_path / "GPUMD"
    (src / "src").mkdir(parents=True)
    if makefile:
        (src / "src" / "makefile").write_text("all:\n")
    (src / "LICENCE").write_text("GPL-3.0\n")
    if commit is not None:
        (src / "COMMIT").write_text(commit + "\n")
    return src


def _run(src: Path, prefix: Path, fakebin: Path, *archs: str, **env: str) -> subprocess.CompletedProcess:
    environ = {"PATH": f"{fakebin}:/usr/bin:/bin", "MAKE_LOG": str(prefix.parent / "make.args"),
               "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(["bash", str(SCRIPT), str(src), str(prefix), *archs],
                          capture_output=True, text=True, env=environ, timeout=60)


def _cflags(tmp_path: Path) -> list[str]:
    args = (tmp_path / "make.args").read_text().splitlines()
    assert args[:3] == [args[0], "gpumd", "nep"] and args[0].startswith("-j")
    assert args[3].startswith("CFLAGS=")
    return args[3].removeprefix("CFLAGS=").split()


def test_script_and_engine_pin_the_same_commit_as_pins_toml() -> None:
    found = re.findall(r"^PINNED=([0-9a-f]{40})$", SCRIPT.read_text(), flags=re.M)
    assert found == [PINNED]
    from nepbench.engines import gpumd

    pins = tomllib.loads((ROOT / "pins.toml").read_text())["gpumd"]
    assert gpumd.PINNED_COMMIT == PINNED and pins["tag"] == f"v{gpumd.PINNED_VERSION}"


def test_a_source_tree_without_a_licence_still_gets_its_build_info(tmp_path: Path, fakebin: Path) -> None:
    src = _source(tmp_path)
    (src / "LICENCE").unlink()
    prefix = tmp_path / "opt"
    out = _run(src, prefix, fakebin, "90")
    assert out.returncode == 0, out.stderr
    assert "commit=" + PINNED in (prefix / "share" / "BUILD_INFO").read_text()
    assert not (prefix / "share" / "LICENCE").exists()


@pytest.mark.parametrize("archs, expected", [
    ("80,90", "-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 "
              "-gencode arch=compute_90,code=compute_90"),
    ("86", "-gencode arch=compute_86,code=sm_86 -gencode arch=compute_86,code=compute_86"),
])
def test_arch_list_becomes_gencode_flags_and_binaries_are_installed(
        tmp_path: Path, fakebin: Path, archs: str, expected: str) -> None:
    prefix = tmp_path / "opt"
    out = _run(_source(tmp_path), prefix, fakebin, archs, MAKE_JOBS="3")
    assert out.returncode == 0, out.stderr
    assert _cflags(tmp_path) == ["-std=c++17", "-O3", *expected.split()]
    assert (tmp_path / "make.args").read_text().splitlines()[0] == "-j3"
    for name in ("gpumd", "nep"):
        binary = prefix / "bin" / name
        assert binary.read_text() == f"{name}\n" and os.access(binary, os.X_OK)
    assert (prefix / "share" / "LICENCE").read_text() == "GPL-3.0\n"
    info = dict(line.split("=", 1) for line in (prefix / "share" / "BUILD_INFO").read_text().splitlines())
    assert info["commit"] == PINNED and info["cuda_archs"] == archs and "12.6" in info["nvcc"]
    assert not (tmp_path / "GPUMD" / "src" / "gpumd").exists()  # built in a copy, source untouched


def test_archs_default_to_the_gpus_nvidia_smi_lists(tmp_path: Path, fakebin: Path) -> None:
    _tool(fakebin, "nvidia-smi", 'printf "9.0\\n8.0\\n9.0\\n"\n')
    out = _run(_source(tmp_path), tmp_path / "opt", fakebin)
    assert out.returncode == 0, out.stderr
    flags = " ".join(_cflags(tmp_path))
    assert "code=sm_80" in flags and "code=sm_90" in flags and flags.count("code=sm_") == 2


@pytest.mark.parametrize("archs", ["sm_80", "80,,90x", "9.0"])
def test_bad_arch_list_is_refused_before_make(tmp_path: Path, fakebin: Path, archs: str) -> None:
    out = _run(_source(tmp_path), tmp_path / "opt", fakebin, archs)
    assert out.returncode == 2 and "is not a compute capability" in out.stderr
    assert not (tmp_path / "make.args").exists() and not (tmp_path / "opt").exists()


def test_no_archs_and_no_gpu_is_refused(tmp_path: Path, fakebin: Path) -> None:
    out = _run(_source(tmp_path), tmp_path / "opt", fakebin)
    assert out.returncode == 2 and "give the compute capabilities" in out.stderr


def test_source_at_another_commit_is_refused(tmp_path: Path, fakebin: Path) -> None:
    out = _run(_source(tmp_path, commit="0" * 40), tmp_path / "opt", fakebin, "90")
    assert out.returncode == 2 and "0" * 40 in out.stderr and PINNED in out.stderr
    assert not (tmp_path / "make.args").exists()


def test_git_checkout_at_another_commit_is_refused(tmp_path: Path, fakebin: Path) -> None:
    src = _source(tmp_path, commit=None)
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    out = _run(src, tmp_path / "opt", fakebin, "90")
    assert out.returncode == 2 and head in out.stderr


def test_tree_without_makefile_is_refused(tmp_path: Path, fakebin: Path) -> None:
    out = _run(_source(tmp_path, makefile=False), tmp_path / "opt", fakebin, "90")
    assert out.returncode == 2 and "no src/makefile" in out.stderr


def test_failed_make_shows_its_log_and_installs_nothing(tmp_path: Path, fakebin: Path) -> None:
    out = _run(_source(tmp_path), tmp_path / "opt", fakebin, "90", MAKE_FAIL="1")
    assert out.returncode == 1
    assert "curand_kernel.h" in out.stderr and "GPUMD build failed" in out.stderr
    assert not (tmp_path / "opt").exists()
