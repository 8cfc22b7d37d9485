"""The md_accuracy task end to end on a small AIMD run grown by FakeCP2K, and its report figures.

FakeCP2K moves every atom by the same 0.01 Å per step, so the reference g(r) is the same in every
frame: the sampling floor between the run's two halves must come out as zero, and the figures must
be drawn from the series exactly as the task writes them. Its temperature is 300 + step K, which
matches the 300 K run and is 65 % short of the 900 K one.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ase import units

from cp2k_fakes import FakeCP2K
from nepbench import aimd
from nepbench.spec import TaskSpec
from nepbench.engines.base import Trajectory
from nepbench.engines.cp2k import AIMD_SETTINGS, HARTREE_EV, CP2KEngine
from random_models import write_random_model
from nepbench.report import plots
from nepbench.tasks import TaskContext
from nepbench.metrics.diffusion import Diffusivity
from nepbench.tasks import md_accuracy, md_diffusion, md_nve
from nepbench.tasks.md_accuracy import MIN_RDF_PS, compare_rdf, rdf_halves_l1_max, run_md_accuracy, trajectory_halves
from nepbench.tasks.md_diffusion import d_log10_ratio, system_label

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
        + RUN.format(id="long", seed=3, temperature_k=361.0).replace("target_steps = 12", "target_steps = 120")
        # a 16-step warm-up: FakeCP2K's E_pot falls 1 mHa per step, so it ends far from stationary
        + RUN.format(id="drifting", seed=4, temperature_k=330.0).replace("warmup_steps = 2", "warmup_steps = 16")
        .replace("target_steps = 12", "target_steps = 40"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NVE = {"builder": "a-LixSi", "params": {"x": 2.0, "n_atoms": 12, "relax_steps": 0}, "temperature_k": 300.0,
       "timestep_fs": 0.5, "steps": 20, "seed": 3, "nvt_steps": 20}


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
    # beside it, the temperature the NVE run actually had, after its NVT stage
    assert outcome.metrics["nve_temperature_mean_k"] > 0
    assert (f"after 20 NVT steps (CSVR, 100 fs) at 300 K, from fresh 300 K velocities, 20 steps of 0.5 fs: "
            f"mean T {outcome.metrics['nve_temperature_mean_k']:.0f} K") in outcome.method


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


def test_a_pair_with_no_neighbours_within_r_max_has_no_w1_but_keeps_its_l1():
    """One Li atom beside 26 Si: no Li–Li pair exists, and Li–Si pairs lie beyond a 2.8 Å r_max only
    in the copy spread to 3.0 Å. g ≡ 0 there has no distance distribution, so no W1, but L1 is still defined
    (before, W1 raised "zero mass" and took the whole task down after its MD)."""
    near = _cubic_trajectory([2.5] * 2)
    near.symbols = ("Li",) + ("Si",) * 26
    far = dataclasses.replace(near, positions_a=near.positions_a * 1.2, cells_a=near.cells_a * 1.2)
    rdf = compare_rdf(near, far, 2.8, 40)
    assert rdf["pairs"]["Li-Si"]["w1_a"] is None and rdf["pairs"]["Li-Si"]["l1"] > 0.1  # the shell is lost
    assert rdf["pairs"]["Si-Si"]["w1_a"] is None  # no Si–Si pair within 2.8 Å at 3.0 Å spacing either
    same = compare_rdf(near, near, 2.8, 40)
    assert same["pairs"]["Li-Si"]["w1_a"] == pytest.approx(0.0, abs=1e-12) and same["pairs"]["Li-Si"]["l1"] == 0.0


#: Student's one-sided 95 % quantile with 2 degrees of freedom (3 blocks): the bound's multiple of stderr.
T95_2 = 2.919986


@pytest.mark.parametrize(("d_model", "stderr", "expected", "phrase"), [
    (2e-5, 1e-6, np.log10(2e-5 / 4e-5), None),
    # a flat MSD: D < max(D, 0) + t stderr at 95 % (2 stderr was a ~91 % bound with 3 blocks)
    (-1e-7, 1e-6, np.log10(T95_2 * 1e-6 / 4e-5), "the ratio is the one-sided 95 % bound"),
    (1e-20, 1e-6, np.log10(1e-20 / 4e-5), None),  # positive, however small: taken as it is
    (-1e-6, 1.5e-5, None, "too noisy to bound"),  # D + t stderr above D_AIMD: could agree (2 stderr was not)
    (0.0, 0.0, None, "too noisy to bound"),  # no motion and no spread: no finite bound
])
def test_a_model_d_at_or_below_zero_gives_a_bound_or_no_ratio(d_model, stderr, expected, phrase):
    ratio, note = d_log10_ratio(d_model, stderr, 4e-5)
    assert (ratio is None) == (expected is None)
    if expected is not None:
        assert ratio == pytest.approx(expected, rel=1e-6)
    assert note is None if phrase is None else phrase in note


def _fake_d(d_cm2_per_s: float, stderr: float = 1e-6, slope: float = 1.0) -> Diffusivity:
    return Diffusivity(d_cm2_per_s, stderr, (0.001, 0.004), "fake", (d_cm2_per_s,) * 3, slope, 1)


def _with_diffusivities(monkeypatch, values: list[Diffusivity]) -> None:
    """li_diffusivity returns `values` in call order: per compared run, the AIMD's then the model's."""
    queue = iter(values)
    monkeypatch.setattr(md_diffusion, "li_diffusivity", lambda traj, species="Li": next(queue))


def test_the_li_d_comparison_stops_at_the_first_stage_that_rules_it_out(monkeypatch):
    """One comparison for the task and the asv benchmark: no Li, too short and an AIMD MSD that is
    not diffusive each stop it before the model's D is fitted; the AIMD's D is fitted first."""
    fitted = []

    def fake_li_diffusivity(traj, species="Li"):
        fitted.append(traj)
        return {"aimd": _fake_d(4e-5, slope=slope), "model": _fake_d(1e-5)}["aimd" if traj is lithium else "model"]

    monkeypatch.setattr(md_diffusion, "li_diffusivity", fake_li_diffusivity)
    silicon = _cubic_trajectory([2.5] * 2)
    lithium = dataclasses.replace(silicon, symbols=("Li",) + ("Si",) * 26)
    model = dataclasses.replace(lithium)
    slope = 1.0
    no_li = md_accuracy.compare_li_d(silicon, model, 1.0, 0.5)
    short = md_accuracy.compare_li_d(lithium, model, 0.49, 0.5)
    assert (no_li.stage, short.stage) == ("no_li", "too_short") and not fitted
    assert no_li.log10_ratio is None and short.reason.startswith("AIMD production 0.49 ps < 0.5 ps")
    slope = 1.2
    ballistic = md_accuracy.compare_li_d(lithium, model, 1.0, 0.5)
    assert ballistic.stage == "not_diffusive" and "slope 1.20" in ballistic.reason and fitted == [lithium]
    assert ballistic.d_model is None and ballistic.log10_ratio is None
    slope, fitted[:] = 1.1, []
    compared = md_accuracy.compare_li_d(lithium, model, 1.0, 0.5)
    assert compared.stage == "diffusive" and fitted == [lithium, model]
    assert compared.log10_ratio == pytest.approx(np.log10(0.25)) and compared.reason is None


def _two_temperatures(reference_dir, tmp_path):
    return _run(reference_dir, tmp_path, runs=("lisi", "hot"), min_rdf_production_ps=0.0,
                min_diffusion_production_ps=0.0, max_temperature_offset=0.7)


def test_a_model_whose_li_does_not_diffuse_fails_by_its_bound_and_has_no_arrhenius_fit(
        reference_dir, tmp_path, monkeypatch):
    """lisi (300 K) agrees; under the model Li is caged in hot (900 K): its fitted D is below zero.
    Before, log10 of it was NaN, max() over [0.1, NaN] kept 0.1 (a pass), and the Arrhenius fit
    then raised on D ≤ 0 after all the MD had run. The AIMD's own Ea does not depend on the model:
    it was dropped with the model's point."""
    _with_diffusivities(monkeypatch, [_fake_d(1e-5), _fake_d(8e-6), _fake_d(4e-5), _fake_d(-1e-7)])
    outcome = _two_temperatures(reference_dir, tmp_path)
    metrics = outcome.metrics
    bound = T95_2 * 1e-6
    assert metrics["li_d_log10_ratio.lisi"] == pytest.approx(np.log10(0.8))
    assert metrics["li_d_log10_ratio.hot"] == pytest.approx(np.log10(bound / 4e-5), rel=1e-6)
    assert metrics["li_d_log10_ratio_abs_max"] == pytest.approx(-np.log10(bound / 4e-5), rel=1e-6)  # a fail
    assert "hot: " in outcome.method and "the ratio is the one-sided 95 % bound" in outcome.method
    system = next(key.split(".", 1)[1] for key in metrics if key.startswith("li_ea_aimd_ev."))
    assert metrics[f"li_ea_aimd_n_temperatures.{system}"] == 2 and f"li_ea_model_ev.{system}" not in metrics
    assert "model Li D ≤ 0 at 900 K" in outcome.metric_reasons[f"li_ea_model_ev.{system}"]
    assert outcome.series["arrhenius"]["d_model_cm2_per_s"] == [8e-6, -1e-7]  # the plot drops D ≤ 0


