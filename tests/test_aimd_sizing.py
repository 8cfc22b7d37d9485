"""Tests of nepbench.aimd_sizing's pure analysis: windows, halves, diffusive windows, lengths met,
the CP2K cost model and the choice of the cheapest run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nepbench import aimd_sizing as sz
from nepbench.engines.base import Trajectory

ROOT = Path(__file__).resolve().parents[1]
TARGETS = sz.SizingTargets(rdf_l1_bound=0.15, n_bins=40)


def test_targets_come_from_the_suite():
    t = sz.targets_from_suite(ROOT / "suites/quick.toml")
    assert t.rdf_l1_bound == 0.15 and t.n_bins == 80


def test_windows_and_frame_counts():
    assert sz.frames_for_length(2.0, 0.01) == 201  # both ends, as AIMD frames are recorded
    assert sz.window_slices(1000, 201) == [slice(0, 201), slice(201, 402), slice(402, 603), slice(603, 804)]
    with pytest.raises(ValueError):
        sz.window_slices(10, 1)
    with pytest.raises(ValueError):
        sz.frames_for_length(0.0, 0.01)


def test_halves_l1_compares_first_and_second_half():
    r = np.linspace(0.05, 5.95, 60)
    g = np.exp(-((r - 2.5) ** 2) / 0.1) * 3
    frames = np.stack([g] * 4 + [np.zeros_like(g) + 1.0] * 4)  # second half structureless
    out = sz.halves_l1(r, {"Si-Si": frames}, slice(0, 8))
    assert out["Si-Si"] == pytest.approx(1.0)  # the second half is an ideal gas: L1 = 1
    assert sz.halves_l1(r, {"Si-Si": frames}, slice(0, 4))["Si-Si"] == 0.0


def test_required_length_needs_every_longer_length_to_pass():
    fr = {1.0: 0.9, 2.0: 0.5, 3.0: 0.85, 4.0: 1.0}
    assert sz.required_length_ps(fr, 0.8) == 3.0  # a lucky 1 ps before a failing 2 ps does not count
    assert sz.required_length_ps({1.0: 0.1, 2.0: 0.2}, 0.8) is None


def test_loglog_slope_of_power_laws():
    t = np.linspace(0, 5, 501)
    assert sz.loglog_slope(t, 3 * t, 0.5, 2.0) == pytest.approx(1.0)
    assert sz.loglog_slope(t, t ** 2, 0.5, 2.0) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        sz.loglog_slope(t, t, 1.0, 1.001)


def _walk(n_frames: int, n_atoms: int, dt_ps: float, d_a2_per_ps: float, seed: int = 0,
          cage_a: float | None = None) -> Trajectory:
    """Li atoms on a 3-D random walk with diffusivity d (or trapped in harmonic cages)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, np.sqrt(2 * d_a2_per_ps * dt_ps), (n_frames, n_atoms, 3))
    pos = np.cumsum(steps, axis=0)
    if cage_a is not None:
        pos = rng.normal(0, cage_a, (n_frames, n_atoms, 3))
    t = np.arange(n_frames) * dt_ps
    return Trajectory(("Li",) * n_atoms, t, pos, np.repeat(np.eye(3)[None] * 20, n_frames, axis=0))


def test_window_diffusion_accepts_a_random_walk_and_rejects_a_cage():
    walk = _walk(801, 40, 0.01, 1.0)  # 8 ps
    ok = sz.window_diffusion(walk, TARGETS)
    assert ok.passes and ok.window_slope == pytest.approx(1.0, abs=0.1)
    assert ok.d_cm2_per_s == pytest.approx(1e-4, rel=0.3) and ok.rel_stderr <= 0.3
    caged = sz.window_diffusion(_walk(801, 40, 0.01, 1.0, cage_a=0.5), TARGETS)
    assert not caged.passes and caged.window_slope < 0.5
    short = sz.window_diffusion(_walk(201, 40, 0.01, 1.0), TARGETS)  # 2 ps: the window 0.2–1.2 ps ends after half the run
    assert np.isnan(short.window_slope) and not short.passes


