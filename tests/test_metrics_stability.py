"""Tests of nepbench.metrics.stability: NVE energy drift."""

from __future__ import annotations

import numpy as np
import pytest

from nepbench.metrics.stability import nve_energy_drift_ev_per_atom_per_ps


def test_drift_of_exact_linear_trace() -> None:
    t = np.linspace(0.0, 10.0, 101)
    n_atoms = 64
    e = -300.0 + n_atoms * 2e-4 * t  # 2e-4 eV/atom/ps
    res = nve_energy_drift_ev_per_atom_per_ps(t, e, n_atoms)
    assert res.drift_ev_per_atom_per_ps == pytest.approx(2e-4, rel=1e-9)
    assert res.stderr_ev_per_atom_per_ps == pytest.approx(0.0, abs=1e-12)
    assert res.duration_ps == 10.0 and res.n_samples == 101


def test_drift_with_noise_within_stderr() -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 20.0, 2001)
    n_atoms = 512
    noise = rng.normal(0.0, 1e-4, t.size)  # eV/atom
    e = n_atoms * (-4.0 - 5e-5 * t + noise)
    res = nve_energy_drift_ev_per_atom_per_ps(t, e, n_atoms)
    assert abs(res.drift_ev_per_atom_per_ps + 5e-5) < 4 * res.stderr_ev_per_atom_per_ps
    assert res.residual_rms_ev_per_atom == pytest.approx(1e-4, rel=0.1)


@pytest.mark.parametrize(
    "t, e, n",
    [
        ([0.0, 1.0], [0.0, 1.0], 1),  # too few samples
        ([0.0, 1.0, 2.0], [0.0, np.nan, 1.0], 1),  # NaN
        ([0.0, 1.0, 2.0], [0.0, 1.0], 1),  # shape mismatch
        ([0.0, 2.0, 1.0], [0.0, 1.0, 2.0], 1),  # not increasing
        ([0.0, 1.0, 2.0], [0.0, 1.0, 2.0], 0),  # no atoms
    ],
)
def test_drift_bad_input(t: list[float], e: list[float], n: int) -> None:
    with pytest.raises(ValueError):
        nve_energy_drift_ev_per_atom_per_ps(np.array(t), np.array(e), n)


# --------------------------------------------------------------- hand-computed and analytic values


def test_nve_drift_by_hand():
    res = nve_energy_drift_ev_per_atom_per_ps([10.0, 11.0, 12.0, 13.0], [0.0, 1.0, 1.0, 2.0], 1)
    assert res.drift_ev_per_atom_per_ps == pytest.approx(0.6)
    assert res.stderr_ev_per_atom_per_ps == pytest.approx(np.sqrt(0.2 / 2 / 5))  # SS/(n-2)/Sxx
    assert res.residual_rms_ev_per_atom == pytest.approx(np.sqrt(0.05))
    assert res.duration_ps == pytest.approx(3.0)
