"""Registry text for the test_models*.py files: one `[models.NAME]` table, a registry file, and the
check that an error is one line."""

from __future__ import annotations

from pathlib import Path

import pytest


def registry_text(name: str, source: Path, source_sha: str, species, keep=None, derived_sha=None) -> str:
    species_list = ", ".join(f'"{s}"' for s in species)
    text = (f'[models.{name}]\ndescription = "test model"\n'
            f'source = {{ kind = "file", path = "{source}" }}\nsource_sha256 = "{source_sha}"\n'
            f'species = [{species_list}]\nnep_version = "nep4_zbl"\nlicence = "CC0"\ncitation = "none"\n')
    if keep is not None:
        keep_list = ", ".join(f'"{s}"' for s in keep)
        text += f'derived = {{ keep_species = [{keep_list}], derived_sha256 = "{derived_sha}" }}\n'
    return text

def write_registry(path: Path, *tables: str) -> Path:
    path.write_text("\n".join(tables))
    return path

def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def member_path(name: str, k: int) -> str:
    """Where seed-ensemble member `k` of model `name` lies, relative to the repository root."""
    return f"models/{name}/members/member-{k}/nep.txt"


def write_ensemble_registry(root: Path, name: str, species) -> Path:
    """<root>/models/<name>/nep.txt (a random NEP, seed 1) with ensemble members 1 and 2 (seeds 2,
    3) at `member_path`, registered as `name` with its `ensemble`; "plain" is the same file without
    one. Returns the registry file, <root>/models/registry.toml."""
    from nepbench.provenance import sha256_file
    from random_models import write_random_model

    model = write_random_model(root / "models" / name / "nep.txt", seed=1)
    members = [write_random_model(root / member_path(name, k), seed=k + 1) for k in (1, 2)]
    entries = ", ".join(f'{{ path = "{member_path(name, k)}", sha256 = "{sha256_file(p)}" }}'
                        for k, p in zip((1, 2), members))
    local = registry_text(name, Path(f"models/{name}/nep.txt"), sha256_file(model), species).replace(
        'kind = "file"', 'kind = "local"')
    plain = local.replace(f"[models.{name}]", "[models.plain]")
    return write_registry(root / "models" / "registry.toml", local + f"ensemble = [{entries}]\n", plain)
