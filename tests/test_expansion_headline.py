"""The expansion task's headline gate and summary over seeds (`tasks/expansion/headline.py`,
`summary.py`): when the headline ΔV/V0 is withheld and why, and what the summary reports."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from nepbench.suite import load_suite
from nepbench.tasks import expansion as xp


def _headline_criteria():
    """(suite file name, the expansion task's params, a criterion on its headline) for every suite."""
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "suites").glob("*.toml")):
        suite = load_suite(path)
        for task in (t for t in suite.tasks if t.type == "expansion"):
            p = xp.ExpansionParams.from_params(dict(task.params))
            head = f"particle_dv_over_v0_percent_at_t{xp.t_key(p.headline_t)}"
            for crit in suite.criteria:
                if crit.task == task.id and crit.metric == head:
                    yield path.name, p, crit


def test_every_claim_judging_suite_holds_convergence_to_a_quarter_of_its_bound() -> None:
    """A headline still moving by as much as the claim's bound cannot say it is under it (gpu-check
    held 1.0 point against its 1 % claim)."""
    found = list(_headline_criteria())
    assert len({(name, id(p)) for name, p, _ in found}) >= 4
    for name, p, _ in found:
        assert p.max_last_half_change_percent <= 0.25 * p.claim_limit_percent, name


def test_headline_gate() -> None:
    # min_x_fraction 0.95, max_last_half_change_percent 0.25; the positive control is tested below
    p = xp.ExpansionParams(target_x=0.5, min_bare_dv_percent=0.0)
    assert xp.headline_gate(p, [0.5, 0.48], [0.001, -0.002], [0.01, 0.012]) is None
    assert xp.headline_gate(p, [0.5, 0.5], [0.0, 0.0], [-0.001, 0.003]) is None  # ~0 within noise
    short = xp.headline_gate(p, [0.5, 0.40], [0.0, 0.0], [0.01, 0.012])
    assert "x_reached = 0.4" in short and "min_x_fraction" in short
    moving = xp.headline_gate(p, [0.5, 0.5], [0.001, 0.007], [0.01, 0.012])
    assert "+0.7 % points" in moving and "max_last_half_change_percent" in moving
    assert "not converged" in xp.headline_gate(p, [0.5, 0.5], [-0.004, 0.0], [0.01, 0.012])
    assert "not converged" in xp.headline_gate(p, [0.5, 0.5], [float("nan"), 0.0], [0.01, 0.012])
    shrunk = xp.headline_gate(p, [0.5, 0.5], [0.0, 0.0], [-0.02, -0.021])
    assert "below 0" in shrunk
    assert xp.headline_gate(p, [0.5], [0.0], [-0.001]) is not None  # one seed: its sign is all there is
    both = xp.headline_gate(p, [0.1, 0.5], [0.01, 0.0], [0.01, 0.012])
    assert "x_reached" in both and "not converged" in both


def test_every_suites_claim_limit_is_its_criterions_good_bound() -> None:
    """The positive control protects a pass, so the task must know where its criterion passes."""
    found = list(_headline_criteria())
    assert len(found) >= 4
    for name, p, crit in found:
        assert crit.good == p.claim_limit_percent, (name, crit.id)


def test_headline_gate_positive_control() -> None:
    """A shelled ΔV/V0 under 1 % speaks for the shell only where the bare particle swells: measured at
    x = 0.5 on the quick particle, NEP89-LiSiC's bare core swelled 15.0 ± 2.6 % and v1's 2.9 ± 0.7 %."""
    p = xp.ExpansionParams(target_x=0.5, shell_thicknesses_nm=(0.0, 0.8))  # min_bare_dv_percent 5
    ok = ([0.5, 0.5], [0.0, 0.0], [0.005, 0.006])
    assert xp.headline_gate(p, *ok, bare_dv=[0.125, 0.176]) is None  # 15.0 ± 2.6 %: 9.9 % ≥ 5 %
    weak = xp.headline_gate(p, *ok, bare_dv=[0.022, 0.036])  # 2.9 ± 0.7 %
    assert "positive control" in weak and "mean − 2 stderr +1.5 %" in weak
    # the lower bound is what counts: a mean of 8 % with a stderr of 2 % is not enough
    assert "positive control" in xp.headline_gate(p, *ok, bare_dv=[0.06, 0.10])
    assert "one seed" in xp.headline_gate(p, [0.5], [0.0], [0.005], bare_dv=[0.04])
    assert xp.headline_gate(p, [0.5], [0.0], [0.005], bare_dv=[0.06]) is None
    assert "no bare particle" in xp.headline_gate(p, *ok, bare_dv=None)
    # a headline at or above the claim's 1 % bound is judged whatever the bare particle does: it fails
    assert xp.headline_gate(p, [0.5, 0.5], [0.0, 0.0], [0.03, 0.031], bare_dv=[0.04, 0.041]) is None
    assert xp.headline_gate(p, [0.5, 0.5], [0.0, 0.0], [0.01, 0.01], bare_dv=[0.04, 0.041]) is None
    assert "positive control" in xp.headline_gate(p, [0.5, 0.5], [0.0, 0.0], [0.0099, 0.0099], bare_dv=[0.04, 0.041])
    # the control can be turned off, and a bare headline has no control to read
    assert xp.headline_gate(replace(p, min_bare_dv_percent=0.0), *ok, bare_dv=[0.0, 0.0]) is None
    bare_headline = replace(p, headline_t_nm=0.0)
    assert xp.headline_gate(bare_headline, *ok, bare_dv=[0.005, 0.006]) is None


