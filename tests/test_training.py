"""Training a NEP on the reference set: run directory, neppo run and loss curve, provenance, registry.

A tiny reference set is built here with the real pipeline (`reference.select_items`, `label_items`,
`assemble`), labelled by a small seeded random NEP (calorine CPUNEP) so energies, forces and stresses
are consistent. The tests that train run neppo for a handful of steps on 2 small frames (~10 s
each, dominated by importing torch); they are skipped with the reason when torch or neppo is missing.
"""

from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from nepbench import cli, models, reference, training
from nepbench.engines.base import Labels
from nepbench.errors import ConfigError, InputError, ModelError
from nepbench.provenance import sha256_file
from random_models import write_random_model

HAVE_NEPPO, WHY_NOT = training.neppo_available()
needs_neppo = pytest.mark.skipif(not HAVE_NEPPO, reason=f"training deps missing: {WHY_NOT}")

SPEC = """
name = "tiny-train"
seed = 3
test_fraction = 0.5
cp2k_preset = "label"

[[family]]
builder = "Li-in-c-Si"
motif = "crystalline"
pool = 5
select = 2
params = { repeat = [[1, 1, 1]], n_li = [1, 2] }
rattle_a = [0.05, 0.1]

[[family]]
builder = "LiC6"
motif = "strained"
pool = 5
select = 2
strain_range = [-0.03, 0.03]
rattle_a = [0.05, 0.1]
"""

#: Small and fast: 2 train frames, a few steps.
TINY = training.TrainingConfig(cutoff_radial_a=4.0, cutoff_angular_a=3.0, n_max=(2, 2), basis_size=(4, 4),
                               l_max=(4, 0, 0), neurons=4, zbl_outer_a=None, batch=2, generations=6,
                               seed=7, output_interval=2)


@dataclass(frozen=True)
class _Settings:
    model: str

    def to_dict(self):
        return {"model": self.model}


class NepLabeller:
    """A stand-in for CP2K: labels from a seeded random NEP4 model (consistent E, F, stress)."""

    def __init__(self, model: Path):
        from calorine.calculators import CPUNEP

        self.settings = _Settings(sha256_file(model))
        self.calc = CPUNEP(str(model))

    def version(self) -> str:
        return "random-nep 1"

    def single_point(self, atoms):
        work = atoms.copy()
        work.calc = self.calc
        return Labels(energy_ev=float(work.get_potential_energy()) - 5.0 * len(work),
                      forces_ev_per_a=work.get_forces(), stress_ev_per_a3=work.get_stress(), wall_s=0.0)


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory) -> Path:
    """A verified 4-frame reference set (2 train, 2 test) in the real on-disk layout; returns dft/."""
    root = tmp_path_factory.mktemp("ref")
    (root / "spec.toml").write_text(SPEC)
    spec = reference.load_spec(root / "spec.toml")
    engine = NepLabeller(write_random_model(root / "labeller.txt", seed=1, n_neuron=6))
    selection = reference.select_items(spec)
    out = root / "dft"
    reference.label_items(selection.items, engine, out / "cache")
    reference.assemble(selection.items, {"settings": engine.settings.to_dict(), "version": engine.version()},
                       out / "cache", out, spec, selection)
    assert reference.verify(out).ok
    return out


@pytest.fixture(scope="module")
def snapshot(tiny_reference) -> training.ReferenceSnapshot:
    return training.reference_snapshot(tiny_reference)


# --------------------------------------------------------------------------- config and nep.in

