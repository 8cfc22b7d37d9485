"""A registered seed ensemble in the parity task: the registry's `ensemble` list (parsed, each file
checked where the model resolves), `nepbench train --register` writing it, the parity metrics of the
ensemble's force spread beside the error, and the report's error-vs-σ figure.

Small seeded random NEP4 models (tests/random_models.py) stand in for trained members: different
seeds give different forces, so the spread is non-zero. The expected numbers are computed here from
calorine's CPUNEP calculator and numpy/scipy, independently of nepbench's engine and metric code.
"""

from __future__ import annotations

import json
import tomllib
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from scipy.stats import spearmanr

from model_registries import member_path, one_line, write_ensemble_registry, write_registry
from nepbench import models
from nepbench.commands import train as train_command
from nepbench.engines.nep_cpu import NepCpuEngine, check_cell
from nepbench.errors import ModelError
from nepbench.files import json_document
from nepbench.models import EnsembleMember
from nepbench.provenance import sha256_file
from nepbench.report.figures import record_figures
from nepbench.report.plots.parity import error_vs_sigma_png
from nepbench.spec import TaskSpec
from nepbench.structures import with_labels
from nepbench.tasks import TaskContext, parity
from random_models import cpunep_forces, write_random_model

SPECIES = ("Li", "Si", "C")
NEW_KEYS = ("force_sigma_rms_mev_per_a", "force_sigma_error_spearman", "ensemble_members")


def _member_path(k: int) -> str:
    return member_path("m", k)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """<root>/models/m/nep.txt (seed 1) with members 1 and 2 (seeds 2, 3) and a registry listing
    them; "plain" is the same model without an ensemble. Returns the registry file."""
    return write_ensemble_registry(tmp_path_factory.mktemp("repo"), "m", SPECIES)


def _frames(seeds, labeller: Path) -> list[Atoms]:
    """27-atom Li-Si-C cells labelled by another random model (the stand-in "DFT")."""
    from calorine.calculators import CPUNEP

    out = []
    for seed in seeds:
        atoms = check_cell(SPECIES, n_side=3, seed=seed)
        atoms.calc = CPUNEP(str(labeller))
        labelled = with_labels(atoms, atoms.get_potential_energy(), atoms.get_forces(), None)
        labelled.info["motif"] = "amorphous" if seed % 2 else "crystalline"
        out.append(labelled)
    return out


@pytest.fixture(scope="module")
def frames(repo) -> tuple[list[Atoms], list[Atoms]]:
    labeller = write_random_model(repo.parent.parent / "labeller.txt", seed=9, weight_scale=0.4)
    return _frames(range(10, 15), labeller), _frames(range(20, 24), labeller)


@pytest.fixture(scope="module")
def member_files(repo) -> list[Path]:
    root = repo.parent.parent
    return [root / "models" / "m" / "nep.txt", root / _member_path(1), root / _member_path(2)]


@pytest.fixture(scope="module")
def outcomes(member_files, frames):
    """Parity of model m on the 5 test frames: (with its 2 further members, without)."""
    test, train = frames
    engine = NepCpuEngine(member_files[0])
    return (parity.parity_outcome(engine, test, train, "5 frames", "frames.extxyz",
                                  ensemble=[NepCpuEngine(p) for p in member_files[1:]]),
            parity.parity_outcome(engine, test, train, "5 frames"))


# --------------------------------------------------------------------------- the registry field

def test_the_registry_lists_the_members_and_resolving_checks_and_names_them(repo):
    records = models.load_registry(repo)
    root = repo.parent.parent
    assert records["m"].ensemble == tuple(EnsembleMember(_member_path(k), sha256_file(root / _member_path(k)))
                                          for k in (1, 2))
    assert records["plain"].ensemble == ()
    info = models.resolve_model("m", fetch=False, registry=records)
    assert info.ensemble == (root / _member_path(1), root / _member_path(2))
    assert models.resolve_model("plain", fetch=False, registry=records).ensemble == ()
    # a user's file never has one
    assert models.resolve_model(str(root / "models" / "m" / "nep.txt")).ensemble == ()


def test_a_member_that_changed_or_is_missing_is_one_line_naming_its_file(repo, tmp_path):
    root = tmp_path
    (root / "models").mkdir()
    text = repo.read_text()
    for k in (0, 1, 2):
        relative = "models/m/nep.txt" if k == 0 else _member_path(k)
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes((repo.parent.parent / relative).read_bytes())
    records = models.load_registry(write_registry(root / "models" / "registry.toml", text))
    member = root / _member_path(2)
    member.write_text(member.read_text().replace("e-", "E-", 1))  # same numbers, other bytes
    with pytest.raises(ModelError) as exc:
        models.resolve_model("m", registry=records)
    message = one_line(exc)
    assert message.startswith(str(member)) and "sha256 mismatch for ensemble member 2 of m" in message
    assert f"expected {records['m'].ensemble[1].sha256}" in message
    member.unlink()
    with pytest.raises(ModelError) as exc:
        models.resolve_model("m", registry=records)
    assert one_line(exc).startswith(str(member)) and "not found" in str(exc.value)


