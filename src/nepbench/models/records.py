"""The model types: a registry record (`ModelRecord`, `DerivedSpec`) and a model ready to run
(`ModelInfo`). Parsing and checking records is `registry`'s job; these are plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The source kind of a model that is an ASE calculator (a comparator, no nep.txt), and the token its
#: records and ModelInfo carry in place of a NEP header version.
ASE_KIND = "ase"


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
class EnsembleMember:
    """One further member of a trained model's seed ensemble (registry `ensemble = [{ path = ...,
    sha256 = ... }, ...]`; member 0 is the registered model itself).

    Attributes:
        path: the member's nep.txt, relative to the folder holding the registry's folder (the
            repository root for models/registry.toml), '/'-separated, e.g.
            "models/NAME/members/member-1/nep.txt".
        sha256: sha256 of that file, checked each time the model resolves.
    """

    path: str
    sha256: str


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
        registry_file: the registry file the record was read from (relative paths are relative to
            the folder holding its folder), or None.
        ensemble: the further members of a local NEP's seed ensemble (members 1..K-1), () for none.
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
    ensemble: tuple[EnsembleMember, ...] = ()

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
        ensemble: the nep.txt files of the model's further seed-ensemble members (1..K-1; member 0
            is `path`), each checked against its registered sha256 and header when the model
            resolved; () for a model without an ensemble (every user file, every non-local record).
    """

    name: str
    path: Path
    sha256: str
    species: tuple[str, ...]
    nep_version: str
    source: dict[str, Any] = field(default_factory=dict)
    ensemble: tuple[Path, ...] = ()

    @property
    def kind(self) -> str:
        """"ase" for an ASE-calculator model (a comparator run by engines.ase_calc), else "nep"."""
        return ASE_KIND if self.source.get("kind") == ASE_KIND else "nep"