def test_nep_in_records_every_hyperparameter_and_species():
    config = training.TrainingConfig(seed=11, batch=5, generations=1234, lambda_2=0.01)
    text = config.nep_in_text("neppo")
    lines = dict(line.split(None, 1) for line in text.strip().splitlines())
    assert lines["type"] == "3 Li Si C" and lines["version"] == "4"
    assert lines["cutoff"] == "5 4" and lines["n_max"] == "4 4" and lines["basis_size"] == "8 8"
    assert lines["l_max"] == "4 2 0" and lines["neuron"] == "30" and lines["zbl"] == "2"
    assert (lines["lambda_e"], lines["lambda_f"], lines["lambda_v"], lines["lambda_2"]) == ("1", "1", "0.1", "0.01")
    assert (lines["batch"], lines["generation"], lines["seed"]) == ("5", "1234", "11")
    assert list(lines).index("type") < list(lines).index("cutoff")  # nep rejects cutoff before type
    gpumd = config.nep_in_text("gpumd")
    assert "seed" not in gpumd and "output_interval" not in gpumd  # GPUMD's nep rejects them
    assert config.nep_in_parameters()["type"] == [3, "Li", "Si", "C"]
    assert training.TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("change, problem", [
    ({"cutoff_angular_a": 2.0}, "cutoffs"),
    ({"zbl_outer_a": 5.0}, "zbl_outer_a"),
    ({"lambda_f": -1.0}, "loss weight"),
    ({"species": ("Li", "Li")}, "repeated"),
    ({"batch": 0}, "batch"),
    ({"seed": -1}, "random one"),
    ({"learning_rate": (float("nan"), 1e-4)}, "learning_rate"),
])
def test_bad_config_is_one_line(change, problem):
    with pytest.raises(ConfigError, match=problem):
        training.TrainingConfig(**change).validate()


# --------------------------------------------------------------------------- run directory

def test_run_directory_holds_train_split_in_train_xyz_and_test_split_in_test_xyz(snapshot, tmp_path):
    assert len(snapshot.train) == 2 and len(snapshot.test) == 2
    run = training.write_run_directory(tmp_path / "run", TINY, snapshot.train, snapshot.test)
    train_xyz = read(tmp_path / "run" / "train.xyz", ":")
    test_xyz = read(tmp_path / "run" / "test.xyz", ":")
    assert [a.info["split"] for a in train_xyz] == ["train"] * 2
    assert [a.info["split"] for a in test_xyz] == ["test"] * 2
    want_train = [a.info["frame_sha256"] for a in snapshot.train]
    want_test = [a.info["frame_sha256"] for a in snapshot.test]
    assert [a.info["frame_sha256"] for a in train_xyz] == want_train == run.train_frame_sha256
    assert [a.info["frame_sha256"] for a in test_xyz] == want_test == run.test_frame_sha256
    # no structure in both splits: compare the labelling key (structure + DFT settings), not
    # frame_sha256, which also hashes the split label and so differs for the same structure
    assert not {a.info["hash"] for a in snapshot.train} & {a.info["hash"] for a in snapshot.test}
    # GPUMD convention: energy minus Σ n μ, virial = −σV (9 values), forces unchanged
    mu = run.energy_reference_ev_per_atom
    for frame, written in zip(snapshot.train, train_xyz):
        energy, forces, stress = frame.calc.results["energy"], frame.get_forces(), frame.get_stress()
        shift = sum(mu[s] for s in frame.get_chemical_symbols())
        assert written.get_potential_energy() == pytest.approx(energy - shift, abs=1e-9)
        assert np.allclose(written.get_forces(), forces, atol=1e-7)
        from ase.stress import voigt_6_to_full_3x3_stress
        virial = np.asarray(written.info["virial"], dtype=float).reshape(3, 3)
        assert np.allclose(virial, -voigt_6_to_full_3x3_stress(stress) * frame.get_volume(), atol=1e-6)
        assert written.info["config_type"] == frame.info["motif"]
    header = (tmp_path / "run" / "train.xyz").read_text().splitlines()[1]
    assert "energy=" in header and 'virial="' in header and "stress=" not in header
    assert run.files_sha256["nep.in"] == sha256_file(tmp_path / "run" / "nep.in")


def test_a_test_frame_never_reaches_train_xyz(snapshot, tmp_path):
    with pytest.raises(InputError, match="belongs to the 'test' split"):
        training.write_run_directory(tmp_path / "run", TINY, snapshot.train + snapshot.test[:1], snapshot.test)
    assert not (tmp_path / "run" / "train.xyz").exists()


