"""The core–shell expansion task: particle geometry, Li insertion, determinism, one tiny end-to-end run.

The end-to-end run uses a small random NEP4 model (seeded, in tmp_path): it checks the protocol's
mechanics and the outcome's shape, not the physics of any potential.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from nepbench.config import TaskSpec
from nepbench.errors import ConfigError, EngineNotAvailable
from nepbench.metrics import expansion as ex
from nepbench.models import write_random_model
from nepbench.report import plots
from nepbench.tasks import TaskContext, task_function
from nepbench.tasks import lithiation as li


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("model") / "nep.txt", seed=2)


def ctx_for(model: Path, tmp_path: Path) -> TaskContext:
    return TaskContext(tmp_path / "work", tmp_path, model, "random", "0" * 64)


# ------------------------------------------------------------------------------------ geometry

@pytest.mark.parametrize("t_nm", [0.0, 0.5])
def test_particle_geometry_used_by_the_task(t_nm: float) -> None:
    p = li.ExpansionParams(core_radius_nm=0.8, shell_thicknesses_nm=(t_nm,))
    atoms = li.build_particle(p, t_nm, seed=3)
    assert not any(atoms.pbc)
    tags = atoms.get_tags()
    assert set(np.unique(tags)) == ({1, 2} if t_nm else {1})
    assert (np.array(atoms.get_chemical_symbols())[tags == 1] == "Si").all()
    c = li.host_centre_a(atoms, len(atoms))
    assert np.allclose(c, atoms.cell.lengths() / 2, atol=0.5)  # centred in its vacuum box
    r = ex.radii_a(atoms.positions, c)
    assert r.max() <= 10 * (0.8 + t_nm) + 0.5
    assert li.core_radius_a(atoms, c) == pytest.approx(8.0, abs=0.5)
    if t_nm:
        assert li.shell_inner_radius_a(atoms, c) == pytest.approx(8.0, abs=0.6)
        outer = ex.shell_radii_a(r[tags == 2]).outer_a
        assert outer == pytest.approx(13.0, abs=0.6)
    else:
        assert li.shell_inner_radius_a(atoms, c) is None


# ------------------------------------------------------------------------------------ insertion

def test_insertion_sites_respect_distances_and_stay_in_the_core() -> None:
    p = li.ExpansionParams(core_radius_nm=1.0, shell_thicknesses_nm=(0.4,))
    atoms = li.build_particle(p, 0.4, seed=1)
    n = len(atoms)
    c = li.host_centre_a(atoms, n)
    region = li.core_radius_a(atoms, c) - p.core_margin_a
    sites = li.insertion_sites(atoms.positions, c, region, 60, 2.0, np.random.default_rng(0))
    assert len(sites) == 60
    assert np.linalg.norm(sites - c, axis=1).max() <= region + 1e-9
    assert cKDTree(atoms.positions).query(sites)[0].min() >= 2.0 - 1e-9
    d = cKDTree(sites).query(sites, k=2)[0][:, 1]
    assert d.min() >= 2.0 - 1e-9
    # asking for more than fits returns what fits, still obeying the distances
    many = li.insertion_sites(atoms.positions, c, region, 10_000, 2.0, np.random.default_rng(0))
    assert 60 <= len(many) < 10_000
    assert cKDTree(many).query(many, k=2)[0][:, 1].min() >= 2.0 - 1e-9
    assert li.insertion_sites(atoms.positions, c, region, 0, 2.0, np.random.default_rng(0)).shape == (0, 3)
    with pytest.raises(ValueError):
        li.insertion_sites(atoms.positions, c, -1.0, 5, 2.0, np.random.default_rng(0))


def test_lithiate_appends_tagged_li_inside_the_core_and_is_seeded() -> None:
    p = li.ExpansionParams(core_radius_nm=1.0, shell_thicknesses_nm=(0.4,))
    atoms = li.build_particle(p, 0.4, seed=1)
    n = len(atoms)
    a, got_a = li.lithiate(atoms, 40, p, np.random.default_rng(5), n)
    b, got_b = li.lithiate(atoms, 40, p, np.random.default_rng(5), n)
    c, _ = li.lithiate(atoms, 40, p, np.random.default_rng(6), n)
    assert got_a == got_b == 40 and len(a) == n + 40
    assert (np.array(a.get_chemical_symbols())[n:] == "Li").all() and (a.get_tags()[n:] == li.LI_TAG).all()
    assert np.array_equal(a.positions, b.positions)
    assert not np.array_equal(a.positions[n:], c.positions[n:])
    centre = li.host_centre_a(a, n)
    inner = li.shell_inner_radius_a(a, centre)
    assert np.linalg.norm(a.positions[n:] - centre, axis=1).max() < inner
    assert li.core_atoms(a, centre)[n:].all()  # the new Li count as core


# ------------------------------------------------------------------------------------ parameters

def test_params_validation_and_schedule() -> None:
    p = li.ExpansionParams.from_params({"target_x": 1.0, "dx": 0.4, "shell_thicknesses_nm": [0, 1.5]})
    assert p.x_schedule == pytest.approx([0.4, 0.8, 1.0])
    assert p.headline_t == 1.5 and li.t_key(1.5) == "1.5" and li.t_key(4) == "4.0" and li.t_key(0.25) == "0.25"
    with pytest.raises(ConfigError, match="unknown"):
        li.ExpansionParams.from_params({"shell_thickness": [1.0]})
    with pytest.raises(ConfigError, match="gpumd"):
        li.ExpansionParams.from_params({"engine": "gpumd", "relax": "fire"})
    with pytest.raises(ConfigError, match="headline"):
        li.ExpansionParams.from_params({"headline_t_nm": 3.0})
    with pytest.raises(ConfigError, match="dx"):
        li.ExpansionParams.from_params({"target_x": 0.5, "dx": 1.0})
    plan = li.planned_cost(li.ExpansionParams())
    assert set(plan["per_t"]) == {"0.0", "0.4", "0.8"}
    assert plan["atom_steps"] < 3.5e6  # the quick variant's budget (2 shared cores, ≲ 4 min)


def test_gpumd_without_gpu_is_skipped_with_reason(model, tmp_path, monkeypatch) -> None:
    from nepbench.engines.gpumd import GpumdEngine

    monkeypatch.setattr(GpumdEngine, "available", lambda self: (False, "no 'gpumd' executable on PATH"))
    spec = TaskSpec("e", "expansion", "e", {"engine": "gpumd", "relax": "md"})
    with pytest.raises(EngineNotAvailable, match="no GPU"):
        li.run_expansion(spec, ctx_for(model, tmp_path))


def test_plan_over_budget_is_refused(model, tmp_path) -> None:
    spec = TaskSpec("e", "expansion", "e", {"max_atom_steps": 1000})
    with pytest.raises(ConfigError, match="max_atom_steps"):
        li.run_expansion(spec, ctx_for(model, tmp_path))


# ------------------------------------------------------------------------------------ end to end

def test_tiny_end_to_end_outcome_has_what_the_report_draws(model, tmp_path) -> None:
    params = {"core_radius_nm": 0.8, "shell_thicknesses_nm": [0.0, 0.5], "seeds": [1, 2],
              "target_x": 0.25, "dx": 0.25, "reference_steps": 3, "relax_steps": 3, "radial_bin_nm": 0.2,
              "nep_threads": 1}
    spec = TaskSpec("expansion-random", "expansion", "tiny", params)
    assert task_function("expansion") is li.run_expansion
    out = li.run_expansion(spec, ctx_for(model, tmp_path))
    assert out.status == "done", out.reason
    for key in ("particle_dv_over_v0_percent.t0.0", "particle_dv_over_v0_percent.t0.5",
                "core_dv_over_v0_percent.t0.0", "core_dv_over_v0_percent.t0.5",
                "particle_dv_over_v0_percent_at_t0.5", "shell_hoop_strain_percent.t0.5",
                "shell_thickness_change_nm.t0.5", "x_reached.t0.5", "n_atoms.t0.5", "atom_steps", "wall_s"):
        assert np.isfinite(out.metrics[key]), key
        assert key in out.metric_units
    assert out.metrics["particle_dv_over_v0_percent_at_t0.5"] == out.metrics["particle_dv_over_v0_percent.t0.5"]
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
    # the same seeds give the same numbers
    again = li.run_expansion(spec, ctx_for(model, tmp_path))
    assert again.metrics["particle_dv_over_v0_percent.t0.5"] == out.metrics["particle_dv_over_v0_percent.t0.5"]
