"""Throughput metrics: atom·step/s, warm-up exclusion, repeat summaries, speed ratios, N-scaling fits.

Pure functions, no I/O. Times in s, sizes in atoms, throughput in atom·step/s.

A speed-up between two codes is only meaningful with N stated: AIMD cost grows ~N³ and NEP ~N, so
the ratio changes strongly with size. `fit_scaling_exponent` fits s/step = prefactor · N^exponent
by least squares in log-log space, and `ratio_at_size` states the NEP÷CP2K speed ratio at a chosen N
from two such fits (name the fit and its sizes beside the number).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: A scaling fit: (exponent, prefactor in s/step at N = 1[, exponent standard error]).
ScalingFit = Sequence[float]


def atom_steps_per_s(n_atoms: int, steps: int, wall_s: float) -> float:
    """Throughput in atom·step/s of `steps` MD steps on `n_atoms` atoms taking `wall_s` seconds."""
    if n_atoms < 1 or steps < 1:
        raise ValueError(f"n_atoms and steps must be >= 1, got {n_atoms}, {steps}")
    if not (wall_s > 0 and np.isfinite(wall_s)):
        raise ValueError(f"wall_s must be finite and > 0, got {wall_s}")
    return n_atoms * steps / wall_s


def exclude_warmup(per_step_times_s: Sequence[float], warmup_steps: int) -> np.ndarray:
    """Per-step wall times (s) with the first `warmup_steps` removed.

    Raises ValueError when warmup_steps < 0 or nothing would be left to time.
    """
    times = np.asarray(per_step_times_s, dtype=float)
    if times.ndim != 1:
        raise ValueError("per_step_times_s must be one-dimensional")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if warmup_steps >= len(times):
        raise ValueError(f"warm-up of {warmup_steps} steps leaves none of {len(times)} steps to time")
    kept = times[warmup_steps:]
    if not np.all(np.isfinite(kept)) or np.any(kept < 0):
        raise ValueError("per-step times must be finite and >= 0")
    return kept


def summarise_repeats(values: Sequence[float]) -> dict[str, Any]:
    """min, median, max and count of repeated measurements (any one unit, kept as given)."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("need at least one value")
    if not np.all(np.isfinite(arr)):
        raise ValueError("values must be finite")
    return {"min": float(arr.min()), "median": float(np.median(arr)), "max": float(arr.max()),
            "n": int(arr.size)}


def speed_ratio(fast_atom_steps_per_s: float, slow_atom_steps_per_s: float) -> float:
    """How many times faster the first code is: throughput ratio (dimensionless)."""
    for name, value in (("fast", fast_atom_steps_per_s), ("slow", slow_atom_steps_per_s)):
        if not (value > 0 and np.isfinite(value)):
            raise ValueError(f"{name} throughput must be finite and > 0, got {value}")
    return float(fast_atom_steps_per_s) / float(slow_atom_steps_per_s)


def fit_scaling_exponent(n_atoms: Sequence[float], s_per_step: Sequence[float]) -> tuple[float, float, float]:
    """Fit s/step = prefactor · N^exponent by least squares on log N, log(s/step).

    Returns (exponent, prefactor in s/step, standard error of the exponent). The standard error is
    NaN with exactly two distinct sizes (no degrees of freedom left).
    Raises ValueError with fewer than 2 distinct sizes, unequal lengths or non-positive values.
    """
    n = np.asarray(n_atoms, dtype=float)
    t = np.asarray(s_per_step, dtype=float)
    if n.ndim != 1 or n.shape != t.shape:
        raise ValueError(f"n_atoms and s_per_step must be 1-D of equal length, got {n.shape}, {t.shape}")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(t))) or np.any(n <= 0) or np.any(t <= 0):
        raise ValueError("sizes and times must be finite and > 0")
    if len(np.unique(n)) < 2:
        raise ValueError(f"need at least 2 distinct sizes to fit a scaling exponent, got {sorted(set(n))}")
    x, y = np.log(n), np.log(t)
    design = np.column_stack([x, np.ones_like(x)])
    (slope, intercept), *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(x) - 2
    if dof > 0:
        residuals = y - (slope * x + intercept)
        sigma2 = float(residuals @ residuals) / dof
        stderr = float(np.sqrt(sigma2 / float(((x - x.mean()) ** 2).sum())))
    else:
        stderr = float("nan")
    return float(slope), float(np.exp(intercept)), stderr


def predict_s_per_step(n_atoms: float | np.ndarray, exponent: float, prefactor: float) -> float | np.ndarray:
    """s/step predicted by a scaling fit at `n_atoms` (scalar or array)."""
    n = np.asarray(n_atoms, dtype=float)
    if np.any(n <= 0) or not prefactor > 0:
        raise ValueError("n_atoms and prefactor must be > 0")
    out = prefactor * n ** exponent
    return float(out) if out.ndim == 0 else out


def ratio_at_size(n_atoms: float, nep_fit: ScalingFit, cp2k_fit: ScalingFit) -> float:
    """NEP÷CP2K speed ratio at `n_atoms` from two fits: CP2K s/step over NEP s/step.

    Each fit is (exponent, prefactor[, stderr]) as returned by `fit_scaling_exponent`.
    A value of 1000 means NEP runs 1000 times more steps per second than CP2K at that size.
    """
    nep = predict_s_per_step(n_atoms, nep_fit[0], nep_fit[1])
    cp2k = predict_s_per_step(n_atoms, cp2k_fit[0], cp2k_fit[1])
    return float(cp2k) / float(nep)


def n_at_ratio(target_ratio: float, slow_exponent: float, slow_prefactor: float, fast_exponent: float,
               fast_prefactor: float) -> float:
    """The atom count N at which two power-law costs s/step = a·N^b differ by `target_ratio`
    (slow ÷ fast): N = (target · a_fast / a_slow)^(1 / (b_slow − b_fast)). NaN where the exponents
    are equal (the ratio does not depend on N) or any input is not positive and finite."""
    values = (target_ratio, slow_prefactor, fast_prefactor)
    if not all(np.isfinite(v) and v > 0 for v in values) or not np.isfinite(slow_exponent - fast_exponent):
        return float("nan")
    gap = slow_exponent - fast_exponent
    if abs(gap) < 1e-12:
        return float("nan")
    return float((target_ratio * fast_prefactor / slow_prefactor) ** (1.0 / gap))
