"""Tests of nepbench.metrics.rdf: ideal gas, lattice peaks and coordination, backends, metrics."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from scipy.stats import wasserstein_distance

from nepbench.engines.base import Trajectory
from nepbench.metrics.rdf import (
    coordination_number,
    minimum_image_radius_a,
    rdf_frame,
    rdf_frames,
    rdf_l1_error,
    rdf_trajectory,
    rdf_wasserstein1,
)

A_SI = 5.431


def _diamond_si(reps: int = 3, rattle: float = 0.0, seed: int = 0):
    atoms = bulk("Si", "diamond", a=A_SI, cubic=True).repeat((reps,) * 3)
    if rattle:
        atoms.positions += np.random.default_rng(seed).normal(0, rattle, atoms.positions.shape)
    return atoms


def test_ideal_gas_g_is_one() -> None:
    rng = np.random.default_rng(0)
    n, box = 3000, 20.0
    pos = rng.uniform(0, box, (n, 3))
    symbols = rng.choice(["Li", "Si"], n)
    res = rdf_frame(pos, np.eye(3) * box, symbols, r_max_a=9.0, n_bins=30)
    far = res.r_a > 2.0
    for key, g in list(res.partials.items()) + [(("*", "*"), res.total)]:
        assert np.mean(g[far]) == pytest.approx(1.0, abs=0.02), key
        assert np.max(np.abs(g[far] - 1.0)) < 0.15, key
    assert set(res.partials) == {("Li", "Li"), ("Li", "Si"), ("Si", "Si")}
    assert sum(res.number_density_per_a3.values()) == pytest.approx(n / box**3)


def test_diamond_si_peaks_and_coordination() -> None:
    atoms = _diamond_si()
    n_bins = 250
    res = rdf_frame(atoms.positions, atoms.cell.array, atoms.get_chemical_symbols(), 5.0, n_bins=n_bins)
    dr = 5.0 / n_bins
    g = res.g("Si", "Si")
    first = res.r_a[np.argmax(np.where(res.r_a < 3.0, g, 0))]
    second = res.r_a[np.argmax(np.where((res.r_a > 3.0) & (res.r_a < 4.2), g, 0))]
    assert first == pytest.approx(A_SI * np.sqrt(3) / 4, abs=dr)  # 2.352 Å
    assert second == pytest.approx(A_SI / np.sqrt(2), abs=dr)  # 3.840 Å
    rho = (len(atoms) - 1) / atoms.get_volume()
    assert coordination_number(res.edges_a, g, rho, 3.0) == pytest.approx(4.0, abs=1e-9)
    assert coordination_number(res.edges_a, g, rho, 4.2) == pytest.approx(16.0, abs=1e-9)
    assert res.backend == "scipy"


def test_fcc_first_shell() -> None:
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((3, 3, 3))
    atoms.positions += np.random.default_rng(1).normal(0, 0.02, atoms.positions.shape)
    res = rdf_frame(atoms.positions, atoms.cell.array, atoms.get_chemical_symbols(), 6.0, n_bins=300)
    g = res.total
    assert res.r_a[np.argmax(g)] == pytest.approx(4.05 / np.sqrt(2), abs=0.05)
    rho = (len(atoms) - 1) / atoms.get_volume()
    assert coordination_number(res.edges_a, g, rho, 3.4) == pytest.approx(12.0, abs=1e-9)


def test_backends_agree_and_triclinic_cell_of_same_lattice() -> None:
    atoms = _diamond_si(rattle=0.1, seed=3)
    symbols = np.array(atoms.get_chemical_symbols())
    symbols[::5] = "Li"
    cell = atoms.cell.array
    ref = rdf_frame(atoms.positions, cell, symbols, 5.5, n_bins=120, backend="scipy")
    ase = rdf_frame(atoms.positions, cell, symbols, 5.5, n_bins=120, backend="ase")
    sheared = cell.copy()
    sheared[1] = cell[1] + cell[0]  # same periodic lattice, non-orthogonal vectors
    skew = rdf_frame(atoms.positions, sheared, symbols, 5.5, n_bins=120)
    assert skew.backend == "ase" and ase.backend == "ase" and ref.backend == "scipy"
    for key in ref.partials:
        np.testing.assert_allclose(ase.partials[key], ref.partials[key], atol=1e-12)
        np.testing.assert_allclose(skew.partials[key], ref.partials[key], atol=1e-12)
    with pytest.raises(ValueError, match="orthorhombic"):
        rdf_frame(atoms.positions, sheared, symbols, 5.0, backend="scipy")


def test_minimum_image_radius_checked() -> None:
    atoms = _diamond_si(reps=2)  # box 10.862 Å -> radius 5.431 Å
    assert minimum_image_radius_a(atoms.cell.array) == pytest.approx(A_SI)
    sym = atoms.get_chemical_symbols()
    rdf_frame(atoms.positions, atoms.cell.array, sym, A_SI)
    with pytest.raises(ValueError, match="minimum-image"):
        rdf_frame(atoms.positions, atoms.cell.array, sym, 5.5)
    sheared = atoms.cell.array.copy()
    sheared[1] += 2 * sheared[0]  # same lattice but thin along y: must still be judged correctly
    assert minimum_image_radius_a(sheared) == pytest.approx(A_SI * np.sqrt(1 / 5))


@pytest.mark.parametrize("cell, message", [
    (np.diag([5.0, 5.0, 0.0]), "singular"),
    (np.array([[5.0, 0, 0], [10.0, 0, 0], [0, 0, 5.0]]), "singular"),
    (np.diag([5.0, np.nan, 5.0]), "finite"),
    (np.eye(2) * 5.0, "finite"),
])
def test_minimum_image_radius_refuses_a_bad_cell(cell: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        minimum_image_radius_a(cell)


def test_rdf_trajectory_averages_frames() -> None:
    atoms = _diamond_si(rattle=0.05)
    n_frames = 4
    pos = np.stack([atoms.positions + 0.01 * k for k in range(n_frames)])
    cells = np.repeat(atoms.cell.array[None], n_frames, axis=0)
    traj = Trajectory(tuple(atoms.get_chemical_symbols()), np.arange(n_frames) * 0.1, pos, cells)
    res = rdf_trajectory(traj, 5.0, n_bins=100, start=1, stride=2)
    single = rdf_frame(pos[1], cells[1], traj.symbols, 5.0, n_bins=100)
    assert res.n_frames == 2
    np.testing.assert_allclose(res.total, single.total, atol=1e-12)  # rigid shift: identical frames
    tuples = [(pos[k], cells[k], traj.symbols) for k in range(n_frames)]
    assert rdf_trajectory(tuples, 5.0, n_bins=100, start=1, stride=2).n_frames == 2
    traj.pbc = (True, True, False)
    with pytest.raises(ValueError, match="periodic"):
        rdf_trajectory(traj, 5.0)


def test_rdf_bad_input() -> None:
    atoms = _diamond_si(reps=2)
    pos, cell, sym = atoms.positions, atoms.cell.array, atoms.get_chemical_symbols()
    bad = pos.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        rdf_frame(bad, cell, sym, 4.0)
    with pytest.raises(ValueError):
        rdf_frame(pos[:-1], cell, sym, 4.0)
    with pytest.raises(ValueError):
        rdf_frame(pos, np.zeros((3, 3)), sym, 4.0)
    with pytest.raises(ValueError):
        rdf_frame(pos, cell, sym, -1.0)
    with pytest.raises(ValueError):
        rdf_frame(pos, cell, sym, 4.0, n_bins=0)
    with pytest.raises(ValueError):
        rdf_frames([], 4.0)
    with pytest.raises(ValueError, match="symbols differ"):
        rdf_frames([(pos, cell, sym), (pos, cell, ["C"] * len(sym))], 4.0)


def test_single_atom_species_pair_left_out() -> None:
    atoms = _diamond_si(reps=2)
    sym = atoms.get_chemical_symbols()
    sym[0] = "Li"
    res = rdf_frame(atoms.positions, atoms.cell.array, sym, 4.0)
    assert ("Li", "Li") not in res.partials and ("Li", "Si") in res.partials


def _bumps(r: np.ndarray, centre: float) -> np.ndarray:
    return 1.0 + 2.0 * np.exp(-((r - centre) ** 2) / 0.02) - np.exp(-((r - centre - 0.6) ** 2) / 0.05)


def test_l1_error() -> None:
    r = np.linspace(0.0, 8.0, 801)
    g_ref = _bumps(r, 2.4)
    g_ref[r < 1.5] = 0.0
    assert rdf_l1_error(r, g_ref, g_ref) == 0.0
    assert rdf_l1_error(r, g_ref, np.ones_like(r)) == pytest.approx(1.0)  # ideal gas scores 1
    half = 0.5 * (g_ref + 1.0)
    assert rdf_l1_error(r, g_ref, half) == pytest.approx(0.5)
    wrong = 2.0 * g_ref - 1.0 + 2.0  # far worse than an ideal gas
    assert rdf_l1_error(r, g_ref, wrong) == 1.0
    assert rdf_l1_error(r, g_ref, wrong, cap=10.0) > 1.0
    with pytest.raises(ValueError):
        rdf_l1_error(r, np.ones_like(r), g_ref)  # no structure in the reference
    with pytest.raises(ValueError):
        rdf_l1_error(r, g_ref, g_ref[:-1])
    with pytest.raises(ValueError):
        rdf_l1_error(r, g_ref, np.full_like(r, np.nan))


def test_wasserstein1() -> None:
    r = np.linspace(0.0, 8.0, 801)
    g_ref = np.clip(_bumps(r, 2.4), 0, None)
    g = np.clip(_bumps(r, 2.6), 0, None)
    w = rdf_wasserstein1(r, g_ref, g)
    assert w == pytest.approx(wasserstein_distance(r, r, g_ref * r**2, g * r**2), rel=1e-9)
    assert rdf_wasserstein1(r, g_ref, g_ref) == 0.0
    single_a = np.zeros_like(r)
    single_a[300] = 1.0
    single_b = np.zeros_like(r)
    single_b[350] = 1.0
    assert rdf_wasserstein1(r, single_a, single_b) == pytest.approx(r[350] - r[300])
    with pytest.raises(ValueError):
        rdf_wasserstein1(r, g_ref, -g)
    with pytest.raises(ValueError):
        rdf_wasserstein1(r, np.zeros_like(r), g)


# --------------------------------------------------------------- hand-computed and analytic values


def test_rdf_partials_and_density_are_means_over_frames():
    rng = np.random.default_rng(0)
    n, box = 2000, 20.0
    frames = []
    for k, scale in enumerate((1.0, 2.0 ** (1 / 3))):  # volumes V and 2V
        pos = rng.uniform(0, box * scale, (n, 3))
        frames.append((pos, np.eye(3) * box * scale, ["Li"] * 1000 + ["Si"] * 1000))
    res = rdf_frames(frames, 8.0, n_bins=20)
    far = res.r_a > 2.0
    for key, g in res.partials.items():          # ideal gas: every partial -> 1, not n_frames
        assert np.mean(g[far]) == pytest.approx(1.0, abs=0.03), key
    assert res.number_density_per_a3["Li"] == pytest.approx(0.75 * 1000 / box**3)  # mean of N/V and N/2V
    single = rdf_frame(*frames[0], 8.0, n_bins=20)
    twice = rdf_frames([frames[0], frames[0]], 8.0, n_bins=20)
    for key in single.partials:
        np.testing.assert_allclose(twice.partials[key], single.partials[key], atol=1e-12)


def test_rdf_of_a_rotated_cell_is_the_same_lattice():
    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat((3, 3, 3))
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    sym = atoms.get_chemical_symbols()
    ref = rdf_frame(atoms.positions, atoms.cell.array, sym, 5.0, n_bins=250)
    turned = rdf_frame(atoms.positions @ rot.T, atoms.cell.array @ rot.T, sym, 5.0, n_bins=250)
    assert turned.backend == "ase"
    np.testing.assert_allclose(turned.total, ref.total, atol=1e-9)
    rho = (len(atoms) - 1) / atoms.get_volume()
    assert coordination_number(turned.edges_a, turned.g("Si", "Si"), rho, 3.0) == pytest.approx(4.0, abs=1e-9)
