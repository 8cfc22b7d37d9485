"""Stability of MD runs: energy drift of NVE trajectories.

Pure functions, no I/O. Energies in eV, times in ps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EnergyDrift:
    """Linear drift of the total (potential + kinetic) energy of an NVE run, per atom.

    Attributes:
        drift_ev_per_atom_per_ps: slope of a least-squares line through E_total(t)/N, eV/atom/ps.
            Signed: > 0 means the energy grows (typically too large a time step).
        stderr_ev_per_atom_per_ps: standard error of that slope from the line's residuals,
            assuming independent residuals (correlated fluctuations make it an underestimate).
        residual_rms_ev_per_atom: RMS of E_total/N about the line, eV/atom (the fluctuation).
        duration_ps: time span of the fitted samples in ps.
        n_samples: number of energy samples.
    """

    drift_ev_per_atom_per_ps: float
    stderr_ev_per_atom_per_ps: float
    residual_rms_ev_per_atom: float
    duration_ps: float
    n_samples: int


def nve_energy_drift_ev_per_atom_per_ps(
    times_ps: np.ndarray, total_energy_ev: np.ndarray, n_atoms: int
) -> EnergyDrift:
    """Energy drift of an NVE run: slope of total energy per atom vs time (eV/atom/ps).

    Args:
        times_ps: (n,) sample times in ps, strictly increasing, n >= 3.
        total_energy_ev: (n,) total energy (potential + kinetic) of the whole system in eV.
        n_atoms: number of atoms (> 0).

    Raises:
        ValueError: fewer than 3 samples, NaN/inf, shape mismatch, non-increasing times, n_atoms < 1.
    """
    t = np.asarray(times_ps, dtype=float)
    e = np.asarray(total_energy_ev, dtype=float)
    if t.ndim != 1 or t.shape != e.shape:
        raise ValueError(f"shape mismatch: times {t.shape}, energies {e.shape}")
    if t.size < 3:
        raise ValueError(f"need at least 3 samples for a drift and its error, got {t.size}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(e))):
        raise ValueError("times and energies must be finite (NaN/inf suggests a crashed run)")
    if np.any(np.diff(t) <= 0):
        raise ValueError("times_ps must be strictly increasing")
    if int(n_atoms) != n_atoms or n_atoms < 1:
        raise ValueError(f"n_atoms must be a positive integer, got {n_atoms}")
    y = e / n_atoms
    tc = t - t.mean()
    sxx = float(np.sum(tc**2))
    slope = float(np.sum(tc * (y - y.mean())) / sxx)
    resid = y - y.mean() - slope * tc
    stderr = float(np.sqrt(np.sum(resid**2) / (t.size - 2) / sxx))
    return EnergyDrift(
        drift_ev_per_atom_per_ps=slope,
        stderr_ev_per_atom_per_ps=stderr,
        residual_rms_ev_per_atom=float(np.sqrt(np.mean(resid**2))),
        duration_ps=float(t[-1] - t[0]),
        n_samples=int(t.size),
    )