def test_energy_references_fit_composition():
    from ase import Atoms
    from nepbench.structures import with_labels

    frames = [with_labels(Atoms(sym, positions=np.eye(len(sym), 3)), e, np.zeros((len(sym), 3)), None)
              for sym, e in ((["Li"], -2.0), (["Si", "Si"], -10.0), (["Li", "Si"], -7.0))]
    mu = training.fit_energy_references(frames, ("Li", "Si", "C"))
    assert mu["Li"] == pytest.approx(-2.0) and mu["Si"] == pytest.approx(-5.0) and mu["C"] == 0.0


def test_snapshot_retries_then_gives_a_clear_error(tiny_reference, tmp_path):
    import shutil

    broken = tmp_path / "dft"
    shutil.copytree(tiny_reference, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    name = next(iter(manifest["files"]))
    manifest["files"][name]["sha256"] = "0" * 64  # as if the build rewrote the file meanwhile
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="did not verify after 2 tries"):
        training.reference_snapshot(broken, retries=2, wait_s=0.0)


# --------------------------------------------------------------------------- loss files

def test_read_loss_curve_names_columns_with_units(tmp_path):
    path = tmp_path / "loss.out"
    path.write_text("# format_version 1\n# output_interval 5\n"
                    "# columns generation total rmse_energy_train rmse_force_train rmse_virial_train "
                    "rmse_energy_test rmse_force_test rmse_virial_test\n"
                    "5 10.0 0.5 1.5 0.2 0.6 1.6 0.3\n10 4.0 0.1 0.9 0.1 0.2 1.1 0.2\n")
    curve = training.read_loss_curve(path)
    assert [row["step"] for row in curve] == [5, 10]
    assert curve[-1]["rmse_force_test_ev_per_a"] == 1.1
    assert curve[-1]["rmse_energy_train_ev_per_atom"] == 0.1 and curve[0]["total_loss"] == 10.0
    path.write_text("# columns generation total\nnot numbers\n")
    with pytest.raises(InputError, match="loss"):
        training.read_loss_curve(path)
    with pytest.raises(InputError, match="not found"):
        training.read_loss_curve(tmp_path / "missing.out")


# --------------------------------------------------------------------------- a real (tiny) training

@pytest.fixture(scope="module")
def trained(snapshot, tmp_path_factory):
    if not HAVE_NEPPO:
        pytest.skip(f"training deps missing: {WHY_NOT}")
    run = training.write_run_directory(tmp_path_factory.mktemp("train") / "run", TINY, snapshot.train,
                                       snapshot.test)
    return run, training.run_neppo(run.path, threads=1, timeout_s=120)


@needs_neppo
def test_neppo_trains_and_the_loss_curve_is_parsed(trained):
    run, result = trained
    assert [row["step"] for row in result.loss_curve] == [2, 4, 6]
    assert result.steps == 6 and result.wall_s > 0 and result.trainer == "neppo"
    for row in result.loss_curve:
        assert np.isfinite(row["total_loss"]) and row["rmse_force_train_ev_per_a"] > 0
        assert row["rmse_force_test_ev_per_a"] > 0  # test.xyz is evaluated, never trained on
    assert result.final == result.loss_curve[-1]
    version, species = models.validate_model_file(result.nep_txt)  # loads in calorine
    assert version == "nep4" and species == ("Li", "Si", "C")


@needs_neppo
def test_provenance_records_data_hashes_settings_and_versions(trained, snapshot):
    run, result = trained
    record = training.training_provenance(TINY, run, result, snapshot.data_sha256, {"pool_size": 10})
    data = record["training_data"]
    assert data["reference_data_sha256"] == snapshot.data_sha256 == sha256_file(
        snapshot.source / "manifest.json")
    assert data["train_frame_sha256"] == [a.info["frame_sha256"] for a in snapshot.train]
    assert data["test_frame_sha256"] == [a.info["frame_sha256"] for a in snapshot.test]
    assert data["n_train_frames"] == 2 and data["files_sha256"]["train.xyz"]
    assert record["nep_in"] == (run.path / "nep.in").read_text() and "type  3 Li Si C" in record["nep_in"]
    assert record["config"]["seed"] == record["seed"] == 7 and record["config"]["neurons"] == 4
    assert record["trainer"]["name"] == "neppo" and record["trainer"]["version"] == training.trainer_version()
    assert record["trainer"]["torch"] == training.trainer_version("torch")
    assert record["steps"] == 6 and record["wall_s"] > 0
    assert record["final"]["rmse_force_train_ev_per_a"] > 0
    assert record["model_sha256"] == sha256_file(result.nep_txt)
    assert record["hardware"]["logical_cores"] and record["selection"] == {"pool_size": 10}
    # the commit alone does not say what code trained: the tree's state and the sources' hash do
    from nepbench.provenance import code_sha256, git_code_modified

    assert record["nepbench_code_sha256"] == code_sha256() and len(record["nepbench_code_sha256"]) == 64
    assert record["nepbench_code_modified"] == git_code_modified()
    json.dumps(record)  # serialisable as is


