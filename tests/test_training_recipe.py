"""Training from a recipe: sources and their weights, the validation split by origin, the search,
the ensemble and its spread, and `nepbench train --recipe` end to end on a tiny reference set.

The tiny reference set (test_training.py's fixture: 2 train and 2 test frames labelled by a random
NEP) and a FakeCP2K AIMD run (forces at every kept frame) are the sources. Training runs neppo for
a few steps and is skipped with the reason when torch or neppo is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ase import Atoms

from cp2k_fakes import FakeCP2K
from nepbench import aimd, cli, training
from nepbench.engines.cp2k import AIMD_SETTINGS, CP2KEngine
from nepbench.errors import ConfigError, InputError
from nepbench.metrics.uncertainty import ensemble_force_sigma, frame_rms, spearman_rho
from nepbench.structures import labels_of, with_labels
from nepbench.training_data import Source, carve_validation, compose, origin_of
from nepbench.training_ensemble import ensemble_test
from nepbench.training_recipe import load_recipe
from nepbench.training_search import Evaluation, best_overrides, evaluate
from random_models import write_random_model
from test_training import HAVE_NEPPO, TINY, WHY_NOT, needs_neppo, tiny_reference  # noqa: F401

AIMD_SPEC = """
settings = "aimd"
segment_steps = 6
[[run]]
id = "{id}"
builder = "a-LixSi"
params = {{ x = 2.0, n_atoms = 12, relax_steps = 0 }}
seed = {seed}
temperature_k = 300.0
timestep_fs = 1.0
sample_interval = 2
warmup_steps = 2
target_steps = 12
"""


@pytest.fixture(scope="module")
def aimd_toml(tmp_path_factory) -> Path:
    """Two FakeCP2K AIMD runs of 12 steps, a labelled frame every 2 steps (7 frames each)."""
    root = tmp_path_factory.mktemp("aimd")
    path = root / "aimd.toml"
    path.write_text(AIMD_SPEC.format(id="r1", seed=1) + AIMD_SPEC.format(id="r2", seed=2).split("segment_steps = 6")[1])
    engine = CP2KEngine(AIMD_SETTINGS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "version", lambda: "CP2K version fake")
        patch.setattr(engine, "_execute", FakeCP2K())
        aimd.grow(aimd.load_aimd_spec(path), engine)
    return path


def _frame(origin: str, source: str = "s") -> Atoms:
    atoms = with_labels(Atoms("Si2", positions=[[0, 0, 0], [1.2, 0, 0]], cell=[5, 5, 5], pbc=True),
                        -10.0, np.zeros((2, 3)), None)
    atoms.info.update(source=source, origin=origin)
    return atoms


def test_validation_takes_whole_origins_never_all_and_is_seeded():
    frames = [_frame(f"run{k % 5}") for k in range(20)]  # 5 origins, 4 frames each
    train, validation, origins = carve_validation(frames, 0.4, seed=3)
    assert len(origins) == 2 and len(validation) == 8 and len(train) == 12
    assert {origin_of(a) for a in validation} == set(origins)
    assert not {origin_of(a) for a in train} & set(origins)  # no validation frame has a train sibling
    assert carve_validation(frames, 0.4, seed=3)[2] == origins
    assert len(carve_validation(frames, 0.01, seed=3)[2]) == 1  # at least one origin
    assert len(carve_validation(frames, 0.99, seed=3)[2]) == 4  # never every origin
    assert carve_validation(frames, 0.0, seed=3)[1] == []
    with pytest.raises(ConfigError, match="validation_fraction 1"):
        carve_validation(frames, 1.0, seed=3)


@pytest.mark.parametrize("fields, phrase", [
    ({"kind": "vasp"}, "kind 'vasp'"),
    ({"weight": 0.0}, "weight 0.0"),
    ({"kind": "reference", "stride": 2}, "aimd sources only"),
    ({"kind": "aimd", "stride": 0}, "stride 0"),
    ({"kind": "aimd", "runs": ["a"], "test_runs": ["b"]}, "test_runs ['b'] not among runs"),
    ({"colour": "red"}, "unknown key(s) colour"),
])
def test_a_bad_source_is_one_line_naming_it(fields, phrase):
    with pytest.raises(ConfigError) as err:
        Source.from_dict({"name": "x", "kind": "reference", "path": "p", **fields})
    assert "training source 'x'" in str(err.value) and phrase in str(err.value)


def test_compose_weights_tags_and_holds_out_test_runs(tiny_reference, aimd_toml):
    sources = [Source("ref", "reference", str(tiny_reference)),
               Source("far", "reference", str(tiny_reference), weight=0.1, test=False),
               Source("md", "aimd", str(aimd_toml), runs=("r1", "r2"), test_runs=("r2",), stride=2)]
    data = compose(sources, Path("/"), validation_fraction=0.5, seed=1)
    counts = data.counts()
    # ref: 2 train frames; far: the same 2 at weight 0.1 and its test split left out; md: r1's 7
    # labelled frames at stride 2 (4) in train, r2's 4 in test
    assert counts["test"] == {"ref": 2, "md": 4}
    assert counts["train"].get("far") == 2 and "far" not in counts["validation"]  # untested: never validates
    tested_train = sum(counts["train"].get(k, 0) + counts["validation"].get(k, 0) for k in ("ref", "md"))
    assert tested_train == 2 + 4 and data.validation
    for atoms in data.train:
        assert atoms.info["split"] == "train" and atoms.info["weight"] == (0.1 if atoms.info["source"] == "far" else 1.0)
    assert all(a.info["split"] == "validation" and "weight" not in a.info for a in data.validation)
    assert {a.info["aimd_run"] for a in data.test if a.info["source"] == "md"} == {"r2"}
    md_frames = [a for a in data.train + data.validation if a.info["source"] == "md"]
    assert all(origin_of(a) == "md:r1" for a in md_frames)  # one AIMD run is one origin
    energy, forces, _ = labels_of(md_frames[0])
    assert forces.shape == (len(md_frames[0]), 3) and np.isfinite(energy)  # CP2K's labels, kept
    final = data.final_train()
    assert len(final) == len(data.train) + len(data.validation)
    assert all(a.info["split"] == "train" and a.info["weight"] > 0 for a in final)
    assert set(data.data_sha256) == {"ref", "far", "md"}


def test_a_source_with_a_non_finite_label_is_refused(tiny_reference, tmp_path, monkeypatch):
    from nepbench import training_data

    def nan_frames(source, root):
        frame = _frame("o", source.name)
        frame.calc.results["forces"][0, 0] = np.nan
        return training_data._tag([frame], source, "train"), [], "h"

    monkeypatch.setattr(training_data, "reference_frames", nan_frames)
    with pytest.raises(InputError, match="non-finite energy/forces"):
        compose([Source("bad", "reference", "x")], tmp_path, 0.2, 1)


RECIPE = """
name = "tiny-v2"
seed = 5
validation_fraction = 0.5
members = 2
[config]
cutoff_radial_a = 4.0
cutoff_angular_a = 3.0
n_max = [2, 2]
basis_size = [4, 4]
l_max = [4, 0, 0]
neurons = 4
zbl_outer_a = 2.0
batch = 2
generations = 4
output_interval = 2
[search]
steps = 2
neurons = [3, 5]
[[source]]
name = "ref"
kind = "reference"
path = "{ref}"
"""


@pytest.mark.parametrize("change, phrase", [
    (("name = \"tiny-v2\"", "name = \"tiny-v2\"\ncolour = 1"), "unknown key(s) colour"),
    (("[search]", "[search]\nseed = [1, 2]"), "seed is set by the recipe's top-level seed"),
    (("neurons = [3, 5]", "neurons = [3, 500]"), "neurons 500"),
    (("neurons = [3, 5]", "neurons = 3"), "[search] neurons must be a non-empty list"),
    (("members = 2", "members = 0"), "members an integer ≥ 1"),
])
def test_a_bad_recipe_names_the_file_before_any_training(tmp_path, change, phrase):
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE.format(ref="x").replace(*change))
    with pytest.raises(InputError) as err:
        load_recipe(path)
    assert str(path) in str(err.value) and phrase in str(err.value)


def test_the_grid_is_the_product_of_the_search_lists(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE.format(ref="x").replace("neurons = [3, 5]", "neurons = [3, 5]\nlambda_v = [0.1, 1.0, 2.0]"))
    recipe = load_recipe(path)
    assert len(recipe.grid()) == 6 and recipe.grid()[1] == {"neurons": 3, "lambda_v": 1.0}
    config = recipe.trial_config(recipe.grid()[-1])
    assert (config.neurons, config.lambda_v, config.generations, config.seed) == (5, 2.0, 2, 5)


def test_evaluation_adds_the_energy_references_back():
    frames = [with_labels(Atoms("LiSi", positions=[[0, 0, 0], [2, 0, 0]], cell=[6, 6, 6], pbc=True),
                          -7.0, np.array([[0.1, 0, 0], [-0.1, 0, 0]]), None)]
    forces = [np.array([[0.2, 0, 0], [-0.1, 0, 0]])]  # one component off by 0.1 eV/Å of six
    result = evaluate(frames, forces, np.array([-1.0 + 0.004]), {"Li": -2.0, "Si": -4.0})
    assert result.force_rmse_mev_per_a == pytest.approx(1000 * np.sqrt(0.01 / 6))
    assert result.energy_rmse_mev_per_atom == pytest.approx(2.0)  # (−6.996 − (−7)) / 2 atoms
    assert result.score == pytest.approx(result.force_rmse_mev_per_a / 75 + 2.0 / 5)
    trials = [SimpleNamespace(overrides={"neurons": n}, validation=Evaluation(f, 1.0, 1))
              for n, f in ((3, float("nan")), (5, 80.0), (7, 60.0), (9, 60.0))]
    assert best_overrides(trials) == {"neurons": 7} and best_overrides([]) == {}


def test_uncertainty_metrics():
    forces = np.zeros((3, 2, 3))
    forces[:, 0, 0] = [0.0, 1.0, 2.0]  # atom 0: variance 1 in x only; atom 1: no spread
    assert ensemble_force_sigma(forces) == pytest.approx([np.sqrt(1 / 3), 0.0])
    assert frame_rms(np.array([3.0, 4.0, 1.0]), [2, 1]) == pytest.approx([np.sqrt(12.5), 1.0])
    assert spearman_rho([1, 2, 3, 4], [10, 20, 25, 40]) == pytest.approx(1.0)
    assert spearman_rho([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman_rho([1, 2], [1, 2])) and np.isnan(spearman_rho([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="at least 2 members"):
        ensemble_force_sigma(forces[:1])
    with pytest.raises(ValueError, match="add up to 2, not 3"):
        frame_rms(np.ones(3), [1, 1])


def test_the_ensemble_spread_is_zero_for_identical_members_and_not_for_different_ones(tiny_reference, tmp_path):
    frames = training.reference_snapshot(tiny_reference).test
    for a in frames:
        a.info["source"] = "ref"

    def member(seed):
        path = write_random_model(tmp_path / f"m{seed}.txt", species=("Li", "Si", "C"), seed=seed)
        return SimpleNamespace(result=SimpleNamespace(nep_txt=path), run=SimpleNamespace(energy_reference_ev_per_atom={}))

    same = ensemble_test([member(1), member(1)], frames)
    assert same.frame_sigma_mev_per_a == pytest.approx([0.0] * len(frames), abs=1e-9)
    assert same.members[0] == same.members[1]
    other = ensemble_test([member(1), member(2)], frames)
    assert all(s > 0 for s in other.frame_sigma_mev_per_a)
    assert other.frame_force_rmse_mev_per_a == pytest.approx(same.frame_force_rmse_mev_per_a)  # member 0's
    groups = other.by_group()
    assert sum(g["frames"] for g in groups.values()) == len(frames) and all(k.startswith("ref/") for k in groups)


@needs_neppo
def test_train_recipe_searches_trains_the_ensemble_and_records_it(tiny_reference, tmp_path, capsys):
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE.format(ref=tiny_reference))
    out = tmp_path / "out"
    assert cli.main(["train", "--recipe", str(path), "--out", str(out)]) == 0
    record = json.loads((out / "provenance.json").read_text())
    assert record["schema"] == "nepbench.training/2" and record["recipe"]["name"] == "tiny-v2"
    trials = record["search"]["trials"]
    assert [t["overrides"] for t in trials] == [{"neurons": 3}, {"neurons": 5}]
    best = min(trials, key=lambda t: t["validation"]["score"])
    assert record["search"]["chosen"] == best["overrides"] == {"neurons": record["config"]["neurons"]}
    assert [m["seed"] for m in record["members"]] == [5, 6] and record["config"]["generations"] == 4
    assert record["counts"]["validation"] == {"ref": 1} and record["counts"]["test"] == {"ref": 2}
    # the final members train on train and validation, never on a test frame
    assert record["training_data"]["n_train_frames"] == 2 and record["training_data"]["n_test_frames"] == 2
    assert set(record["training_data"]["train_frame_sha256"]).isdisjoint(record["training_data"]["test_frame_sha256"])
    assert (out / "nep.txt").is_file() and (out / "members" / "member-1" / "nep.txt").is_file()
    assert len(record["ensemble_test"]["frames"]) == 2
    assert "ensemble spread vs error Spearman" in capsys.readouterr().err
