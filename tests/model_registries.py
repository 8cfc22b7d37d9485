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
