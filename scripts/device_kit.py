#!/usr/bin/env python3
"""Assemble the offline GPU check kit (`make device-kit`): one folder that a GPU node with Python 3.12
(a PyTorch image: numpy, scipy, pandas, matplotlib, scikit-learn, pytest and CUDA 13's libraries)
and no network checks nepbench with, in one command (kit/run_gpu_check.sh; docs/gpumd.md).

    .venv/bin/python scripts/device_kit.py [--out dist/device-kit] [--gpumd third_party/gpumd-cuda13]
        [--gpumd-src DIR] [--python312 PY] [--max-mib 60]

What lands in OUT (rebuilt whole; written to OUT.tmp, then renamed):
    run_gpu_check.sh           the one command (kit/run_gpu_check.sh)
    KIT.json                   the contents: each file's size and sha256, the nepbench tree's commit
                               and whether it differs from it, GPUMD's BUILD_INFO, wheels, models
    gpumd.tar.xz               gpumd/bin/{gpumd,nep} and gpumd/share/ from --gpumd (`make gpumd`)
    gpumd-src.tar.xz           with --gpumd-src (or GPUMD_SRC): GPUMD's src/ to rebuild on the node
                               for a GPU the binaries do not cover
    nepbench-src.tar.gz        this tree as git sees it (tracked and untracked-not-ignored files,
                               less reports/) under nepbench/: nepbench runs from its src/ as the
                               editable install does, so suites/, models/ and reference_data/ resolve
    wheels/*.whl               cp312 wheels of KIT_PACKAGES (pinned in requirements.txt) and of their
                               dependencies that kit/node-provides.txt does not list; a package PyPI
                               has only as source (calorine) is built with --python312 and kept in
                               build/kit-wheels/ for the next kit
    cache/models/NAME/nep.txt  the registry models the suite and selftest need, fetched and checked by
                               nepbench's own fetch (a `local` model travels in the tree)
Exit status: 0 written, 1 a step failed or the kit is over --max-mib, 2 bad input (no GPUMD build).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

from nepbench.models import cache_root, fetch_model
from nepbench.provenance import sha256_file

ROOT = Path(__file__).resolve().parents[1]
#: What nepbench needs on the node beyond kit/node-provides.txt (versions from requirements.txt).
KIT_PACKAGES = ("ase", "calorine", "nep-adapters", "tqdm", "pytest-benchmark")
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_27_x86_64", "manylinux_2_28_x86_64")
#: The tree's folders the node does not need (run records, reports: several MB).
TREE_EXCLUDE = ("reports/",)
WHEEL_CACHE = ROOT / "build" / "kit-wheels"


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them (nep_adapters == nep-adapters)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def names_file(path: Path) -> set[str]:
    """Canonical names, one a line, '#' comments."""
    return {canonical(line.split("#", 1)[0].strip()) for line in path.read_text().splitlines()
            if line.split("#", 1)[0].strip()}


def pinned_versions(requirements: Path) -> dict[str, str]:
    """name -> version of requirements.txt's `name==version` lines."""
    pins = {}
    for line in requirements.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s#;]+)", line.split("#", 1)[0].strip())
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


#: PEP 508 marker values of the node: CPython 3.12 on x86-64 Linux, no extra asked for.
NODE_MARKERS = {"python_version": PYTHON_VERSION, "python_full_version": PYTHON_VERSION + ".0",
                "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                "os_name": "posix", "implementation_name": "cpython",
                "platform_python_implementation": "CPython", "extra": ""}


