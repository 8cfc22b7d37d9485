"""Model registry, fetch/derive/cache with hash checks, model-file validation, species checks.

Most tests use small random NEP4 models written to tmp_path; one test uses the real NEP89 download
(once per cache: $NEPBENCH_CACHE or ~/.cache/nepbench) and checks that the derived Li–Si–C model
gives the full NEP89's energies and forces. Set NEPBENCH_OFFLINE=1 to skip it without network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
import zipfile
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


def test_header_is_checked_before_the_file_enters_the_cache(tmp_path, cache):
    """A file whose header differs from the registry never enters the cache; a file already cached
    (sha256 as registered, e.g. by an older nepbench) is compared with the registry too."""
    source = models.write_random_model(tmp_path / "src.txt", species=("Li", "Si", "O"), seed=1)
    registry = write_registry(tmp_path / "r.toml", registry_text("tiny", source, sha256_file(source),
                                                                ("Li", "Si", "C")))
    records = models.load_registry(registry)
    for _ in range(2):
        with pytest.raises(ModelError) as exc:
            models.resolve_model("tiny", registry=records)
        assert f"header nep4_zbl Li Si O differs from the registry (nep4_zbl Li Si C in {registry})" in one_line(exc)
    assert not (cache / "tiny" / "nep.txt").exists()
    (cache / "tiny").mkdir(parents=True)
    shutil.copy(source, cache / "tiny" / "nep.txt")
    for fetch in (True, False):
        with pytest.raises(ModelError) as exc:
            models.resolve_model("tiny", fetch=fetch, registry=records)
        assert one_line(exc).startswith(f"{cache / 'tiny' / 'nep.txt'}: header nep4_zbl Li Si O differs")


def test_derived_model_with_another_species_order_is_not_cached(tmp_path, cache):
    from calorine.nep import read_model

    source = models.write_random_model(tmp_path / "src.txt", species=("Li", "O", "Si", "C"), seed=5)
    derived = tmp_path / "derived.txt"
    read_model(str(source)).keep_species(["Li", "Si", "C"]).write(str(derived))  # header Li Si C
    records = models.load_registry(write_registry(tmp_path / "r.toml", registry_text(
        "tiny", source, sha256_file(source), ("C", "Li", "Si"), keep=("Li", "Si", "C"),
        derived_sha=sha256_file(derived))))
    for _ in range(2):
        with pytest.raises(ModelError) as exc:
            models.fetch_model("tiny", records)
        assert one_line(exc).startswith(f"{cache / 'tiny' / 'nep.txt'}: header nep4_zbl Li Si C differs")
    assert not (cache / "tiny").exists() or not any((cache / "tiny").iterdir())


def _wheel_registry(tmp_path: Path, model: Path) -> dict[str, models.ModelRecord]:
    text = registry_text("w", model, sha256_file(model), ("Li", "Si", "C")).replace(
        f'{{ kind = "file", path = "{model}" }}',
        '{ kind = "pypi-wheel", package = "fakepkg", version = "1.0", file = "pkg/nep.txt", '
        'python_version = "3.11", platform = "any" }')
    text += f"source_size_bytes = {model.stat().st_size}\n"
    return models.load_registry(write_registry(tmp_path / "r.toml", text))


def test_wheel_member_size_is_checked_before_it_is_decompressed(tmp_path, cache, monkeypatch):
    model = models.write_random_model(tmp_path / "m.txt", seed=2)
    records = _wheel_registry(tmp_path, model)
    wheel = tmp_path / "fakepkg-1.0-py3-none-any.whl"
    monkeypatch.setattr(models, "_download_wheel", lambda source, dest: Path(shutil.copy(wheel, dest)))
    decompressed: list[int] = []
    real_read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        data = real_read(self, n)
        decompressed.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pkg/nep.txt", b"0" * (8 << 20))
    with pytest.raises(ModelError) as exc:
        models.fetch_model("w", records)
    assert one_line(exc) == (f"fakepkg==1.0:pkg/nep.txt: size {8 << 20} bytes, registry expects "
                             f"{model.stat().st_size}")
    assert sum(decompressed) == 0 and not (cache / "w").exists()

    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pkg/nep.txt", model.read_bytes())
    assert models.fetch_model("w", records).read_bytes() == model.read_bytes()
    assert sum(decompressed) == model.stat().st_size


def test_upstream_copy_reads_at_most_one_byte_more_than_registered(tmp_path):
    class Endless:
        """A stream that never ends (a lying archive header, a growing file)."""
        served = 0

        def read(self, n=-1):
            assert n > 0, "never read a whole stream"
            self.served += n
            return b"0" * n

    record = models.ModelRecord(name="x", description="", source={"kind": "file", "path": "x"},
                                source_sha256="0" * 64, species=("Li",), nep_version="nep4", licence="",
                                citation="", source_size_bytes=100)
    stream = Endless()
    with pytest.raises(ModelError, match=r"^origin: size more than 100 bytes, registry expects 100$"):
        models._store_verified(stream, record, "origin", tmp_path / "out" / "src.txt")
    assert stream.served == 101 and list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("name", ["../../../outside", "..", "a/b", ".hidden", "a b", ""])
def test_registry_names_that_could_leave_the_cache_are_refused(tmp_path, cache, name):
    model = models.write_random_model(tmp_path / "m.txt", seed=1)
    path = write_registry(tmp_path / "r.toml", registry_text(json.dumps(name), model, sha256_file(model),
                                                             ("Li", "Si", "C")))
    with pytest.raises(ModelError) as exc:
        models.load_registry(path)
    assert one_line(exc).startswith(f"{path}: model name {name!r} not allowed")
    with pytest.raises(ModelError, match="not allowed"):
        models.cached_model_path(name)
    assert not (tmp_path / "outside").exists()


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


def test_a_relative_file_source_is_the_registrys_not_the_working_folders(tmp_path, cache, monkeypatch):
    (tmp_path / "upstream").mkdir()
    model = models.write_random_model(tmp_path / "upstream" / "nep.txt", seed=4)
    (tmp_path / "models").mkdir()
    registry = write_registry(tmp_path / "models" / "registry.toml",
                              registry_text("mine", Path("upstream/nep.txt"), sha256_file(model), ("Li", "Si", "C")))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # before, the path was read from here: "upstream/nep.txt not found"
    assert models.fetch_model("mine", models.load_registry(registry)).read_bytes() == model.read_bytes()
    (tmp_path / "upstream" / "nep.txt").unlink()
    shutil.rmtree(cache)
    with pytest.raises(ModelError) as exc:
        models.fetch_model("mine", models.load_registry(registry))
    assert one_line(exc) == (f"{tmp_path / 'upstream' / 'nep.txt'}: source file of model mine not found "
                             f"(registry {registry})")


def test_without_a_checkout_the_missing_registry_says_how_to_install(tmp_path, monkeypatch):
    """A wheel install has no models/registry.toml (nor suites or reference data): it said only
    "model registry not found"."""
    monkeypatch.delenv(models.REGISTRY_ENV, raising=False)
    monkeypatch.setattr(models, "_REPO_REGISTRY", tmp_path / "models" / "registry.toml")
    with pytest.raises(ModelError) as exc:
        models.load_registry()
    assert "registry.toml: model registry not found: nepbench runs from its checkout" in one_line(exc)
    assert "pip install -e ." in str(exc.value) and models.REGISTRY_ENV in str(exc.value)


def test_pips_own_reason_is_kept(cache, monkeypatch):
    def pip_refuses(command, **kwargs):
        raise subprocess.CalledProcessError(1, command, stderr="ERROR: Could not find a version\n"
                                            "ERROR: No matching distribution found for neptrainkit==2.5.4\n\n")

    monkeypatch.setattr(models.subprocess, "run", pip_refuses)
    with pytest.raises(ModelError) as exc:
        models.fetch_model(models.DEFAULT_MODEL)
    assert one_line(exc) == ("could not download neptrainkit==2.5.4 from PyPI (offline?): pip said: "
                             "ERROR: No matching distribution found for neptrainkit==2.5.4")


def test_offline_download_is_one_line(cache, monkeypatch):
    monkeypatch.setattr(models.sys, "executable", "/nonexistent/python")
    with pytest.raises(ModelError) as exc:
        models.fetch_model(models.DEFAULT_MODEL)
    assert one_line(exc) == "could not download neptrainkit==2.5.4 from PyPI (offline?)"


def test_unknown_and_unfetched_names(cache):
    with pytest.raises(ModelError, match="unknown model 'nep42'.*known: (.*, )?nep89, nep89-lisic"):
        models.resolve_model("nep42")
    with pytest.raises(ModelError, match="is not cached; run `nepbench models fetch nep89-lisic`"):
        models.resolve_model("nep89-lisic", fetch=False)


# --------------------------------------------------------------------------- registering local models

def _two_models(tmp_path: Path) -> tuple[Path, Path]:
    """<tmp>/models/registry.toml with local models "mine" (m1.txt) then "other"; returns (registry, m1)."""
    (tmp_path / "models").mkdir()
    registry = tmp_path / "models" / "registry.toml"
    m1 = models.write_random_model(tmp_path / "m1.txt", seed=1)
    models.register_local_model("mine", m1, "d", "CC0", "c", registry=registry)
    models.register_local_model("other", models.write_random_model(tmp_path / "o.txt", seed=3), "o", "CC0",
                                "c", registry=registry)
    return registry, m1


@pytest.mark.parametrize("edit", [
    lambda t: t.replace("licence =", "# licence checked by X\nlicence =", 1),  # comment inside the table
    lambda t: t.replace("[models.mine]", "[models.mine]  # v1"),  # comment after the header
    lambda t: t.replace("[models.mine]", '[ models . "mine" ]'),  # quoted key, spaces
    lambda t: t.replace('description = "d"', 'description = """d\n[models.fake]\n"""', 1),
    lambda t: t.replace("\n\n[models.other]", "\n[models.mine.training]\nsteps = 6\n\n[models.other]"),
], ids=["comment-inside", "comment-after-header", "quoted-key", "header-in-string", "sub-table"])
def test_reregistering_replaces_the_whole_table_whatever_its_layout(tmp_path, edit):
    registry, _ = _two_models(tmp_path)
    text = edit(registry.read_text()).replace("[models.other]", "# the next model\n[models.other]")
    registry.write_text(text)
    before = models.load_registry(registry)
    m2 = models.write_random_model(tmp_path / "m2.txt", seed=2)
    record = models.register_local_model("mine", m2, "d2", "CC0", "c", registry=registry)
    after = models.load_registry(registry)
    assert record.sha256 == after["mine"].sha256 == sha256_file(m2) and after["other"] == before["other"]
    assert set(tomllib.loads(registry.read_text())["models"]["mine"]) == set(REQUIRED) | {"source_size_bytes"}
    assert "# the next model\n[models.other]" in registry.read_text()
    assert (tmp_path / "models" / "mine" / "nep.txt").read_bytes() == m2.read_bytes()


def test_registration_refuses_unsafe_names(tmp_path):
    registry, _ = _two_models(tmp_path)
    before = registry.read_text()
    for name in ("mine/v2", "../up", "a b"):
        with pytest.raises(ModelError) as exc:
            models.register_local_model(name, tmp_path / "m1.txt", "d", "CC0", "c", registry=registry)
        assert one_line(exc).startswith(f"{registry}: model name {name!r} not allowed")
    assert registry.read_text() == before and sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "mine", "other", "registry.toml"]


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_failed_registry_write_restores_the_model_file(tmp_path, monkeypatch, hard_links):
    registry, m1 = _two_models(tmp_path)
    before = registry.read_text()
    m2 = models.write_random_model(tmp_path / "m2.txt", seed=2)
    real_write = models.atomic_write_bytes

    def full_disk(path, data):
        if Path(path) == registry:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    def no_link(source, target):
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(models, "atomic_write_bytes", full_disk)
    if not hard_links:
        monkeypatch.setattr(models.os, "link", no_link)
    for name in ("mine", "new"):
        with pytest.raises(OSError, match="No space left"):
            models.register_local_model(name, m2, "d", "CC0", "c", registry=registry)
    monkeypatch.undo()
    assert registry.read_text() == before and not (tmp_path / "models" / "new").exists()
    assert os.listdir(tmp_path / "models" / "mine") == ["nep.txt"]  # no backup left behind
    assert (tmp_path / "models" / "mine" / "nep.txt").read_bytes() == m1.read_bytes()
    info = models.resolve_model("mine", fetch=False, registry=models.load_registry(registry))
    assert info.sha256 == sha256_file(m1)


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


@pytest.mark.parametrize("row, cutoff", [("cutoff 6 5 274 158", 6.0), ("cutoff 4.2 5.5 100 50", 5.5),
                                         ("cutoff 7 4", 7.0)])
def test_the_models_cutoff_is_its_largest_radius(tmp_path, row, cutoff):
    model = models.write_random_model(tmp_path / "nep.txt", species=("Li", "Si"), seed=0)
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
