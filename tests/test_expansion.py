"""The core–shell expansion task: parameters, particle geometry, Li insertion, relaxation, one tiny end-to-end run.
(The headline gate and the summary over seeds: tests/test_expansion_headline.py.)

The end-to-end run uses a small random NEP4 model (seeded, in tmp_path): it checks the protocol's
mechanics and the outcome's shape, not the physics of any potential.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial import cKDTree

from nepbench.spec import TaskSpec

from nepbench.suite import load_suite
from nepbench.engines.gpumd import PERIODIC_VACUUM_A
from nepbench.errors import ConfigError, EngineNotAvailable
from nepbench.metrics import expansion as ex
from random_models import write_random_model
from nepbench.report import criteria, plots
from nepbench.systems.core_shell import diamond_sphere
from nepbench.tasks import TaskContext, task_function
from nepbench.tasks import expansion as xp


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("model") / "nep.txt", seed=2)


def ctx_for(model: Path, tmp_path: Path) -> TaskContext:
    return TaskContext(tmp_path / "work", tmp_path, model, "random", "0" * 64)


# ------------------------------------------------------------------------------------ geometry


@pytest.mark.parametrize("t_nm", [0.0, 0.5])
def test_particle_geometry_used_by_the_task(t_nm: float) -> None:
    p = xp.ExpansionParams(core_radius_nm=0.8, shell_thicknesses_nm=(t_nm,))
    atoms = xp.build_particle(p, t_nm, seed=3)
    assert not any(atoms.pbc)
    tags = atoms.get_tags()
    assert set(np.unique(tags)) == ({1, 2} if t_nm else {1})
    assert (np.array(atoms.get_chemical_symbols())[tags == 1] == "Si").all()
    c = xp.host_centre_a(atoms, len(atoms))
    assert np.allclose(c, atoms.cell.lengths() / 2, atol=0.5)  # centred in its vacuum box
    r = ex.radii_a(atoms.positions, c)
    assert r.max() <= 10 * (0.8 + t_nm) + 0.5
    assert xp.core_radius_a(atoms, c) == pytest.approx(8.0, abs=0.5)
    if t_nm:
        assert xp.shell_inner_radius_a(atoms, c) == pytest.approx(8.0, abs=0.6)
        outer = ex.shell_radii_a(r[tags == 2]).outer_a
        assert outer == pytest.approx(13.0, abs=0.6)
    else:
        assert xp.shell_inner_radius_a(atoms, c) is None


def test_thick_shell_is_measured_against_its_built_geometry() -> None:
    """t = 1.4 nm on a 0.8 nm core (t/R = 1.75, inner/outer = 8/22 = 0.36 < BALL_INNER_FRACTION, as
    a 4 nm shell on a core under 2.67 nm): the shell's inner surface, the particle and the core come
    out at the radii the builder used (±0.5 Å, the builder's own surface roughness in the test above)."""
    p = xp.ExpansionParams(core_radius_nm=0.8, shell_thicknesses_nm=(1.4,))
    atoms = xp.build_particle(p, 1.4, seed=1)
    n = len(atoms)
    assert 8.0 / 22.0 < ex.BALL_INNER_FRACTION
    c = xp.host_centre_a(atoms, n)
    assert xp.shell_inner_radius_a(atoms, c) == pytest.approx(8.0, abs=0.5)
    v = xp.volumes_a3(atoms, [atoms.positions], n, p, ["radial"])
    radius = {k: float(np.cbrt(3 * vol / (4 * np.pi))) for k, vol in v.items()}
    assert radius["particle_radial"] == pytest.approx(22.0, abs=0.5)
    assert radius["core_radial"] == pytest.approx(8.0, abs=0.5)
    # Li in the core counts as core; Li in the shell does not (before: every Li counted as core)
    li_atoms = Atoms(["Li", "Li"], positions=c + np.array([[4.0, 0, 0], [0, 15.0, 0]]), tags=[xp.LI_TAG] * 2)
    with_li = atoms + li_atoms
    assert xp.core_atoms(with_li, c)[n:].tolist() == [True, False]


@pytest.mark.parametrize("e", [0.02, -0.01])
def test_uniform_scaling_through_compare_states_gives_exact_dv(e: float) -> None:
    """Scale every coordinate of the (thick-shelled) particle about its centre by (1 + e): ΔV/V0 of
    the particle and the core must be (1 + e)³ − 1 (sign included) by the radial and hull volumes
    (exact under scaling; the probe is not, docs/metrics.md), and every strain must be e."""
    p = xp.ExpansionParams(core_radius_nm=0.8, shell_thicknesses_nm=(1.4,))
    ref = xp.build_particle(p, 1.4, seed=1)
    n = len(ref)
    c = xp.host_centre_a(ref, n)
    lith = ref.copy()
    lith.positions = c + (1.0 + e) * (ref.positions - c)
    out = xp.compare_states(lith, [lith.positions], ref, [ref.positions], n, p, ex.radial_edges_nm(2.6, 0.2))
    want = (1.0 + e) ** 3 - 1.0
    for m in ("radial", "hull"):
        assert out["particle_dv_over_v0"][m] == pytest.approx(want, abs=1e-9), m
        assert out["core_dv_over_v0"][m] == pytest.approx(want, abs=1e-9), m
    assert np.sign(out["particle_dv_over_v0"]["probe"]) == np.sign(e)
    shell = out["shell"]
    assert shell["hoop_strain"] == pytest.approx(e, abs=1e-12)
    assert shell["cavity_dv_over_v0"] == pytest.approx(want, abs=1e-9)
    assert shell["outer_dv_over_v0"] == pytest.approx(want, abs=1e-9)
    strain = out["radial"]["radial_strain"]
    assert np.allclose(strain[np.isfinite(strain)], e)


def test_a_shell_without_an_inner_surface_is_measured_the_same_way_everywhere() -> None:
    """Shell-tagged atoms whose inner-half fit finds no inner surface (here they fill the ball, N ∝ r):
    every consumer reads the one `shell_fit_a`, whose inner surface falls back to the core Si's
    equimolar radius. Before, `shell_inner_radius_a` fell back while the radial volume and the shell
    strain raised on the same atoms."""
    rng = np.random.default_rng(4)
    si = diamond_sphere(8.0, np.array([0.3, 0.7, 1.1]))
    d = rng.normal(size=(300, 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    c_atoms = d * (20.0 * rng.random(300))[:, None]
    box = 60.0
    ref = Atoms(["Si"] * len(si) + ["C"] * len(c_atoms), positions=np.vstack([si, c_atoms]) + box / 2,
                tags=[xp.CORE_TAG] * len(si) + [xp.SHELL_TAG] * len(c_atoms), cell=[box] * 3)
    n = len(ref)
    c = xp.host_centre_a(ref, n)
    r_shell = ex.radii_a(ref.positions[ref.get_tags() == xp.SHELL_TAG], c)
    with pytest.raises(ex.NoInnerSurfaceError):
        ex.shell_radii_a(r_shell, known_shell=True)
    core_si = ex.equimolar_radii_a(ex.radii_a(ref.positions[: len(si)], c)).outer_a
    fit = xp.shell_fit_a(ref, c)
    assert fit.inner_a == xp.shell_inner_radius_a(ref, c) == core_si
    assert fit.outer_a == ex.equimolar_radii_a(r_shell, ex.SHELL_OUTER_WINDOW).outer_a
    p = xp.ExpansionParams(core_radius_nm=0.8, shell_thicknesses_nm=(1.2,))
    v = xp.volumes_a3(ref, [ref.positions], n, p, ["radial"])
    assert v["particle_radial"] == pytest.approx(ex.sphere_volume_a3(fit.outer_a))
    lith = ref.copy()
    lith.positions = c + 1.01 * (ref.positions - c)
    out = xp.compare_states(lith, [lith.positions], ref, [ref.positions], n, p, xp.radial_edges_for(p))
    assert out["shell"]["cavity_dv_over_v0"] == pytest.approx(1.01**3 - 1, abs=1e-9)
    assert out["particle_dv_over_v0"]["radial"] == pytest.approx(1.01**3 - 1, abs=1e-9)


def test_radial_bins_reach_past_the_largest_predicted_particle() -> None:
    """The bins come from `predicted_outer_radius_nm`, as its docstring says (they used another formula)."""
    for p in (xp.ExpansionParams(), xp.ExpansionParams(core_radius_nm=5.0, shell_thicknesses_nm=(0.0, 4.0, 5.0),
                                                       target_x=3.75, vacuum_nm=4.5, radial_bin_nm=0.2)):
        edges = xp.radial_edges_for(p)
        largest = max(xp.predicted_outer_radius_nm(p, t) for t in p.shell_thicknesses_nm)
        assert edges[0] == 0.0 and np.allclose(np.diff(edges), p.radial_bin_nm)
        assert largest + xp.RADIAL_BINS_PAD_NM <= edges[-1] + 1e-9 < largest + xp.RADIAL_BINS_PAD_NM + p.radial_bin_nm


# ------------------------------------------------------------------------------------ insertion


def test_insertion_sites_respect_distances_and_stay_in_the_core() -> None:
    p = xp.ExpansionParams(core_radius_nm=1.0, shell_thicknesses_nm=(0.4,))
    atoms = xp.build_particle(p, 0.4, seed=1)
    n = len(atoms)
    c = xp.host_centre_a(atoms, n)
    region = xp.core_radius_a(atoms, c) - p.core_margin_a
    sites = xp.insertion_sites(atoms.positions, c, region, 60, 2.0, np.random.default_rng(0))
    assert len(sites) == 60
    assert np.linalg.norm(sites - c, axis=1).max() <= region + 1e-9
    assert cKDTree(atoms.positions).query(sites)[0].min() >= 2.0 - 1e-9
    d = cKDTree(sites).query(sites, k=2)[0][:, 1]
    assert d.min() >= 2.0 - 1e-9
    # asking for more than fits returns what fits, still obeying the distances
    many = xp.insertion_sites(atoms.positions, c, region, 10_000, 2.0, np.random.default_rng(0))
    assert 60 <= len(many) < 10_000
    assert cKDTree(many).query(many, k=2)[0][:, 1].min() >= 2.0 - 1e-9
    assert xp.insertion_sites(atoms.positions, c, region, 0, 2.0, np.random.default_rng(0)).shape == (0, 3)
    with pytest.raises(ValueError):
        xp.insertion_sites(atoms.positions, c, -1.0, 5, 2.0, np.random.default_rng(0))


def test_lithiate_appends_tagged_li_inside_the_core_and_is_seeded() -> None:
    p = xp.ExpansionParams(core_radius_nm=1.0, shell_thicknesses_nm=(0.4,))
    atoms = xp.build_particle(p, 0.4, seed=1)
    n = len(atoms)
    a, got_a = xp.lithiate(atoms, 40, p, np.random.default_rng(5), n)
    b, got_b = xp.lithiate(atoms, 40, p, np.random.default_rng(5), n)
    c, _ = xp.lithiate(atoms, 40, p, np.random.default_rng(6), n)
    assert got_a == got_b == 40 and len(a) == n + 40
    assert (np.array(a.get_chemical_symbols())[n:] == "Li").all() and (a.get_tags()[n:] == xp.LI_TAG).all()
    assert np.array_equal(a.positions, b.positions)
    assert not np.array_equal(a.positions[n:], c.positions[n:])
    centre = xp.host_centre_a(a, n)
    inner = xp.shell_inner_radius_a(a, centre)
    assert np.linalg.norm(a.positions[n:] - centre, axis=1).max() < inner
    assert xp.core_atoms(a, centre)[n:].all()  # the new Li count as core


# ------------------------------------------------------------------------------------ parameters


def test_params_validation_and_schedule() -> None:
    p = xp.ExpansionParams.from_params({"target_x": 1.0, "dx": 0.4, "shell_thicknesses_nm": [0, 1.5]})
    assert p.x_schedule == pytest.approx([0.4, 0.8, 1.0])
    assert p.headline_t == 1.5 and xp.t_key(1.5) == "1.5" and xp.t_key(4) == "4.0" and xp.t_key(0.25) == "0.25"
    with pytest.raises(ConfigError, match="unknown"):
        xp.ExpansionParams.from_params({"shell_thickness": [1.0]})
    with pytest.raises(ConfigError, match="gpumd"):
        xp.ExpansionParams.from_params({"engine": "gpumd", "relax": "fire"})
    with pytest.raises(ConfigError, match="headline"):
        xp.ExpansionParams.from_params({"headline_t_nm": 3.0})
    with pytest.raises(ConfigError, match="dx"):
        xp.ExpansionParams.from_params({"target_x": 0.5, "dx": 1.0})
    plan = xp.planned_cost(xp.ExpansionParams())
    assert set(plan["per_t"]) == {"0.0", "0.4", "0.8"}
    assert plan["atom_steps"] < 3.5e6  # the quick variant's budget (2 shared cores, ≲ 4 min)


@pytest.mark.parametrize("key, value", [
    ("core", "glassy"), ("shell_density_g_cm3", -1.0), ("seeds", [-1]), ("seeds", [1.5]), ("seeds", [True]),
    ("probe_radius_a", 0.0), ("temperature_k", -300.0), ("nep_threads", 0), ("nep_threads", 2.0),
    ("shell_thicknesses_nm", 4.0), ("shell_thicknesses_nm", "4"), ("core_radius_nm", "1.0"),
    ("target_x", float("nan")), ("control", "yes"), ("reference_steps", 80.5), ("radial_bin_nm", 0.0),
    ("min_x_fraction", 0.0), ("min_x_fraction", 1.5), ("max_last_half_change_percent", -0.1),
    ("min_bare_dv_percent", -1.0), ("min_bare_dv_percent", float("nan"))])
def test_bad_parameters_are_refused_up_front_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        xp.ExpansionParams.from_params({key: value})


def test_vacuum_must_hold_the_predicted_growth() -> None:
    """The bare core grows most: R·(1 + x)^(1/3); a shell is pushed out at constant volume."""
    paper = {"core_radius_nm": 5.0, "shell_thicknesses_nm": [0.0, 4.0], "target_x": 3.75, "headline_t_nm": 4.0}
    p = xp.ExpansionParams(**{**paper, "shell_thicknesses_nm": (0.0, 4.0)})
    assert xp.predicted_outer_radius_nm(p, 0.0) == pytest.approx(5.0 * 4.75 ** (1 / 3))
    assert xp.predicted_outer_radius_nm(p, 4.0) == pytest.approx((9.0**3 + 3.75 * 5.0**3) ** (1 / 3))
    assert xp.VACUUM_MARGIN_NM == pytest.approx(PERIODIC_VACUUM_A / 20)  # Å per side → nm
    growth = 5.0 * (4.75 ** (1 / 3) - 1)  # 3.40 nm
    with pytest.raises(ConfigError, match="vacuum_nm"):
        xp.ExpansionParams.from_params({**paper, "vacuum_nm": 2.0})
    with pytest.raises(ConfigError, match="vacuum_nm"):
        xp.ExpansionParams.from_params({**paper, "vacuum_nm": growth + xp.VACUUM_MARGIN_NM - 0.01})
    xp.ExpansionParams.from_params({**paper, "vacuum_nm": growth + xp.VACUUM_MARGIN_NM + 0.01})
    # every suite's expansion task passes (the paper suite's vacuum was 2 nm)
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "suites").glob("*.toml")):
        for task in load_suite(path).tasks:
            if task.type == "expansion":
                xp.ExpansionParams.from_params(dict(task.params))


def test_params_that_would_fail_hours_later_are_refused_when_loaded() -> None:
    """Each of these passed validation and raised only after the reference relaxation (or at the end
    of the run): a probe radius under the voxel the probe volume picks for the grown particle, a
    core_margin_a that leaves no insertion region, a core too small for the equimolar fit."""
    paper = {"core_radius_nm": 5.0, "shell_thicknesses_nm": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "target_x": 3.75,
             "vacuum_nm": 4.5, "headline_t_nm": 4.0, "engine": "gpumd", "relax": "md"}
    with pytest.raises(ConfigError, match=r"probe_radius_a = 1 Å must exceed the probe volume's voxel, 1\.45 Å"):
        xp.ExpansionParams.from_params({**paper, "probe_radius_a": 1.0})
    xp.ExpansionParams.from_params({**paper, "probe_radius_a": 1.5})
    with pytest.raises(ConfigError, match=r"core_margin_a = 12 Å leaves an insertion region of radius -2 Å"):
        xp.ExpansionParams.from_params({"core_radius_nm": 1.0, "core_margin_a": 12.0})
    with pytest.raises(ConfigError, match="less than 1 Å"):  # the measured core radius may leave nothing
        xp.ExpansionParams.from_params({"core_radius_nm": 1.0, "core_margin_a": 9.5})
    xp.ExpansionParams.from_params({"core_radius_nm": 1.0, "core_margin_a": 9.0})
    for radius, fewest in ((0.5, 23), (0.55, 36)):  # seed 1 builds 23 and 36 Si; the fit needs 38
        with pytest.raises(ConfigError, match=f"core_radius_nm = {radius} gives {fewest} core Si"):
            xp.ExpansionParams.from_params({"core_radius_nm": radius, "shell_thicknesses_nm": [0.0, 0.5],
                                            "seeds": [1]})
    # 0.6 nm passes and its smallest seed's core does take the fit (and an insertion) as the task runs it
    p = xp.ExpansionParams.from_params({"core_radius_nm": 0.6, "shell_thicknesses_nm": [0.0, 0.5]})
    atoms = xp.build_particle(p, 0.5, 1)
    assert xp.lithiate(atoms, 5, p, np.random.default_rng(0), len(atoms))[1] == 5


class LinearGrowthEngine:
    """A stand-in engine whose md() returns the particle scaled about `centre_a` by 1 + 0.01·step/steps
    (radius +1 % at the end of the run, +0.5 % half-way), with frames at steps 0, k, 2k, … (first_frame
    0, as the CPU engine records) or k, 2k, … (1, as GPUMD does)."""

    name = "linear-growth"

    def __init__(self, centre_a: np.ndarray, first_frame: int) -> None:
        self.centre_a, self.first_frame = centre_a, first_frame

    def md(self, atoms: Atoms, prot) -> SimpleNamespace:
        k = prot.sample_interval
        step = np.arange(self.first_frame, prot.steps // k + 1) * k
        scale = 1.0 + 0.01 * step / prot.steps
        pos = np.array([self.centre_a + f * (atoms.positions - self.centre_a) for f in scale])
        return SimpleNamespace(trajectory=SimpleNamespace(positions_a=pos, times_ps=step * prot.timestep_fs / 1000),
                               timing=SimpleNamespace(engine_reported_atom_steps_per_s=1.0, atom_steps_per_s=1.0),
                               thermo={"temperature_k": np.full(len(step), 300.0),
                                       "potential_energy_ev": np.zeros(len(step))})


@pytest.mark.parametrize("first_frame", [0, 1])
def test_md_relaxation_reads_its_volume_at_the_end_and_just_before_half_way(first_frame: int) -> None:
    """With frames every steps/10 the 'end' average sat at 0.8 of the run and the half-way one at 0.3:
    a radius growing linearly to +1 % read +0.80 % and +0.30 %. The frames now span the last 10 % of
    the run (and the 10 % up to its half-way step): +0.95 % and +0.45 %."""
    p = xp.ExpansionParams(relax="md", average_frames=5)
    rng = np.random.default_rng(1)
    atoms = Atoms(["Si"] * 30, positions=rng.random((30, 3)) * 10.0)
    c = atoms.positions.mean(axis=0)
    r0 = np.linalg.norm(atoms.positions - c, axis=1).mean()

    def growth_percent(frames: list[np.ndarray]) -> float:
        return 100.0 * (np.mean([np.linalg.norm(f - c, axis=1).mean() for f in frames]) / r0 - 1.0)

    relaxed = xp.Relaxer(p, LinearGrowthEngine(c, first_frame))(atoms, 2000, seed=1)
    assert len(relaxed.frames) == len(relaxed.half_frames) == 5
    assert growth_percent(relaxed.frames) == pytest.approx(1.0, abs=0.06)
    assert growth_percent(relaxed.half_frames) == pytest.approx(0.5, abs=0.06)
    assert growth_percent(relaxed.frames) - growth_percent(relaxed.half_frames) == pytest.approx(0.5, abs=1e-9)
    assert np.allclose(relaxed.atoms.positions, c + 1.01 * (atoms.positions - c))  # continues from the end
    assert xp.md_sample_interval(2000, 5) == 50 and xp.md_sample_interval(8, 5) == 1
    assert xp.md_sample_interval(20000, 1) == 2000
    assert "5 frames 50 steps apart" in xp.md_window_text(2000, 5) and "last 200 of 2000 steps" in xp.md_window_text(2000, 5)


def test_gpumd_without_gpu_is_skipped_with_reason(model, tmp_path, monkeypatch) -> None:
    from nepbench.engines.gpumd import GpumdEngine

    monkeypatch.setattr(GpumdEngine, "available", lambda self: (False, "no 'gpumd' executable on PATH"))
    spec = TaskSpec("e", "expansion", "e", {"engine": "gpumd", "relax": "md"})
    with pytest.raises(EngineNotAvailable, match="no GPU"):
        xp.run_expansion(spec, ctx_for(model, tmp_path))


def test_plan_over_budget_is_refused(model, tmp_path) -> None:
    spec = TaskSpec("e", "expansion", "e", {"max_atom_steps": 1000})
    with pytest.raises(ConfigError, match="max_atom_steps"):
        xp.run_expansion(spec, ctx_for(model, tmp_path))


# ------------------------------------------------------------------------------------ end to end


def test_tiny_end_to_end_outcome_has_what_the_report_draws(model, tmp_path) -> None:
    params = {"core_radius_nm": 0.8, "shell_thicknesses_nm": [0.0, 0.5], "seeds": [1, 2],
              "target_x": 0.25, "dx": 0.25, "reference_steps": 3, "relax_steps": 3, "radial_bin_nm": 0.2,
              "nep_threads": 1, "min_bare_dv_percent": 0.0}
    spec = TaskSpec("expansion-random", "expansion", "tiny", params)
    assert task_function("expansion") is xp.run_expansion
    ctx = ctx_for(model, tmp_path)
    out = xp.run_expansion(spec, ctx)
    assert out.status == "done", out.reason
    assert ctx.shared["progress_stage"] == "particle 4/4: shell 0.5 nm, seed 2 (reference, 1 lithiation stage(s), control)"
    for key in ("particle_dv_over_v0_percent.t0.0", "particle_dv_over_v0_percent.t0.5",
                "core_dv_over_v0_percent.t0.0", "core_dv_over_v0_percent.t0.5",
                "particle_dv_over_v0_percent_at_t0.5", "shell_hoop_strain_percent.t0.5",
                "shell_thickness_change_nm.t0.5", "x_reached.t0.5", "n_atoms.t0.5", "atom_steps", "wall_s"):
        assert np.isfinite(out.metrics[key]), key
        assert key in out.metric_units
    assert out.metrics["particle_dv_over_v0_percent_at_t0.5"] == out.metrics["particle_dv_over_v0_percent.t0.5"]
    # the gate let it through (x reached, |last-half change| ≤ 0.25 points), with the upper bound beside it
    assert out.metric_reasons == {}
    assert 0 <= out.metrics["particle_dv_change_last_half_max_abs_percent.t0.5"] <= 0.25
    assert out.metrics["particle_dv_ratio_to_bare_at_t0.5"] == pytest.approx(
        out.metrics["particle_dv_over_v0_percent.t0.5"] / out.metrics["particle_dv_over_v0_percent.t0.0"])
    assert out.metrics["particle_dv_over_v0_percent_upper_at_t0.5"] == pytest.approx(
        out.metrics["particle_dv_over_v0_percent.t0.5"] + 2 * out.metrics["particle_dv_over_v0_percent_stderr.t0.5"])
    # the cross-check flag: the method line names exactly the t whose hull/probe exceed radial by > 2 points
    excess = {t: out.metrics[f"particle_dv_cross_check_excess_percent.t{t}"] for t in ("0.0", "0.5")}
    assert all(np.isfinite(v) for v in excess.values())
    flagged = [t for t, v in excess.items() if v > xp.CROSS_CHECK_MARGIN_PERCENT]
    if flagged:
        assert f"Cross-check: at t = {', '.join(flagged)} nm" in out.method
    else:
        assert "Cross-check" not in out.method
    # Li inserted as requested: x = 0.25 of the core Si, per seed
    for row in out.series["per_seed"]:
        assert row["n_li"] == round(0.25 * row["n_core_si"])
        assert row["x_reached"] == pytest.approx(row["n_li"] / row["n_core_si"])
    s = out.series
    assert s["shell_thickness_nm"] == [0.0, 0.5]
    for key in ("particle_dv_over_v0", "particle_dv_stderr", "core_dv_over_v0"):
        assert len(s[key]) == 2 and np.all(np.isfinite(s[key])), key
    assert set(s["radial"]) == {"0.0", "0.5"}
    for prof in s["radial"].values():
        assert len(prof["r_nm"]) == len(prof["li_fraction"]) == len(prof["strain"]) > 0
    assert set(s["cross_check"]) == {"probe", "hull"}
    assert out.engines and out.seed == 1 and "x = 0.25" in out.method
    # the report's figures draw from these series
    assert plots.expansion_overlay_png({"random": s}, limit_percent=1.0)[:4] == b"\x89PNG"
    assert plots.radial_png(s)[:4] == b"\x89PNG"
    # the same seeds give the same numbers; with the positive control on (the default 5 %), this random
    # model's bare particle (mean − 2 stderr −1.9 %) shows nothing swells, so its 0.02 % is not judged
    params.pop("min_bare_dv_percent")
    again = xp.run_expansion(TaskSpec("expansion-random", "expansion", "tiny", params), ctx_for(model, tmp_path))
    assert again.metrics["particle_dv_over_v0_percent.t0.5"] == out.metrics["particle_dv_over_v0_percent.t0.5"]
    bare_low = out.metrics["particle_dv_over_v0_percent.t0.0"] - 2 * out.metrics["particle_dv_over_v0_percent_stderr.t0.0"]
    assert bare_low < 5.0 and out.metrics["particle_dv_over_v0_percent.t0.5"] < 1.0
    reason = again.metric_reasons["particle_dv_over_v0_percent_at_t0.5"]
    assert "positive control" in reason and f"mean − 2 stderr {bare_low:+.3g} %" in reason
    assert "particle_dv_over_v0_percent_at_t0.5" not in again.metrics
    assert "particle_dv_ratio_to_bare_at_t0.5" not in again.metrics  # withheld with the headline
    assert again.metric_reasons["particle_dv_ratio_to_bare_at_t0.5"] == reason


def test_run_without_li_gives_exactly_zero_and_leaves_the_headline_unmeasured(model, tmp_path) -> None:
    """No site is ≥ 50 Å from every atom, so nothing is inserted: the lithiated branch and the control
    start from the same atoms and take the same deterministic LBFGS steps on one thread, so ΔV/V0
    must be 0 to round-off (1e-12) by every method. Comparing with the reference instead of the
    control would not be: the unannealed shell keeps relaxing (~2 % in these 4 steps without a
    control). The headline is then not judged (x = 0 < 0.95·target_x), and a criterion on it reads
    "not measured" with the reason, not an unexplained gap."""
    params = {"core_radius_nm": 0.8, "shell_thicknesses_nm": [0.5], "seeds": [1, 2], "target_x": 0.25,
              "dx": 0.25, "min_distance_a": 50.0, "reference_steps": 3, "relax_steps": 4, "nep_threads": 1}
    out = xp.run_expansion(TaskSpec("e", "expansion", "zero Li", params), ctx_for(model, tmp_path))
    assert out.status == "done", out.reason
    for row in out.series["per_seed"]:
        assert row["n_li"] == 0 and row["x_reached"] == 0.0
        for m in ex.VOLUME_METHODS:
            assert row["particle_dv_over_v0"][m] == pytest.approx(0.0, abs=1e-12), m
            assert row["core_dv_over_v0"][m] == pytest.approx(0.0, abs=1e-12), m
    assert out.metrics["particle_dv_over_v0_percent.t0.5"] == pytest.approx(0.0, abs=1e-10)
    for name in ("particle_dv_over_v0_percent_at_t0.5", "particle_dv_over_v0_percent_stderr_at_t0.5",
                 "particle_dv_over_v0_percent_upper_at_t0.5"):
        assert name not in out.metrics
        assert "x_reached = 0" in out.metric_reasons[name]
    assert "not judged" in out.method
    crit = {"id": "shell_locks_expansion", "claim": "c", "task": "e", "metric": "particle_dv_over_v0_percent_at_t0.5",
            "good": 1.0, "bad": 3.0, "unit": "%", "source": "s"}
    v = criteria.judge(crit, {"status": "done", "metrics": out.metrics, "metric_reasons": out.metric_reasons})
    assert v.verdict == "not_measured" and not v.unexpected and "x_reached" in v.reason


def test_an_optimiser_relaxation_refuses_a_particle_that_would_meet_its_own_image(model):
    """The optimisers drive NEP_CPU's calculator directly, and NEP_CPU treats the particle's
    non-periodic box as periodic: a box whose vacuum is within the model's cutoff is refused,
    before and (as the particle grows) after the relaxation, instead of relaxing against an image."""
    from nepbench.engines.nep_cpu import NepCpuEngine
    from nepbench.errors import InputError
    from nepbench.systems.core_shell import core_shell_particle

    p = xp.ExpansionParams(core_radius_nm=0.6, shell_thicknesses_nm=(0.0,), relax="lbfgs")
    engine = NepCpuEngine(model, backend="calorine")
    roomy = core_shell_particle(0.6, 0.0, 1.0, seed=1)
    relaxed = xp.Relaxer(p, engine)(roomy, 2, seed=1)
    assert relaxed.info["steps"] >= 1
    cramped = roomy.copy()
    cramped.set_cell(np.ptp(roomy.positions, axis=0) + 0.5 * engine.cutoff_a)  # vacuum: half the cutoff
    cramped.center()
    with pytest.raises(InputError, match="Si@C particle before relaxation: pbc is False along cell vector 1"):
        xp.Relaxer(p, engine)(cramped, 2, seed=1)
