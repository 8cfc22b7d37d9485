"""End-to-end CLI behaviour: parity + verify on a model's own labels, a perturbed model, and one
clear error (non-zero exit, nothing written) for each kind of bad model or bad data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from nepbench import systems
from nepbench.cli import main
from nepbench.engines.nep_cpu import NepCpuEngine
from random_models import write_random_model
from nepbench.structures import with_labels, write_structures


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("model") / "nep.txt", seed=1)


@pytest.fixture(scope="module")
def labelled(model, tmp_path_factory) -> Path:
    """Li–Si–C cells labelled by `model` itself: its parity errors are zero."""
    engine = NepCpuEngine(model, backend="calorine")
    frames = []
    for seed, (name, params) in enumerate([("a-LixSi", {"x": 1.0}), ("a-LixSi", {"x": 3.0}),
                                          ("a-LiC", {"n_c": 12}), ("a-Si", {"n_atoms": 16}),
                                          ("a-C", {"n_atoms": 16}), ("a-LixSi", {"x": 2.0})]):
        atoms = systems.build(name, seed=seed, **params)
        labels = engine.single_point(atoms)
        frame = with_labels(atoms, labels.energy_ev, labels.forces_ev_per_a, labels.stress_ev_per_a3)
        frame.info = {"motif": atoms.info["motif"]}
        frames.append(frame)
    path = tmp_path_factory.mktemp("data") / "labelled.extxyz"
    write_structures(path, frames)
    return path


def perturbed(model: Path, out: Path, factor: float) -> Path:
    """`model` with every parameter after the `ANN` header line scaled by `factor`."""
    lines = model.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ANN")) + 1
    scaled = lines[:start] + [f"{float(v) * factor:.8e}" for v in lines[start:]]
    out.write_text("\n".join(scaled) + "\n")
    return out


def test_parity_on_own_labels_passes_and_perturbed_model_fails_verify(model, labelled, tmp_path, capsys):
    good = tmp_path / "good"
    assert main(["parity", "--model", str(model), "--data", str(labelled), "--out", str(good)]) == 0
    results = json.loads((good / "results.json").read_text())
    record = next(iter(results["records"].values())) if isinstance(results["records"], dict) else results["records"][0]
    assert record["metrics"]["force_rmse_mev_per_a"] < 1e-3
    # its data hash is the file's, and says so (not the reference set's manifest)
    assert record["provenance"]["data_files"] == [str(labelled)]
    assert main(["verify", str(good)]) == 0
    bad = tmp_path / "bad"
    worse = perturbed(model, tmp_path / "worse.txt", 1.3)
    assert main(["parity", "--model", str(worse), "--data", str(labelled), "--out", str(bad)]) == 0
    bad_record = json.loads((bad / "tasks" / "parity.json").read_text())
    m = bad_record["metrics"]
    assert m["force_rmse_mev_per_a"] > 200
    # the error is also stated relative to the DFT force scale, overall and per motif family
    assert m["force_relative_rmse"] == pytest.approx(m["force_rmse_mev_per_a"] / m["dft_force_rms_mev_per_a"])
    motifs = [k.split(".", 1)[1] for k in m if k.startswith("force_relative_rmse.")]
    assert motifs and all(m[f"force_relative_rmse.{x}"] > 0 for x in motifs)
    assert main(["verify", str(bad)]) == 1
    assert "force_rmse" in capsys.readouterr().out


def _bad_model(kind: str, model: Path, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.txt"
    lines = model.read_text().splitlines()
    if kind == "empty":
        path.write_text("")
    elif kind == "truncated":
        path.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    elif kind == "header":
        path.write_text("\n".join(["nep9 3 Li Si C"] + lines[1:]) + "\n")
    elif kind == "nan":
        lines[-5] = "nan"
        path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("kind", ["empty", "truncated", "header", "nan"])
def test_bad_model_one_line_no_results(kind, model, labelled, tmp_path, capsys):
    path = _bad_model(kind, model, tmp_path)
    out = tmp_path / "out"
    assert main(["parity", "--model", str(path), "--data", str(labelled), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "Traceback" not in err[0]
    assert not (out / "results.json").exists()


def _bad_data(kind: str, labelled: Path, tmp_path: Path) -> Path:
    text = labelled.read_text().splitlines()
    path = tmp_path / f"{kind}.extxyz"
    n = int(text[0])
    if kind == "malformed":
        text[2] = "Si 1.0 2.0"
    elif kind == "nan":
        fields = text[2].split()
        fields[1] = "nan"
        text[2] = " ".join(fields)
    elif kind == "overlap":
        first, second = text[2].split(), text[3].split()
        second[1:4] = [f"{float(v) + 0.1:.8f}" for v in first[1:4]]
        text[3] = " ".join(second)
    elif kind == "species":
        text[2] = "Fe" + text[2][2:] if text[2].startswith("Si") or text[2].startswith("Li") else text[2]
        text[2] = "Fe " + " ".join(text[2].split()[1:])
    elif kind == "truncated":
        text = text[: n // 2]
    elif kind == "energy_text":
        text[1] = re.sub(r"energy=\S+", "energy=abc", text[1])
    elif kind == "stress_nan":
        text[1] = re.sub(r'stress="[^"]*"', 'stress="nan 0 0 0 0 0 0 0 0"', text[1])
    elif kind == "element":
        text[2] = "Xx " + " ".join(text[2].split()[1:])
    elif kind == "forces2":
        text[1] = text[1].replace("forces:R:3", "forces:R:2")
        text[2:2 + n] = [" ".join(line.split()[:-1]) for line in text[2:2 + n]]
    elif kind == "folder":
        path.mkdir()
        return path
    elif kind == "unlabelled":
        path.write_text("2\nLattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\n"
                        "Si 0 0 0\nSi 1.3 1.3 1.3\n")
        return path
    path.write_text("\n".join(text) + "\n")
    return path


@pytest.mark.parametrize("kind, phrase", [
    ("malformed", "malformed extxyz"), ("nan", "non-finite"), ("overlap", "closer than"),
    ("species", "not in the model"), ("truncated", "malformed extxyz"), ("unlabelled", "no energy/forces"),
    ("energy_text", "frame 0 has unreadable labels"), ("stress_nan", "frame 0: stress must be"),
    ("element", "unknown element symbol 'Xx'"), ("forces2", "forces have shape"),
    ("folder", "is a folder, not an extxyz file"),
])
def test_bad_data_one_line_no_results(kind, phrase, model, labelled, tmp_path, capsys):
    path = _bad_data(kind, labelled, tmp_path)
    out = tmp_path / "out"
    assert main(["parity", "--model", str(model), "--data", str(path), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and phrase in err[0], err
    assert not (out / "results.json").exists()


def test_systems_build_and_unknown_builder(tmp_path, capsys):
    out = tmp_path / "cell.extxyz"
    assert main(["systems", "build", "a-LixSi", "--seed", "3", "-p", "x=2.5", "--out", str(out)]) == 0
    assert "Li25Si10" in capsys.readouterr().out
    assert main(["systems", "build", "nope", "--out", str(out)]) == 1
    assert "unknown builder 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("extra, phrase", [
    (["-p", "repeat=[0,0,0]"], "parameter repeat must be a list of 3 integers >= 1, got [0, 0, 0]"),
    (["-p", "repeat=0"], "parameter repeat must be a list of 3 integers >= 1, got 0"),
    (["-p", "repeat=[1,1]"], "parameter repeat must be a list of 3 integers"),
    (["-p", "repeat=[1,-1,-1]"], "parameter repeat must be a list of 3 integers >= 1"),
])
def test_systems_build_refuses_an_empty_or_malformed_cell_and_keeps_the_earlier_file(tmp_path, capsys, extra, phrase):
    out = tmp_path / "cell.extxyz"
    assert main(["systems", "build", "c-Si", "--out", str(out)]) == 0
    good = out.read_bytes()
    capsys.readouterr()
    assert main(["systems", "build", "c-Si", *extra, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and phrase in err[0], err
    assert out.read_bytes() == good


def test_systems_build_into_a_folder_is_one_line(tmp_path, capsys):
    assert main(["systems", "build", "c-Si", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder" in err[0] and "unexpected" not in err[0], err


def test_report_out_that_is_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("keep")
    assert main(["report", str(tmp_path), "--out", str(target)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists and is not a folder" in err[0], err
    assert target.read_text() == "keep"


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "nepbench run suites/quick.toml" in capsys.readouterr().out


def test_parity_refuses_criteria_without_a_parity_criterion(model, labelled, tmp_path, capsys):
    (tmp_path / "empty.toml").write_text('[[task]]\nid = "md"\ntype = "md_accuracy"\nmodel = "m"\nruns = []\n')  # no parity task
    out = tmp_path / "out"
    assert main(["parity", "--model", str(model), "--data", str(labelled), "--out", str(out),
                 "--criteria", str(tmp_path / "empty.toml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty.toml: no criterion on a parity task" in err[0], err
    assert not out.exists()


def test_parity_refuses_a_folder_holding_another_suites_run(model, labelled, tmp_path, capsys):
    """Writing parity's own suite.json over a suite run would change what `verify` judges there."""
    out = tmp_path / "quick"
    out.mkdir()
    held = '{"name": "quick", "tasks": [], "criteria": []}'
    (out / "suite.json").write_text(held)
    assert main(["parity", "--model", str(model), "--data", str(labelled), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "holds a run of suite 'quick'" in err[0]
    assert (out / "suite.json").read_text() == held and not (out / "tasks").exists()
    # an earlier parity output is a rerun: allowed
    again = tmp_path / "parity-out"
    for _ in range(2):
        assert main(["parity", "--model", str(model), "--data", str(labelled), "--out", str(again)]) == 0


def _split(labelled: Path, tmp_path: Path, train_symbols: set[str] | None, n_frames: int | None = None) -> Path:
    """The labelled frames with split=train on those whose elements are all in `train_symbols`
    (None: no split at all), the rest split=test; the first `n_frames` only."""
    from nepbench.structures import read_structures

    frames = read_structures(labelled, require_labels=True)[:n_frames]
    for frame in frames:
        if train_symbols is not None:
            frame.info["split"] = "train" if set(frame.get_chemical_symbols()) <= train_symbols else "test"
    path = tmp_path / "split.extxyz"
    write_structures(path, frames)
    return path


@pytest.mark.parametrize("train_symbols, n_frames, phrase", [
    (None, 1, "fitted in-sample on 1 frame(s) with 1 independent composition(s)"),
    ({"C"}, None, "cannot be fitted for Li, Si"),  # train = a-C only
])
def test_parity_does_not_report_energy_errors_the_offsets_would_fake(
        train_symbols, n_frames, phrase, model, labelled, tmp_path, capsys):
    """One frame fitted in-sample would give exactly 0 meV/atom (a pass); a train split lacking
    elements would leave their offsets at 0 (a huge error). Forces are still compared; the energy
    criterion is not measured, with the reason, and `verify --strict` cannot judge (exit 2)."""
    data = _split(labelled, tmp_path, train_symbols, n_frames)
    out = tmp_path / "out"
    assert main(["parity", "--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    record = json.loads((out / "tasks" / "parity.json").read_text())
    assert "energy_rmse_mev_per_atom" not in record["metrics"]
    assert phrase in record["metric_reasons"]["energy_rmse_mev_per_atom"]
    assert record["metrics"]["force_rmse_mev_per_a"] < 1e-3
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0  # forces pass; a criterion not measured for a stated reason is shown
    assert "NOT MEASURED  energy_rmse" in capsys.readouterr().out
    assert main(["verify", "--strict", str(out)]) == 2


@pytest.mark.parametrize("params, phrase", [
    (["x=abc"], "parameter x must be a finite number, got 'abc'"),
    (["x=null"], "parameter x must be a finite number, got None"),
    (["n_atoms=2.5"], "parameter n_atoms must be an integer, got 2.5"),
    (["x=NaN"], "parameter x must be a finite number, got nan"),
    (["n_atoms=-3"], "cannot build with n_atoms=-3: no LixSi cell with x = 2.0 near -3 atoms"),
])
def test_systems_build_bad_parameter_values_one_line(params, phrase, tmp_path, capsys):
    out = tmp_path / "cell.extxyz"
    args = ["systems", "build", "a-LixSi", "--seed", "1", "--out", str(out)]
    for item in params:
        args += ["-p", item]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and phrase in err[0] and "a-LixSi" in err[0], err
    assert not out.exists()


def test_an_unforeseen_error_is_one_line_and_not_a_verdict(tmp_path, capsys, monkeypatch):
    """verify's 0 and 1 are verdicts: a crash must give neither, and no traceback without --debug."""
    from nepbench.report import build

    def crash(*args, **kwargs):
        raise KeyError("series")

    monkeypatch.setattr(build, "build_report", crash)
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nepbench: error: KeyError") and "--debug" in err[0]
    assert main(["--debug", "verify", str(tmp_path)]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_parity_refuses_frames_of_a_third_split_instead_of_dropping_them(model, labelled, tmp_path, capsys):
    from nepbench.structures import read_structures

    frames = read_structures(labelled, require_labels=True)
    for frame, split in zip(frames, ["test", "test", "train", "train", "train", "validation"]):
        frame.info["split"] = split
    data = tmp_path / "three.extxyz"
    write_structures(data, frames)
    out = tmp_path / "out"
    assert main(["parity", "--model", str(model), "--data", str(data), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(data) in err[0] and "1 frame(s) with split validation" in err[0], err
    assert not (out / "tasks").exists()


def test_offsets_fitted_on_the_scored_frames_are_in_sample_and_said_so(model, labelled):
    """The same frames as test and train (what split = "train" in a suite did) used to be scored
    as held-out: the method said so and the in-sample check was skipped."""
    from nepbench.engines.nep_cpu import NepCpuEngine
    from nepbench.structures import read_structures
    from nepbench.tasks.parity import parity_outcome

    frames = read_structures(labelled, require_labels=True)[:2]  # 2 frames, 2 compositions: too few in-sample
    outcome = parity_outcome(NepCpuEngine(model), frames, list(frames), "2 frames")
    assert "energy_rmse_mev_per_atom" not in outcome.metrics
    assert "fitted in-sample on 2 frame(s)" in outcome.metric_reasons["energy_rmse_mev_per_atom"]
    assert outcome.metrics["n_frames_for_offsets"] == 2 and outcome.metric_units["n_test_frames"] == "frames"


def test_the_parity_series_carries_each_elements_recorded_rmse_for_the_figure(model, labelled, tmp_path):
    """The figure draws at most MAX_PARITY_POINTS per element; its panel title must state the RMSE
    the record holds over every component, not that of the subsample it draws."""
    from nepbench.engines.nep_cpu import NepCpuEngine
    from nepbench.structures import read_structures
    from nepbench.tasks import parity as accuracy

    frames = read_structures(labelled, require_labels=True)
    for frame in frames:  # labels off the model's own: non-zero errors
        frame.calc.results["forces"] = frame.calc.results["forces"] * 1.1
    outcome = accuracy.parity_outcome(NepCpuEngine(model), frames[:4], frames[4:], "4 frames")
    n_atoms = {el: sum(a.get_chemical_symbols().count(el) for a in frames[:4]) for el in ("Li", "Si", "C")}
    for el, data in outcome.series["forces"].items():
        assert data["rmse_mev_per_a"] == outcome.metrics[f"force_rmse_mev_per_a.{el}"] > 0
        assert data["n_components"] == 3 * n_atoms[el] == len(data["ref"])


def test_test_frames_that_copy_a_training_parent_are_counted_and_left_out_of_a_second_rmse(model, labelled):
    """A random split can put a rattled copy of a training crystal on the test side: it measures
    interpolation. The parity task counts such frames and gives the RMSE over the others."""
    from nepbench.engines.nep_cpu import NepCpuEngine
    from nepbench.metrics.forces import force_errors
    from nepbench.structures import read_structures
    from nepbench.tasks import parity as accuracy

    frames = read_structures(labelled, require_labels=True)
    for frame in frames:  # labels off the model's own: non-zero errors
        frame.calc.results["forces"] = frame.calc.results["forces"] * 1.1
    train = frames[2:]
    copy = train[0].copy()  # a rattled copy of a training frame, with that frame's labels
    copy.positions += np.random.default_rng(0).normal(0, 0.05, copy.positions.shape)
    copy.calc = train[0].calc
    test = [frames[0], frames[1], copy]
    engine = NepCpuEngine(model)
    outcome = accuracy.parity_outcome(engine, test, train, "3 frames")
    assert outcome.metrics["n_test_frames_near_train"] == 1
    others = test[:2]
    pred = np.concatenate([engine.single_point(a).forces_ev_per_a for a in others])
    ref = np.concatenate([a.calc.results["forces"] for a in others])
    expected = force_errors(ref, pred, [s for a in others for s in a.get_chemical_symbols()]).rmse_mev_per_a
    assert outcome.metrics["force_rmse_mev_per_a.far_from_train"] == pytest.approx(expected, rel=1e-9)
    assert "1 of 3 test frames lie within 0.5 Å" in outcome.method
    clean = accuracy.parity_outcome(engine, test[:2], train, "2 frames")
    assert clean.metrics["n_test_frames_near_train"] == 0 and "far_from_train" not in str(clean.metrics)
