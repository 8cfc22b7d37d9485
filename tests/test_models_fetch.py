"""Fetching registry models: upstream files and pinned wheel members, derived models, the cache, sha256
and header checks on the way, and pip's errors.

Most tests use small random NEP4 models written to tmp_path; one test uses the real NEP89 download
(once per cache: $NEPBENCH_CACHE or ~/.cache/nepbench) and checks that the derived Li–Si–C model
gives the full NEP89's energies and forces. Set NEPBENCH_OFFLINE=1 to skip it without network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from model_registries import one_line, registry_text, write_registry
from nepbench import models
from nepbench.errors import ModelError
from nepbench.models import fetch as fetch_module
from nepbench.provenance import sha256_file
from random_models import write_random_model


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty model cache for this test only."""
    monkeypatch.setenv("NEPBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"

# --------------------------------------------------------------------------- fetch, cache, hashes

def test_fetch_derives_caches_and_verifies(tmp_path, cache):
    from calorine.nep import read_model

    source = write_random_model(tmp_path / "src.txt", species=("Li", "O", "Si", "C"), seed=5)
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
    source = write_random_model(tmp_path / "src.txt", species=("Li", "Si", "O"), seed=1)
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

    source = write_random_model(tmp_path / "src.txt", species=("Li", "O", "Si", "C"), seed=5)
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
    model = write_random_model(tmp_path / "m.txt", seed=2)
    records = _wheel_registry(tmp_path, model)
    wheel = tmp_path / "fakepkg-1.0-py3-none-any.whl"
    monkeypatch.setattr(fetch_module, "_download_wheel", lambda source, dest: Path(shutil.copy(wheel, dest)))
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
        fetch_module._store_verified(stream, record, "origin", tmp_path / "out" / "src.txt")
    assert stream.served == 101 and list((tmp_path / "out").iterdir()) == []

def test_source_hash_mismatch(tmp_path, cache):
    source = write_random_model(tmp_path / "src.txt", seed=6)
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
    source = write_random_model(tmp_path / "src.txt", species=("Li", "O", "Si", "C"), seed=7)
    records = models.load_registry(write_registry(tmp_path / "r.toml", registry_text(
        "tiny", source, sha256_file(source), ("Li", "Si", "C"), keep=("Li", "Si", "C"),
        derived_sha="f" * 64)))
    with pytest.raises(ModelError) as exc:
        models.fetch_model("tiny", records)
    message = one_line(exc)
    assert "tiny/nep.txt" in message and "expected " + "f" * 64 in message
    assert not (cache / "tiny" / "nep.txt").exists()

def test_a_relative_file_source_is_the_registrys_not_the_working_folders(tmp_path, cache, monkeypatch):
    (tmp_path / "upstream").mkdir()
    model = write_random_model(tmp_path / "upstream" / "nep.txt", seed=4)
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

def test_pips_own_reason_is_kept(cache, monkeypatch):
    def pip_refuses(command, **kwargs):
        raise subprocess.CalledProcessError(1, command, stderr="ERROR: Could not find a version\n"
                                            "ERROR: No matching distribution found for neptrainkit==2.5.4\n\n")

    monkeypatch.setattr(subprocess, "run", pip_refuses)
    with pytest.raises(ModelError) as exc:
        models.fetch_model(models.DEFAULT_MODEL)
    assert one_line(exc) == ("could not download neptrainkit==2.5.4 from PyPI (offline?): pip said: "
                             "ERROR: No matching distribution found for neptrainkit==2.5.4")


def test_offline_download_is_one_line(cache, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(ModelError) as exc:
        models.fetch_model(models.DEFAULT_MODEL)
    assert one_line(exc) == "could not download neptrainkit==2.5.4 from PyPI (offline?)"

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
