"""Model registry: name → source, sha256 and species; fetch, derive, cache and verify NEP files.

Every model nepbench runs is either a registry name (`models/registry.toml`, one TOML table per
model) or a path to a user's `nep.txt`. `resolve_model` turns either into a `ModelInfo` with the
file's sha256, which every result records.

A registry model's source is a PyPI wheel member (`kind = "pypi-wheel"`), a file anywhere
(`kind = "file"`, copied into the cache), or a model committed to this repository
(`kind = "local"`, e.g. `path = "models/nepbench-lisic-v1/nep.txt"`, relative to the folder that
holds the registry's folder, i.e. the repository root): a local model is run in place, never
downloaded or cached, after its sha256 is checked against the registry.

A comparator that is no NEP (`kind = "ase"`, e.g. CHGNet or SevenNet) is an ASE calculator made by an
importable factory (`factory = "module:attribute"`, with `arguments` and the weights file passed
as `weights_argument`) from a weights file inside an installed package (`package`, `version`,
`file` relative to site-packages), checked by sha256 and never cached: `pip install` is its fetch.
A package missing here (or at another version) is `ModelUnavailable` (its tasks are skipped with
the reason); a factory that cannot be imported, a missing weights file or a sha256 mismatch is a
ModelError naming it. docs/comparators.md says why and how they are compared.

Cache layout (outside the repository; `$NEPBENCH_CACHE` replaces `~/.cache/nepbench`):

    <cache>/models/<name>/nep.txt                  the model file nepbench runs
    <cache>/models/_sources/<source_sha256>/<file> the upstream file (e.g. the full nep89.txt),
                                                   kept so a derived model never re-downloads

All writes are atomic (temporary file, then `os.replace`); every fetch checks the upstream sha256
and, for a derived model, the sha256 of the derived file recorded in the registry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping, Sequence

import numpy as np
from ase.data import chemical_symbols

from .config import unknown_keys
from .errors import ModelError, ModelUnavailable
from .provenance import atomic_write_bytes, give_default_mode, sha256_bytes, sha256_file
from .textfiles import load_toml

DEFAULT_MODEL = "nep89-lisic"
REGISTRY_ENV = "NEPBENCH_REGISTRY"
CACHE_ENV = "NEPBENCH_CACHE"
_REPO_REGISTRY = Path(__file__).resolve().parents[2] / "models" / "registry.toml"

#: Header tokens of the potential models nepbench runs (calorine and NEP_CPU read NEP4).
SUPPORTED_VERSIONS = ("nep4", "nep4_zbl")
#: The keys of a registry record, of each source kind and of `derived` (`training` is the
#: provenance summary `nepbench train --register` writes, free-form).
RECORD_KEYS = frozenset({"description", "source", "source_sha256", "source_size_bytes", "species", "nep_version",
                         "derived", "licence", "citation", "training"})
SOURCE_KEYS = {"pypi-wheel": frozenset({"kind", "package", "version", "file", "python_version", "platform"}),
               "file": frozenset({"kind", "path"}), "local": frozenset({"kind", "path"}),
               "ase": frozenset({"kind", "package", "version", "file", "factory", "weights_argument",
                                 "arguments", "cutoff_a"})}
SOURCE_KINDS = tuple(SOURCE_KEYS)
#: The source kind of a model that is an ASE calculator (a comparator, no nep.txt), and the token its
#: records and ModelInfo carry in place of a NEP header version.
ASE_KIND = "ase"
#: Keys an `ase` source may leave out (the others are required strings).
_ASE_OPTIONAL = frozenset({"weights_argument", "arguments", "cutoff_a"})
#: `module:attribute[.attribute...]`, each part a Python identifier.
_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
DERIVED_KEYS = frozenset({"keep_species", "derived_sha256", "tool"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KNOWN_ELEMENTS = set(chemical_symbols[1:])
_PIP_TIMEOUT_S = 600
_CHUNK_BYTES = 1 << 20  # bytes read at a time when copying an upstream file
#: Registry names: one safe folder name in the cache (no '/' or spaces, and never '.' or '..', as
#: a name starts with a letter or digit), 1-64 characters. A name with '.' (a version, as in
#: "chgnet-0.3.0") is a quoted TOML key in the registry: `[models."chgnet-0.3.0"]`.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
#: Header rows after the first line, in the order GPUMD writes (and reads) them.
_HEADER_ROWS = ("cutoff", "n_max", "basis_size", "l_max", "ANN")
_POSITIVE_ROWS = ("zbl", "cutoff")  # cutoffs in Å and neighbour counts: finite and > 0


@dataclass(frozen=True)
class DerivedSpec:
    """How a registry model is derived from its upstream file.

    Attributes:
        keep_species: species kept by `calorine.nep.Model.keep_species` (others removed).
        derived_sha256: sha256 of the derived file as written by calorine's `Model.write`.
        tool: the tool (and version) that produced `derived_sha256`, for the error message.
    """

    keep_species: tuple[str, ...]
    derived_sha256: str
    tool: str = ""


@dataclass(frozen=True)
class ModelRecord:
    """One registry entry (`[models.<name>]` in registry.toml).

    Attributes:
        name: registry name, e.g. "nep89-lisic".
        description: one line for `nepbench models list`.
        source: where the upstream file comes from, e.g. `{kind="pypi-wheel", package=..., version=...,
            file=<member inside the wheel>, python_version=..., platform=...}` or
            `{kind="file", path=...}`.
        source_sha256: sha256 of the upstream file.
        species: species of the model nepbench runs, in the order of its header.
        nep_version: header token of the model file, e.g. "nep4_zbl".
        licence: licence under which the file is distributed.
        citation: the paper to cite.
        derived: how the file is derived from the upstream one, or None if it is used as is.
        source_size_bytes: size of the upstream file in bytes, or None if not recorded.
    """

    name: str
    description: str
    source: dict[str, Any]
    source_sha256: str
    species: tuple[str, ...]
    nep_version: str
    licence: str
    citation: str
    derived: DerivedSpec | None = None
    source_size_bytes: int | None = None
    registry_file: str | None = None

    @property
    def sha256(self) -> str:
        """sha256 of the file nepbench runs (the derived file where there is one)."""
        return self.derived.derived_sha256 if self.derived else self.source_sha256

    @property
    def kind(self) -> str:
        """"ase" for an ASE-calculator model (a comparator), else "nep"."""
        return ASE_KIND if self.source.get("kind") == ASE_KIND else "nep"

    def source_label(self) -> str:
        """Short human description of the source, e.g. "neptrainkit==2.5.4 (PyPI wheel)"."""
        if self.source.get("kind") == ASE_KIND:
            return (f"{self.source['package']}=={self.source['version']} (installed package: {self.source['file']}; "
                    f"ASE calculator {self.source['factory']})")
        if self.source.get("kind") == "pypi-wheel":
            return f"{self.source['package']}=={self.source['version']} (PyPI wheel: {self.source['file']})"
        if self.source.get("kind") == "local":
            return f"{self.source['path']} (committed here; run in place, never cached)"
        return str(self.source.get("path", self.source))


@dataclass(frozen=True)
class ModelInfo:
    """A model ready to run.

    Attributes:
        name: registry name, or the file name for a user model.
        path: the nep.txt file (for an ASE-calculator model: its weights file).
        sha256: sha256 of that file (what results record).
        species: species in the order of the model header (an ASE model: those its record lists).
        nep_version: header token, e.g. "nep4_zbl"; "ase" for an ASE-calculator model.
        source: the registry's source record, or {"kind": "user-file", "path": ...}.
    """

    name: str
    path: Path
    sha256: str
    species: tuple[str, ...]
    nep_version: str
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """"ase" for an ASE-calculator model (a comparator run by engines.ase_calc), else "nep"."""
        return ASE_KIND if self.source.get("kind") == ASE_KIND else "nep"


# --------------------------------------------------------------------------- registry

def registry_path() -> Path:
    """The registry file: `$NEPBENCH_REGISTRY`, else the checkout's models/registry.toml (nepbench
    runs from its checkout, installed with `pip install -e .`, as are its suites and reference data)."""
    env = os.environ.get(REGISTRY_ENV)
    return Path(env) if env else _REPO_REGISTRY


def registry_root(registry_file: str | os.PathLike[str]) -> Path:
    """The folder holding the registry's folder (the repository root for models/registry.toml):
    what a local model's or a training provenance's relative path is relative to."""
    return Path(registry_file).resolve().parent.parent


def check_model_name(name: Any, where: str) -> str:
    """`name` if it is a safe registry name, else ModelError naming `where` (a file) and the name.

    A name is 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit: a single
    folder name under the cache (no '/', never '.' or '..'). A name with '.' is quoted in the registry
    (`[models."chgnet-0.3.0"]`; unquoted, TOML would read it as nested tables).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ModelError(f"{where}: model name {name!r} not allowed (use 1-64 letters, digits, '.', '_' "
                         "and '-', starting with a letter or digit; no '/' or spaces)")
    return name


