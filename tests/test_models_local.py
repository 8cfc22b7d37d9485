"""Models committed to the repository (source kind "local"): run in place with their sha256 checked,
never fetched or cached; and registering a trained model (`register_local_model`)."""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path

import pytest

from model_registries import one_line, registry_text, write_registry
from nepbench import models
from nepbench.errors import ModelError
from nepbench.models import local as local_module
from nepbench.provenance import sha256_file
from random_models import write_random_model

REQUIRED = {"description": str, "source": dict, "source_sha256": str, "species": list,
            "nep_version": str, "licence": str, "citation": str}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty model cache for this test only."""
    monkeypatch.setenv("NEPBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"

# --------------------------------------------------------------------------- committed models

def test_local_model_runs_in_place_and_checks_its_hash(tmp_path, cache, monkeypatch):
    """kind = "local": the committed file itself, sha256 and header checked, never pip, never cached."""
    model = write_random_model(tmp_path / "committed.txt", seed=8)
    text = registry_text("mine", model, sha256_file(model), ("Li", "Si", "C")).replace('kind = "file"', 'kind = "local"')
    records = models.load_registry(write_registry(tmp_path / "r.toml", text))
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
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
    model = write_random_model(tmp_path / "models" / "m" / "nep.txt", seed=9)
    text = registry_text("m", Path("models/m/nep.txt"), sha256_file(model), ("Li", "Si", "C"))
    registry = write_registry(tmp_path / "models" / "registry.toml", text.replace('kind = "file"', 'kind = "local"'))
    record = models.load_registry(registry)["m"]
    assert models.local_model_path(record) == model


def test_committed_local_models_resolve_offline(tmp_path, monkeypatch):
    """Every kind = "local" model in models/registry.toml is committed, matches its sha256 and
    provenance, and resolves without pip or a cache."""
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
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

# --------------------------------------------------------------------------- registering local models

def _two_models(tmp_path: Path) -> tuple[Path, Path]:
    """<tmp>/models/registry.toml with local models "mine" (m1.txt) then "other"; returns (registry, m1)."""
    (tmp_path / "models").mkdir()
    registry = tmp_path / "models" / "registry.toml"
    m1 = write_random_model(tmp_path / "m1.txt", seed=1)
    models.register_local_model("mine", m1, "d", "CC0", "c", registry=registry)
    models.register_local_model("other", write_random_model(tmp_path / "o.txt", seed=3), "o", "CC0",
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
    m2 = write_random_model(tmp_path / "m2.txt", seed=2)
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
    m2 = write_random_model(tmp_path / "m2.txt", seed=2)
    real_write = local_module.atomic_write_bytes

    def full_disk(path, data):
        if Path(path) == registry:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    def no_link(source, target):
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(local_module, "atomic_write_bytes", full_disk)
    if not hard_links:
        monkeypatch.setattr(os, "link", no_link)
    for name in ("mine", "new"):
        with pytest.raises(OSError, match="No space left"):
            models.register_local_model(name, m2, "d", "CC0", "c", registry=registry)
    monkeypatch.undo()
    assert registry.read_text() == before and not (tmp_path / "models" / "new").exists()
    assert os.listdir(tmp_path / "models" / "mine") == ["nep.txt"]  # no backup left behind
    assert (tmp_path / "models" / "mine" / "nep.txt").read_bytes() == m1.read_bytes()
    info = models.resolve_model("mine", fetch=False, registry=models.load_registry(registry))
    assert info.sha256 == sha256_file(m1)
