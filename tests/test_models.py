"""Model registry schema and names, model-file validation, species checks, resolving user models, and
the `nepbench models` CLI. Fetching and the cache: test_models_fetch.py; committed (local) models and
registration: test_models_local.py. The models are small random NEP4 files written to tmp_path.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from model_registries import one_line, registry_text, write_registry
from nepbench import cli, models
from nepbench.errors import ModelError
from nepbench.models import registry as registry_module
from nepbench.provenance import sha256_file
from random_models import write_random_model

REQUIRED = {"description": str, "source": dict, "source_sha256": str, "species": list,
            "nep_version": str, "licence": str, "citation": str}
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty model cache for this test only."""
    monkeypatch.setenv("NEPBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"

@pytest.fixture
def good_model(tmp_path) -> Path:
    return write_random_model(tmp_path / "good.txt", seed=3)

# --------------------------------------------------------------------------- registry schema

def test_registry_file_schema():
    """Every record in models/registry.toml has the required fields with the right types."""
    raw = tomllib.loads(models.registry_path().read_text())["models"]
    assert models.DEFAULT_MODEL in raw
    for name, table in raw.items():
        for key, kind in REQUIRED.items():
            if key == "nep_version" and table["source"]["kind"] == models.ASE_KIND:
                assert key not in table, name  # a comparator is no NEP (tests/test_ase_calc.py checks the rest)
                continue
            assert isinstance(table.get(key), kind), f"{name}.{key} missing or not {kind.__name__}"
        assert HEX64.match(table["source_sha256"]), name
        assert table["source"]["kind"] in models.SOURCE_KINDS
        if "derived" in table:
            assert HEX64.match(table["derived"]["derived_sha256"]), name
            assert set(table["derived"]["keep_species"]) == set(table["species"])
    records = models.load_registry()
    default = records[models.DEFAULT_MODEL]
    assert default.species == ("Li", "C", "Si")  # header order written by calorine
    assert default.source_size_bytes == 15_622_195
    assert default.source["package"] == "neptrainkit" and default.source["version"] == "2.5.4"
    assert default.sha256 == default.derived.derived_sha256 != default.source_sha256
    assert len(records["nep89"].species) == 89


def test_registry_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "registry.toml"
    path.write_bytes(b"# \xff\n[models]\n")
    with pytest.raises(ModelError, match="not UTF-8") as exc:
        models.load_registry(path)
    assert str(path) in one_line(exc)


@pytest.mark.parametrize("edit, problem", [
    (lambda t: t.replace('licence = "CC0"\n', ""), "missing field 'licence'"),
    (lambda t: t.replace('"' + "a" * 64 + '"', '"ABC"'), "64 lower-case hex"),
    (lambda t: t.replace('["Li", "Si", "C"]', '["Li", "Xx"]'), "unknown element"),
    (lambda t: t.replace('kind = "file"', 'kind = "ftp"'), "source kind 'ftp' unknown"),
    (lambda t: t.replace('nep_version = "nep4_zbl"', "nep_version = 4"), "must be str"),
    # misspelt keys and tables were ignored: a lost size guard, a model dropped from the list
    (lambda t: t + "source_size_byte = 1\n", "[models.m]: unknown key(s) source_size_byte"),
    (lambda t: t.replace("[models.m]", "[modles.x]\n[models.m]"), "unknown key(s) modles (known: models)"),
    (lambda t: t.replace('kind = "file"', 'kind = "file", sha = "x"'), ".source (file): unknown key(s) sha"),
    (lambda t: t + 'derived = { keep_species = ["Li", "Si", "C"], derived_sha256 = "' + "b" * 64 + '", too = "x" }\n',
     ".derived: unknown key(s) too"),
])
def test_registry_rejects_bad_records(tmp_path, edit, problem):
    text = registry_text("m", tmp_path / "x.txt", "a" * 64, ("Li", "Si", "C"))
    path = write_registry(tmp_path / "registry.toml", edit(text))
    with pytest.raises(ModelError) as exc:
        models.load_registry(path)
    assert str(path) in one_line(exc) and problem in str(exc.value)

@pytest.mark.parametrize("name", ["../../../outside", "..", "a/b", ".hidden", "a b", ""])
def test_registry_names_that_could_leave_the_cache_are_refused(tmp_path, cache, name):
    model = write_random_model(tmp_path / "m.txt", seed=1)
    path = write_registry(tmp_path / "r.toml", registry_text(json.dumps(name), model, sha256_file(model),
                                                             ("Li", "Si", "C")))
    with pytest.raises(ModelError) as exc:
        models.load_registry(path)
    assert one_line(exc).startswith(f"{path}: model name {name!r} not allowed")
    with pytest.raises(ModelError, match="not allowed"):
        models.cached_model_path(name)
    assert not (tmp_path / "outside").exists()

def test_without_a_checkout_the_missing_registry_says_how_to_install(tmp_path, monkeypatch):
    """A wheel install has no models/registry.toml (nor suites or reference data): it said only
    "model registry not found"."""
    monkeypatch.delenv(models.REGISTRY_ENV, raising=False)
    monkeypatch.setattr(registry_module, "_REPO_REGISTRY", tmp_path / "models" / "registry.toml")
    with pytest.raises(ModelError) as exc:
        models.load_registry()
    assert "registry.toml: model registry not found: nepbench runs from its checkout" in one_line(exc)
    assert "pip install -e ." in str(exc.value) and models.REGISTRY_ENV in str(exc.value)

# --------------------------------------------------------------------------- model files

def test_read_header_of_random_models(tmp_path):
    assert models.read_nep_header(write_random_model(tmp_path / "a.txt")) == (
        "nep4_zbl", ("Li", "Si", "C"))
    plain = write_random_model(tmp_path / "b.txt", species=("C",), zbl_a=None)
    assert models.validate_model_file(plain) == ("nep4", ("C",))

def _rewrite(path: Path, edit) -> Path:
    lines = path.read_text().splitlines()
    out = path.with_name("bad_" + path.name)
    out.write_text("\n".join(edit(lines)) + "\n")
    return out


@pytest.mark.parametrize("edit, problem", [
    (lambda lines: [], "empty model file"),
    (lambda lines: lines[:-25], "truncated"),
    (lambda lines: lines + ["0.5"], "extra or corrupted"),
    (lambda lines: ["potential 3 Li Si C"] + lines[1:], "unknown header"),
    (lambda lines: ["nep4_zbl 3 Li Si"] + lines[1:], "declares 3 species but lists 2"),
    (lambda lines: ["nep4_zbl 3 Li Si Qq"] + lines[1:], "unknown element(s) Qq"),
    (lambda lines: ["nep4_dipole 3 Li Si C"] + lines[1:], "unsupported model type"),
    (lambda lines: lines[:40] + ["nan"] + lines[41:], "non-finite parameter"),
    (lambda lines: lines[:40] + ["1.0 2.0"] + lines[41:], "is not one number"),
    (lambda lines: lines[:1] + ["zbl nan nan"] + lines[2:], "line 2: non-finite zbl value"),
    (lambda lines: lines[:1] + ["zbl -1 2"] + lines[2:], "line 2: zbl values must be positive"),
    (lambda lines: lines[:2] + ["cutoff 0 0 0 0"] + lines[3:], "line 3: cutoff values must be positive"),
    (lambda lines: lines[:2] + ["cutoff -1 4 200 100"] + lines[3:], "cutoff values must be positive"),
    (lambda lines: lines[:2] + ["cutoff inf 4 200 100"] + lines[3:], "non-finite cutoff value"),
    (lambda lines: lines[:2] + ["cutoff 5 x 200 100"] + lines[3:], "cutoff values must be numbers"),
    (lambda lines: lines[:3] + ["n_max -1 4"] + lines[4:], "n_max values must be integers >= 0"),
    (lambda lines: lines[:5] + ["l_max 4 2.5 0"] + lines[6:], "l_max values must be integers >= 0"),
    (lambda lines: [lines[0], lines[2], lines[1]] + lines[3:], "line 2: expected 'zbl <values>'"),
])
def test_malformed_models_are_one_line_errors(good_model, edit, problem):
    models.validate_model_file(good_model)  # the unedited file is fine
    bad = _rewrite(good_model, edit)
    with pytest.raises(ModelError) as exc:
        models.validate_model_file(bad)
    message = one_line(exc)
    assert message.startswith(str(bad)) and problem in message


def test_nan_line_number_is_reported(good_model):
    bad = _rewrite(good_model, lambda lines: lines[:100] + ["inf"] + lines[101:])
    with pytest.raises(ModelError, match="first at line 101"):
        models.validate_model_file(bad)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        models.resolve_model(str(tmp_path / "nope.txt"))

@pytest.mark.parametrize("row, cutoff", [("cutoff 6 5 274 158", 6.0), ("cutoff 4.2 5.5 100 50", 5.5),
                                         ("cutoff 7 4", 7.0)])
def test_the_models_cutoff_is_its_largest_radius(tmp_path, row, cutoff):
    model = write_random_model(tmp_path / "nep.txt", species=("Li", "Si"), seed=0)
    lines = model.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("cutoff"))
    lines[index] = row
    model.write_text("\n".join(lines) + "\n")
    assert models.read_nep_cutoff_a(model) == cutoff


