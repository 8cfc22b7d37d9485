"""Model registry, fetch/derive/cache with hash checks, model-file validation, species checks.

Most tests use small random NEP4 models written to tmp_path; one test uses the real NEP89 download
(once per cache: $NEPBENCH_CACHE or ~/.cache/nepbench) and checks that the derived Li–Si–C model
gives the full NEP89's energies and forces. Set NEPBENCH_OFFLINE=1 to skip it without network.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from nepbench import cli, models
from nepbench.errors import ModelError
from nepbench.provenance import sha256_file

REQUIRED = {"description": str, "source": dict, "source_sha256": str, "species": list,
            "nep_version": str, "licence": str, "citation": str}
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty model cache for this test only."""
    monkeypatch.setenv("NEPBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


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


# --------------------------------------------------------------------------- registry schema

def test_registry_file_schema():
    """Every record in models/registry.toml has the required fields with the right types."""
    raw = tomllib.loads(models.registry_path().read_text())["models"]
    assert models.DEFAULT_MODEL in raw
    for name, table in raw.items():
        for key, kind in REQUIRED.items():
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
])
def test_registry_rejects_bad_records(tmp_path, edit, problem):
    text = registry_text("m", tmp_path / "x.txt", "a" * 64, ("Li", "Si", "C"))
    path = write_registry(tmp_path / "registry.toml", edit(text))
    with pytest.raises(ModelError) as exc:
        models.load_registry(path)
    assert str(path) in one_line(exc) and problem in str(exc.value)


# --------------------------------------------------------------------------- model files

def test_read_header_of_random_models(tmp_path):
    assert models.read_nep_header(models.write_random_model(tmp_path / "a.txt")) == (
        "nep4_zbl", ("Li", "Si", "C"))
    plain = models.write_random_model(tmp_path / "b.txt", species=("C",), zbl_a=None)
    assert models.validate_model_file(plain) == ("nep4", ("C",))


@pytest.fixture
def good_model(tmp_path) -> Path:
    return models.write_random_model(tmp_path / "good.txt", seed=3)


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


# --------------------------------------------------------------------------- fetch, cache, hashes

def test_user_model_resolves_with_header_and_hash(good_model):
    info = models.resolve_model(str(good_model))
    assert info.species == ("Li", "Si", "C") and info.nep_version == "nep4_zbl"
    assert info.sha256 == sha256_file(good_model) and info.source["kind"] == "user-file"


def test_fetch_derives_caches_and_verifies(tmp_path, cache):
    from calorine.nep import read_model

    source = models.write_random_model(tmp_path / "src.txt", species=("Li", "O", "Si", "C"), seed=5)
    expected_derived = tmp_path / "expected.txt"
    read_model(str(source)).keep_species(["Li", "Si", "C"]).write(str(expected_derived))
    registry = write_registry(tmp_path / "r.toml", registry_text(
        "tiny", source, sha256_file(source), ("Li", "Si", "C"), keep=("Li", "Si", "C"),
        derived_sha=sha256_file(expected_derived)))
    records = models.load_registry(registry)

    info = models.resolve_model("tiny", registry=records)
    assert info.path == cache / "tiny" / "nep.txt"
    assert info.path.read_bytes() == expected_derived.read_bytes()
    assert info.sha256 == sha256_file(info.path) and info.species == ("Li", "Si", "C")
    kept = list((cache / "_sources").rglob("src.txt"))
    assert len(kept) == 1 and kept[0].read_bytes() == source.read_bytes()

    # a second resolve uses the cache: the upstream file may even be gone
    mtime = info.path.stat().st_mtime_ns
    source.unlink()
    assert models.resolve_model("tiny", registry=records).path.stat().st_mtime_ns == mtime

    # a tampered cache is refused, naming the file and both hashes
    info.path.write_text(info.path.read_text().replace("e-", "E-", 1))
    with pytest.raises(ModelError) as exc:
        models.resolve_model("tiny", registry=records)
    message = one_line(exc)
    assert str(info.path) in message and f"expected {records['tiny'].sha256}" in message
    assert "got " in message


def test_source_hash_mismatch(tmp_path, cache):
    source = models.write_random_model(tmp_path / "src.txt", seed=6)
    wrong = "0" * 64
    records = models.load_registry(write_registry(
        tmp_path / "r.toml", registry_text("tiny", source, wrong, ("Li", "Si", "C"))))
    with pytest.raises(ModelError) as exc:
        models.fetch_model("tiny", records)
    message = one_line(exc)
    assert str(source) in message and f"expected {wrong}" in message
    assert f"got {sha256_file(source)}" in message
    assert not (cache / "tiny" / "nep.txt").exists()


def test_derived_hash_mismatch(tmp_path, cache):
    source = models.write_random_model(tmp_path / "src.txt", species=("Li", "O", "Si", "C"), seed=7)
    records = models.load_registry(write_registry(tmp_path / "r.toml", registry_text(
        "tiny", source, sha256_file(source), ("Li", "Si", "C"), keep=("Li", "Si", "C"),
        derived_sha="f" * 64)))
    with pytest.raises(ModelError) as exc:
        models.fetch_model("tiny", records)
    message = one_line(exc)
    assert "tiny/nep.txt" in message and "expected " + "f" * 64 in message
    assert not (cache / "tiny" / "nep.txt").exists()