@pytest.mark.parametrize("change, phrase", [
    (lambda t: t.replace('kind = "local"', 'kind = "file"'), "ensemble is for models trained here"),
    (lambda t: t.replace(f'path = "{_member_path(1)}"', 'path = "/abs/nep.txt"'), "must be relative"),
    (lambda t: t.replace(f'path = "{_member_path(1)}"', 'path = "../nep.txt"'), "must be relative"),
    (lambda t: t.replace(f'path = "{_member_path(1)}"', 'path = "models/m/nep.txt"'), "model's own file"),
    (lambda t: t.replace(f'path = "{_member_path(2)}"', f'path = "{_member_path(1)}"'), "another member's"),
    (lambda t: t.replace(', sha256 = "', ', sha256 = "x', 1), "sha256 must be 64 lower-case hex digits"),
    (lambda t: t.replace(', sha256 = "', ', seed = 1, sha256 = "', 1), "unknown key(s) seed"),
    (lambda t: t[:t.index("ensemble = [")] + "ensemble = []\n" + t[t.index("[models.plain]"):],
     "non-empty list"),
])
def test_a_malformed_ensemble_is_one_line_naming_the_registry(repo, tmp_path, change, phrase):
    bad = write_registry(tmp_path / "registry.toml", change(repo.read_text()))
    with pytest.raises(ModelError) as exc:
        models.load_registry(bad)
    message = one_line(exc)
    assert message.startswith(f"{bad} [models.m]") and phrase in message


# --------------------------------------------------------------------------- parity metrics

def _expected(paths, test) -> dict[str, object]:
    """σ per atom, per-frame σ and error, ρ: calorine CPUNEP forces, numpy and scipy."""
    forces = cpunep_forces(paths, test)  # (members, atoms, 3), eV/Å
    ref = np.concatenate([a.get_forces() for a in test])
    sigma = np.sqrt(np.var(forces, axis=0, ddof=1).mean(axis=1))
    edges = np.cumsum([0] + [len(a) for a in test])
    frame_sigma = [1000 * np.sqrt(np.mean(sigma[a:b] ** 2)) for a, b in pairwise(edges)]
    frame_error = [1000 * np.sqrt(np.mean((forces[0][a:b] - ref[a:b]) ** 2)) for a, b in pairwise(edges)]
    return {"sigma_rms": 1000 * np.sqrt(np.mean(sigma ** 2)), "frame_sigma": frame_sigma,
            "frame_error": frame_error, "rho": spearmanr(frame_sigma, frame_error).statistic}


def test_parity_reports_the_ensemble_spread_beside_the_error(member_files, frames, outcomes):
    test, _ = frames
    outcome = outcomes[0]
    expected = _expected(member_files, test)
    m = outcome.metrics
    assert expected["sigma_rms"] > 10  # the members disagree: a spread worth testing
    assert m["force_sigma_rms_mev_per_a"] == pytest.approx(expected["sigma_rms"], rel=1e-6)
    assert m["force_sigma_error_spearman"] == pytest.approx(expected["rho"], abs=1e-9)
    assert m["ensemble_members"] == 3
    block = outcome.series["ensemble"]
    assert block["frame_sigma_mev_per_a"] == pytest.approx(expected["frame_sigma"], rel=1e-6)
    assert block["frame_force_rmse_mev_per_a"] == pytest.approx(expected["frame_error"], rel=1e-6)
    assert block["frame_motif"] == [a.info["motif"] for a in test] and block["members"] == 3
    # the per-frame errors add up to the recorded force RMSE (equal-sized frames)
    assert np.sqrt(np.mean(np.square(block["frame_force_rmse_mev_per_a"]))) == pytest.approx(
        m["force_rmse_mev_per_a"], rel=1e-9)
    assert {outcome.metric_units[k] for k in ("force_sigma_rms_mev_per_a", "ensemble_members")} == {"meV/Å", "models"}
    assert "Spearman" in outcome.metric_units["force_sigma_error_spearman"]
    assert "3 seed-ensemble members" in outcome.method and "across-member force variance" in outcome.method
    assert json.loads(json_document(outcome.series))["ensemble"]["members"] == 3  # as a record holds it