def test_the_aimd_activation_energy_is_the_same_for_every_model(reference_dir, tmp_path, monkeypatch):
    def ea_aimd(model_hot_d: float) -> float:
        _with_diffusivities(monkeypatch, [_fake_d(1e-5), _fake_d(8e-6), _fake_d(4e-5), _fake_d(model_hot_d)])
        (tmp_path / str(model_hot_d)).mkdir()
        metrics = _two_temperatures(reference_dir, tmp_path / str(model_hot_d)).metrics
        return next(v for k, v in metrics.items() if k.startswith("li_ea_aimd_ev."))

    assert ea_aimd(3e-5) == ea_aimd(-1e-7) > 0


def test_a_reference_run_without_li_keeps_its_rdf_and_skips_diffusion(reference_dir, tmp_path, monkeypatch):
    """An a-Si reference run: msd_multiple_origins raised "mask selects no atoms" and took the task,
    its g(r) and its NVE check down after all the MD had run."""
    silicon = _cubic_trajectory([2.5] * 2)
    assert not md_diffusion.has_species(silicon)
    assert md_diffusion.has_species(dataclasses.replace(silicon, symbols=("Li",) + ("Si",) * 26))
    monkeypatch.setattr(md_diffusion, "has_species", lambda traj, species="Li": False)  # lisi as if Li-free
    outcome = _two_temperatures(reference_dir, tmp_path)
    assert "rdf_l1_error_max.lisi" in outcome.metrics and "nve_drift_abs_ev_per_atom_per_ps" in outcome.metrics
    assert outcome.metric_reasons["li_d_log10_ratio.lisi"].startswith("no Li in this cell")
    assert not outcome.series["msd"]


