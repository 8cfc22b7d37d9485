"""The md_accuracy task end to end on a small AIMD run grown by FakeCP2K, and its report figures.

FakeCP2K moves every atom by the same 0.01 Å per step, so the reference g(r) is the same in every
frame: the sampling floor between the run's two halves must come out as zero, and the figures must
be drawn from the series exactly as the task writes them. Its temperature is 300 + step K, which
matches the 300 K run and is 65 % short of the 900 K one.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import units

from cp2k_fakes import FakeCP2K
from nepbench import aimd
from nepbench.config import TaskSpec
from nepbench.engines.base import Trajectory
from nepbench.engines.cp2k import AIMD_SETTINGS, HARTREE_EV, CP2KEngine
from nepbench.models import write_random_model
from nepbench.report import plots
from nepbench.tasks import TaskContext
from nepbench.tasks.md_accuracy import MIN_RDF_PS, rdf_halves_l1_max, run_md_accuracy, trajectory_halves

RUN = """
[[run]]
id = "{id}"
builder = "a-LixSi"
params = {{ x = 2.0, n_atoms = 12, relax_steps = 0 }}
seed = {seed}
temperature_k = {temperature_k}
timestep_fs = 1.0
sample_interval = 2
warmup_steps = 2
target_steps = 12
"""
# two runs that differ only in their thermostat temperature (FakeCP2K's frames sit near 300 K)
SPEC = ('settings = "aimd"\nsegment_steps = 6\n' + RUN.format(id="lisi", seed=1, temperature_k=300.0)
        + RUN.format(id="hot", seed=2, temperature_k=900.0)
        # 120 steps: enough frames for a D fit; FakeCP2K's mean T over steps 2-120 is 361 K
        + RUN.format(id="long", seed=3, temperature_k=361.0).replace("target_steps = 12", "target_steps = 120"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NVE = {"builder": "a-LixSi", "params": {"x": 2.0, "n_atoms": 12, "relax_steps": 0}, "temperature_k": 300.0,
       "timestep_fs": 0.5, "steps": 20, "seed": 3}


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("reference_data")
    (root / "aimd.toml").write_text(SPEC)
    engine = CP2KEngine(AIMD_SETTINGS)
    monkeypatch_module.setattr(engine, "version", lambda: "CP2K version fake")
    monkeypatch_module.setattr(engine, "_execute", FakeCP2K())
    aimd.grow(aimd.load_aimd_spec(root / "aimd.toml"), engine)
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _run(reference_dir, tmp_path, runs=("lisi",), **params):
    model = write_random_model(tmp_path / "nep.txt", species=("Li", "Si"), seed=2)
    spec = TaskSpec("md-random", "md_accuracy", "md", {"runs": list(runs), "length_factors": [1], "n_bins": 40,
                                                        "nve": NVE, **params})
    return run_md_accuracy(spec, TaskContext(tmp_path / "work", reference_dir, model, "random", None))


def test_compares_g_r_beside_the_aimd_sampling_floor_and_draws_the_figures(reference_dir, tmp_path):
    outcome = _run(reference_dir, tmp_path, min_rdf_production_ps=0.0)
    metrics = outcome.metrics
    assert 0.0 <= metrics["rdf_l1_error_max.lisi"] <= 1.0
    assert metrics["rdf_l1_error_max"] == metrics["rdf_l1_error_max.lisi"]
    # rigidly translated frames: both halves have the same g(r)
    assert metrics["rdf_l1_aimd_halves.lisi"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["rdf_l1_aimd_halves_max"] == metrics["rdf_l1_aimd_halves.lisi"]
    assert set(outcome.series["rdf"]) == {"lisi"} and set(outcome.series["msd"]) == {"lisi"}
    assert {"Li-Li", "Li-Si", "Si-Si"} <= set(outcome.series["rdf"]["lisi"]["pairs"])
    assert "too short" in outcome.metric_reasons["li_d_log10_ratio.lisi"]
    # the model's MD temperature is recorded beside the AIMD's, so a reader sees both ran at one T
    assert metrics["model_temperature_mean_k.lisi"] > 0 and metrics["model_temperature_stderr_k.lisi"] >= 0
    assert f"NEP T {metrics['model_temperature_mean_k.lisi']:.0f} ±" in outcome.method
    # FakeCP2K's potential energy falls 1 mHa per 1 fs step: a trend of -27.2 eV/ps over the cell, and
    # the heat that releases holds a 50 fs CSVR thermostat 2 P τ / ((3N − 3) k_B) above its target
    n_atoms = len(aimd.load_aimd(aimd.load_aimd_spec(reference_dir / "aimd.toml"), "lisi").first_frame)
    slope = -1e-3 * HARTREE_EV * 1000 / n_atoms * 1000  # meV/atom/ps
    assert metrics["aimd_potential_trend_mev_per_atom_per_ps.lisi"] == pytest.approx(slope, rel=1e-9)
    assert metrics["aimd_potential_trend_stderr_mev_per_atom_per_ps.lisi"] == pytest.approx(0.0, abs=1e-6)
    heat_k = 2 * (1e-3 * HARTREE_EV * 1000) * 0.05 / ((3 * n_atoms - 3) * units.kB)
    assert metrics["aimd_thermostat_heat_offset_k.lisi"] == pytest.approx(heat_k, rel=1e-9)
    assert f"E_pot trend {slope:+.0f} ± 0 meV/atom/ps (its heat holds T {heat_k:+.0f} K off target)" in outcome.method
    # the AIMD run itself, every committed step: FakeCP2K books 300 + step K at 1 fs per step
    history = outcome.series["aimd_thermo"]["lisi"]
    assert history["time_ps"] == pytest.approx([0.001 * s for s in range(13)])
    assert history["temperature_k"] == pytest.approx([300.0 + s for s in range(13)])
    assert history["warmup_ps"] == pytest.approx(0.002) and history["target_temperature_k"] == 300.0
    assert history["potential_ev_per_atom"][0] == 0.0 and history["equilibrated_ps"] is None  # 12 steps: too few
    # the report draws the series as the task wrote them
    for draw in (plots.aimd_thermo_png, plots.rdf_overlay_png, plots.msd_overlay_png):
        png = draw({"random": outcome.series})
        assert png is not None and png.startswith(PNG_SIGNATURE)


def test_a_run_shorter_than_the_minimum_is_not_compared(reference_dir, tmp_path):
    outcome = _run(reference_dir, tmp_path)  # default minimum, far longer than the 10 fs run here
    assert MIN_RDF_PS > 0.01
    assert "rdf_l1_error_max.lisi" not in outcome.metrics and "rdf_l1_error_max" not in outcome.metrics
    assert "too short to compare g(r)" in outcome.metric_reasons["rdf_l1_error_max.lisi"]
    assert f"≥{MIN_RDF_PS} ps" in outcome.metric_reasons["rdf_l1_error_max"]
    assert "nve_drift_abs_ev_per_atom_per_ps" in outcome.metrics  # the NVE check still runs


def test_a_run_far_from_its_thermostat_temperature_is_not_compared(reference_dir, tmp_path):
    outcome = _run(reference_dir, tmp_path, runs=("lisi", "hot"), min_rdf_production_ps=0.0)
    reason = outcome.metric_reasons["rdf_l1_error_max.hot"]
    assert "not equilibrated" in reason and "against its 900 K thermostat (-66 %, " in reason
    assert "rdf_l1_error_max.hot" not in outcome.metrics
    assert set(outcome.series["aimd_thermo"]) == {"lisi", "hot"}  # drawn, so the reader sees why
    assert outcome.metrics["rdf_l1_error_max"] == outcome.metrics["rdf_l1_error_max.lisi"]  # lisi still compared
    # production frames every 2 steps from step 2 to 12: FakeCP2K's 302 … 312 K
    assert outcome.metrics["aimd_temperature_mean_k.lisi"] == pytest.approx(307.0)
    assert outcome.metrics["aimd_temperature_mean_k.hot"] == pytest.approx(307.0)
    assert 0 < outcome.metrics["aimd_temperature_stderr_k.hot"] < 10
    assert "307 ± " in reason and "standard errors" in reason


def test_no_diffusivity_is_compared_where_the_aimd_msd_is_not_diffusive(reference_dir, tmp_path):
    """FakeCP2K moves every atom by 0.01 Å per step: ballistic, MSD ∝ t² (log-log slope 2), so
    whatever the run's length, its fitted slope is no diffusivity and no ratio is reported."""
    outcome = _run(reference_dir, tmp_path, runs=("long",), min_rdf_production_ps=0.0,
                   min_diffusion_production_ps=0.0)
    assert outcome.metrics["li_d_aimd_loglog_slope.long"] == pytest.approx(2.0, abs=0.05)
    reason = outcome.metric_reasons["li_d_log10_ratio.long"]
    assert "not diffusive" in reason and "log-log slope 2.00" in reason
    assert "li_d_log10_ratio.long" not in outcome.metrics and "li_d_log10_ratio_abs_max" not in outcome.metrics
    assert "diffusive Li MSD" in outcome.metric_reasons["li_d_log10_ratio_abs_max"]


