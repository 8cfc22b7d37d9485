"""Model registry: name → source, sha256 and species; fetch, derive, cache and verify NEP files.

Every model nepbench runs is either a registry name (`models/registry.toml`, one TOML table per
model) or a path to a user's `nep.txt`. `resolve_model` turns either into a `ModelInfo` with the
file's sha256, which every result records.

A registry model's source is a PyPI wheel member (`kind = "pypi-wheel"`), a file anywhere
(`kind = "file"`, copied into the cache), a model committed to this repository (`kind = "local"`,
run in place) or an ASE calculator from an installed package (`kind = "ase"`, a comparator that is
no NEP). Each module's docstring says the rest.

Package layout (one job per module; everything below is importable from `nepbench.models`):
`records` (ModelRecord, DerivedSpec, EnsembleMember, ModelInfo), `registry` (registry file, schema,
loading), `nepfile` (nep.txt header and full validation), `verify` (sha256 and header against a
record), `fetch` (the cache; pinned wheel download, derived models), `local` (committed models and
registering a trained one), `ase` (ASE-calculator comparators), `resolve` (name or path → ModelInfo,
with a local model's ensemble members; species check). Seeded random NEP4 models for tests are in
tests/random_models.py.
"""

from __future__ import annotations

from ..errors import ModelError, ModelUnavailable  # noqa: F401  (importable from here, as before)
from .records import ASE_KIND, DerivedSpec, EnsembleMember, ModelInfo, ModelRecord  # noqa: F401
from .nepfile import (  # noqa: F401
    SUPPORTED_VERSIONS,
    read_nep_cutoff_a,
    read_nep_header,
    validate_model_file,
)
from .registry import (  # noqa: F401
    DEFAULT_MODEL,
    DERIVED_KEYS,
    ENSEMBLE_KEYS,
    RECORD_KEYS,
    REGISTRY_ENV,
    SOURCE_KEYS,
    SOURCE_KINDS,
    check_model_name,
    load_registry,
    lookup_record,
    parse_record,
    registry_key,
    registry_path,
    registry_records,
    registry_root,
)
from .verify import check_cached, check_hash, check_header, check_member  # noqa: F401
from .ase import (  # noqa: F401
    ase_install_problem,
    ase_weights_path,
    import_object,
    installed_version,
    verify_ase_model,
)
from .local import (  # noqa: F401
    _toml_value,  # tests/test_ase_calc.py writes registry tables with it
    local_model_path,
    register_local_model,
    registry_table_text,
    replace_registry_table,
    verified_local,
)
from .fetch import CACHE_ENV, cache_root, cached_model_path, fetch_model  # noqa: F401
from .resolve import check_species, ensemble_member_paths, resolve_model  # noqa: F401

__all__ = [
    "ASE_KIND",
    "CACHE_ENV",
    "DEFAULT_MODEL",
    "DERIVED_KEYS",
    "DerivedSpec",
    "ENSEMBLE_KEYS",
    "EnsembleMember",
    "ModelError",
    "ModelInfo",
    "ModelRecord",
    "ModelUnavailable",
    "RECORD_KEYS",
    "REGISTRY_ENV",
    "SOURCE_KEYS",
    "SOURCE_KINDS",
    "SUPPORTED_VERSIONS",
    "ase_install_problem",
    "ase_weights_path",
    "cache_root",
    "cached_model_path",
    "check_cached",
    "check_hash",
    "check_header",
    "check_member",
    "check_model_name",
    "check_species",
    "ensemble_member_paths",
    "fetch_model",
    "import_object",
    "installed_version",
    "load_registry",
    "local_model_path",
    "lookup_record",
    "parse_record",
    "read_nep_cutoff_a",
    "read_nep_header",
    "register_local_model",
    "registry_key",
    "registry_path",
    "registry_records",
    "registry_root",
    "registry_table_text",
    "replace_registry_table",
    "resolve_model",
    "validate_model_file",
    "verified_local",
    "verify_ase_model",
]