def registry_key(name: str) -> str:
    """`name` as a key of a `[models.KEY]` header: bare where TOML allows, else quoted ("a.b")."""
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _req(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise ModelError(f"{where}: missing field {key!r}")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ModelError(f"{where}: field {key!r} must be {names}, got {type(value).__name__}")
    return value


def _hex64(value: str, key: str, where: str) -> str:
    if not _HEX64.match(value):
        raise ModelError(f"{where}: {key} must be 64 lower-case hex digits, got {value!r}")
    return value


def _species(values: Sequence[Any], key: str, where: str) -> tuple[str, ...]:
    species = tuple(values)
    if not species or not all(isinstance(s, str) for s in species):
        raise ModelError(f"{where}: {key} must be a non-empty list of element symbols")
    unknown = [s for s in species if s not in _KNOWN_ELEMENTS]
    if unknown:
        raise ModelError(f"{where}: {key} has unknown element(s) {', '.join(unknown)}")
    if len(set(species)) != len(species):
        raise ModelError(f"{where}: {key} lists a species twice")
    return species


def _parse_source(source: Mapping[str, Any], where: str) -> dict[str, Any]:
    kind = _req(source, "kind", str, f"{where}.source")
    if kind not in SOURCE_KEYS:
        raise ModelError(f"{where}: source kind {kind!r} unknown (known: {', '.join(SOURCE_KINDS)})")
    optional = _ASE_OPTIONAL if kind == ASE_KIND else frozenset()
    for key in sorted(SOURCE_KEYS[kind] - {"kind"} - optional):
        _req(source, key, str, f"{where}.source")
    problem = unknown_keys(source, SOURCE_KEYS[kind])
    if problem:
        raise ModelError(f"{where}.source ({kind}): {problem}")
    if kind == ASE_KIND:
        _check_ase_source(source, f"{where}.source")
    return dict(source)


def _check_ase_source(source: Mapping[str, Any], where: str) -> None:
    """ModelError naming `where` unless an `ase` source's factory is `module:attribute`, its file a
    relative path inside site-packages, weights_argument a string, arguments a table with string
    keys, and cutoff_a (Å) a finite number > 0."""
    if not _FACTORY.match(source["factory"]):
        raise ModelError(f"{where}: factory must be 'module:attribute' (e.g. "
                         f"'sevenn.calculator:SevenNetCalculator'), got {source['factory']!r}")
    file = Path(source["file"])
    if file.is_absolute() or ".." in file.parts:
        raise ModelError(f"{where}: file must be a path relative to the installed package's site-packages "
                         f"folder (no '..'), got {source['file']!r}")
    if "weights_argument" in source:
        _req(source, "weights_argument", str, where)
    arguments = source.get("arguments", {})
    if not isinstance(arguments, dict) or not all(isinstance(k, str) for k in arguments):
        raise ModelError(f"{where}: arguments must be a table of keyword arguments, got {arguments!r}")
    if source.get("weights_argument") in arguments:
        raise ModelError(f"{where}: arguments sets {source['weights_argument']!r}, the weights argument "
                         "(the checked file is passed there)")
    if "cutoff_a" in source:
        cutoff = source["cutoff_a"]
        if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not (math.isfinite(cutoff)
                                                                                   and cutoff > 0):
            raise ModelError(f"{where}: cutoff_a must be a finite number of Å > 0, got {cutoff!r}")


def parse_record(name: str, table: Mapping[str, Any], where: str) -> ModelRecord:
    """Check one registry table and turn it into a `ModelRecord` (ModelError on any problem)."""
    check_model_name(name, where)
    where = f"{where} [models.{name}]"
    if not isinstance(table, dict):
        raise ModelError(f"{where}: must be a table, got {type(table).__name__}")
    problem = unknown_keys(table, RECORD_KEYS)  # a misspelt source_size_bytes would drop the size guard
    if problem:
        if "description" not in table and all(isinstance(v, dict) for v in table.values()):
            problem += f" (a name with '.' must be quoted: [models.\"{name}.…\"])"
        raise ModelError(f"{where}: {problem}")
    source = _parse_source(_req(table, "source", dict, where), where)
    if source["kind"] == ASE_KIND:
        return _parse_ase_record(name, table, source, where)
    derived = None
    if "derived" in table:
        d = _req(table, "derived", dict, where)
        problem = unknown_keys(d, DERIVED_KEYS)
        if problem:
            raise ModelError(f"{where}.derived: {problem}")
        derived = DerivedSpec(
            keep_species=_species(_req(d, "keep_species", list, f"{where}.derived"), "keep_species", where),
            derived_sha256=_hex64(_req(d, "derived_sha256", str, f"{where}.derived"), "derived_sha256", where),
            tool=str(d.get("tool", "")),
        )
    size = table.get("source_size_bytes")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise ModelError(f"{where}: source_size_bytes must be a positive integer")
    version = _req(table, "nep_version", str, where)
    if version not in SUPPORTED_VERSIONS:
        raise ModelError(f"{where}: nep_version {version!r} not supported ({', '.join(SUPPORTED_VERSIONS)})")
    species = _species(_req(table, "species", list, where), "species", where)
    if derived and set(species) != set(derived.keep_species):
        raise ModelError(f"{where}: species {species} differ from derived.keep_species {derived.keep_species}")
    return ModelRecord(
        name=name,
        description=_req(table, "description", str, where),
        source=source,
        source_sha256=_hex64(_req(table, "source_sha256", str, where), "source_sha256", where),
        species=species,
        nep_version=version,
        licence=_req(table, "licence", str, where),
        citation=_req(table, "citation", str, where),
        derived=derived,
        source_size_bytes=size,
    )


def _parse_ase_record(name: str, table: Mapping[str, Any], source: dict[str, Any], where: str) -> ModelRecord:
    """The record of an ASE-calculator model: no NEP header (nep_version, derived refused)."""
    for key in ("nep_version", "derived"):
        if key in table:
            raise ModelError(f"{where}: {key} is for NEP models; an ASE-calculator model (source kind "
                             f"'{ASE_KIND}') has none")
    size = table.get("source_size_bytes")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise ModelError(f"{where}: source_size_bytes must be a positive integer")
    return ModelRecord(
        name=name,
        description=_req(table, "description", str, where),
        source=source,
        source_sha256=_hex64(_req(table, "source_sha256", str, where), "source_sha256", where),
        species=_species(_req(table, "species", list, where), "species", where),
        nep_version=ASE_KIND,
        licence=_req(table, "licence", str, where),
        citation=_req(table, "citation", str, where),
        source_size_bytes=size,
    )


def load_registry(path: str | os.PathLike[str] | None = None) -> dict[str, ModelRecord]:
    """All registry records by name, each checked against the schema (ModelError names the file)."""
    path = Path(path) if path is not None else registry_path()
    if not path.is_file() and path == _REPO_REGISTRY:
        raise ModelError(f"{path}: model registry not found: nepbench runs from its checkout (installed with "
                         f"`pip install -e .`, as `make setup` does), or set {REGISTRY_ENV} to a registry file")
    data = load_toml(path, lambda where, problem: ModelError(f"{where}: model registry {problem}"))
    return registry_records(data, path)


def registry_records(data: Mapping[str, Any], path: str | os.PathLike[str]) -> dict[str, ModelRecord]:
    """The records of a parsed registry document `data` read from `path` (named in errors)."""
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise ModelError(f"{path}: no [models.<name>] tables")
    problem = unknown_keys(data, {"models"})  # a misspelt [modles.x] would drop model x without a word
    if problem:
        raise ModelError(f"{path}: {problem}")
    return {name: dataclasses.replace(parse_record(name, table, str(path)), registry_file=str(path))
            for name, table in models.items()}


# --------------------------------------------------------------------------- model files

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
    unknown = [s for s in species if s not in _KNOWN_ELEMENTS]
    if unknown:
        raise ModelError(f"{path}: header has unknown element(s) {', '.join(unknown)}")
    if len(set(species)) != len(species):
        raise ModelError(f"{path}: header lists a species twice")
    return fields[0], species


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


def check_species(model: ModelInfo | Iterable[str], atoms: Any, source: str | os.PathLike[str]) -> None:
    """Raise ModelError if `atoms` holds species that `model` lacks, listing the missing ones.

    Args:
        model: a ModelInfo, or the model's species.
        atoms: ASE Atoms (or anything with `get_chemical_symbols()`).
        source: where the structure came from (file name), named in the error.
    """
    species = model.species if isinstance(model, ModelInfo) else tuple(model)
    label = f"model {model.name} ({model.path})" if isinstance(model, ModelInfo) else "the model"
    present = set(atoms.get_chemical_symbols())
    missing = sorted(present - set(species))
    if missing:
        raise ModelError(f"{source}: species {', '.join(missing)} not in {label}, "
                         f"which has {', '.join(species)}")


# --------------------------------------------------------------------------- cache and fetch

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


def _check_hash(path: Path, expected: str, what: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise ModelError(f"{path}: sha256 mismatch for {what}: expected {expected}, got {got}")


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
        _check_hash(target, record.source_sha256, f"the cached upstream file of {record.name}")
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
        _check_header(Path(tmp), record, shown=target)  # before the file enters the cache
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
    record = _record(name, registry)
    if record.source.get("kind") == "local":
        return _verified_local(record)
    if record.kind == ASE_KIND:  # installed by pip, never downloaded here: checked where it lies
        return verify_ase_model(record)
    target = cached_model_path(name)
    if target.is_file() and not force:
        _check_cached(target, record, f"cached model {name} (delete it or run "
                                      f"`nepbench models fetch {name} --force`)")
        return target
    source = _fetch_source(record, force=force)
    if record.derived is None:
        _check_header(source, record)  # before the file enters the cache
        _link_or_copy(source, target)
    else:
        _derive(record, source, target)
    return target


def _compare_header(shown: Path, version: str, species: tuple[str, ...], record: ModelRecord) -> None:
    """ModelError naming `shown` when (version, species) differ from the registry record's."""
    if version != record.nep_version or species != record.species:
        where = f" in {record.registry_file}" if record.registry_file else ""
        raise ModelError(f"{shown}: header {version} {' '.join(species)} differs from the registry "
                         f"({record.nep_version} {' '.join(record.species)}{where})")


def _check_header(path: Path, record: ModelRecord, shown: Path | None = None) -> None:
    """Validate the whole model file and compare its header with the registry record.

    `shown` is the path errors name instead of `path` (the cache path for a temporary file).
    """
    shown = shown or path
    try:
        version, species = validate_model_file(path)
    except ModelError as exc:
        raise ModelError(str(exc).replace(str(path), str(shown))) from None
    _compare_header(shown, version, species, record)


def _check_cached(path: Path, record: ModelRecord, what: str) -> None:
    """A cached model: sha256 as registered and header as registered (ModelError otherwise).

    Only the header line is read: the full validation ran before the file entered the cache, and
    the sha256 pins its content (a full parse of nep89.txt takes seconds).
    """
    _check_hash(path, record.sha256, what)
    version, species = read_nep_header(path)
    _compare_header(path, version, species, record)


def local_model_path(record: ModelRecord) -> Path:
    """The file of a `kind = "local"` or `"file"` record: an absolute path, or one relative to the
    folder holding the registry's folder (the repository root for models/registry.toml)."""
    path = Path(record.source["path"]).expanduser()
    if path.is_absolute():
        return path
    registry_file = Path(record.registry_file) if record.registry_file else registry_path()
    return registry_root(registry_file) / path


def _verified_local(record: ModelRecord) -> Path:
    """The committed model file of `record`, checked: present, sha256 and header as registered."""
    path = local_model_path(record)
    if not path.is_file():
        raise ModelError(f"{path}: committed model file of {record.name} not found "
                         f"(registry source path {record.source['path']!r})")
    _check_hash(path, record.source_sha256, f"committed model {record.name} (re-register it with "
                                            f"`nepbench train ... --register {record.name}` or restore the file)")
    _check_header(path, record)
    return path


# --------------------------------------------------------------------------- ASE-calculator models

def installed_version(package: str) -> str | None:
    """The installed version of distribution `package`, or None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def ase_install_problem(record: ModelRecord) -> str | None:
    """Why the package of ASE-calculator model `record` cannot be used here (not installed, or at a
    version other than the registry's), or None. Reads package metadata only (imports nothing)."""
    package, version = record.source["package"], record.source["version"]
    found = installed_version(package)
    hint = f"pip install {package}=={version} (or `make setup`, which installs requirements-comparators.txt)"
    if found is None:
        return f"model {record.name}: package {package} is not installed: {hint}"
    if found != version:
        return f"model {record.name}: package {package} {found} is installed, the registry pins {version}: {hint}"
    return None


def ase_weights_path(record: ModelRecord) -> Path:
    """Where the weights file of ASE-calculator model `record` lies in its installed package (the
    `file` of its source, relative to the folder the distribution is installed in), whether or not
    it is there. Raises ModelUnavailable when the package is not installed."""
    from importlib import metadata

    try:
        distribution = metadata.distribution(record.source["package"])
    except metadata.PackageNotFoundError:
        raise ModelUnavailable(ase_install_problem(record) or record.name) from None
    return Path(distribution.locate_file(record.source["file"])).resolve()


def import_object(spec: str, where: str) -> Any:
    """The object `module:attribute[.attribute...]` names (an ASE calculator factory).

    Raises ModelError naming `where` (the registry file and model) when the module cannot be
    imported or lacks the attribute, or the object is not callable.
    """
    import importlib

    if not _FACTORY.match(spec):
        raise ModelError(f"{where}: unknown calculator {spec!r} (expected 'module:attribute')")
    module_name, attribute = spec.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"{where}: unknown calculator {spec!r}: cannot import {module_name} ({exc})") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"{where}: unknown calculator {spec!r}: {module_name} has no attribute {attribute}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{where}: calculator {spec!r} is not callable")
    return obj


def verify_ase_model(record: ModelRecord, import_factory: bool = True) -> Path:
    """The weights file of ASE-calculator model `record`, checked: its package installed at the
    pinned version (else ModelUnavailable: the comparator is skipped), the file present with the
    registry's size and sha256, and the factory importable (`import_factory`; importing it loads the
    package, e.g. torch, in a few seconds). Any other problem is a ModelError naming it."""
    problem = ase_install_problem(record)
    if problem:
        raise ModelUnavailable(problem)
    where = f"{record.registry_file or registry_path()} [models.{record.name}]"
    path = ase_weights_path(record)
    if not path.is_file():
        raise ModelError(f"{path}: weights file of model {record.name} not found in the installed "
                         f"{record.source['package']} {record.source['version']} ({where} file "
                         f"{record.source['file']!r})")
    size = record.source_size_bytes
    if size is not None and path.stat().st_size != size:
        raise ModelError(f"{path}: size {path.stat().st_size} bytes, {where} expects {size}")
    _check_hash(path, record.source_sha256, f"the weights of model {record.name} ({where})")
    if import_factory:
        import_object(record.source["factory"], where)
    return path


def _toml_value(value: Any) -> str:
    """A TOML literal for str, bool, int, float, list and dict (inline table) values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not np.isfinite(value):
            raise ValueError(f"TOML cannot hold {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML literal for {type(value).__name__}")


def registry_table_text(name: str, fields: Mapping[str, Any]) -> str:
    """`[models.NAME]` followed by one `key = value` line per field (NAME checked: a bare key)."""
    check_model_name(name, "registry table")
    return f"[models.{registry_key(name)}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in fields.items())


def register_local_model(name: str, model_file: str | os.PathLike[str], description: str, licence: str,
                         citation: str, extra: Mapping[str, Any] | None = None,
                         registry: str | os.PathLike[str] | None = None) -> ModelRecord:
    """Commit-ready registration of a trained model: copy it and write its registry table.

    Copies `model_file` to `<root>/models/NAME/nep.txt` (root = the folder holding the registry's
    folder) and adds or replaces the `[models.NAME]` table of the registry with a `kind = "local"`
    source, its sha256, size, species and version (read from the file), and the `extra` fields
    (e.g. training provenance). A replaced table is replaced whole, comments inside it included;
    comments and blank lines above the next table stay. The new registry text is checked before
    anything is written: it must load as `load_registry` loads it and differ from the old one in
    `[models.NAME]` alone. Both writes are atomic, and a failed registry write puts the previous
    model file back (`_write_model_and_registry`). Returns the new record.
    """
    registry_file = Path(registry) if registry is not None else registry_path()
    check_model_name(name, str(registry_file))
    version, species = validate_model_file(model_file)
    root = registry_root(registry_file)
    target = registry_file.resolve().parent / name / "nep.txt"
    relative = target.relative_to(root).as_posix()
    data = Path(model_file).read_bytes()
    fields: dict[str, Any] = {
        "description": description,
        "source": {"kind": "local", "path": relative},
        "source_sha256": sha256_bytes(data),
        "source_size_bytes": len(data),
        "species": list(species),
        "nep_version": version,
        "licence": licence,
        "citation": citation,
        **dict(extra or {}),
    }
    table = registry_table_text(name, fields)
    try:
        old = registry_file.read_text(encoding="utf-8") if registry_file.is_file() else ""
    except UnicodeDecodeError:
        raise ModelError(f"{registry_file}: model registry is not UTF-8") from None
    new = replace_registry_table(old, name, table)
    record = _checked_registry(old, new, name, table, registry_file)
    _write_model_and_registry(target, data, registry_file, new)
    return record


def _header_path(line: str) -> tuple[str, ...] | None:
    """The key path of a TOML table header line (`[models."a"]  # note` → ("models", "a")), or
    None when the line alone is not a table header (a key, a comment, part of a value)."""
    if not line.lstrip().startswith("["):
        return None
    try:
        node: Any = tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return None
    path: list[str] = []
    while node:
        if isinstance(node, list):  # [[array.of.tables]]
            node = node[-1]
            continue
        if not isinstance(node, dict) or len(node) != 1:
            return None
        ((key, node),) = node.items()
        path.append(key)
    return tuple(path)


def _is_toml(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def _table_span(lines: Sequence[str], name: str) -> tuple[int, int] | None:
    """[start, end) line indices of the `[models.NAME]` table (its sub-tables included), or None.

    A header line counts only where the text above it is complete TOML, so a line inside a
    multi-line string or array that looks like a header does not. Comment and blank lines just
    above the next table belong to that table.
    """
    headers = [(i, path) for i, line in enumerate(lines)
               if (path := _header_path(line)) is not None and _is_toml("".join(lines[:i]))]
    start = next((i for i, path in headers if path == ("models", name)), None)
    if start is None:
        return None
    end = next((i for i, path in headers if i > start and path[:2] != ("models", name)), len(lines))
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return start, end


def replace_registry_table(old: str, name: str, table: str) -> str:
    """Registry text `old` with its `[models.NAME]` table replaced by `table` (or `table` appended
    after a blank line when there is none)."""
    lines = [line for line in re.split(r"(?<=\n)", old) if line]
    span = _table_span(lines, name)
    if span is None:
        return old + ("" if not old or old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")) + table
    start, end = span
    return "".join(lines[:start]) + table + "".join(lines[end:])


def _checked_registry(old: str, new: str, name: str, table: str, registry_file: Path) -> ModelRecord:
    """NAME's record from registry text `new`, after checking that `new` loads as `load_registry`
    loads a file and equals `old` with only `[models.NAME]` replaced by `table` (ModelError else)."""
    try:
        before = tomllib.loads(old)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{registry_file}: not valid TOML ({exc}); fix it before registering {name}") from None
    corrupt = f"{registry_file}: registering {name} would corrupt the registry"
    try:
        after = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{corrupt} ({exc})") from None
    models_before = before.get("models", {})
    if not isinstance(models_before, dict):
        raise ModelError(f"{registry_file}: 'models' must be a table of [models.<name>] tables")
    expected = {**before, "models": {**models_before, name: tomllib.loads(table)["models"][name]}}
    if after != expected:
        raise ModelError(f"{corrupt} (other tables or keys would change; edit the file by hand)")
    return registry_records(after, registry_file)[name]


def _write_model_and_registry(target: Path, data: bytes, registry_file: Path, text: str) -> None:
    """Write the model file, then the registry; if the registry write fails, restore the previous
    model file (or remove the new one), so the file and its registered sha256 stay a pair.

    The previous file is kept as a hard link, so restoring it is a rename that needs no free disk
    space (its bytes are held in memory where links are not supported).
    """
    backup = target.with_name(f".{target.name}.{os.getpid()}.previous")
    previous: bytes | None = None
    existed, new_folder = target.is_file(), not target.parent.exists()
    if existed:
        backup.unlink(missing_ok=True)
        try:
            os.link(target, backup)
        except OSError:
            previous = target.read_bytes()
    try:
        atomic_write_bytes(target, data)
        atomic_write_bytes(registry_file, text.encode())
    except BaseException:
        if existed and previous is None:
            os.replace(backup, target)
        elif existed:
            atomic_write_bytes(target, previous)
        else:
            target.unlink(missing_ok=True)
            if new_folder and not any(target.parent.iterdir()):
                target.parent.rmdir()
        raise
    finally:
        backup.unlink(missing_ok=True)


def _record(name: str, registry: Mapping[str, ModelRecord]) -> ModelRecord:
    if name not in registry:
        raise ModelError(f"unknown model {name!r}: not a file and not in the registry "
                         f"(known: {', '.join(sorted(registry))})")
    return registry[name]


def resolve_model(name_or_path: str, fetch: bool = True,
                  registry: Mapping[str, ModelRecord] | None = None) -> ModelInfo:
    """A runnable model from a registry name or a path to a nep.txt.

    A path (anything containing a path separator or ending in .txt, or an existing file whose name
    is not a registry name) is a user model: validated, its species and version read from its header, its sha256 computed.
    A name is looked up in the registry; the cached file is verified against the registry
    sha256 and fetched first when missing (unless `fetch` is False, then ModelError).
    """
    candidate = Path(name_or_path).expanduser()
    is_path = os.sep in name_or_path or name_or_path.endswith(".txt")
    if not is_path:
        registry = load_registry() if registry is None else registry
        is_path = name_or_path not in registry and candidate.exists()
    if is_path:
        if not candidate.is_file():
            raise ModelError(f"{candidate}: model file not found")
        version, species = validate_model_file(candidate)
        return ModelInfo(name=candidate.name, path=candidate.resolve(), sha256=sha256_file(candidate),
                         species=species, nep_version=version,
                         source={"kind": "user-file", "path": str(candidate.resolve())})
    assert registry is not None
    record = _record(name_or_path, registry)
    if record.kind == ASE_KIND:  # an installed package's weights file, checked where it lies
        return ModelInfo(name=record.name, path=verify_ase_model(record), sha256=record.sha256,
                         species=record.species, nep_version=ASE_KIND, source=dict(record.source))
    path = cached_model_path(record.name)
    if record.source.get("kind") == "local":  # committed to the repository: no network, no cache
        path = _verified_local(record)
    elif fetch:
        path = fetch_model(record.name, registry)
    elif not path.is_file():
        raise ModelError(f"{path}: model {record.name} is not cached; run `nepbench models fetch {record.name}`")
    else:
        _check_cached(path, record, f"cached model {record.name}")
    return ModelInfo(name=record.name, path=path, sha256=record.sha256, species=record.species,
                     nep_version=record.nep_version, source=dict(record.source))


# --------------------------------------------------------------------------- tiny random models

def n_parameters(n_types: int, n_max: tuple[int, int], basis_size: tuple[int, int],
                 l_max: tuple[int, int, int], n_neuron: int) -> tuple[int, int, int]:
    """(ANN, descriptor, scaler) parameter counts of a one-hidden-layer NEP4 potential."""
    n_angular_terms = l_max[0] + (l_max[1] > 0) + (l_max[2] > 0)
    n_input = (n_max[0] + 1) + (n_max[1] + 1) * n_angular_terms
    n_ann = (n_input * n_neuron + 2 * n_neuron) * n_types + 1
    n_desc = n_types**2 * ((n_max[0] + 1) * (basis_size[0] + 1) + (n_max[1] + 1) * (basis_size[1] + 1))
    return n_ann, n_desc, n_input


def write_random_model(path: str | os.PathLike[str], species: Sequence[str] = ("Li", "Si", "C"),
                       seed: int = 0, cutoff_a: tuple[float, float] = (5.0, 4.0),
                       n_max: tuple[int, int] = (4, 4), basis_size: tuple[int, int] = (6, 6),
                       l_max: tuple[int, int, int] = (4, 2, 0), n_neuron: int = 8,
                       zbl_a: tuple[float, float] | None = (1.0, 2.0),
                       weight_scale: float = 0.3) -> Path:
    """Write a small seeded NEP4 model with random parameters (tests and demos; not physics).

    The network weights are drawn from N(0, weight_scale²), descriptor weights from U(-1, 1)
    and scalers from U(0.5, 1.5), which gives a smooth potential with forces of order 1 eV/Å;
    `zbl_a` (inner, outer cutoff in Å) adds GPUMD's universal ZBL repulsion at short range.
    """
    rng = np.random.default_rng(seed)
    n_ann, n_desc, n_input = n_parameters(len(species), n_max, basis_size, l_max, n_neuron)
    values = np.concatenate([rng.normal(0.0, weight_scale, n_ann), rng.uniform(-1, 1, n_desc),
                             rng.uniform(0.5, 1.5, n_input)])
    token = "nep4_zbl" if zbl_a else "nep4"
    lines = [f"{token} {len(species)} {' '.join(species)}"]
    if zbl_a:
        lines.append(f"zbl {zbl_a[0]:g} {zbl_a[1]:g}")
    lines += [f"cutoff {cutoff_a[0]:g} {cutoff_a[1]:g} 200 100", f"n_max {n_max[0]} {n_max[1]}",
              f"basis_size {basis_size[0]} {basis_size[1]}", f"l_max {l_max[0]} {l_max[1]} {l_max[2]}",
              f"ANN {n_neuron} 0"]
    lines += [f"{v:15.7e}" for v in values]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return Path(path)