def test_a_model_without_a_cutoff_row_is_named(tmp_path):
    model = tmp_path / "nep.txt"
    model.write_text("nep4 2 Li Si\nn_max 4 4\n")
    with pytest.raises(ModelError, match=r"nep\.txt: line 2: expected 'cutoff"):
        models.read_nep_cutoff_a(model)

# --------------------------------------------------------------------------- species

def test_species_mismatch_lists_missing_species(good_model):
    info = models.resolve_model(str(good_model))
    atoms = Atoms("LiSiOFe", positions=np.eye(4, 3) * 2.0, cell=[8, 8, 8], pbc=True)
    with pytest.raises(ModelError) as exc:
        models.check_species(info, atoms, "cells/mixed.extxyz")
    message = one_line(exc)
    assert message.startswith("cells/mixed.extxyz: species Fe, O not in model good.txt")
    assert "which has Li, Si, C" in message
    models.check_species(info, Atoms("LiC", positions=[[0, 0, 0], [2, 0, 0]]), "ok.xyz")

# --------------------------------------------------------------------------- resolving

def test_user_model_resolves_with_header_and_hash(good_model):
    info = models.resolve_model(str(good_model))
    assert info.species == ("Li", "Si", "C") and info.nep_version == "nep4_zbl"
    assert info.sha256 == sha256_file(good_model) and info.source["kind"] == "user-file"