def test_rho_over_fewer_than_three_frames_is_a_reason_not_a_number(repo, frames):
    test, train = frames
    root = repo.parent.parent
    outcome = parity.parity_outcome(NepCpuEngine(root / "models" / "m" / "nep.txt"), test[:2], train, "2 frames",
                                    ensemble=[NepCpuEngine(root / _member_path(1))])
    assert outcome.metrics["ensemble_members"] == 2 and outcome.metrics["force_sigma_rms_mev_per_a"] > 0
    assert "force_sigma_error_spearman" not in outcome.metrics
    assert "2 frame(s)" in outcome.metric_reasons["force_sigma_error_spearman"]


def test_a_model_without_an_ensemble_records_nothing_new(outcomes):
    outcome = outcomes[1]
    for key in NEW_KEYS:
        assert key not in outcome.metrics and key not in outcome.metric_units and key not in outcome.metric_reasons
    assert "ensemble" not in outcome.series and "ensemble" not in outcome.method


def _context(repo, tmp_path, name="m", sha=None, kind="local") -> TaskContext:
    model = repo.parent / "m" / "nep.txt"
    return TaskContext(tmp_path, tmp_path / "reference", model, name, sha or sha256_file(model),
                       model_source={"kind": kind, "path": "models/m/nep.txt"})


def test_run_parity_takes_the_members_from_the_registry(repo, frames, tmp_path, monkeypatch):
    """The task's model is looked up in the registry: its members join; a model without, a user's
    file or a table re-registered since the task's model resolved do not (the last is an error)."""
    from nepbench import reference

    monkeypatch.setenv("NEPBENCH_REGISTRY", str(repo))
    test, train = frames
    monkeypatch.setattr(reference, "load_frames", lambda d, split, motifs=None: test[:3] if split == "test" else train)
    root = repo.parent.parent
    assert parity.ensemble_paths(_context(repo, tmp_path)) == (root / _member_path(1), root / _member_path(2))
    assert parity.ensemble_paths(_context(repo, tmp_path, name="plain")) == ()
    assert parity.ensemble_paths(_context(repo, tmp_path, name="nep.txt", kind="user-file")) == ()
    with pytest.raises(ModelError, match=r"now registers sha256 .* so its ensemble belongs to another model"):
        parity.ensemble_paths(_context(repo, tmp_path, sha="0" * 64))

    outcome = parity.run_parity(TaskSpec("parity-m", "parity", "parity"), _context(repo, tmp_path))
    assert outcome.status == "done" and outcome.metrics["ensemble_members"] == 3
    direct = parity.parity_outcome(NepCpuEngine(root / "models" / "m" / "nep.txt"), test[:3], train, "3 frames",
                                   ensemble=[NepCpuEngine(root / _member_path(k)) for k in (1, 2)])
    assert outcome.metrics["force_sigma_rms_mev_per_a"] == pytest.approx(direct.metrics["force_sigma_rms_mev_per_a"])
    plain = parity.run_parity(TaskSpec("parity-p", "parity", "parity"), _context(repo, tmp_path, name="plain"))
    assert plain.status == "done" and not set(NEW_KEYS) & set(plain.metrics)


# --------------------------------------------------------------------------- the report figure

def _record(outcome, task_id="parity-m") -> dict:
    """A result record of `outcome` as the report reads it, without the force and energy parity blocks
    (their figures are tested elsewhere, and drawing them is slow on a busy machine)."""
    series = {k: v for k, v in json.loads(json_document(outcome.series)).items() if k not in ("forces", "energy")}
    return {"task_id": task_id, "task_type": "parity", "status": "done", "model": {"name": "m"},
            "series": series, "metrics": outcome.metrics,
            "provenance": {"data_sha256": "ab" * 32, "data_files": ["dft/frames.extxyz"]}}


def test_the_report_draws_error_vs_sigma_with_rho_in_the_caption(outcomes):
    outcome, without = outcomes
    figures = {f["file"]: f for f in record_figures(_record(outcome))}
    figure = figures["figures/parity-m-uncertainty.png"]
    rho = outcome.metrics["force_sigma_error_spearman"]
    assert f"Spearman ρ = {rho:.2f} over 5 frames; 3 members" in figure["caption"]
    assert "series ensemble of task parity-m" in figure["caption"] and figure["png"].startswith(b"\x89PNG")

    assert not [f for f in record_figures(_record(without)) if f["file"].endswith("-uncertainty.png")]
    assert error_vs_sigma_png(without.series) is None
    broken = _record(outcome)
    broken["series"]["ensemble"]["frame_sigma_mev_per_a"].pop()
    problems: list[str] = []
    assert not [f for f in record_figures(broken, problems) if f["file"].endswith("-uncertainty.png")]
    assert any("uncertainty.png not drawn" in p and "5 frame errors" in p for p in problems)