def wheel_requirements(wheel: Path) -> list[str]:
    """The canonical names a wheel's METADATA requires on the node (markers evaluated there, so
    extras' and other platforms' requirements are left out)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    out = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is None or req.marker.evaluate(NODE_MARKERS):
                out.append(canonical(req.name))
    return out


def wheel_name(wheel: Path) -> str:
    return canonical(wheel.name.split("-", 1)[0])


def get_wheel(name: str, version: str | None, dest: Path, python312: str | None) -> Path:
    """A cp312 manylinux (or pure) wheel of name[==version] in `dest`: downloaded by pip, else
    built with `python312` (cached in WHEEL_CACHE)."""
    spec = f"{name}=={version}" if version else name
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", PYTHON_VERSION, "--implementation", "cp", "-d", str(dest), spec]
    command[4:4] = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    before = set(dest.glob("*.whl"))
    download = subprocess.run(command, capture_output=True, text=True)
    if download.returncode == 0:
        return (set(dest.glob("*.whl")) - before or {_find(dest, name)}).pop()
    cached = [w for w in WHEEL_CACHE.glob("*.whl") if wheel_name(w) == canonical(name)
              and (version is None or w.name.split("-")[1] == version) and "-cp312-" in w.name]
    if not cached:
        if not python312:
            raise SystemExit(f"device_kit: {spec} has no cp312 wheel on the index and no Python 3.12 "
                             f"was found to build one (--python312); pip said: {download.stderr.strip()[-300:]}")
        print(f"device_kit: building {spec} for Python 3.12 (no wheel on the index; minutes)", flush=True)
        WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([python312, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(WHEEL_CACHE), spec],
                       check=True)
        return get_wheel(name, version, dest, python312)
    shutil.copy2(cached[0], dest / cached[0].name)
    return dest / cached[0].name


def _find(folder: Path, name: str) -> Path:
    return next(w for w in folder.glob("*.whl") if wheel_name(w) == canonical(name))


def collect_wheels(dest: Path, python312: str | None) -> list[str]:
    """KIT_PACKAGES and their dependencies the node lacks, as wheels in `dest`; returns the files."""
    provided = names_file(ROOT / "kit" / "node-provides.txt")
    pins = pinned_versions(ROOT / "requirements.txt")
    todo, done = [canonical(n) for n in KIT_PACKAGES], set()
    while todo:
        name = todo.pop(0)
        if name in done or name in provided:
            continue
        wheel = get_wheel(name, pins.get(name), dest, python312)
        print(f"device_kit: wheel {wheel.name} ({wheel.stat().st_size / 2**20:.1f} MiB)")
        done.add(name)
        todo.extend(wheel_requirements(wheel))
    return sorted(w.name for w in dest.glob("*.whl"))


def find_python312(given: str | None) -> str | None:
    """The first of `given`, $PYTHON312, python3.12 on PATH and pyenv's 3.12 that runs as 3.12."""
    pyenv = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    for candidate in (given, os.environ.get("PYTHON312"), "python3.12", *map(str, pyenv)):
        if candidate and shutil.which(candidate) and subprocess.run(
                [candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 12))"],
                capture_output=True).returncode == 0:
            return candidate
    return None


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


def pack_tree(target: Path) -> dict[str, object]:
    """nepbench-src.tar.gz of the tree as git sees it, under nepbench/; returns its description."""
    files = [f for f in git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
             if f and not f.startswith(TREE_EXCLUDE) and (ROOT / f).is_file()]
    with tarfile.open(target, "w:gz") as tar:
        for rel in sorted(set(files)):
            tar.add(ROOT / rel, arcname=f"nepbench/{rel}", recursive=False)
    commit = git("rev-parse", "HEAD").strip()
    dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    return {"commit": commit, "differs_from_commit": dirty, "files": len(set(files)),
            "describe": commit[:12] + ("+changes" if dirty else "")}


def pack_gpumd(prefix: Path, target: Path) -> dict[str, str]:
    """gpumd.tar.xz of PREFIX's bin/gpumd, bin/nep and share/ under gpumd/; returns BUILD_INFO."""
    info = prefix / "share" / "BUILD_INFO"
    if not (prefix / "bin" / "gpumd").is_file() or not info.is_file():
        raise SystemExit(f"device_kit: no GPUMD build in {prefix}: run `make gpumd GPUMD_SRC=...` first")
    with tarfile.open(target, "w:xz") as tar:
        for rel in ("bin/gpumd", "bin/nep", "share"):
            tar.add(prefix / rel, arcname=f"gpumd/{rel}")
    return dict(line.split("=", 1) for line in info.read_text().splitlines() if "=" in line)