# --------------------------------------------------------------------------- registry: local models

def _repo(tmp_path: Path) -> Path:
    """A repository-shaped folder: <root>/models/registry.toml with the default model's table."""
    (tmp_path / "models").mkdir(parents=True)
    text = models.registry_path().read_text()
    default = text[text.index("[models.nep89-lisic]"):text.index("[models.nep89]")]
    (tmp_path / "models" / "registry.toml").write_text("# test registry\n\n" + default)
    return tmp_path / "models" / "registry.toml"


def test_registered_local_model_resolves_offline_and_checks_sha256(tmp_path, monkeypatch):
    registry = _repo(tmp_path)
    model = write_random_model(tmp_path / "trained.txt", seed=4)
    record = models.register_local_model("mine-v1", model, "test", "CC0", "none",
                                         extra={"training": {"steps": 6}}, registry=registry)
    assert record.source == {"kind": "local", "path": "models/mine-v1/nep.txt"}
    committed = tmp_path / "models" / "mine-v1" / "nep.txt"
    assert committed.read_bytes() == model.read_bytes() and record.sha256 == sha256_file(model)
    table = tomllib.loads(registry.read_text())["models"]
    assert set(table) == {"nep89-lisic", "mine-v1"} and table["mine-v1"]["training"]["steps"] == 6

    monkeypatch.setattr(sys, "executable", "/nonexistent/python")  # no pip, no network
    monkeypatch.setenv("NEPBENCH_CACHE", str(tmp_path / "empty-cache"))
    records = models.load_registry(registry)
    info = models.resolve_model("mine-v1", fetch=False, registry=records)
    assert info.path == committed and info.sha256 == record.sha256 and info.species == ("Li", "Si", "C")
    assert not (tmp_path / "empty-cache").exists()

    # registering again replaces the table, it does not add a second one
    models.register_local_model("mine-v1", write_random_model(tmp_path / "t2.txt", seed=5),
                                "test 2", "CC0", "none", registry=registry)
    text = registry.read_text()
    assert text.count("[models.mine-v1]") == 1 and 'description = "test 2"' in text
    assert text.startswith("# test registry") and "[models.nep89-lisic]" in text

    committed.write_text(committed.read_text().replace("e-", "E-", 1))  # tampered with
    with pytest.raises(ModelError) as exc:
        models.resolve_model("mine-v1", registry=models.load_registry(registry))
    message = str(exc.value)
    assert "\n" not in message and message.startswith(str(committed))
    assert "sha256 mismatch for committed model mine-v1" in message and "got " in message
    committed.unlink()
    with pytest.raises(ModelError, match="committed model file of mine-v1 not found"):
        models.fetch_model("mine-v1", models.load_registry(registry))


# --------------------------------------------------------------------------- the command