def test_headline_gate_withholds_where_a_cross_check_sees_material_outside_the_shell() -> None:
    """60 Li placed outside the 0.8 nm shell: the radial sphere of the shell's carbon reads 0, the
    hull ~50 %. The method line flagged it, but the "< 1 %" headline was judged; now it is withheld,
    naming the method and the values."""
    p = xp.ExpansionParams()  # the quick variant: headline t = 0.8 nm
    ref = xp.build_particle(p, 0.8, 1)
    n = len(ref)
    c = xp.host_centre_a(ref, n)
    rng = np.random.default_rng(0)
    d = rng.normal(size=(60, 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    lith = ref + Atoms(["Li"] * 60, positions=c + d * (18.0 + 6 * rng.random(60))[:, None], tags=[xp.LI_TAG] * 60)
    dv = xp.compare_states(lith, [lith.positions], ref, [ref.positions], n, p, xp.radial_edges_for(p))[
        "particle_dv_over_v0"]
    assert dv["radial"] == pytest.approx(0.0, abs=1e-12)
    assert 100 * dv["probe"] < xp.CROSS_CHECK_MARGIN_PERCENT < 100 * dv["hull"]
    cross = {m: [dv[m], dv[m]] for m in ("probe", "hull")}
    ok = ([0.5, 0.5], [0.0, 0.0], [dv["radial"], dv["radial"]])
    gate = xp.headline_gate(p, *ok, bare_dv=[0.15, 0.16], cross_check_dv=cross)
    assert gate is not None and "CROSS_CHECK_MARGIN_PERCENT = 2" in gate
    assert f"hull {100 * dv['hull']:+.3g} %" in gate and "'radial' (+0 %)" in gate and "probe" not in gate
    # within the margin (the hull 1.9 points above): judged; 2.1 points above: withheld
    near = {"hull": [0.024, 0.025], "probe": [0.005, 0.006]}
    assert xp.headline_gate(p, [0.5, 0.5], [0.0, 0.0], [0.005, 0.006], [0.15, 0.16], near) is None
    far = {"hull": [0.026, 0.027], "probe": [0.005, 0.006]}
    assert "hull" in xp.headline_gate(p, [0.5, 0.5], [0.0, 0.0], [0.005, 0.006], [0.15, 0.16], far)


def fake_row(t_nm: float, seed: int, dv: float, n_bins: int, change: float = 0.0, hull_excess: float = 0.0,
             x: float = 0.5) -> dict:
    """One (t, seed) result as `run_particle` returns it, with chosen ΔV/V0 (fractions): `dv` by radial
    and probe, dv + hull_excess by the hull; `change` = end − half-way of the last relaxation."""
    by_method = {"radial": dv, "probe": dv, "hull": dv + hull_excess}
    return {"t_nm": t_nm, "seed": seed, "particle_dv_over_v0": by_method, "core_dv_over_v0": dict(by_method),
            "stages": [{"x": x, "particle_dv_over_v0": dv, "particle_dv_over_v0_half_relaxed": dv - change}],
            "x_reached": x, "n_atoms": 1000, "n_core_si": 200, "n_shell_c": 800, "n_li": round(200 * x),
            "radial": {"n_atoms": np.full(n_bins, 10), "n_li": np.full(n_bins, 1), "n_host": np.full(n_bins, 9),
                       "radial_strain": np.full(n_bins, 0.01)},
            "particle_volume0_nm3": 10.0, "core_volume0_nm3": 4.0, "shape_anisotropy": 0.0, "reference": {},
            "atom_steps": 0.0, "wall_s": 0.0}


def test_summary_reports_the_largest_change_and_withholds_the_ratio_with_the_headline() -> None:
    p = xp.ExpansionParams(shell_thicknesses_nm=(0.0, 0.8), min_bare_dv_percent=0.0)
    edges = xp.radial_edges_for(p)
    nb = len(edges) - 1
    bare = [fake_row(0.0, 1, 0.15, nb), fake_row(0.0, 2, 0.16, nb)]
    # +0.6 and −0.6 points over the last half: the mean over seeds read 0; the gate reads 0.6
    moving = bare + [fake_row(0.8, 1, 0.005, nb, change=0.006), fake_row(0.8, 2, 0.006, nb, change=-0.006)]
    metrics, units, _, reasons, unresolved = xp.summarise(p, moving, edges)
    assert metrics["particle_dv_change_last_half_max_abs_percent.t0.8"] == pytest.approx(0.6)
    assert "largest |ΔV/V0 end − half-way| over seeds" in units["particle_dv_change_last_half_max_abs_percent.t0.8"]
    assert not any(k.startswith("particle_dv_change_last_half_percent") for k in metrics)
    for name in ("particle_dv_over_v0_percent_at_t0.8", "particle_dv_ratio_to_bare_at_t0.8"):
        assert name not in metrics and "not converged" in reasons[name], name
    # held back by the gate, so verify cannot take them as an explained gap
    assert set(unresolved) == {"particle_dv_over_v0_percent_at_t0.8", "particle_dv_over_v0_percent_stderr_at_t0.8",
                               "particle_dv_over_v0_percent_upper_at_t0.8", "particle_dv_ratio_to_bare_at_t0.8"}
    # converged, cross-checks agreeing: the headline and its ratio to the bare particle are published
    still = bare + [fake_row(0.8, 1, 0.005, nb, change=0.001), fake_row(0.8, 2, 0.006, nb, change=-0.002)]
    metrics, _, _, reasons, unresolved = xp.summarise(p, still, edges)
    assert reasons == {} and unresolved == ()
    # one seed: no stderr is the run's design, not a failed measurement, so it is not unresolved
    _, _, _, one_seed_reasons, one_seed_unresolved = xp.summarise(p, still[::2], edges)
    assert one_seed_reasons["particle_dv_over_v0_percent_stderr_at_t0.8"].startswith("one seed")
    assert one_seed_unresolved == ()
    assert metrics["particle_dv_change_last_half_max_abs_percent.t0.8"] == pytest.approx(0.2)
    assert metrics["particle_dv_ratio_to_bare_at_t0.8"] == pytest.approx(0.55 / 15.5)
    # the hull 3 points above the radial volume at the headline: withheld, as flagged
    outside = bare + [fake_row(0.8, 1, 0.005, nb, hull_excess=0.03), fake_row(0.8, 2, 0.006, nb, hull_excess=0.03)]
    metrics, _, _, reasons, _ = xp.summarise(p, outside, edges)
    assert metrics["particle_dv_cross_check_excess_percent.t0.8"] == pytest.approx(3.0)
    assert "hull +3.55 % (+3 points)" in reasons["particle_dv_over_v0_percent_at_t0.8"]
    assert "particle_dv_ratio_to_bare_at_t0.8" not in metrics and "hull" in reasons["particle_dv_ratio_to_bare_at_t0.8"]


def test_method_line_gives_the_sizes_each_seed_built() -> None:
    """The planned sizes come from densities; the method line must quote what the seeds built (seed 2
    of the demo built 202 Si where the plan said 209)."""
    rows = [{"t_nm": 0.0, "n_atoms": 209, "n_core_si": 209, "n_shell_c": 0},
            {"t_nm": 0.0, "n_atoms": 202, "n_core_si": 202, "n_shell_c": 0},
            {"t_nm": 0.8, "n_atoms": 1000, "n_core_si": 205, "n_shell_c": 795},
            {"t_nm": 0.8, "n_atoms": 1000, "n_core_si": 205, "n_shell_c": 795}]
    assert xp.built_sizes_text(rows) == ("t=0.0 nm: 202–209 atoms (202–209 Si + 0 C), "
                                         "t=0.8 nm: 1000 atoms (205 Si + 795 C)")


def test_gate_reasons_never_print_a_value_as_its_limit() -> None:
    p = xp.ExpansionParams(shell_thicknesses_nm=(0.0, 0.8), min_bare_dv_percent=0.0)
    just_over = p.max_last_half_change_percent * 1.0004 / 100.0  # reads as the limit at 2 digits
    why = xp.headline_gate(p, [0.5, 0.5], [just_over, 0.0], [0.01, 0.012])
    assert f"moved by +{p.max_last_half_change_percent:g} %" not in why and "not converged" in why
    assert xp.beside_limit(0.1234, 0.25, 2) == "0.12" and xp.beside_limit(-0.2501, 0.25, 2, "+") == "-0.2501"