def pack_gpumd_source(src: Path, target: Path) -> None:
    with tarfile.open(target, "w:xz") as tar:
        for rel in ("src", "LICENCE", "COMMIT"):
            if (src / rel).exists():
                tar.add(src / rel, arcname=rel, filter=lambda t: None if t.name.endswith((".o", "/gpumd", "/nep")) else t)


def suite_models(suite: Path) -> list[str]:
    pins = tomllib.loads((ROOT / "pins.toml").read_text())
    models = tomllib.loads(suite.read_text())["suite"].get("models", [])
    return sorted(set(models) | {pins["model"]["name"]})


def cache_models(names: list[str], cache: Path) -> list[str]:
    """Fetch (or check) each registry model with nepbench and copy the cached ones into `cache`."""
    kept = []
    for name in names:
        path = fetch_model(name)
        if cache_root() in path.parents:
            (cache / "models" / name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, cache / "models" / name / "nep.txt")
            kept.append(name)
    return kept


def build(out: Path, gpumd: Path, gpumd_src: Path | None, python312: str | None, suite: Path) -> dict[str, object]:
    """Write the kit into `out` (replaced); returns KIT.json's content."""
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "wheels").mkdir(parents=True)
    shutil.copy2(ROOT / "kit" / "run_gpu_check.sh", staging / "run_gpu_check.sh")
    build_info = pack_gpumd(gpumd, staging / "gpumd.tar.xz")
    if gpumd_src is not None:
        pack_gpumd_source(gpumd_src, staging / "gpumd-src.tar.xz")
    tree = pack_tree(staging / "nepbench-src.tar.gz")
    wheels = collect_wheels(staging / "wheels", python312)
    models = cache_models(suite_models(suite), staging / "cache")
    files = {p.relative_to(staging).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(staging.rglob("*")) if p.is_file()}
    kit = {"python": PYTHON_VERSION, "nepbench": tree, "gpumd": build_info, "wheels": wheels,
           "models_cached": models, "suite": suite.relative_to(ROOT).as_posix(), "files": files,
           "total_bytes": sum(f["bytes"] for f in files.values())}
    (staging / "KIT.json").write_text(json.dumps(kit, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return kit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "device-kit")
    parser.add_argument("--gpumd", type=Path, default=Path(os.environ.get("GPUMD_PREFIX") or
                                                           ROOT / "third_party" / "gpumd-cuda13"))
    parser.add_argument("--gpumd-src", type=Path, default=Path(os.environ["GPUMD_SRC"]) if os.environ.get("GPUMD_SRC") else None)
    parser.add_argument("--python312", help="a Python 3.12 to build wheels PyPI lacks (default: python3.12 on PATH)")
    parser.add_argument("--suite", type=Path, default=ROOT / "suites" / "gpu-check.toml")
    parser.add_argument("--max-mib", type=float, default=60.0)
    args = parser.parse_args(argv)
    kit = build(args.out.resolve(), args.gpumd, args.gpumd_src, find_python312(args.python312), args.suite.resolve())
    mib = kit["total_bytes"] / 2**20
    print(f"device_kit: {args.out} {mib:.1f} MiB: {len(kit['files'])} files, GPUMD sm_{kit['gpumd'].get('cuda_archs')}, "
          f"nepbench {kit['nepbench']['describe']}, models {', '.join(kit['models_cached'])}")
    if mib > args.max_mib:
        print(f"device_kit: the kit is {mib:.1f} MiB, over --max-mib {args.max_mib:g}", file=sys.stderr)
        return 1
    print(f"device_kit: on the GPU node: bash {args.out}/run_gpu_check.sh --out gpu-check  (here: --dry-run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
