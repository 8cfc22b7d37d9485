"""Tests of nepbench.metrics.adf: lattice angles, per-species cutoffs, images, ideal gas, the metric."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from nepbench.engines.base import Trajectory
from nepbench.metrics.adf import (
    adf_frames,
    adf_l1_error,
    adf_trajectory,
    covalent_cutoffs_a,
    ideal_adf,
)

A_SI = 5.431
TETRAHEDRAL_DEG = float(np.degrees(np.arccos(-1.0 / 3.0)))  # 109.47°


def _frame(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return atoms.positions, atoms.cell.array, atoms.get_chemical_symbols()


def _mass_near(res, species: str, angle_deg: float, half_width_deg: float = 1.0) -> float:
    width = np.diff(res.edges_deg)
    near = np.abs(res.theta_deg - angle_deg) <= half_width_deg
    return float(np.sum(res.distributions[species][near] * width[near]))


def test_diamond_peak_is_tetrahedral() -> None:
    atoms = bulk("Si", "diamond", a=A_SI, cubic=True).repeat(2)
    res = adf_frames([_frame(atoms)], cutoffs_a=2.6, n_bins=180)
    p = res.distributions["Si"]
    assert res.edges_deg[np.argmax(p)] <= TETRAHEDRAL_DEG < res.edges_deg[np.argmax(p) + 1]
    assert _mass_near(res, "Si", TETRAHEDRAL_DEG) == pytest.approx(1.0)
    assert res.coordination["Si"] == pytest.approx(4.0)
    assert res.n_angles["Si"] == 6 * len(atoms)  # 4 neighbours: C(4, 2) angles per atom
    assert np.sum(p * np.diff(res.edges_deg)) == pytest.approx(1.0)


def test_fcc_first_shell_angle_fractions() -> None:
    # 12 neighbours, 66 angles: 24 at 60°, 12 at 90°, 24 at 120°, 6 at 180°
    atoms = bulk("Cu", "fcc", a=4.0, cubic=True).repeat(3)
    res = adf_frames([_frame(atoms)], cutoffs_a=3.0, n_bins=180)
    for angle, count in ((60, 24), (90, 12), (120, 24), (180, 6)):
        assert _mass_near(res, "Cu", angle) == pytest.approx(count / 66), angle


def test_pair_cutoffs_and_central_species() -> None:
    # rock salt: each A has 6 B neighbours (12 angles at 90°, 3 at 180°); A–A pairs cut away
    atoms = bulk("LiF", "rocksalt", a=4.0, cubic=True).repeat(2)
    atoms.set_chemical_symbols(["Li" if s == "Li" else "C" for s in atoms.get_chemical_symbols()])
    cut = {("Li", "C"): 2.2, ("Li", "Li"): 1.0, ("C", "C"): 1.0}
    res = adf_frames([_frame(atoms)], cutoffs_a=cut, n_bins=180)
    for centre in ("Li", "C"):
        assert res.coordination[centre] == pytest.approx(6.0)
        assert _mass_near(res, centre, 90.0) == pytest.approx(12 / 15)
        assert _mass_near(res, centre, 180.0) == pytest.approx(3 / 15)
    with pytest.raises(ValueError, match="no cutoff for species pair"):
        adf_frames([_frame(atoms)], cutoffs_a={("Li", "C"): 2.2})


def test_triclinic_primitive_cell_counts_images() -> None:
    # the 2-atom primitive cell is narrower than the cutoff: neighbours are periodic images
    cubic = adf_frames([_frame(bulk("Si", "diamond", a=A_SI, cubic=True))], cutoffs_a=2.6, n_bins=90)
    prim = adf_frames([_frame(bulk("Si", "diamond", a=A_SI))], cutoffs_a=2.6, n_bins=90)
    np.testing.assert_allclose(prim.distributions["Si"], cubic.distributions["Si"])
    assert prim.coordination["Si"] == pytest.approx(4.0)


def test_ideal_gas_matches_ideal_adf() -> None:
    rng = np.random.default_rng(1)
    box = 30.0
    pos = rng.uniform(0, box, (4000, 3))
    res = adf_frames([(pos, np.eye(3) * box, ["Si"] * len(pos))], cutoffs_a=2.5, n_bins=18)
    ideal = ideal_adf(res.edges_deg)
    assert np.sum(ideal * np.diff(res.edges_deg)) == pytest.approx(1.0)
    gap = np.sum(np.abs(res.distributions["Si"] - ideal) * np.diff(res.edges_deg))
    assert gap < 0.05


def test_trajectory_sums_frames_and_checks_pbc() -> None:
    atoms = bulk("Si", "diamond", a=A_SI, cubic=True)
    pos = np.stack([atoms.positions, atoms.positions + 0.01])
    traj = Trajectory(tuple(atoms.get_chemical_symbols()), np.array([0.0, 0.01]), pos,
                      np.repeat(atoms.cell.array[None], 2, axis=0))
    res = adf_trajectory(traj, 2.6, n_bins=90)
    assert res.n_frames == 2 and res.n_angles["Si"] == 2 * 6 * len(atoms)
    traj.pbc = (True, True, False)
    with pytest.raises(ValueError, match="periodic"):
        adf_trajectory(traj, 2.6)


def test_l1_error_scale() -> None:
    atoms = bulk("Si", "diamond", a=A_SI, cubic=True).repeat(2)
    atoms.positions += np.random.default_rng(0).normal(0, 0.1, atoms.positions.shape)
    ref = adf_frames([_frame(atoms)], 2.8, n_bins=60)
    p = ref.distributions["Si"]
    assert adf_l1_error(ref.edges_deg, p, p) == 0.0
    ideal = ideal_adf(ref.edges_deg)
    assert adf_l1_error(ref.edges_deg, p, ideal) == pytest.approx(1.0)  # no closer than an ideal gas
    halfway = 0.5 * (p + ideal)
    assert adf_l1_error(ref.edges_deg, p, halfway) == pytest.approx(0.5)
    far = np.zeros_like(p)
    far[0] = 1.0 / np.diff(ref.edges_deg)[0]  # everything at 0°: further than the ideal gas
    assert adf_l1_error(ref.edges_deg, p, far) == 1.0  # capped


def test_bad_input_raises() -> None:
    atoms = bulk("Si", "diamond", a=A_SI, cubic=True)
    edges = np.linspace(0, 180, 31)
    with pytest.raises(ValueError, match="no structure"):
        adf_l1_error(edges, ideal_adf(edges), ideal_adf(edges))
    with pytest.raises(ValueError, match="shapes"):
        adf_l1_error(edges, np.ones(30), np.ones(29))
    with pytest.raises(ValueError, match=">= 0"):
        adf_l1_error(edges, np.ones(30), -np.ones(30))
    with pytest.raises(ValueError, match="no atom has two neighbours"):
        adf_frames([_frame(atoms)], cutoffs_a=1.0)
    with pytest.raises(ValueError, match="finite"):
        adf_frames([(np.full((8, 3), np.nan), atoms.cell.array, ["Si"] * 8)], 2.6)
    with pytest.raises(ValueError, match="no frames"):
        adf_frames([], 2.6)
    with pytest.raises(ValueError, match="n_bins"):
        adf_frames([_frame(atoms)], 2.6, n_bins=0)
    with pytest.raises(ValueError, match="> 0"):
        adf_frames([_frame(atoms)], -1.0)
    other = atoms.copy()
    other.symbols[0] = "C"
    with pytest.raises(ValueError, match="symbols differ"):
        adf_frames([_frame(atoms), _frame(other)], 2.6)
    with pytest.raises(ValueError, match="unknown chemical symbol"):
        covalent_cutoffs_a(["Xx"])


def test_covalent_cutoffs_are_symmetric_and_scaled() -> None:
    cut = covalent_cutoffs_a(["Li", "Si", "C"], factor=1.3)
    assert cut[("Li", "Si")] == cut[("Si", "Li")]
    assert cut[("Si", "Si")] == pytest.approx(1.3 * 2 * 1.11, abs=0.01)
    # the default Si–Si cutoff keeps diamond's 4 neighbours (2.35 Å) and drops the 12 at 3.84 Å
    atoms = bulk("Si", "diamond", a=A_SI, cubic=True).repeat(2)
    assert adf_frames([_frame(atoms)], covalent_cutoffs_a(["Si"])).coordination["Si"] == pytest.approx(4.0)


def test_brute_force_and_ase_neighbour_searches_agree(monkeypatch):
    from nepbench.metrics import adf

    atoms = bulk("Si", "diamond", a=A_SI, cubic=True).repeat(2)
    atoms.positions += np.random.default_rng(3).normal(0, 0.15, atoms.positions.shape)
    atoms.set_cell(atoms.cell.array + np.array([[0, 0, 0], [1.0, 0, 0], [0.5, 0.7, 0]]), scale_atoms=True)  # triclinic
    brute = adf_frames([_frame(atoms)], 2.9, n_bins=90)
    monkeypatch.setattr(adf, "BRUTE_FORCE_PAIRS", 0)
    via_ase = adf_frames([_frame(atoms)], 2.9, n_bins=90)
    np.testing.assert_allclose(brute.distributions["Si"], via_ase.distributions["Si"])
    assert brute.n_angles == via_ase.n_angles and brute.coordination == via_ase.coordination