def test_unknown_and_unfetched_names(cache):
    with pytest.raises(ModelError, match="unknown model 'nep42'.*known: (.*, )?nep89, nep89-lisic"):
        models.resolve_model("nep42")
    with pytest.raises(ModelError, match="is not cached; run `nepbench models fetch nep89-lisic`"):
        models.resolve_model("nep89-lisic", fetch=False)

# --------------------------------------------------------------------------- CLI

def test_cli_models_list_does_not_call_a_tampered_cache_file_cached(cache, capsys):
    target = models.cached_model_path("nep89-lisic")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("not the registry's file\n")
    assert cli.main(["models", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("nep89-lisic "))
    assert "BAD sha256" in line and " cached " not in line


def test_cli_models_list_show_and_errors(tmp_path, cache, capsys, good_model):
    assert cli.main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "nep89-lisic" in out and "not cached" in out and "(default)" in out
    assert cli.main(["models", "show", "nep89-lisic"]) == 0
    out = capsys.readouterr().out
    assert "2d6ef72bbad66d0478ae20f5b11bee57ae3da7700f5a689a35133d4be6b0b64b" in out
    assert "neptrainkit==2.5.4" in out and "not fetched" in out
    assert cli.main(["models", "show", str(good_model)]) == 0
    assert "species     Li Si C" in capsys.readouterr().out
    assert cli.main(["models", "fetch", "nep42"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nepbench: error: unknown model 'nep42'")