def test_an_offset_within_its_sampling_error_does_not_stop_the_comparison(reference_dir, tmp_path):
    """The refusal needs the offset to be both large and significant: with a threshold of 10⁶
    standard errors the −66 % run is within its error, so it is compared (and so with a 70 % bound)."""
    for params in ({"min_temperature_offset_z": 1e6}, {"max_temperature_offset": 0.7}):
        outcome = _run(reference_dir, tmp_path, runs=("hot",), min_rdf_production_ps=0.0, **params)
        assert "rdf_l1_error_max.hot" in outcome.metrics, params
        assert "T 307 ± " in outcome.method and "against 900 K (-65.9 %" in outcome.method


def _cubic_trajectory(spacings_a: list[float]) -> Trajectory:
    """Frames of a simple cubic lattice (3×3×3 in a cube of side 3a) with lattice spacing a per frame."""
    grid = np.array([[i, j, k] for i in range(3) for j in range(3) for k in range(3)], float)
    return Trajectory(("Si",) * 27, np.arange(len(spacings_a)) * 0.01, np.array([grid * a for a in spacings_a]),
                      np.array([np.eye(3) * 3 * a for a in spacings_a]))


def test_halves_floor_sees_a_run_that_changes_between_its_halves():
    steady = _cubic_trajectory([2.5] * 4)
    changing = _cubic_trajectory([2.5, 2.5, 2.2, 2.2])
    first, second = trajectory_halves(changing)
    assert first.n_frames == 2 and second.n_frames == 2 and np.allclose(second.cells_a[0], np.eye(3) * 6.6)
    assert rdf_halves_l1_max(steady, 3.2, 40) == pytest.approx(0.0, abs=1e-12)
    assert rdf_halves_l1_max(changing, 3.2, 40) > 0.5  # the first shell moved from 2.5 Å to 2.2 Å
    with pytest.raises(ValueError, match="at least 2 frames"):
        rdf_halves_l1_max(_cubic_trajectory([2.5]), 3.2, 40)