def test_a_model_d_too_noisy_to_bound_leaves_the_headline_unjudged(reference_dir, tmp_path, monkeypatch):
    _with_diffusivities(monkeypatch, [_fake_d(1e-5), _fake_d(8e-6), _fake_d(4e-5), _fake_d(-1e-6, 3e-5)])
    outcome = _two_temperatures(reference_dir, tmp_path)
    assert "li_d_log10_ratio.hot" not in outcome.metrics and "li_d_log10_ratio_abs_max" not in outcome.metrics
    assert "too noisy to bound" in outcome.metric_reasons["li_d_log10_ratio.hot"]
    assert outcome.metric_reasons["li_d_log10_ratio_abs_max"].startswith(
        "the model's Li diffusivity is not resolved in hot (")
    # the model's D, not the reference, is what is missing: verify must not count it as an explained gap
    assert set(outcome.unresolved_metrics) == {"li_d_log10_ratio.hot", "li_d_log10_ratio_abs_max"}


def test_an_aimd_msd_with_a_nan_slope_is_not_taken_as_diffusive(reference_dir, tmp_path, monkeypatch):
    """abs(NaN − 1) > 0.15 is False: the old test let a flat AIMD MSD (log-log slope NaN) through."""
    _with_diffusivities(monkeypatch, [_fake_d(0.0, 0.0, slope=float("nan")), _fake_d(4e-5), _fake_d(1e-5)])
    outcome = _two_temperatures(reference_dir, tmp_path)
    assert "not diffusive" in outcome.metric_reasons["li_d_log10_ratio.lisi"]
    assert "li_d_log10_ratio.lisi" not in outcome.unresolved_metrics  # the reference's limit, not the model's
    assert "li_d_log10_ratio.lisi" not in outcome.metrics and "li_d_log10_ratio.hot" in outcome.metrics