def test_local_model_runs_in_place_and_checks_its_hash(tmp_path, cache, monkeypatch):
    """kind = "local": the committed file itself, sha256 and header checked, never pip, never cached."""
    model = models.write_random_model(tmp_path / "committed.txt", seed=8)
    text = registry_text("mine", model, sha256_file(model), ("Li", "Si", "C")).replace('kind = "file"', 'kind = "local"')
    records = models.load_registry(write_registry(tmp_path / "r.toml", text))
    monkeypatch.setattr(models.sys, "executable", "/nonexistent/python")
    info = models.resolve_model("mine", fetch=False, registry=records)
    assert info.path == model and info.sha256 == sha256_file(model) and info.source["kind"] == "local"
    assert models.fetch_model("mine", records) == model and not cache.exists()

    model.write_text(model.read_text().replace("e-", "E-", 1))
    with pytest.raises(ModelError) as exc:
        models.resolve_model("mine", registry=records)
    message = one_line(exc)
    assert message.startswith(str(model)) and "sha256 mismatch for committed model mine" in message
    assert f"expected {records['mine'].source_sha256}" in message
    model.unlink()
    with pytest.raises(ModelError, match="committed model file of mine not found"):
        models.resolve_model("mine", registry=records)


def test_relative_local_path_is_relative_to_the_repository_root(tmp_path):
    (tmp_path / "models" / "m").mkdir(parents=True)
    model = models.write_random_model(tmp_path / "models" / "m" / "nep.txt", seed=9)
    text = registry_text("m", Path("models/m/nep.txt"), sha256_file(model), ("Li", "Si", "C"))
    registry = write_registry(tmp_path / "models" / "registry.toml", text.replace('kind = "file"', 'kind = "local"'))
    record = models.load_registry(registry)["m"]
    assert models.local_model_path(record) == model


def test_committed_local_models_resolve_offline(tmp_path, monkeypatch):
    """Every kind = "local" model in models/registry.toml is committed, matches its sha256 and
    provenance, and resolves without pip or a cache."""
    monkeypatch.setattr(models.sys, "executable", "/nonexistent/python")
    monkeypatch.setenv("NEPBENCH_CACHE", str(tmp_path / "cache"))
    raw = tomllib.loads(models.registry_path().read_text())["models"]
    records = models.load_registry()
    local = [name for name, record in records.items() if record.source["kind"] == "local"]
    assert "nepbench-lisic-v1" in local
    root = models.registry_path().resolve().parents[1]
    for name in local:
        info = models.resolve_model(name, fetch=False, registry=records)
        assert info.path == root / raw[name]["source"]["path"]
        assert sha256_file(info.path) == records[name].source_sha256
        assert raw[name]["source_size_bytes"] == info.path.stat().st_size
        provenance = raw[name].get("training", {}).get("provenance")
        if provenance:
            record = json.loads((root / provenance).read_text())
            assert record["model_sha256"] == records[name].source_sha256
    assert not (tmp_path / "cache").exists()


def test_offline_download_is_one_line(cache, monkeypatch):
    monkeypatch.setattr(models.sys, "executable", "/nonexistent/python")
    with pytest.raises(ModelError) as exc:
        models.fetch_model(models.DEFAULT_MODEL)
    assert one_line(exc) == "could not download neptrainkit==2.5.4 from PyPI (offline?)"


def test_unknown_and_unfetched_names(cache):
    with pytest.raises(ModelError, match="unknown model 'nep42'.*known: nep89, nep89-lisic"):
        models.resolve_model("nep42")
    with pytest.raises(ModelError, match="is not cached; run `nepbench models fetch nep89-lisic`"):
        models.resolve_model("nep89-lisic", fetch=False)


# --------------------------------------------------------------------------- CLI

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


# --------------------------------------------------------------------------- the real NEP89 files

def real_models() -> tuple[models.ModelInfo, Path]:
    """The derived NEP89-LiSiC model and the full nep89.txt, fetched once into the user cache."""
    if os.environ.get("NEPBENCH_OFFLINE") == "1":
        pytest.skip("NEPBENCH_OFFLINE=1: skipping the test that needs the NEP89 download")
    derived = models.resolve_model(models.DEFAULT_MODEL)
    full = models.fetch_model("nep89")  # a hard link to the cached upstream file
    return derived, full


def mixed_cell(seed: int = 11) -> Atoms:
    """A 96-atom amorphous-like Li–Si–C cell (jittered lattice, 2.55 Å spacing, seeded)."""
    rng = np.random.default_rng(seed)
    grid = np.indices((4, 4, 6)).reshape(3, -1).T * 2.55
    symbols = rng.choice(["Li", "Si", "C"], size=len(grid), p=[0.4, 0.35, 0.25])
    return Atoms(list(symbols), positions=grid + rng.normal(0, 0.15, grid.shape),
                 cell=np.diag([4, 4, 6]) * 2.55 + [[0, 0, 0], [0.4, 0, 0], [0, 0.3, 0]], pbc=True)


def test_derived_model_equals_full_nep89_on_mixed_cell():
    from calorine.calculators import CPUNEP

    derived, full = real_models()
    assert sha256_file(derived.path) == models.load_registry()[models.DEFAULT_MODEL].derived.derived_sha256
    assert models.read_nep_header(full)[1][:3] == ("H", "He", "Li")
    atoms = mixed_cell()
    assert set(atoms.get_chemical_symbols()) == {"Li", "Si", "C"}
    results = []
    for path in (full, derived.path):
        a = atoms.copy()
        a.calc = CPUNEP(str(path))
        results.append((a.get_potential_energy(), a.get_forces(), a.get_stress()))
    (e_full, f_full, s_full), (e_der, f_der, s_der) = results
    assert np.isfinite(e_full) and np.abs(f_full).max() > 0.1  # a real, non-trivial cell
    assert abs(e_full - e_der) <= 1e-9
    assert np.abs(f_full - f_der).max() <= 1e-9
    assert np.abs(s_full - s_der).max() <= 1e-12
