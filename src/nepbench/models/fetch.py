"""Fetching registry models into the cache: pinned PyPI wheel members or files, derived models,
every sha256 checked on the way.

Cache layout (outside the repository; `$NEPBENCH_CACHE` replaces `~/.cache/nepbench`):

    <cache>/models/<name>/nep.txt                  the model file nepbench runs
    <cache>/models/_sources/<source_sha256>/<file> the upstream file (e.g. the full nep89.txt),
                                                   kept so a derived model never re-downloads

All writes are atomic (temporary file, then `os.replace`); every fetch checks the upstream sha256
and, for a derived model, the sha256 of the derived file recorded in the registry. Local models
(`local`) and ASE-calculator models (`ase`) are checked where they lie, never fetched.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from ..errors import ModelError
from ..files import atomic_write_bytes, give_default_mode
from ..provenance import sha256_file
from .ase import verify_ase_model
from .local import local_model_path, verified_local
from .records import ASE_KIND, ModelRecord
from .registry import check_model_name, load_registry, lookup_record, registry_path
from .verify import check_cached, check_hash, check_header

CACHE_ENV = "NEPBENCH_CACHE"
_PIP_TIMEOUT_S = 600
_CHUNK_BYTES = 1 << 20  # bytes read at a time when copying an upstream file


def cache_root() -> Path:
    """Folder holding cached models: `$NEPBENCH_CACHE/models` or `~/.cache/nepbench/models`."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base) if base else Path.home() / ".cache" / "nepbench") / "models"


def cached_model_path(name: str) -> Path:
    """Where registry model `name` lives in the cache (whether or not it is there yet); a name
    that could leave the cache folder (see `check_model_name`) is a ModelError."""
    return cache_root() / check_model_name(name, str(cache_root())) / "nep.txt"


def _source_cache_path(record: ModelRecord) -> Path:
    member = record.source.get("file") or record.source.get("path") or "source"
    return cache_root() / "_sources" / record.source_sha256 / Path(member).name


def _download_wheel(source: Mapping[str, Any], dest: Path) -> Path:
    """Download one wheel with pip (no dependencies, binary only) into `dest`; return its path."""
    spec = f"{source['package']}=={source['version']}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--python-version", source["python_version"], "--platform", source["platform"],
               "--disable-pip-version-check", "--quiet", spec, "-d", str(dest)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except subprocess.CalledProcessError as exc:  # pip's own last line: no such version, no pip, no network
        said = next((line.strip() for line in reversed((exc.stderr or "").splitlines()) if line.strip()), "")
        raise ModelError(f"could not download {spec} from PyPI (offline?)" + (f": pip said: {said}" if said else "")
                         ) from None
    except (OSError, subprocess.SubprocessError):
        raise ModelError(f"could not download {spec} from PyPI (offline?)") from None
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise ModelError(f"could not download {spec} from PyPI (offline?): pip saved no wheel")
    return wheels[0]


def _fetch_source(record: ModelRecord, force: bool = False) -> Path:
    """The verified upstream file in the cache, downloading it if missing (or `force`)."""
    target = _source_cache_path(record)
    if target.is_file() and not force:
        check_hash(target, record.source_sha256, f"the cached upstream file of {record.name}")
        return target
    if record.source["kind"] == "file":
        src = local_model_path(record)  # a relative path is the registry's, not the working folder's
        if not src.is_file():
            raise ModelError(f"{src}: source file of model {record.name} not found (registry "
                             f"{record.registry_file or registry_path()})")
        with open(src, "rb") as stream:
            _store_verified(stream, record, str(src), target)
        return target
    with tempfile.TemporaryDirectory(prefix="nepbench-wheel-") as tmp:
        _extract_member(_download_wheel(record.source, Path(tmp)), record, target)
    return target


