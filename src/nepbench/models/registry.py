"""The model registry (`models/registry.toml`): where it is, its schema, and loading it.

Each `[models.<name>]` table becomes a checked `ModelRecord`; any problem is a ModelError naming the
file and the table. Writing a table (registering a trained model) is `local`'s job.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..checks import unknown_keys
from ..errors import ModelError
from ..textfiles import load_toml
from .nepfile import SUPPORTED_VERSIONS, check_elements
from .records import ASE_KIND, DerivedSpec, EnsembleMember, ModelRecord

DEFAULT_MODEL = "nep89-lisic"
REGISTRY_ENV = "NEPBENCH_REGISTRY"
_REPO_REGISTRY = Path(__file__).resolve().parents[3] / "models" / "registry.toml"

#: The keys of a registry record, of each source kind and of `derived` (`training` is the
#: provenance summary `nepbench train --register` writes, free-form; `ensemble` lists a local
#: NEP's further seed-ensemble members, each `{ path, sha256 }`: ENSEMBLE_KEYS).
RECORD_KEYS = frozenset({"description", "source", "source_sha256", "source_size_bytes", "species", "nep_version",
                         "derived", "licence", "citation", "training", "ensemble"})
ENSEMBLE_KEYS = frozenset({"path", "sha256"})
SOURCE_KEYS = {"pypi-wheel": frozenset({"kind", "package", "version", "file", "python_version", "platform"}),
               "file": frozenset({"kind", "path"}), "local": frozenset({"kind", "path"}),
               "ase": frozenset({"kind", "package", "version", "file", "factory", "weights_argument",
                                 "arguments", "cutoff_a", "memory_mb_per_atom"})}
SOURCE_KINDS = tuple(SOURCE_KEYS)
#: Keys an `ase` source may leave out (the others are required strings).
_ASE_OPTIONAL = frozenset({"weights_argument", "arguments", "cutoff_a", "memory_mb_per_atom"})
#: `module:attribute[.attribute...]`, each part a Python identifier.
_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
DERIVED_KEYS = frozenset({"keep_species", "derived_sha256", "tool"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: Registry names: one safe folder name in the cache (no '/' or spaces, and never '.' or '..', as
#: a name starts with a letter or digit), 1-64 characters. A name with '.' (a version, as in
#: "chgnet-0.3.0") is a quoted TOML key in the registry: `[models."chgnet-0.3.0"]`.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


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
    check_elements(species, f"{where}: {key}")
    return species


def _source_size(table: Mapping[str, Any], where: str) -> int | None:
    """The record's `source_size_bytes` (a positive integer), or None where it has none."""
    size = table.get("source_size_bytes")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise ModelError(f"{where}: source_size_bytes must be a positive integer")
    return size


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
    keys, and cutoff_a (Å) and memory_mb_per_atom (the measured growth of its memory with the
    atom count) finite numbers > 0."""
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
    for key, unit in (("cutoff_a", "Å"), ("memory_mb_per_atom", "MB per atom")):
        value = source.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value)
                                                                                 and value > 0):
            raise ModelError(f"{where}: {key} must be a finite number of {unit} > 0, got {value!r}")


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
    size = _source_size(table, where)
    ensemble = _parse_ensemble(table, source, where)
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
        ensemble=ensemble,
    )


def _parse_ase_record(name: str, table: Mapping[str, Any], source: dict[str, Any], where: str) -> ModelRecord:
    """The record of an ASE-calculator model: no NEP header (nep_version, derived, ensemble refused)."""
    for key in ("nep_version", "derived", "ensemble"):
        if key in table:
            raise ModelError(f"{where}: {key} is for NEP models; an ASE-calculator model (source kind "
                             f"'{ASE_KIND}') has none")
    size = _source_size(table, where)
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


def _parse_ensemble(table: Mapping[str, Any], source: Mapping[str, Any], where: str) -> tuple[EnsembleMember, ...]:
    """The record's `ensemble` (members 1..K-1 of a seed ensemble; member 0 is the model itself),
    () where it has none. ModelError naming `where` unless it is a non-empty list of `{ path,
    sha256 }` tables on a `kind = "local"` source, each path relative (no '..'), none repeated and
    none the model's own file. Whether the files exist and match is checked where the model
    resolves (`resolve.ensemble_member_paths`), as for the model's own file."""
    if "ensemble" not in table:
        return ()
    entries = table["ensemble"]
    if source["kind"] != "local":
        raise ModelError(f"{where}: ensemble is for models trained here (source kind 'local'), "
                         f"not kind {source['kind']!r}")
    if not isinstance(entries, list) or not entries:
        raise ModelError(f"{where}: ensemble must be a non-empty list of {{ path = ..., sha256 = ... }} tables")
    members: list[EnsembleMember] = []
    seen = {Path(source["path"]).as_posix()}
    for k, entry in enumerate(entries, start=1):
        at = f"{where}.ensemble[{k - 1}]"
        if not isinstance(entry, dict):
            raise ModelError(f"{at}: must be a table {{ path = ..., sha256 = ... }}, got {type(entry).__name__}")
        problem = unknown_keys(entry, ENSEMBLE_KEYS)
        if problem:
            raise ModelError(f"{at}: {problem}")
        path = _req(entry, "path", str, at)
        relative = Path(path)
        if not path or relative.is_absolute() or ".." in relative.parts:
            raise ModelError(f"{at}: path must be relative to the repository root (no '..'), got {path!r}")
        if relative.as_posix() in seen:
            raise ModelError(f"{at}: path {path!r} is the model's own file or another member's")
        seen.add(relative.as_posix())
        members.append(EnsembleMember(path=relative.as_posix(),
                                      sha256=_hex64(_req(entry, "sha256", str, at), "sha256", at)))
    return tuple(members)


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


def lookup_record(name: str, registry: Mapping[str, ModelRecord]) -> ModelRecord:
    """`registry`'s record of model `name`; ModelError listing the known names when it has none."""
    if name not in registry:
        raise ModelError(f"unknown model {name!r}: not a file and not in the registry "
                         f"(known: {', '.join(sorted(registry))})")
    return registry[name]