def test_activation_energies_are_fitted_per_system_weighted_by_the_d_errors(reference_dir, tmp_path, monkeypatch):
    _with_diffusivities(monkeypatch, [_fake_d(1e-5), _fake_d(2e-5), _fake_d(4e-5), _fake_d(1e-4)])
    outcome = _two_temperatures(reference_dir, tmp_path)
    label = system_label("a-LixSi", {"x": 2.0, "n_atoms": 12, "relax_steps": 0})
    assert label == "a-LixSi(n_atoms=12,relax_steps=0,x=2.0)"
    inverse_kt = 1 / (units.kB * 300.0) - 1 / (units.kB * 900.0)  # two points: the line goes through both
    assert outcome.metrics[f"li_ea_aimd_ev.{label}"] == pytest.approx(np.log(4e-5 / 1e-5) / inverse_kt)
    assert outcome.metrics[f"li_ea_model_ev.{label}"] == pytest.approx(np.log(1e-4 / 2e-5) / inverse_kt)
    assert outcome.metrics[f"li_ea_aimd_stderr_ev.{label}"] > 0  # from the weights: 2 points leave no residual
    arrhenius = outcome.series["arrhenius"]
    assert arrhenius["system"] == [label, label] and arrhenius["temperature_k"] == [300.0, 900.0]
    png = plots.arrhenius_overlay_png({"random": outcome.series})
    assert png is not None and png.startswith(PNG_SIGNATURE)


def test_the_arrhenius_figure_draws_one_line_per_system():
    """Two compositions in one series: each gets its own AIMD and model lines (a line across them
    would join two different materials)."""
    from matplotlib.axes import Axes

    drawn = []
    series = {"arrhenius": {"system": ["A", "A", "B", "B"], "temperature_k": [600.0, 900.0, 600.0, 900.0],
                            "d_ref_cm2_per_s": [1e-6, 1e-5, 1e-7, 1e-6], "d_model_cm2_per_s": [2e-6, 2e-5, 2e-7, 2e-6],
                            "d_ref_stderr": [1e-7] * 4, "d_model_stderr": [1e-7] * 4}}
    original = Axes.errorbar

    def record(self, x, y, *args, **kwargs):
        drawn.append((kwargs.get("label"), list(np.round(1000 / np.asarray(x)))))  # x is 1000/T: back to T
        return original(self, x, y, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Axes, "errorbar", record)
        assert plots.arrhenius_overlay_png({"m": series, "n": series}) is not None
    assert drawn == [("AIMD (CP2K) A", [600.0, 900.0]), ("m A", [600.0, 900.0]), ("AIMD (CP2K) B", [600.0, 900.0]),
                     ("m B", [600.0, 900.0]), ("n A", [600.0, 900.0]), ("n B", [600.0, 900.0])]


class _RecordingEngine:
    """Runs nothing: returns, for each protocol, a three-frame trajectory whose last frame has moved
    by +20 Å along x (out of the cell, to be wrapped back) and a thermo table at the protocol's T."""

    def __init__(self):
        self.calls = []

    def md(self, atoms, protocol):
        from nepbench.engines.base import MDResult, Timing

        self.calls.append((atoms.copy(), protocol))
        moved = atoms.positions + [20.0, 0.0, 0.0]
        times = np.array([0.0, 0.001, 0.002])
        traj = Trajectory(tuple(atoms.get_chemical_symbols()), times, np.stack([atoms.positions, atoms.positions, moved]),
                          np.repeat(atoms.cell.array[None], 3, axis=0))
        thermo = {"time_ps": times, "temperature_k": np.full(3, protocol.temperature_k),
                  "potential_energy_ev": np.full(3, -1.0), "kinetic_energy_ev": np.full(3, 0.5)}
        return MDResult("fake", protocol, traj, thermo, Timing(len(atoms), protocol.steps, 1.0))