# --------------------------------------------------------------------------- registration

def _training_out(root: Path, n_members: int) -> tuple[Path, dict]:
    """A recipe's --out folder under <root>/models/x/training: nep.txt and members/member-K/nep.txt."""
    out = root / "models" / "x" / "training"
    write_random_model(out / "nep.txt", seed=30)
    for k in range(1, n_members):
        write_random_model(out / "members" / f"member-{k}" / "nep.txt", seed=30 + k)
    record = {"training_data": {"n_train_frames": 4, "n_test_frames": 2, "reference_data_sha256": "ab" * 32},
              "trainer": {"name": "neppo", "version": "1.0"}, "steps": 4, "seed": 5, "wall_s": 1.0,
              "members": [{"seed": 5 + k} for k in range(n_members)]}
    return out, record


def test_register_copies_the_members_and_lists_them(tmp_path, monkeypatch, capsys):
    registry = tmp_path / "models" / "registry.toml"
    monkeypatch.setenv("NEPBENCH_REGISTRY", str(registry))
    out, record = _training_out(tmp_path, 3)
    train_command.register_trained_model("x", out, record)
    table = tomllib.loads(registry.read_text())["models"]["x"]
    assert table["ensemble"] == [{"path": f"models/x/members/member-{k}/nep.txt",
                                  "sha256": sha256_file(out / "members" / f"member-{k}" / "nep.txt")} for k in (1, 2)]
    info = models.resolve_model("x")
    assert info.ensemble == tuple(tmp_path / f"models/x/members/member-{k}/nep.txt" for k in (1, 2))
    assert [p.read_bytes() for p in info.ensemble] == [
        (out / "members" / f"member-{k}" / "nep.txt").read_bytes() for k in (1, 2)]
    assert "with 2 further ensemble member(s)" in capsys.readouterr().out

    # a smaller ensemble replaces it and its stale member file goes; a single model lists none
    train_command.register_trained_model("x", out, {**record, "members": record["members"][:2]})
    assert len(models.resolve_model("x").ensemble) == 1
    assert not (tmp_path / "models/x/members/member-2").exists()
    train_command.register_trained_model("x", out, {k: v for k, v in record.items() if k != "members"})
    assert "ensemble" not in tomllib.loads(registry.read_text())["models"]["x"]
    assert models.resolve_model("x").ensemble == () and not (tmp_path / "models/x/members").exists()


def test_register_refuses_a_missing_or_foreign_member_and_writes_nothing(tmp_path, monkeypatch):
    registry = tmp_path / "models" / "registry.toml"
    monkeypatch.setenv("NEPBENCH_REGISTRY", str(registry))
    out, record = _training_out(tmp_path, 3)
    (out / "members" / "member-2" / "nep.txt").unlink()
    with pytest.raises(ModelError) as exc:
        train_command.register_trained_model("x", out, record)
    assert one_line(exc).startswith(str(out / "members" / "member-2" / "nep.txt")) and "not found" in str(exc.value)
    write_random_model(out / "members" / "member-2" / "nep.txt", species=("Li", "Si"), seed=2)
    with pytest.raises(ModelError, match=r"member-2/nep.txt: header nep4_zbl Li Si differs from member 0's"):
        train_command.register_trained_model("x", out, record)
    assert not registry.exists() and not (tmp_path / "models" / "x" / "members").exists()


def test_new_or_changed_members_change_the_tasks_cache_key(repo, tmp_path, monkeypatch):
    """The parity record reports the members' spread, so a rerun must not reuse a record made with
    other members: the runner's input hash covers their sha256s (and only where there are members)."""
    from nepbench.runner import ResolvedModel, task_input_hash

    monkeypatch.setenv("NEPBENCH_REGISTRY", str(repo))
    spec = TaskSpec("parity-m", "parity", "parity")
    model = repo.parent / "m" / "nep.txt"
    source = {"kind": "local", "path": "models/m/nep.txt"}
    with_members = task_input_hash(spec, ResolvedModel("m", model, sha256_file(model), source), "d" * 64)
    plain = task_input_hash(spec, ResolvedModel("plain", model, sha256_file(model), source), "d" * 64)
    assert with_members != plain
    edited = tmp_path / "registry.toml"
    text = repo.read_text()
    first = models.load_registry(repo)["m"].ensemble[0].sha256
    edited.write_text(text.replace(first, "f" * 64))
    monkeypatch.setenv("NEPBENCH_REGISTRY", str(edited))
    assert task_input_hash(spec, ResolvedModel("m", model, sha256_file(model), source), "d" * 64) != with_members
