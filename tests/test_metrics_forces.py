"""Tests of nepbench.metrics.forces: hand-computed errors, offset fit, stress units, parity data."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units

from nepbench.metrics.forces import (
    energy_errors,
    fit_element_offsets,
    force_errors,
    parity_data,
    stress_errors,
)

REF = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
PRED = np.array([[1.1, 0.0, 0.0], [0.0, 2.0, -0.2]])


def test_force_errors_hand_computed() -> None:
    fe = force_errors(REF, PRED, ["Si", "Li"], motifs=["c-Si", "LixSi"])
    assert fe.rmse_mev_per_a == pytest.approx(1000 * np.sqrt(0.05 / 6))
    assert fe.mae_mev_per_a == pytest.approx(1000 * 0.3 / 6)
    assert fe.ref_rms_mev_per_a == pytest.approx(1000 * np.sqrt(5 / 6))
    assert fe.max_abs_error_mev_per_a == pytest.approx(200.0)
    assert fe.per_element["Si"].rmse_mev_per_a == pytest.approx(1000 * np.sqrt(0.01 / 3))
    assert fe.per_element["Li"].rmse_mev_per_a == pytest.approx(1000 * np.sqrt(0.04 / 3))
    assert fe.per_element["Li"].n_atoms == 1
    assert fe.per_component["x"].rmse_mev_per_a == pytest.approx(1000 * np.sqrt(0.01 / 2))
    assert fe.per_component["y"].rmse_mev_per_a == pytest.approx(0.0)
    assert fe.per_component["z"].mae_mev_per_a == pytest.approx(100.0)
    assert fe.per_motif["LixSi"].rmse_mev_per_a == fe.per_element["Li"].rmse_mev_per_a
    # R^2 over the six components: 1 - SS_res / SS_tot
    comps = REF.ravel()
    r2 = 1 - 0.05 / np.sum((comps - comps.mean()) ** 2)
    assert fe.r2 == pytest.approx(r2)
    assert fe.overall.relative_rmse == pytest.approx(np.sqrt(0.05 / 5))


def test_force_errors_perfect_prediction() -> None:
    rng = np.random.default_rng(1)
    f = rng.normal(size=(50, 3))
    fe = force_errors(f, f.copy(), ["C"] * 50)
    assert fe.rmse_mev_per_a == 0.0 and fe.r2 == 1.0 and fe.per_motif == {}


@pytest.mark.parametrize(
    "ref, pred, symbols",
    [
        (REF, PRED[:1], ["Si", "Li"]),  # shape mismatch
        (REF, np.where(PRED > 1, np.nan, PRED), ["Si", "Li"]),  # NaN
        (np.zeros((0, 3)), np.zeros((0, 3)), []),  # empty
        (REF, PRED, ["Si"]),  # symbols length
        (REF[:, :2], PRED[:, :2], ["Si", "Li"]),  # not (n, 3)
    ],
)
def test_force_errors_bad_input(ref: np.ndarray, pred: np.ndarray, symbols: list[str]) -> None:
    with pytest.raises(ValueError):
        force_errors(ref, pred, symbols)


def test_force_errors_bad_motifs() -> None:
    with pytest.raises(ValueError):
        force_errors(REF, PRED, ["Si", "Li"], motifs=["a"])


def _synthetic_energies(seed: int = 0, noise_ev_per_atom: float = 0.0):
    rng = np.random.default_rng(seed)
    mu = {"C": -1.25, "Li": 0.75, "Si": 3.5}  # E_ref - E_pred per atom of each element, eV
    comps = [
        {"Li": int(rng.integers(0, 20)), "Si": int(rng.integers(1, 20)), "C": int(rng.integers(0, 20))}
        for _ in range(30)
    ]
    n_atoms = np.array([sum(c.values()) for c in comps])
    pred = rng.normal(-5.0, 0.3, size=30) * n_atoms
    ref = pred + np.array([sum(n * mu[el] for el, n in c.items()) for c in comps])
    ref = ref + rng.normal(0.0, noise_ev_per_atom, 30) * n_atoms
    return ref, pred, n_atoms, comps, mu


def test_energy_offsets_recovered_exactly() -> None:
    ref, pred, n_atoms, comps, mu = _synthetic_energies()
    ee = energy_errors(ref, pred, n_atoms, comps)
    for el, value in mu.items():
        assert ee.offsets_ev[el] == pytest.approx(value, abs=1e-9)
    assert ee.offset_corrected_rmse_mev_per_atom == pytest.approx(0.0, abs=1e-6)
    assert ee.reported_rmse_mev_per_atom == ee.offset_corrected_rmse_mev_per_atom
    assert ee.raw_rmse_mev_per_atom > 100.0
    assert ee.offsets_identifiable and ee.offset_fit_dof == 27 and ee.n_structures == 30


def test_energy_errors_hand_computed() -> None:
    # four Si structures of 2 atoms; errors per atom +10, -10, +30, -10 meV -> mean offset 5 meV
    comps = [{"Si": 2}] * 4
    ref = np.zeros(4)
    pred = np.array([0.02, -0.02, 0.06, -0.02])
    ee = energy_errors(ref, pred, [2, 2, 2, 2], comps)
    assert ee.raw_rmse_mev_per_atom == pytest.approx(np.sqrt((100 + 100 + 900 + 100) / 4))
    assert ee.raw_mae_mev_per_atom == pytest.approx(15.0)
    assert ee.offsets_ev["Si"] == pytest.approx(-0.005)
    assert ee.offset_corrected_rmse_mev_per_atom == pytest.approx(np.sqrt((25 + 225 + 625 + 225) / 4))
    # one composition group: relative to each set's mean gives the same as a single offset
    assert ee.composition_mean_rmse_mev_per_atom == pytest.approx(ee.offset_corrected_rmse_mev_per_atom)


def test_energy_errors_noise_and_groups() -> None:
    ref, pred, n_atoms, comps, _ = _synthetic_energies(seed=2, noise_ev_per_atom=0.004)
    ee = energy_errors(ref, pred, n_atoms, comps)
    assert 2.0 < ee.offset_corrected_rmse_mev_per_atom < 6.0
    assert ee.composition_mean_rmse_mev_per_atom is None  # random compositions never repeat


def test_energy_offsets_not_identifiable_for_fixed_stoichiometry() -> None:
    comps = [{"Li": 2, "Si": 1}, {"Li": 4, "Si": 2}, {"Li": 6, "Si": 3}]
    ee = energy_errors([1.0, 2.0, 3.1], [0.0, 0.0, 0.0], [3, 6, 9], comps)
    assert not ee.offsets_identifiable and ee.offset_fit_dof == 2


def test_energy_errors_bad_input() -> None:
    comps = [{"Li": 1, "Si": 1}, {"Si": 2}]
    with pytest.raises(ValueError, match="more structures"):
        energy_errors([1.0, 2.0], [0.0, 0.0], [2, 2], comps)
    with pytest.raises(ValueError, match="add up"):
        energy_errors([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [2, 2, 3], comps + [{"Si": 2}])
    with pytest.raises(ValueError):
        energy_errors([1.0, np.nan, 3.0], [0.0] * 3, [2, 2, 2], comps + [{"Si": 2}])
    with pytest.raises(ValueError):
        energy_errors([1.0, 2.0], [0.0, 0.0, 0.0], [2, 2, 2], comps + [{"Si": 2}])
    with pytest.raises(ValueError):
        energy_errors([], [], [], [])
    with pytest.raises(ValueError):
        fit_element_offsets(np.zeros(2), np.zeros((3, 1)))


def test_stress_errors_gpa() -> None:
    ref = np.zeros((2, 6))
    pred = np.zeros((2, 6))
    pred[0, 0] = 1.0 * units.GPa  # 1 GPa in eV/Å^3
    pred[1, 5] = -2.0 * units.GPa
    se = stress_errors(ref, pred)
    assert se.rmse_gpa == pytest.approx(np.sqrt(5 / 12))
    assert se.mae_gpa == pytest.approx(3 / 12)
    assert se.per_component_rmse_gpa["xx"] == pytest.approx(np.sqrt(0.5))
    assert se.per_component_rmse_gpa["xy"] == pytest.approx(np.sqrt(2.0))
    assert se.n_structures == 2
    assert stress_errors(np.ones(6) * 0.01, np.ones(6) * 0.01).rmse_gpa == 0.0
    with pytest.raises(ValueError):
        stress_errors(np.zeros((2, 6)), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        stress_errors(np.full((1, 6), np.nan), np.zeros((1, 6)))


def test_parity_data_subsamples_deterministically() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(1000, 3))
    pred = ref + 0.1
    symbols = ["Li"] * 100 + ["Si"] * 900
    a = parity_data(ref, pred, symbols, max_points_per_element=500, seed=7)
    b = parity_data(ref, pred, symbols, max_points_per_element=500, seed=7)
    assert set(a) == {"Li", "Si"}
    assert a["Li"].ref_ev_per_a.size == 300 and a["Li"].n_total == 300
    assert a["Si"].ref_ev_per_a.size == 500 and a["Si"].n_total == 2700
    np.testing.assert_array_equal(a["Si"].ref_ev_per_a, b["Si"].ref_ev_per_a)
    np.testing.assert_allclose(a["Si"].pred_ev_per_a - a["Si"].ref_ev_per_a, 0.1)
    with pytest.raises(ValueError):
        parity_data(ref, pred, symbols, max_points_per_element=0)


# --------------------------------------------------------------- hand-computed and analytic values


def test_offset_fit_minimises_the_per_atom_error_of_mixed_sizes():
    # Si2 is +10 meV/atom off, Si8 -10 meV/atom: the per-atom least-squares offset is their mean, 0
    ee = energy_errors([0.02, -0.08], [0.0, 0.0], [2, 8], [{"Si": 2}, {"Si": 8}])
    assert ee.offsets_ev["Si"] == pytest.approx(0.0, abs=1e-12)
    assert ee.offset_corrected_rmse_mev_per_atom == pytest.approx(10.0)
    assert ee.raw_rmse_mev_per_atom == pytest.approx(10.0)
    assert ee.raw_mae_mev_per_atom == pytest.approx(10.0)


def test_composition_mean_error_with_nonzero_reference_energies():
    ref = np.array([-8.0, -8.2, -7.9, -8.1])          # 2-atom Si cells, eV
    pred = ref + np.array([0.02, -0.02, 0.06, -0.02])  # +10, -10, +30, -10 meV/atom
    ee = energy_errors(ref, pred, [2, 2, 2, 2], [{"Si": 2}] * 4)
    assert ee.composition_mean_rmse_mev_per_atom == pytest.approx(np.sqrt((25 + 225 + 625 + 225) / 4))