def _extract_member(wheel: Path, record: ModelRecord, target: Path) -> None:
    """Store the record's wheel member at `target`, verified; its declared size is compared with
    `source_size_bytes` before a byte is decompressed, and at most that many + 1 are read."""
    member = record.source["file"]
    origin = f"{record.source['package']}=={record.source['version']}:{member}"
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(member)
            except KeyError:
                raise ModelError(f"{wheel.name}: has no member {member}") from None
            expected = record.source_size_bytes
            if expected is not None and info.file_size != expected:
                raise ModelError(f"{origin}: size {info.file_size} bytes, registry expects {expected}")
            with archive.open(info) as stream:
                _store_verified(stream, record, origin, target)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise ModelError(f"{wheel.name}: not a valid wheel (zip): {' '.join(str(exc).split())[:120]}") from None


def _store_verified(stream: BinaryIO, record: ModelRecord, origin: str, target: Path) -> None:
    """Copy `stream` to `target` atomically, hashing as it goes, in chunks of `_CHUNK_BYTES`.

    Reads at most `source_size_bytes` + 1 bytes (all of it when the registry has no size), so
    memory stays at one chunk; on a size or sha256 mismatch raises ModelError naming `origin`
    and leaves `target` as it was.
    """
    expected = record.source_size_bytes
    limit = None if expected is None else expected + 1
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            while limit is None or size < limit:
                chunk = stream.read(_CHUNK_BYTES if limit is None else min(_CHUNK_BYTES, limit - size))
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and size != expected:
            got = f"more than {expected}" if size > expected else str(size)
            raise ModelError(f"{origin}: size {got} bytes, registry expects {expected}")
        if digest.hexdigest() != record.source_sha256:
            raise ModelError(f"{origin}: sha256 mismatch: expected {record.source_sha256}, "
                             f"got {digest.hexdigest()}")
        give_default_mode(tmp, target)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _derive(record: ModelRecord, source: Path, target: Path) -> None:
    """Write the derived model (species kept with calorine) to `target`, checking its sha256."""
    from calorine.nep import read_model

    assert record.derived is not None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".nep.", suffix=".tmp")
    os.close(fd)
    try:
        read_model(str(source)).keep_species(list(record.derived.keep_species)).write(tmp)
        give_default_mode(tmp, target)
        got = sha256_file(tmp)
        if got != record.derived.derived_sha256:
            raise ModelError(
                f"{target}: sha256 mismatch for the model derived from {source.name}: expected "
                f"{record.derived.derived_sha256}, got {got} (registry measured with "
                f"{record.derived.tool or 'unknown tool'}; here calorine {_calorine_version()})")
        check_header(Path(tmp), record, shown=target)  # before the file enters the cache
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _link_or_copy(source: Path, target: Path) -> None:
    """Put `source` at `target` atomically: a hard link where possible (no second copy), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    try:
        os.link(source, tmp)
        os.replace(tmp, target)
    except OSError:
        if tmp.exists():
            tmp.unlink()
        atomic_write_bytes(target, source.read_bytes())


def _calorine_version() -> str:
    from importlib.metadata import version

    return version("calorine")


def fetch_model(name: str, registry: Mapping[str, ModelRecord] | None = None,
                force: bool = False) -> Path:
    """Make registry model `name` present in the cache and verified; return its path.

    Downloads the upstream file only if it is not cached (or `force`), derives the model where
    the record says so, and checks every sha256 on the way. Raises ModelError on failure.
    """
    registry = load_registry() if registry is None else registry
    record = lookup_record(name, registry)
    if record.source.get("kind") == "local":
        return verified_local(record)
    if record.kind == ASE_KIND:  # installed by pip, never downloaded here: checked where it lies
        return verify_ase_model(record)
    target = cached_model_path(name)
    if target.is_file() and not force:
        check_cached(target, record, f"cached model {name} (delete it or run "
                                     f"`nepbench models fetch {name} --force`)")
        return target
    source = _fetch_source(record, force=force)
    if record.derived is None:
        check_header(source, record)  # before the file enters the cache
        _link_or_copy(source, target)
    else:
        _derive(record, source, target)
    return target
