"""The nep.txt file: its header (version token, species, cutoff) and a full check that it is a
complete, finite NEP4 potential. Every problem is one ModelError line naming the file."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from ase.data import chemical_symbols

from ..errors import ModelError

#: Header tokens of the potential models nepbench runs (calorine and NEP_CPU read NEP4).
SUPPORTED_VERSIONS = ("nep4", "nep4_zbl")
_KNOWN_ELEMENTS = set(chemical_symbols[1:])
#: Header rows after the first line, in the order GPUMD writes (and reads) them.
_HEADER_ROWS = ("cutoff", "n_max", "basis_size", "l_max", "ANN")
_POSITIVE_ROWS = ("zbl", "cutoff")  # cutoffs in Å and neighbour counts: finite and > 0


def read_nep_header(path: str | os.PathLike[str]) -> tuple[str, tuple[str, ...]]:
    """(header token, species) from the first line of a nep.txt, e.g. ("nep4_zbl", ("Li", "C", "Si")).

    Raises ModelError (naming the file) for a missing/empty file or a header that is not
    `<nepN[_kind]> <n_types> <species...>` with n_types known element symbols.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            first = handle.readline(1 << 16)
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file ({exc.strerror})") from None
    if not first.strip():
        raise ModelError(f"{path}: empty model file (no header line)")
    try:
        fields = first.decode("ascii").split()
    except UnicodeDecodeError:
        raise ModelError(f"{path}: unknown header (not a text nep.txt)") from None
    if not re.match(r"^nep\d", fields[0]) or len(fields) < 3:
        raise ModelError(f"{path}: unknown header {' '.join(fields[:3])!r} (expected e.g. 'nep4 3 Li Si C')")
    try:
        n_types = int(fields[1])
    except ValueError:
        raise ModelError(f"{path}: unknown header: type count {fields[1]!r} is not an integer") from None
    species = tuple(fields[2:])
    if n_types < 1 or len(species) != n_types:
        raise ModelError(f"{path}: header declares {fields[1]} species but lists {len(species)}")
    check_elements(species, f"{path}: header")
    return fields[0], species


def check_elements(species: Sequence[str], what: str) -> None:
    """ModelError `<what> has unknown element(s) ...` or `<what> lists a species twice` unless
    `species` are distinct element symbols; `what` names the file and the field."""
    unknown = [s for s in species if s not in _KNOWN_ELEMENTS]
    if unknown:
        raise ModelError(f"{what} has unknown element(s) {', '.join(unknown)}")
    if len(set(species)) != len(species):
        raise ModelError(f"{what} lists a species twice")


def read_nep_cutoff_a(path: str | os.PathLike[str]) -> float:
    """The largest interaction cutoff (Å) in a nep.txt header: the `cutoff` row's radii, i.e. all
    its values but the last two (the radial and angular neighbour-count limits) when it has four
    or more, else all of them.

    Raises ModelError (naming the file) when the header has no usable `cutoff` row.
    """
    path = Path(path)
    version, _ = read_nep_header(path)
    with open(path, errors="replace") as handle:
        rows = [handle.readline() for _ in range(2 + ("zbl" in version))]
    tokens = rows[-1].split()
    try:
        if not tokens or tokens[0] != "cutoff" or len(tokens) < 2:
            raise ValueError(rows[-1].strip()[:40])
        values = [float(t) for t in tokens[1:]]
        radii = values[:-2] if len(values) >= 4 else values
        cutoff_a = max(radii)
    except ValueError:
        raise ModelError(f"{path}: line {len(rows)}: expected 'cutoff <radii in Å> ...', "
                         f"got {rows[-1].strip()[:40]!r}") from None
    if not (math.isfinite(cutoff_a) and cutoff_a > 0):
        raise ModelError(f"{path}: line {len(rows)}: cutoff must be a finite radius > 0 Å, got {cutoff_a}")
    return cutoff_a


def validate_model_file(path: str | os.PathLike[str]) -> tuple[str, tuple[str, ...]]:
    """Check that `path` is a complete, finite NEP4 potential file; return (version, species).

    Catches, each as one ModelError line naming the file: missing or empty file, unknown or
    unsupported header, header rows out of order or with non-numeric, non-finite or out-of-range
    values (`_check_header_rows`), unparsable or non-finite (NaN/inf) parameters, and a parameter
    count that does not match the header (truncated or padded file; counted by calorine's reader).
    """
    path = Path(path)
    version, species = read_nep_header(path)
    if version not in SUPPORTED_VERSIONS:
        raise ModelError(f"{path}: unsupported model type {version!r} "
                         f"(nepbench runs potential models: {', '.join(SUPPORTED_VERSIONS)})")
    lines = path.read_text(errors="replace").splitlines()
    n_header = 7 if "zbl" in version else 6
    if len(lines) <= n_header:
        raise ModelError(f"{path}: truncated: {len(lines)} lines, header alone needs {n_header}")
    _check_header_rows(path, lines[1:n_header], ("zbl",) * ("zbl" in version) + _HEADER_ROWS)
    values = np.empty(len(lines) - n_header)
    for k, line in enumerate(lines[n_header:]):
        try:
            (token,) = line.split()
            values[k] = float(token)
        except ValueError:
            raise ModelError(f"{path}: line {k + n_header + 1} is not one number: {line[:40]!r}") from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ModelError(f"{path}: {bad.size} non-finite parameter(s), first at line "
                         f"{bad[0] + n_header + 1} ({lines[bad[0] + n_header].strip()})")
    from calorine.nep import read_model

    try:
        read_model(str(path))
    except (ValueError, OSError, KeyError, IndexError) as exc:
        text = " ".join(str(exc).split())
        raise ModelError(f"{path}: malformed model ({text[:200]})") from None
    return version, species


def _check_header_rows(path: Path, rows: Sequence[str], keywords: Sequence[str]) -> None:
    """ModelError (naming the file and line) unless header rows 2.. are `<keyword> <numbers>` with
    the `keywords` in order, each with at least one number, all finite.

    zbl and cutoff values (cutoffs in Å, neighbour counts) must be > 0, except `zbl 0 0`, GPUMD's
    marker of a flexible ZBL; n_max, basis_size, l_max and ANN values are integers >= 0.
    """
    for line_no, (row, keyword) in enumerate(zip(rows, keywords), start=2):
        tokens = row.split()
        if not tokens or tokens[0] != keyword or len(tokens) < 2:
            raise ModelError(f"{path}: line {line_no}: expected '{keyword} <values>', got {row.strip()[:40]!r}")
        try:
            values = [float(t) for t in tokens[1:]]
        except ValueError:
            raise ModelError(f"{path}: line {line_no}: {keyword} values must be numbers, "
                             f"got {row.strip()[:40]!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise ModelError(f"{path}: line {line_no}: non-finite {keyword} value ({row.strip()[:40]})")
        if keyword in _POSITIVE_ROWS:
            checked = values[2:] if keyword == "zbl" and values[:2] == [0.0, 0.0] else values
            if any(v <= 0 for v in checked):
                raise ModelError(f"{path}: line {line_no}: {keyword} values must be positive "
                                 f"(cutoffs in Å, neighbour counts), got {row.strip()[:40]!r}")
        elif any(v < 0 or v != int(v) for v in values):
            raise ModelError(f"{path}: line {line_no}: {keyword} values must be integers >= 0, "
                             f"got {row.strip()[:40]!r}")