def test_diffusion_by_length_cuts_disjoint_windows():
    by_length = sz.diffusion_by_length(_walk(1201, 30, 0.01, 1.0), 0.01, [3.0, 6.0, 20.0], TARGETS)
    assert [len(by_length[x]) for x in (3.0, 6.0)] == [3, 1] and 20.0 not in by_length


def test_cp2k_cost_model():
    cost = sz.Cp2kCost(32, 40.0, 2, "test")
    assert cost.per_step_s(64, 2.0) == pytest.approx(160.0)
    assert cost.per_step_s(64, 3.0, speedup=2.0) == pytest.approx(160.0)
    # 0.3 ps warm-up + 2 ps at 2 fs = 1150 steps of 40 s
    assert sz.cp2k_hours(cost, 32, 2.0, 0.3, 2.0, 2.0) == pytest.approx(1150 * 40 / 3600)
    manifest = {"runs": [{"id": "r", "n_atoms": 28, "s_per_step_median": 25.0, "ranks": 2}]}
    assert sz.cost_from_manifest(manifest, "r").s_per_step == 25.0


def test_options_take_the_longer_need_and_recommend_the_cheapest():
    case = sz.DEFAULT_CASES[0]
    per_size = {32: {"n_atoms": 32, "rdf_pass_fraction": {"1.0": 0.0, "2.0": 0.2, "4.0": 0.5},
                     "d_pass_fraction": {"1.0": 0.0, "4.0": 1.0}},
                64: {"n_atoms": 64, "rdf_pass_fraction": {"1.0": 0.5, "2.0": 1.0, "4.0": 1.0},
                     "d_pass_fraction": {"1.0": 0.0, "3.0": 1.0, "4.0": 1.0}},
                96: {"n_atoms": 96, "rdf_pass_fraction": {"1.0": 1.0, "2.0": 1.0},
                     "d_pass_fraction": {"1.0": 1.0, "2.0": 1.0}}}
    opts = sz.options(case, per_size, TARGETS, sz.Cp2kCost(32, 40.0, 2, "t"), speedup=1.0)
    by = {o.size: o for o in opts}
    assert by[32].production_ps is None and by[32].d_production_ps == 4.0  # g(r) never met at 32
    assert by[64].production_ps == 3.0  # D needs 3 ps, g(r) 2 ps
    assert by[96].production_ps == 2.0  # the 2 ps floor, although both pass at 1 ps
    rec = sz.recommend(case, opts, "N^2")
    assert rec["both"]["size"] == 64  # 64 atoms × 3 ps is cheaper than 96 × 2 ps at N²
    assert rec["d_first"]["size"] == 32 and rec["d_first"]["production_ps"] == 4.0
    assert sz.recommend(case, opts, "N^3")["both"]["size"] == 64
    assert by[32].rdf_production_ps is None and by[96].rdf_production_ps == 2.0
    assert rec["rdf_only"]["size"] == 64 and rec["rdf_only"]["production_ps"] == 2.0  # 64 × 2 ps < 96 × 2 ps


def test_tuning_evidence_gives_the_size_exponent_and_speedups():
    tuning = {"results": {
        "baseline|md:ref": {"s_per_step": 60.0, "n_atoms": 32},
        "fast|md:ref": {"s_per_step": 30.0, "n_atoms": 32},
        "fast|md:small": {"s_per_step": 10.0, "n_atoms": 30},
        "fast|md:large": {"s_per_step": 40.0, "n_atoms": 60},  # 2× atoms, 4× cost: N²
        "other|md:small": {"s_per_step": 10.0, "n_atoms": 30}}}  # no large case: no exponent
    ev = sz.tuning_evidence(tuning, "md:small", "md:large", "md:ref")
    assert ev["size_exponents"] == {"fast": pytest.approx(2.0)}
    assert ev["speedups"] == {"fast": pytest.approx(2.0)}
    with pytest.raises(KeyError):
        sz.tuning_evidence(tuning, "md:small", "md:missing", "md:ref")
