"""Resolving a model name or nep.txt path to a runnable `ModelInfo` (with the checked files of a
local model's seed ensemble), and checking a structure's species against it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import ModelError
from ..provenance import sha256_file
from .ase import verify_ase_model
from .fetch import cached_model_path, fetch_model
from .local import verified_local
from .nepfile import validate_model_file
from .records import ASE_KIND, ModelInfo, ModelRecord
from .registry import load_registry, lookup_record, registry_path, registry_root
from .verify import check_cached, check_member


def resolve_model(name_or_path: str, fetch: bool = True,
                  registry: Mapping[str, ModelRecord] | None = None) -> ModelInfo:
    """A runnable model from a registry name or a path to a nep.txt.

    A path (anything containing a path separator or ending in .txt, or an existing file whose name
    is not a registry name) is a user model: validated, its species and version read from its header, its sha256 computed.
    A name is looked up in the registry; the cached file is verified against the registry
    sha256 and fetched first when missing (unless `fetch` is False, then ModelError). A local
    model's ensemble members, if registered, are checked too (`ensemble_member_paths`) and named
    in `ModelInfo.ensemble`.
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
    record = lookup_record(name_or_path, registry)
    if record.kind == ASE_KIND:  # an installed package's weights file, checked where it lies
        return ModelInfo(name=record.name, path=verify_ase_model(record), sha256=record.sha256,
                         species=record.species, nep_version=ASE_KIND, source=dict(record.source))
    path = cached_model_path(record.name)
    ensemble: tuple[Path, ...] = ()
    if record.source.get("kind") == "local":  # committed to the repository: no network, no cache
        path = verified_local(record)
        ensemble = ensemble_member_paths(record)
    elif fetch:
        path = fetch_model(record.name, registry)
    elif not path.is_file():
        raise ModelError(f"{path}: model {record.name} is not cached; run `nepbench models fetch {record.name}`")
    else:
        check_cached(path, record, f"cached model {record.name}")
    return ModelInfo(name=record.name, path=path, sha256=record.sha256, species=record.species,
                     nep_version=record.nep_version, source=dict(record.source), ensemble=ensemble)


def ensemble_member_paths(record: ModelRecord) -> tuple[Path, ...]:
    """The nep.txt files of `record`'s further ensemble members (1..K-1, registry order; member 0
    is the model's own file), () for a record without an ensemble. Each path is relative to the
    folder holding the registry's folder (the repository root for models/registry.toml).

    Raises:
        ModelError naming the member's file: missing, sha256 other than registered, or a header
            (version, species) other than the record's.
    """
    root = registry_root(record.registry_file or registry_path())
    paths = []
    for k, member in enumerate(record.ensemble, start=1):
        path = root / member.path
        check_member(path, member.sha256, record, f"ensemble member {k} of {record.name} (registry "
                                                  f"path {member.path!r})")
        paths.append(path)
    return tuple(paths)


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