@pytest.mark.parametrize("nvt_steps", [None, 0, 7])
def test_the_nve_check_starts_from_an_nvt_equilibrated_cell_with_fresh_velocities(nvt_steps):
    """Without the NVT stage a packing's released heat sets the NVE temperature (a-Li2Si from 900 K
    ran at ~3,600 K with the default model): the NVE run must start from the NVT run's last frame,
    wrapped into the cell, with velocities drawn anew (seed + 1) at the table's temperature."""
    nve = {k: v for k, v in NVE.items() if k != "nvt_steps"}
    if nvt_steps is not None:
        nve["nvt_steps"] = nvt_steps
    expected_nvt = md_nve.DEFAULT_NVE_NVT_STEPS if nvt_steps is None else nvt_steps
    engine = _RecordingEngine()
    metrics, units_, series = {}, {}, {}
    words = md_nve.record_nve_check(md_nve.NveParams.from_params(nve), engine, metrics, units_, series)
    protocols = [protocol for _, protocol in engine.calls]
    assert [p.ensemble for p in protocols] == (["nvt", "nve"] if expected_nvt else ["nve"])
    packing = engine.calls[0][0]
    nve_atoms, nve_protocol = engine.calls[-1]
    assert nve_protocol.temperature_k == 300.0 and nve_protocol.steps == 20
    if expected_nvt:
        nvt = protocols[0]
        assert (nvt.steps, nvt.temperature_k, nvt.timestep_fs, nvt.seed) == (expected_nvt, 300.0, 0.5, 3)
        assert nve_protocol.seed == 4  # fresh velocities, not the NVT run's draw
        shifted = packing.copy()
        shifted.positions += [20.0, 0.0, 0.0]
        shifted.wrap()
        assert np.allclose(nve_atoms.positions, shifted.positions)
        assert np.all(nve_atoms.get_scaled_positions(wrap=False) < 1.0)
        assert f"after {expected_nvt} NVT steps" in words
    else:
        assert nve_protocol.seed == 3 and np.allclose(nve_atoms.positions, packing.positions)
        assert "from 300 K velocities on the packing" in words
    assert metrics["nve_temperature_mean_k"] == pytest.approx(300.0)


def test_no_diffusivity_is_compared_from_a_run_whose_warm_up_still_drifts(reference_dir, tmp_path, monkeypatch):
    """Given a diffusive AIMD and model D, a run whose E_pot still falls over its warm-up's second half
    (FakeCP2K: −1 mHa per step, a trend with zero scatter) has its D refused, with the trend named;
    its g(r) is still compared. The 2-step warm-ups of the other runs cannot be tested: no refusal."""
    _with_diffusivities(monkeypatch, [_fake_d(4e-5), _fake_d(4e-5)] * 2)
    outcome = _run(reference_dir, tmp_path, runs=("drifting",), min_rdf_production_ps=0.0,
                   min_diffusion_production_ps=0.0, max_temperature_offset=0.7)
    n_atoms = len(aimd.load_aimd(aimd.load_aimd_spec(reference_dir / "aimd.toml"), "drifting").first_frame)
    slope = -1e-3 * HARTREE_EV * 1000 / n_atoms * 1000  # meV/atom/ps
    reason = outcome.metric_reasons["li_d_log10_ratio.drifting"]
    assert reason.startswith(f"AIMD warm-up not stationary: E_pot trend {slope:+.1f} ± 0.0 meV/atom/ps")
    assert "li_d_log10_ratio.drifting" not in outcome.metrics and "li_d_log10_ratio_abs_max" not in outcome.metrics
    assert "stationary warm-up" in outcome.metric_reasons["li_d_log10_ratio_abs_max"]
    assert "rdf_l1_error_max.drifting" in outcome.metrics
    assert "drifting: " in outcome.method and "(warm-up not stationary)" in outcome.method
    compared = _run(reference_dir, tmp_path, runs=("lisi",), min_rdf_production_ps=0.0,
                    min_diffusion_production_ps=0.0, max_temperature_offset=0.7)
    assert "li_d_log10_ratio.lisi" in compared.metrics  # warm-up of 2 steps: untested, not refused


def test_the_warm_up_verdict_needs_a_committed_history():
    assert md_accuracy.warmup_verdict(None, aimd.warmup_stationarity) == {"warmup_stationary": None, "reason": None}
    flat = {"time_ps": [0.001 * s for s in range(20)], "potential_ev_per_atom": [0.0, 1e-3] * 10, "warmup_ps": 0.02}
    verdict = md_accuracy.warmup_verdict(flat, aimd.warmup_stationarity)
    assert verdict["warmup_stationary"] is True and verdict["reason"] is None
