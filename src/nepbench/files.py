"""Files written whole or not at all, and locks: atomic writes (temporary file, fsync, os.replace)
with the mode a plain write would give, JSON documents, and advisory locks between processes."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np


def jsonable(value: Any) -> Any:
    """`value` with numpy values, paths and tuples made JSON types, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.floating):
        value = float(value)  # then the non-finite check below, as for a Python float
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _current_umask() -> int:
    """The process umask: read from /proc on Linux (no change of process state), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_default_mode(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Give a temporary file (mkstemp makes it 0600) the mode `target` will need: the existing
    target's mode, else what a plain open() would give (0666 less the umask), so a report written
    on a shared machine is as readable as any other file its user writes."""
    try:
        mode = os.stat(target).st_mode & 0o777
    except FileNotFoundError:
        mode = 0o666 & ~_current_umask()
    os.chmod(tmp, mode)


def _staged(target: Path, data: bytes) -> str:
    """A fsynced temporary file beside `target` holding `data`, with the mode a plain write would
    give `target` (`give_default_mode`); removed again if writing fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:  # owns fd from here: closed whatever happens next
            give_default_mode(tmp, target)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and os.replace; the file gets
    the mode a plain write would give it (`give_default_mode`)."""
    atomic_write_files({path: data})


def atomic_write_files(files: Mapping[str | os.PathLike[str], bytes]) -> None:
    """Write several files as one set: every file is written in full to a temporary beside it
    first, and only then are they renamed into place, in the order given. A failure while writing
    (a full disk, a killed process) replaces none of them. The renames are not one step: a failure
    between two of them leaves the earlier files new and the later ones old, so callers put last
    the file that names the others' hashes (a manifest, results.json), and a reader that checks
    them (`reference verify`) sees the mismatch."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            target = Path(path)
            staged.append((_staged(target, data), target))
        for tmp, target in staged:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in staged:
            _unlink_quietly(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode())


def json_document(value: Any) -> str:
    """Pretty JSON text (sorted keys, numpy values converted, non-finite floats as null)."""
    return json.dumps(jsonable(value), indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], value: Any) -> None:
    """`json_document(value)`, written atomically."""
    atomic_write_text(path, json_document(value))


class LockHeld(Exception):
    """Another process holds the lock (it is working on the same item now)."""


@contextmanager
def exclusive_lock(path: str | os.PathLike[str], blocking: bool = True) -> Iterator[None]:
    """Hold an exclusive advisory lock (flock) on `path` for the `with` block.

    Non-blocking, it raises LockHeld at once when another process holds the lock. The lock file
    is left in place (it is empty); the lock itself dies with the process that held it.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockHeld(str(path)) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
