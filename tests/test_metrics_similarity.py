"""metrics.similarity: how far a held-out frame is from the nearest training frame."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from nepbench.metrics.similarity import nearest_distances_a, rms_distance_a


def _si8() -> Atoms:
    return bulk("Si", "diamond", a=5.43, cubic=True)


def test_a_strained_copy_is_at_zero_and_a_rattle_at_its_rms():
    base = _si8()
    strained = base.copy()
    strained.set_cell(base.cell.array @ np.diag([1.05, 0.97, 1.0]), scale_atoms=True)
    assert rms_distance_a(strained, base) == pytest.approx(0.0, abs=1e-12)
    rattled = base.copy()
    shift = np.random.default_rng(1).normal(0, 0.1, (len(base), 3))
    rattled.positions += shift
    assert rms_distance_a(rattled, base) == pytest.approx(np.sqrt(np.mean(np.sum(shift**2, axis=1))), rel=1e-9)


def test_an_atom_across_the_periodic_boundary_is_near_its_image():
    base = _si8()
    moved = base.copy()
    moved.positions[0] += moved.cell.array[0] + [0.2, 0.0, 0.0]  # one cell over, then 0.2 Å
    assert rms_distance_a(moved, base) == pytest.approx(0.2 / np.sqrt(len(base)), rel=1e-9)
    moved.pbc = False  # no images: the full cell length counts
    assert rms_distance_a(moved, base) > 1.0


def test_frames_of_other_atoms_are_not_compared_and_the_nearest_is_taken():
    base = _si8()
    other = base.copy()
    other.symbols[0] = "C"
    assert rms_distance_a(other, base) is None and rms_distance_a(base[:4], base) is None
    far, near = base.copy(), base.copy()
    far.positions += np.random.default_rng(2).normal(0, 0.5, far.positions.shape)
    near.positions += np.random.default_rng(3).normal(0, 0.05, near.positions.shape)
    got = nearest_distances_a([base, other], [far, near, other])
    assert got[0] == pytest.approx(rms_distance_a(base, near)) and got[1] == 0.0
    assert np.isinf(nearest_distances_a([other], [base])[0])


# --------------------------------------------------------------- hand-computed and analytic values


def test_strained_triclinic_copy_is_at_zero():
    cell = np.array([[5.0, 0.0, 0.0], [1.5, 4.8, 0.0], [0.7, 1.1, 5.2]])
    base = Atoms("Si8", scaled_positions=np.random.default_rng(5).random((8, 3)), cell=cell, pbc=True)
    strained = base.copy()
    strained.set_cell(cell @ np.diag([1.04, 0.98, 1.02]), scale_atoms=True)
    assert rms_distance_a(strained, base) == pytest.approx(0.0, abs=1e-12)
    assert rms_distance_a(base, strained) == pytest.approx(0.0, abs=1e-12)
