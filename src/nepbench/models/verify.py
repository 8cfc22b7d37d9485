"""Checks of a model file against its registry record: sha256, and header (version, species)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from ..provenance import sha256_file
from .nepfile import read_nep_header, validate_model_file
from .records import ModelRecord


def check_hash(path: Path, expected: str, what: str) -> None:
    """ModelError naming `path` and `what` (the file's role, for the message) when the file's
    sha256 (hex) is not `expected`."""
    got = sha256_file(path)
    if got != expected:
        raise ModelError(f"{path}: sha256 mismatch for {what}: expected {expected}, got {got}")


def _compare_header(shown: Path, version: str, species: tuple[str, ...], record: ModelRecord) -> None:
    """ModelError naming `shown` when (version, species) differ from the registry record's."""
    if version != record.nep_version or species != record.species:
        where = f" in {record.registry_file}" if record.registry_file else ""
        raise ModelError(f"{shown}: header {version} {' '.join(species)} differs from the registry "
                         f"({record.nep_version} {' '.join(record.species)}{where})")


def check_header(path: Path, record: ModelRecord, shown: Path | None = None) -> None:
    """Validate the whole model file and compare its header with the registry record.

    `shown` is the path errors name instead of `path` (the cache path for a temporary file).
    Raises ModelError naming `shown` when the file is no valid NEP model or its header (version,
    species) differs from `record`'s.
    """
    shown = shown or path
    try:
        version, species = validate_model_file(path)
    except ModelError as exc:
        raise ModelError(str(exc).replace(str(path), str(shown))) from None
    _compare_header(shown, version, species, record)


def check_member(path: Path, sha256: str, record: ModelRecord, what: str) -> None:
    """An ensemble member's file of `record`: present, sha256 as registered, and header (version,
    species) as the record's (ModelError naming `path` otherwise). Only the header line is read:
    the sha256 pins the content, which was fully validated when the ensemble was registered."""
    if not path.is_file():
        raise ModelError(f"{path}: {what} not found (restore it, or re-register {record.name} with "
                         f"`nepbench train --recipe ... --register {record.name} --force`)")
    check_hash(path, sha256, what)
    version, species = read_nep_header(path)
    _compare_header(path, version, species, record)


def check_cached(path: Path, record: ModelRecord, what: str) -> None:
    """A cached model: sha256 as registered and header as registered (ModelError otherwise).

    Only the header line is read: the full validation ran before the file entered the cache, and
    the sha256 pins its content (a full parse of nep89.txt takes seconds).
    """
    check_hash(path, record.sha256, what)
    version, species = read_nep_header(path)
    _compare_header(path, version, species, record)