@needs_neppo
def test_train_command_writes_outputs_and_registers(tiny_reference, tmp_path, monkeypatch, capsys):
    registry = _repo(tmp_path)
    monkeypatch.setenv("NEPBENCH_REGISTRY", str(registry))
    # the tiny architecture, with the command's steps, seed, batch and output interval
    monkeypatch.setattr(training, "TrainingConfig", lambda **kw: TINY.__class__(**{**TINY.to_dict(), **kw}))
    out = tmp_path / "models" / "tiny-v1" / "training"
    code = cli.main(["train", "--out", str(out), "--steps", "4", "--batch", "2", "--seed", "3",
                     "--reference", str(tiny_reference), "--register", "tiny-v1"])
    assert code == 0
    for name in ("nep.in", "nep.txt", "loss.out", "loss.csv", "loss.png", "provenance.json", "train.log"):
        assert (out / name).is_file(), name
    assert not (out / "run").exists()  # bulky run files removed without --keep-run
    csv_lines = (out / "loss.csv").read_text().splitlines()
    assert csv_lines[0].startswith("step,total_loss") and len(csv_lines) == 1 + 1  # one row at step 4
    record = json.loads((out / "provenance.json").read_text())
    assert record["steps"] == 4 and record["seed"] == 3 and record["config"]["batch"] == 2
    assert record["training_data"]["reference_data_sha256"] == sha256_file(tiny_reference / "manifest.json")
    info = models.resolve_model("tiny-v1")
    assert info.path == tmp_path / "models" / "tiny-v1" / "nep.txt"
    assert info.sha256 == sha256_file(out / "nep.txt") == record["model_sha256"]
    table = tomllib.loads(registry.read_text())["models"]["tiny-v1"]
    assert table["training"]["provenance"] == "models/tiny-v1/training/provenance.json"
    assert "registered tiny-v1" in capsys.readouterr().out


def test_prepare_only_for_gpumd_writes_a_clean_run_directory(tiny_reference, tmp_path):
    out = tmp_path / "gpu"
    assert cli.main(["train", "--out", str(out), "--trainer", "gpumd", "--steps", "50000",
                     "--reference", str(tiny_reference)]) == 0
    nep_in = (out / "run" / "nep.in").read_text()
    assert "generation  50000" in nep_in and "seed" not in nep_in
    assert (out / "run" / "train.xyz").is_file() and (out / "run" / "test.xyz").is_file()
    record = json.loads((out / "provenance.json").read_text())
    assert "trainer" not in record and record["training_data"]["n_train_frames"] == 2
    # GPUMD draws its own random numbers, and this machine only prepared the folder
    assert record["run_trainer"] == "gpumd" and record["seed"] is None
    assert record["hardware_role"] == "prepared the run folder only"


def test_train_refuses_an_unsafe_register_name_before_training(tmp_path, monkeypatch, capsys):
    from nepbench.cli import main

    def no_snapshot(*args, **kwargs):
        raise AssertionError("training began before the name was checked")

    monkeypatch.setattr(training, "reference_snapshot", no_snapshot)
    assert main(["train", "--out", str(tmp_path / "t"), "--register", "../outside"]) != 0
    err = capsys.readouterr().err
    assert "--register: model name '../outside' not allowed" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where, name, phrase", [
    ("outside", "new-v1", "lies outside"),  # the registry would point at an uncommitted provenance
    ("inside", "nep89-lisic", "a model of that name is registered"),  # replaced without asking
])
def test_train_refuses_a_register_that_would_lose_provenance_or_a_model(tmp_path, monkeypatch, capsys,
                                                                         where, name, phrase):
    registry = _repo(tmp_path / "repo")
    monkeypatch.setenv("NEPBENCH_REGISTRY", str(registry))
    before = registry.read_text()

    def no_snapshot(*args, **kwargs):
        raise AssertionError("training began before --register was checked")

    monkeypatch.setattr(training, "reference_snapshot", no_snapshot)
    out = tmp_path / ("repo/models/x/training" if where == "inside" else "elsewhere")
    assert cli.main(["train", "--out", str(out), "--register", name]) == 2
    err = capsys.readouterr().err
    assert phrase in err and f"--register {name}" in err and len(err.strip().splitlines()) == 1
    assert registry.read_text() == before and not out.exists()


