#!/usr/bin/env python3
"""NVIDIA's CUDA toolchain from its PyPI wheels, in one folder that nvcc can build GPUMD from.

    scripts/cuda_wheels.py install PREFIX (--pins pins.toml | REQUIREMENT ...)
    scripts/cuda_wheels.py links SITE DEST
    scripts/cuda_wheels.py env PREFIX

`install` pip-installs the requirements (pins.toml [cuda13] requirements, or the ones given) into
PREFIX/site, makes PREFIX/lib (`links`) and writes PREFIX/env.sh; it does nothing when PREFIX/REQUIREMENTS
already lists the same requirements and PREFIX/env.sh exists. Sourcing env.sh puts the wheels' nvcc
first on PATH (a machine may carry another, partial nvcc), passes `-L PREFIX/lib` to every nvcc
call through NVCC_APPEND_FLAGS and adds the wheels' library folders to LD_LIBRARY_PATH (to run or
`ldd` what was built). `links` exists because the wheels ship only versioned names (libcublas.so.13)
in nvidia/<pkg>/lib, not lib64/ (where nvcc.profile looks) with the unversioned names (libcublas.so)
that `-lcublas` looks for: DEST gets one symlink libX.so -> the wheel's libX.so.N per library, and
one per static library (libcudart_static.a, libcudadevrt.a: nvcc links them into every program).
`env` prints env.sh.
Exit status: 0 done, 2 bad arguments or nothing to link, else pip's. Python >= 3.8 (the recipes'
CUDA 12.6 devel image has 3.10); --pins needs tomllib (3.11). Why and what was measured:
docs/gpumd.md.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

#: libX.so.<version>: the name a wheel ships and the unversioned name the linker wants.
_VERSIONED = re.compile(r"^(lib[\w+\-]+?\.so)\.(\d+(?:\.\d+)*)$")


def pinned_requirements(pins: Path, table: str = "cuda13") -> list[str]:
    """The `requirements` list of pins.toml's [table]."""
    import tomllib

    with pins.open("rb") as handle:
        return list(tomllib.load(handle)[table]["requirements"])


def library_dirs(site: Path) -> list[Path]:
    """The wheels' library folders (nvidia/*/lib and lib64 holding a lib*.so.N or lib*.a), sorted."""
    found = {p.parent for folder in ("lib", "lib64") for name in ("lib*.so.*", "lib*.a")
             for p in site.glob(f"nvidia/*/{folder}/{name}")}
    return sorted(found)


def bin_dirs(site: Path) -> list[Path]:
    """The wheels' program folders (nvidia/*/bin), the one holding nvcc first."""
    dirs = sorted(p for p in site.glob("nvidia/*/bin") if p.is_dir())
    return sorted(dirs, key=lambda d: not (d / "nvcc").exists())


def make_links(site: Path, dest: Path) -> dict[str, Path]:
    """DEST/libX.so -> the wheel's libX.so.N for every versioned library in `library_dirs(site)`,
    DEST/libX.a -> the wheel's libX.a for every static one; where several versions of one library
    lie there the shortest suffix wins (libX.so.13 over libX.so.13.0.2: the soname). Links are
    replaced, stale ones removed. Returns name -> target."""
    chosen: dict[str, tuple[tuple[int, str], Path]] = {}
    for folder in library_dirs(site):
        for path in sorted(folder.iterdir()):
            match = _VERSIONED.match(path.name)
            if match:
                name, rank = match.group(1), (match.group(2).count("."), path.name)
            elif path.name.startswith("lib") and path.name.endswith(".a"):
                name, rank = path.name, (0, path.name)
            else:
                continue
            if name not in chosen or rank < chosen[name][0]:
                chosen[name] = (rank, path.resolve())
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("lib*"):
        if old.is_symlink() and old.name not in chosen:
            old.unlink()
    for name, (_, target) in chosen.items():
        link = dest / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return {name: target for name, (_, target) in chosen.items()}


def env_script(prefix: Path) -> str:
    """The shell lines env.sh holds for PREFIX (absolute paths)."""
    site, lib = prefix / "site", prefix / "lib"
    bins = ":".join(str(d) for d in bin_dirs(site))
    libs = ":".join(str(d) for d in library_dirs(site))
    q = shlex.quote
    return ("# written by scripts/cuda_wheels.py: the CUDA wheels in " + str(site) + "\n"
            f"export CUDA_WHEELS_PREFIX={q(str(prefix))}\n"
            f"export PATH={q(bins)}:\"$PATH\"\n"
            f"export NVCC_APPEND_FLAGS={q('-L' + str(lib))}\n"
            f"export LD_LIBRARY_PATH={q(libs)}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\n")


def install(prefix: Path, requirements: list[str], python: str = sys.executable) -> int:
    """pip-install `requirements` into PREFIX/site (skipped when already there), then links and env.sh."""
    prefix = prefix.resolve()
    stamp = prefix / "REQUIREMENTS"
    wanted = "".join(r + "\n" for r in requirements)
    if stamp.is_file() and stamp.read_text() == wanted and (prefix / "env.sh").is_file():
        print(f"cuda_wheels: {prefix} already holds {', '.join(requirements)}")
        return 0
    stamp.unlink(missing_ok=True)
    command = [python, "-m", "pip", "install", "--quiet", "--no-compile", "--upgrade",
               "--target", str(prefix / "site"), *requirements]
    print("cuda_wheels: " + " ".join(shlex.quote(c) for c in command), flush=True)
    status = subprocess.call(command)
    if status:
        return status
    links = make_links(prefix / "site", prefix / "lib")
    if not links or not bin_dirs(prefix / "site"):
        print(f"cuda_wheels: no nvidia/*/lib/lib*.so.N or nvidia/*/bin in {prefix / 'site'}", file=sys.stderr)
        return 2
    (prefix / "env.sh").write_text(env_script(prefix))
    stamp.write_text(wanted)
    print(f"cuda_wheels: {len(links)} libraries linked in {prefix / 'lib'}; source {prefix / 'env.sh'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p_install = sub.add_parser("install", help="pip-install the wheels into PREFIX/site, link, write env.sh")
    p_install.add_argument("prefix", type=Path)
    p_install.add_argument("requirements", nargs="*")
    p_install.add_argument("--pins", type=Path, help="read the requirements from this pins.toml's [cuda13]")
    p_links = sub.add_parser("links", help="DEST/libX.so -> SITE's nvidia/*/lib/libX.so.N")
    p_links.add_argument("site", type=Path)
    p_links.add_argument("dest", type=Path)
    p_env = sub.add_parser("env", help="print the env.sh lines for PREFIX")
    p_env.add_argument("prefix", type=Path)
    args = parser.parse_args(argv)
    if args.action == "install":
        requirements = list(args.requirements) + (pinned_requirements(args.pins) if args.pins else [])
        if not requirements:
            parser.error("install: give REQUIREMENT ... or --pins pins.toml")
        return install(args.prefix, requirements)
    if args.action == "links":
        links = make_links(args.site, args.dest)
        if not links:
            print(f"cuda_wheels: no nvidia/*/lib/lib*.so.N under {args.site}", file=sys.stderr)
            return 2
        for name, target in sorted(links.items()):
            print(f"{args.dest / name} -> {target}")
        return 0
    sys.stdout.write(env_script(args.prefix.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
