"""Tests of nepbench.metrics.expansion: envelope volumes, equimolar radii, radial profiles, shell strain."""

from __future__ import annotations

import numpy as np
import pytest

from nepbench.metrics import expansion as ex
from nepbench.systems.core_shell import diamond_sphere


def lattice_ball(radius_a: float) -> np.ndarray:
    """Diamond-Si sites within radius_a (Å) of the origin (a real, sparse-surfaced particle)."""
    return diamond_sphere(radius_a, np.array([0.3, 0.7, 1.1]))


def random_ball(radius_a: float, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    return d * radius_a * np.cbrt(rng.random(n))[:, None]


def fibonacci_sphere(radius_a: float, n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return radius_a * np.column_stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)])


def random_shell(inner_a: float, outer_a: float, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    return d * np.cbrt(inner_a**3 + rng.random(n) * (outer_a**3 - inner_a**3))[:, None]


# ------------------------------------------------------------------------------------------ volumes

def test_sphere_volume_for_every_method() -> None:
    r = 20.0
    exact = 4 / 3 * np.pi * r**3
    assert ex.sphere_volume_a3(r) == pytest.approx(exact)
    # dense surface + interior: the hull and the probe envelope converge on the sphere
    dense = np.vstack([fibonacci_sphere(r, 3000), random_ball(r, 6000)])
    assert ex.convex_hull_volume_a3(dense) == pytest.approx(exact, rel=0.01)
    assert ex.probe_volume_a3(dense, probe_radius_a=3.0) == pytest.approx(exact, rel=0.03)
    # uniform density: the equimolar sphere recovers R from the interior alone
    assert ex.particle_volume_a3(random_ball(r, 20000, seed=1), "radial", np.zeros(3)) == pytest.approx(
        exact, rel=0.02)
    # a real lattice ball: the equimolar sphere is the sphere it was cut from (±2 %)
    assert ex.particle_volume_a3(lattice_ball(r), "radial", np.zeros(3)) == pytest.approx(exact, rel=0.02)


@pytest.mark.parametrize("s", [0.98, 1.01, 1.05])
def test_uniform_scaling_gives_s_cubed_minus_one(s: float) -> None:
    """Hull and equimolar radius scale exactly; the probe envelope (fixed probe on a sparse c-Si
    surface) within 0.15·|s³−1| + 0.003 for R = 20 Å (docs/metrics.md)."""
    pos = lattice_ball(20.0)
    want = s**3 - 1
    for method in ("hull", "radial"):
        v0 = ex.particle_volume_a3(pos, method, np.zeros(3))
        v1 = ex.particle_volume_a3(pos * s, method, np.zeros(3))
        assert ex.dv_over_v0(v1, v0) == pytest.approx(want, abs=1e-9)
    v0 = ex.probe_volume_a3(pos)
    v1 = ex.probe_volume_a3(pos * s)
    assert abs(ex.dv_over_v0(v1, v0) - want) <= 0.15 * abs(want) + 0.003


def test_dv_from_radius_matches_volume_ratio() -> None:
    assert ex.dv_over_v0_from_radius(11.0, 10.0) == pytest.approx(1.1**3 - 1)
    assert ex.dv_over_v0(ex.sphere_volume_a3(11.0), ex.sphere_volume_a3(10.0)) == pytest.approx(1.1**3 - 1)


def test_outlier_atom_inflates_the_hull_only() -> None:
    pos = lattice_ball(20.0)
    far = np.vstack([pos, [[35.0, 0.0, 0.0]]])
    grow = {m: ex.particle_volume_a3(far, m, np.zeros(3)) / ex.particle_volume_a3(pos, m, np.zeros(3)) - 1
            for m in ex.VOLUME_METHODS}
    assert grow["hull"] > 0.05
    assert abs(grow["probe"]) < 0.01
    assert abs(grow["radial"]) < 0.005


def test_concave_bite_is_counted_by_the_probe_not_the_hull() -> None:
    pos = random_ball(20.0, 12000, seed=2)
    bite = np.linalg.norm(pos - np.array([22.0, 0.0, 0.0]), axis=1) > 12.0
    true_ratio = bite.mean()  # uniform density: volume ∝ atoms
    hull = ex.convex_hull_volume_a3(pos[bite]) / ex.convex_hull_volume_a3(pos)
    probe = ex.probe_volume_a3(pos[bite]) / ex.probe_volume_a3(pos)
    assert hull - true_ratio > 0.02  # the hull bridges the bite
    assert abs(probe - true_ratio) < abs(hull - true_ratio)


def test_probe_fills_enclosed_voids_and_union_mode_is_larger() -> None:
    full = random_ball(18.0, 12000, seed=3)
    hollow = full[np.linalg.norm(full, axis=1) > 12.0]
    closed = ex.probe_volume_a3(hollow)
    assert closed == pytest.approx(ex.probe_volume_a3(full), rel=0.01)  # the enclosed cavity counts
    assert ex.probe_volume_a3(hollow, close=False) > closed


# ------------------------------------------------------------------------------------------ radii

def test_equimolar_radii_of_a_uniform_shell() -> None:
    r = np.linalg.norm(random_shell(10.0, 16.0, 20000, seed=4), axis=1)
    sr = ex.shell_radii_a(r)
    assert sr.inner_a == pytest.approx(10.0, rel=0.01)
    assert sr.outer_a == pytest.approx(16.0, rel=0.01)
    ball = ex.equimolar_radii_a(np.linalg.norm(random_ball(15.0, 20000, seed=5), axis=1))
    assert np.isnan(ball.inner_a)
    assert ball.outer_a == pytest.approx(15.0, rel=0.01)
    assert ball.density_per_a3 == pytest.approx(20000 / ex.sphere_volume_a3(15.0), rel=0.03)


def test_thick_shell_is_measured_when_the_caller_knows_it_is_a_shell() -> None:
    """A 4 nm shell on a 1 nm core (inner/outer = 10/30 Å = 0.33 < BALL_INNER_FRACTION): read as a
    ball from the radii alone, measured at its true radii when the caller says it is a shell."""
    r = np.linalg.norm(random_shell(10.0, 30.0, 30000, seed=9), axis=1)
    with pytest.raises(ValueError, match="no inner surface"):
        ex.shell_radii_a(r)
    sr = ex.shell_radii_a(r, known_shell=True)
    assert sr.inner_a == pytest.approx(10.0, rel=0.03)
    assert sr.outer_a == pytest.approx(30.0, rel=0.01)
    s = ex.shell_strain(r, 1.01 * r, known_shell=True)
    assert s.cavity_dv_over_v0 == pytest.approx(1.01**3 - 1, abs=1e-9)
    assert s.thickness0_nm == pytest.approx(2.0, rel=0.02)
    with pytest.raises(ValueError, match="no inner surface"):
        ex.shell_strain(r, 1.01 * r)


def exact_shell_radii(inner_a: float, outer_a: float, n: int) -> np.ndarray:
    """n radii (Å) of a uniform shell placed so that N(<r) is exactly linear in r³ (no sampling noise)."""
    return np.cbrt(inner_a**3 + (np.arange(n) + 0.5) / n * (outer_a**3 - inner_a**3))


def test_fewest_atoms_a_fit_takes_is_what_the_docstrings_say() -> None:
    """shell_radii_a needs 18 atoms (10 in each half's window), not 40 as its docstring said; a
    ball's outer surface needs 38 (the expansion task refuses smaller cores by this number)."""
    assert ex.min_atoms_for_window(ex.SHELL_INNER_WINDOW) == ex.min_atoms_for_window(ex.SHELL_OUTER_WINDOW) == 18
    assert ex.min_atoms_for_window(ex.OUTER_SURFACE_WINDOW) == 38
    sr = ex.shell_radii_a(exact_shell_radii(10.0, 16.0, 18), known_shell=True)
    assert sr.inner_a == pytest.approx(10.0, rel=0.01) and sr.outer_a == pytest.approx(16.0, rel=0.01)
    with pytest.raises(ValueError, match="fit window"):
        ex.shell_radii_a(exact_shell_radii(10.0, 16.0, 17), known_shell=True)
    ball = exact_shell_radii(0.0, 12.0, 38)
    assert ex.equimolar_radii_a(ball).outer_a == pytest.approx(12.0, rel=0.01)
    with pytest.raises(ValueError, match="fit window"):
        ex.equimolar_radii_a(ball[1:])


def test_no_inner_surface_is_its_own_error() -> None:
    """A caller that stands in for a missing inner surface catches this error, not every ValueError."""
    ball = np.linalg.norm(random_ball(15.0, 5000, seed=3), axis=1)
    with pytest.raises(ex.NoInnerSurfaceError):
        ex.shell_radii_a(ball)
    assert issubclass(ex.NoInnerSurfaceError, ValueError)


def test_auto_voxel_can_be_known_before_the_atoms_exist() -> None:
    """The task checks its probe radius against the voxel of the largest particle it predicts, a ball
    of radius R: `auto_voxel_for_span_a(2R)` is the voxel `auto_voxel_a` picks for such a ball."""
    for radius in (10.0, 60.0, 114.0):
        pos = fibonacci_sphere(radius, 4000)
        span = np.ptp(pos, axis=0)
        assert ex.auto_voxel_for_span_a(span, 3.0) == ex.auto_voxel_a(pos, 3.0)
        assert ex.auto_voxel_for_span_a(np.full(3, 2 * radius), 3.0) == pytest.approx(ex.auto_voxel_a(pos, 3.0), rel=0.01)
    assert ex.auto_voxel_for_span_a(np.full(3, 20.0)) == 0.5
    assert ex.auto_voxel_for_span_a(np.full(3, 227.4), 1.0) > 1.0  # the paper's particle: a 1 Å probe fails


def test_shell_strain_of_a_scaled_shell() -> None:
    r0 = np.linalg.norm(random_shell(10.0, 16.0, 5000, seed=6), axis=1)
    s = ex.shell_strain(r0, 1.02 * r0)
    assert s.hoop_strain == pytest.approx(0.02, abs=1e-12)
    assert s.cavity_dv_over_v0 == pytest.approx(1.02**3 - 1, abs=1e-9)
    assert s.outer_dv_over_v0 == pytest.approx(1.02**3 - 1, abs=1e-9)
    assert s.thickness_strain == pytest.approx(0.02, abs=1e-9)
    assert s.thickness_change_nm == pytest.approx(0.02 * s.thickness0_nm, abs=1e-9)
    # inner surface pushed out, outer locked: thinner shell, cavity grows, outer radius unchanged
    inner_push = np.where(r0 < 13.0, r0 + 0.5 * (13.0 - r0) / 3.0, r0)
    t = ex.shell_strain(r0, inner_push)
    assert t.cavity_dv_over_v0 > 0.02 and t.thickness_change_nm < 0
    assert abs(t.outer_dv_over_v0) < 1e-9


# ------------------------------------------------------------------------------------------ profiles

def test_radial_li_profile_on_a_two_zone_particle() -> None:
    pos = random_ball(20.0, 8000, seed=7)
    r = np.linalg.norm(pos, axis=1)
    is_li = r < 10.0
    edges = ex.radial_edges_nm(2.0, 0.25)
    prof = ex.radial_li_profile(pos, is_li, np.zeros(3), edges)
    assert prof.n_atoms.sum() == len(pos) and prof.n_li.sum() == is_li.sum()
    assert np.all(prof.li_fraction[prof.r_nm < 1.0] == 1.0)
    assert np.all(prof.li_fraction[prof.r_nm > 1.0] == 0.0)
    inner_density = is_li.sum() / (4 / 3 * np.pi * 1.0**3)  # per nm³
    assert prof.li_density_per_nm3[1:4].mean() == pytest.approx(inner_density, rel=0.1)
    empty = ex.radial_li_profile(pos, is_li, np.zeros(3), ex.radial_edges_nm(3.0, 0.5))
    assert np.isnan(empty.li_fraction[-1])


def test_radial_strain_profile() -> None:
    pos0 = random_ball(20.0, 6000, seed=8)
    edges = ex.radial_edges_nm(2.2, 0.2)
    uniform = ex.radial_strain_profile(pos0, 1.03 * pos0, np.ones(len(pos0), bool), np.zeros(3), np.zeros(3), edges)
    full = uniform.n_atoms > 0
    assert np.allclose(uniform.radial_strain[full], 0.03)
    assert np.allclose(uniform.volumetric_strain[full], 1.03**3 - 1)
    assert np.isnan(uniform.radial_strain[~full]).all()
    # only the inner half expands (by 5 %), the rest is fixed; the centre moves rigidly with the frame
    r = np.linalg.norm(pos0, axis=1)
    moved = np.where((r < 10.0)[:, None], 1.05 * pos0, pos0) + 2.0
    prof = ex.radial_strain_profile(pos0, moved, np.ones(len(pos0), bool), np.zeros(3), np.full(3, 2.0), edges)
    assert np.allclose(prof.radial_strain[prof.r0_nm < 1.0], 0.05)
    assert np.allclose(prof.radial_strain[(prof.r0_nm > 1.0) & (prof.n_atoms > 0)], 0.0)
    # host mask: excluded atoms do not count
    half = np.arange(len(pos0)) % 2 == 0
    assert ex.radial_strain_profile(pos0, pos0, half, np.zeros(3), np.zeros(3), edges).n_atoms.sum() == half.sum()


def test_core_mask_and_centre() -> None:
    tags = np.array([1, 1, 2, 2, 3, 3])
    symbols = np.array(["Si", "Si", "C", "C", "Li", "Li"])
    radii = np.array([1.0, 2.0, 11.0, 12.0, 5.0, 10.5])
    assert ex.core_mask(tags, symbols, radii, 10.0).tolist() == [True, True, False, False, True, False]
    assert ex.core_mask(tags, symbols, radii, None).tolist() == [True, True, False, False, True, True]
    pos = np.array([[0.0, 0, 0], [2.0, 0, 0]])
    assert ex.centre_of_mass_a(pos).tolist() == [1.0, 0, 0]
    assert ex.centre_of_mass_a(pos, np.array([3.0, 1.0])) == pytest.approx([0.5, 0, 0])
    assert ex.mean_and_stderr(np.array([1.0, 3.0])) == pytest.approx((2.0, 1.0))
    assert np.isnan(ex.mean_and_stderr(np.array([1.0]))[1])


# ------------------------------------------------------------------------------------------ errors

def test_value_errors() -> None:
    pos = lattice_ball(10.0)
    with pytest.raises(ValueError, match="shape"):
        ex.probe_volume_a3(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        ex.convex_hull_volume_a3(np.vstack([pos, [[np.nan, 0, 0]]]))
    with pytest.raises(ValueError, match="at least 4"):
        ex.convex_hull_volume_a3(pos[:3])
    with pytest.raises(ValueError, match="degenerate"):
        ex.convex_hull_volume_a3(np.column_stack([np.arange(10.0), np.arange(10.0), np.zeros(10)]))
    with pytest.raises(ValueError, match="smaller than probe"):
        ex.probe_volume_a3(pos, probe_radius_a=1.0, voxel_a=1.0)
    with pytest.raises(ValueError, match="probe_radius_a"):
        ex.probe_volume_a3(pos, probe_radius_a=0.0)
    with pytest.raises(ValueError, match="exceeds"):
        ex.probe_volume_a3(np.array([[0.0, 0, 0], [900.0, 900, 900]]), voxel_a=0.5)
    with pytest.raises(ValueError, match="method"):
        ex.particle_volume_a3(pos, "alpha")
    with pytest.raises(ValueError, match="V0 > 0"):
        ex.dv_over_v0(1.0, 0.0)
    with pytest.raises(ValueError):
        ex.dv_over_v0_from_radius(1.0, np.nan)
    with pytest.raises(ValueError, match="at least 10"):
        ex.equimolar_radii_a(np.arange(12.0), (0.5, 0.6))
    with pytest.raises(ValueError, match="window"):
        ex.equimolar_radii_a(np.arange(100.0), (0.9, 0.5))
    with pytest.raises(ValueError, match="no inner surface"):
        ex.shell_radii_a(np.linalg.norm(random_ball(10.0, 2000), axis=1))
    with pytest.raises(ValueError, match="edges"):
        ex.radial_li_profile(pos, np.zeros(len(pos), bool), np.zeros(3), np.array([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="boolean"):
        ex.radial_li_profile(pos, np.zeros(len(pos)), np.zeros(3), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="differ in shape"):
        ex.radial_strain_profile(pos, pos[:-1], np.ones(len(pos), bool), np.zeros(3), np.zeros(3),
                                 np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="centre_a"):
        ex.radii_a(pos, np.array([0.0, np.inf, 0.0]))
    with pytest.raises(ValueError, match="r_max_nm"):
        ex.radial_edges_nm(-1.0, 0.1)
    with pytest.raises(ValueError, match="finite"):
        ex.mean_and_stderr(np.array([1.0, np.nan]))


# --------------------------------------------------------------- hand-computed and analytic values


def test_shell_strain_records_the_deformed_radii():
    # 2000 atoms spread evenly in r³ over a 10–16 Å shell (N(<r) linear in r³), then a uniform 2 % swell
    r0 = np.cbrt(10.0**3 + (np.arange(2000) + 0.5) / 2000 * (16.0**3 - 10.0**3))
    s = ex.shell_strain(r0, 1.02 * r0)
    assert s.inner_a == pytest.approx(1.02 * s.inner0_a, rel=1e-9)
    assert s.outer_a == pytest.approx(1.02 * s.outer0_a, rel=1e-9)
    assert s.inner0_a == pytest.approx(10.0, rel=0.01) and s.outer0_a == pytest.approx(16.0, rel=0.01)