def test_train_refuses_to_overwrite_a_training_result_without_force(tiny_reference, tmp_path, capsys):
    """`--out models/NAME/training` replaced a committed model's provenance and log (even when the
    run then failed), so the provenance no longer described the nep.txt beside it."""
    out = tmp_path / "committed"
    out.mkdir()
    (out / "provenance.json").write_text('{"kept": true}')
    (out / "train.log").write_text("the committed log\n")
    args = ["train", "--out", str(out), "--trainer", "gpumd", "--steps", "50000", "--reference", str(tiny_reference)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{out} already holds a training result (provenance.json, train.log)" in err
    assert (out / "provenance.json").read_text() == '{"kept": true}' and not (out / "run").exists()
    assert cli.main(args + ["--force"]) == 0  # asked for: written
    assert json.loads((out / "provenance.json").read_text()) != {"kept": True}
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert cli.main(["train", "--out", str(a_file), "--trainer", "gpumd", "--reference", str(tiny_reference)]) == 2
    assert "--out is a file" in capsys.readouterr().err


# --------------------------------------------------------------------------- failures leave no false result

def test_a_diverged_training_is_not_a_model(tmp_path):
    """neppo writes 0 for a NaN RMSE and exits 0: a NaN loss must not be recorded as a perfect fit."""
    good = write_random_model(tmp_path / "good.txt", seed=2, n_neuron=4)
    curve = [{"step": 2.0, "total_loss": 3.0, "rmse_force_train_ev_per_a": 0.5},
             {"step": 4.0, "total_loss": float("nan"), "rmse_force_train_ev_per_a": 0.0}]
    assert "total loss nan at step 4" in training.diverged_problem(curve, good)
    assert training.diverged_problem(curve[:1], good) is None
    broken = tmp_path / "nep.txt"
    lines = good.read_text().splitlines()
    broken.write_text("\n".join(lines[:-1] + ["nan"]) + "\n")  # the last parameter NaN
    assert "not a usable potential" in training.diverged_problem(curve[:1], broken)


def test_a_test_species_missing_from_train_is_refused(tmp_path):
    """Its μ would be 0, and its test energies off by its whole cohesive energy."""
    from ase import Atoms
    from nepbench.structures import with_labels

    def frame(symbols):
        return with_labels(Atoms(symbols, positions=2.0 * np.eye(len(symbols), 3), cell=[6, 6, 6], pbc=True),
                           -5.0 * len(symbols), np.zeros((len(symbols), 3)), None)

    with pytest.raises(InputError, match="species C of the test split has no frame in the train split"):
        training.write_run_directory(tmp_path / "run", TINY, [frame(["Li", "Li"]), frame(["Si", "Si"])],
                                     [frame(["Si", "C"])])
    assert not (tmp_path / "run").exists()


def test_a_failed_forced_run_leaves_the_earlier_result_as_it_was(tiny_reference, tmp_path, monkeypatch, capsys):
    """`--force` emptied train.log before training began; a crash then left a new log beside the old
    provenance. The log now lives in the run folder until the whole result is written at once."""
    from nepbench.errors import EngineCrashed

    out = tmp_path / "committed"
    out.mkdir()
    kept = {"provenance.json": '{"kept": true}', "train.log": "the committed log\n", "nep.txt": "old model\n"}
    for name, text in kept.items():
        (out / name).write_text(text)

    def crash(run_dir, threads=1, device="cpu", log_path=None, timeout_s=None):
        Path(log_path).write_text("step 1 ... nan\n")
        raise EngineCrashed(f"{run_dir}: neppo exited with 1 (log: {log_path})")

    monkeypatch.setattr(training, "run_neppo", crash)
    assert cli.main(["train", "--out", str(out), "--force", "--steps", "4", "--reference", str(tiny_reference)]) != 0
    assert {name: (out / name).read_text() for name in kept} == kept
    assert str(out / "run" / "train.log") in capsys.readouterr().err


def test_a_stray_zbl_file_in_the_run_directory_is_refused(snapshot, tmp_path, monkeypatch):
    """neppo reads a zbl.in beside nep.in (flexible ZBL) that no provenance records."""
    run = training.write_run_directory(tmp_path / "run", TINY, snapshot.train, snapshot.test)
    (run.path / "zbl.in").write_text("stale\n")
    monkeypatch.setattr(training, "neppo_available", lambda: (True, ""))
    monkeypatch.setattr(training.subprocess, "run", lambda *a, **k: pytest.fail("trained with a stray zbl.in"))
    with pytest.raises(InputError, match="zbl.in.*flexible-ZBL file"):
        training.run_neppo(run.path)


def test_a_config_value_of_the_wrong_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="training config"):
        training.TrainingConfig.from_dict({"n_max": 5})  # a pair expected
