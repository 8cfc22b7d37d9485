"""Provenance: content hashes, package versions, hardware, the code and the one repository root
(`PROJECT_ROOT`), recorded beside results. Atomic writes and locks: `nepbench.files`."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from .files import jsonable

PACKAGES = ("nepbench", "numpy", "scipy", "ase", "calorine", "nep-adapters", "scikit-learn", "matplotlib")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, numpy converted, non-finite floats as null)."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_hash(value: Any) -> str:
    """sha256 of the canonical JSON of `value`: the cache key of a computation's inputs."""
    return sha256_bytes(canonical_json(value).encode())


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that shape results (None where missing)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_models() -> list[str]:
    """The NVIDIA GPUs a CUDA program here sees, as "name, memory" (nvidia-smi), empty when none:
    nvidia-smi lists every GPU of the node, so the list is cut to CUDA_VISIBLE_DEVICES, when set,
    in its order. Its entries are indices or GPU UUIDs (a
    prefix will do); CUDA ignores the entries after one that names no GPU, and so does this. An
    entry of another form (a MIG instance) cannot be matched here: the whole list is kept."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[part.strip() for part in line.split(",")] for line in out.splitlines() if line.strip()]
    rows = [r for r in rows if len(r) >= 4]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    chosen = rows
    if visible is not None:
        tokens = [t.strip() for t in visible.split(",")] if visible.strip() else []
        if all(t.isdigit() or t.startswith("GPU-") for t in tokens):
            chosen = []
            for token in tokens:
                match = next((r for r in rows if token == r[0] or (token.startswith("GPU-") and r[1].startswith(token))),
                             None)
                if match is None:
                    break
                chosen.append(match)
    return [f"{', '.join(r[2:-1])}, {r[-1]}" for r in chosen]


#: Apptainer's copy of the image's %labels (pins: GPUMD commit, CUDA archs, CP2K, model sha256),
#: present inside a running Apptainer/Singularity container. Docker keeps labels outside the container.
APPTAINER_LABELS = Path("/.singularity.d/labels.json")
#: The image's GPUMD build record (key=value lines: commit, cuda_archs, nvcc from
#: scripts/build_gpumd.sh; repo, tag from the recipes), in both the Docker and the Apptainer image.
GPUMD_BUILD_INFO = Path("/opt/gpumd/share/BUILD_INFO")


def _read_labels(path: Path) -> dict[str, str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None


def _read_build_info(path: Path) -> dict[str, str] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs} or None


def container_info() -> dict[str, Any] | None:
    """The container this process runs in, None outside one.

    Inside (NEPBENCH_IN_CONTAINER=1, as both images set, APPTAINER_NAME, NEPBENCH_CONTAINER_DIGEST,
    or Apptainer's labels file present): {"name": APPTAINER_NAME, "digest": NEPBENCH_CONTAINER_DIGEST,
    "labels": the image labels from APPTAINER_LABELS, "build_info": GPUMD_BUILD_INFO as a dict};
    each None where not available (Docker does not expose its labels inside the container).
    """
    name = os.environ.get("APPTAINER_NAME") or os.environ.get("SINGULARITY_NAME") or None
    digest = os.environ.get("NEPBENCH_CONTAINER_DIGEST") or None
    labels = _read_labels(APPTAINER_LABELS)
    if not (os.environ.get("NEPBENCH_IN_CONTAINER") == "1" or name or digest or labels is not None):
        return None
    return {"name": name, "digest": digest, "labels": labels, "build_info": _read_build_info(GPUMD_BUILD_INFO)}


def hardware_info() -> dict[str, Any]:
    """CPU model, logical cores, memory and GPUs of this machine, and the container (`container_info`)."""
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "gpus": gpu_models(),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "container": container_info(),
    }


#: Folders whose uncommitted changes alter what a run computes (data changes are in data_sha256).
CODE_PATHS = ("src", "suites", "models")


@functools.lru_cache(maxsize=8)
def code_sha256(package_dir: str | os.PathLike[str] | None = None) -> str:
    """sha256 over the nepbench package's Python sources (relative path and bytes of every *.py,
    sorted): the code a run computed with, the same in a git checkout, an installed wheel or a
    container. Part of each task's cache key, so changed code recomputes instead of reusing
    results the old code produced. Computed once per process and folder."""
    root = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


#: The nepbench checkout's top folder (the one holding src/, suites/ and models/).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def git_code_modified(root: str | os.PathLike[str] | None = None) -> bool | None:
    """True when tracked files under CODE_PATHS of the checkout at `root` (default PROJECT_ROOT)
    differ from HEAD (the run's code is not the commit's); None outside git. The paths are taken
    from `root` itself, so a checkout kept inside another repository's tree is judged by its own
    folders, not by the outer repository's top-level ones."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                             capture_output=True, text=True, timeout=30, check=True,
                             cwd=root or PROJECT_ROOT).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.strip())


#: Names the commit of a tree without .git (the GPU check kit, a container): its builder sets it.
COMMIT_ENV = "NEPBENCH_COMMIT"
_HEX40 = frozenset("0123456789abcdef")


def git_commit(repo: str | os.PathLike[str] | None = None) -> str | None:
    """HEAD commit of the nepbench checkout; outside git, the 40-hex commit in $NEPBENCH_COMMIT
    (what `scripts/device_kit.py` records for the tree it packs), else None."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True,
            cwd=repo or Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        named = os.environ.get(COMMIT_ENV, "").strip().lower()
        return named if len(named) == 40 and set(named) <= _HEX40 else None
