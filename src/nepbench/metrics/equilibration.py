"""Where a time series becomes stationary: automated equilibration detection.

Pure functions, no I/O. Series are unitless samples at equal time intervals; indices count samples.

Method (Chodera, J. Chem. Theory Comput. 12, 1799 (2016)): for each candidate start t0, the
samples from t0 on have a statistical inefficiency g(t0) (1 + 2 Σ_t (1 − t/n) C(t), the sum cut at
the first lag whose normalised autocorrelation C(t) is not positive) and hence
N_eff(t0) = (n − t0) / g(t0) effectively independent samples. The start that keeps the most
effective samples is taken as the end of equilibration: starting earlier keeps a transient, which
inflates the variance and the correlation time; starting later discards good samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import units


@dataclass(frozen=True)
class Equilibration:
    """Result of `detect_equilibration`.

    Attributes:
        start_index: index of the first sample judged stationary.
        statistical_inefficiency: g of the samples from `start_index` on (≥ 1; samples per
            effectively independent sample).
        effective_samples: (n − start_index) / g.
        n_samples: length of the series.
    """

    start_index: int
    statistical_inefficiency: float
    effective_samples: float
    n_samples: int


def _series(values: np.ndarray, min_samples: int) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"series must be one-dimensional, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("series contains NaN or inf")
    if len(x) < min_samples:
        raise ValueError(f"series has {len(x)} samples; at least {min_samples} are needed")
    return x


def statistical_inefficiency(values: np.ndarray) -> float:
    """g = 1 + 2 Σ_{t≥1} (1 − t/n) C(t), summed until C(t) ≤ 0; 1.0 for a constant series.

    C(t) is the normalised autocovariance at lag t (each lag averages its own
    n − t products). For an AR(1) process with coefficient ρ, g → (1 + ρ) / (1 − ρ).
    """
    x = _series(values, 2)
    n = len(x)
    dx = x - x.mean()
    var = float(np.dot(dx, dx)) / n
    if var <= 0.0:
        return 1.0
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(dx, size)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n] / (n - np.arange(n))
    corr = acov[1:n - 1] / var
    lags = np.arange(1, n - 1)
    stop = np.flatnonzero(corr <= 0.0)
    cut = int(stop[0]) if stop.size else len(corr)
    g = 1.0 + 2.0 * float(np.sum(corr[:cut] * (1.0 - lags[:cut] / n)))
    return max(1.0, g)


def detect_equilibration(values: np.ndarray, min_samples: int = 10,
                         stride: int = 1) -> Equilibration:
    """The start index that maximises the effective number of samples after it.

    Each candidate start costs one FFT of the rest of the series, so the search is
    O(n² log n / stride): well under a second for the AIMD runs' ≤ 10³ steps; give long series
    (≥ 10⁴ samples) a stride so that a few hundred candidates are tried.

    Args:
        values: the series (e.g. potential energy per MD step), equally spaced.
        min_samples: fewest samples a candidate start must leave after it (≥ 2).
        stride: try every `stride`-th start index only (≥ 1); the start found is a multiple of it.

    Raises:
        ValueError: a series that is not 1-D and finite, or shorter than `min_samples`;
            `min_samples` < 2 or `stride` < 1.
    """
    if min_samples < 2:
        raise ValueError(f"min_samples must be >= 2, got {min_samples}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    x = _series(values, min_samples)
    n = len(x)
    best = Equilibration(0, 1.0, -1.0, n)
    for t0 in range(0, n - min_samples + 1, stride):
        g = statistical_inefficiency(x[t0:])
        n_eff = (n - t0) / g
        if n_eff > best.effective_samples:
            best = Equilibration(t0, g, n_eff, n)
    return best


def mean_standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of a correlated, equally spaced series: σ √(g / n), in the series'
    units, with g its `statistical_inefficiency` (correlated samples count as n / g independent ones).

    Raises:
        ValueError: fewer than 2 samples or non-finite values.
    """
    x = _series(values, 2)
    return float(x.std() * np.sqrt(statistical_inefficiency(x) / len(x)))


@dataclass(frozen=True)
class ThermostatOffset:
    """Mean of a kinetic-temperature series against its thermostat's target (`thermostat_offset`).

    Attributes:
        mean_k: mean temperature, K.
        stderr_k: standard error of that mean, K (`mean_standard_error`).
        relative_offset: mean_k / target_k − 1 (dimensionless).
        z: (mean_k − target_k) / stderr_k: how many standard errors the offset is (± inf when
            the series is constant and off target, 0 when it sits on target).
    """

    mean_k: float
    stderr_k: float
    relative_offset: float
    z: float


def thermostat_offset(temperatures_k: np.ndarray, target_k: float) -> ThermostatOffset:
    """How far, and how significantly, an equally spaced temperature series (K) averages off `target_k`.

    A small cell's instantaneous temperature scatters by σ/T = √(2/3N) (14 % at 32 atoms), and its
    samples are correlated over the thermostat's time, so a short run's mean can sit several per
    cent off target by chance: compare the offset with `stderr_k` before calling it a bias.

    Raises:
        ValueError: fewer than 2 samples, non-finite values, or a target that is not > 0.
    """
    if not (np.isfinite(target_k) and target_k > 0):
        raise ValueError(f"target temperature must be a positive number of K, got {target_k}")
    t = _series(temperatures_k, 2)
    mean = float(t.mean())
    stderr = mean_standard_error(t)
    delta = mean - target_k
    if stderr > 0:
        z = delta / stderr
    else:
        z = 0.0 if delta == 0 else float(np.copysign(np.inf, delta))
    return ThermostatOffset(mean, stderr, mean / target_k - 1.0, z)


@dataclass(frozen=True)
class LinearTrend:
    """Least-squares slope of a correlated, equally spaced series against time (`linear_trend`).

    Attributes:
        slope: the fitted slope, in the series' units per time unit.
        stderr: its standard error, in the same units: the ordinary least-squares error inflated by
            √g, g the `statistical_inefficiency` of the residuals (correlated residuals count as
            n / g independent ones).
        z: slope / stderr (0 for a flat series, ± inf for an exact nonzero line).
    """

    slope: float
    stderr: float
    z: float


def linear_trend(times: np.ndarray, values: np.ndarray) -> LinearTrend:
    """Is a series still drifting? Its slope against `times` with an error that allows for correlation.

    Meant for a potential energy after an MD warm-up: a slope many standard errors from 0 says the
    structure is still relaxing (or heating), so averages over the run describe a moving state.

    Raises:
        ValueError: fewer than 3 samples, non-finite values, unequal lengths, or constant times.
    """
    t = _series(times, 3)
    x = _series(values, 3)
    if t.shape != x.shape:
        raise ValueError(f"times and values differ in length ({t.size} and {x.size})")
    dt = t - t.mean()
    sxx = float(np.sum(dt**2))
    if not sxx > 0:
        raise ValueError("times are all equal: no slope")
    slope = float(np.sum(dt * (x - x.mean())) / sxx)
    residuals = x - x.mean() - slope * dt
    ss = float(np.sum(residuals**2))
    g = statistical_inefficiency(residuals) if ss > 0 else 1.0
    stderr = float(np.sqrt(ss / (t.size - 2) / sxx * g))
    if stderr > 0:
        z = slope / stderr
    else:
        z = 0.0 if slope == 0 else float(np.copysign(np.inf, slope))
    return LinearTrend(slope, stderr, z)


def csvr_heat_offset_k(heat_ev_per_ps: float, coupling_fs: float, degrees_of_freedom: int) -> float:
    """How far above its target (K) a CSVR (Bussi) thermostat holds a system into which heat flows.

    CSVR relaxes the mean kinetic energy to its target with time constant τ: d⟨K⟩/dt = (K0 − ⟨K⟩)/τ
    + P, so a steady heat input P (eV/ps, e.g. the potential energy a still-relaxing structure
    releases, −dE_pot/dt) holds ⟨K⟩ at K0 + P·τ, i.e. T at T0 + 2 P τ / (N_dof k_B). Negative P
    (the structure taking up energy) gives a negative offset.

    Raises:
        ValueError: coupling_fs not > 0 or fewer than 1 degree of freedom.
    """
    if not (np.isfinite(coupling_fs) and coupling_fs > 0):
        raise ValueError(f"coupling time must be > 0 fs, got {coupling_fs}")
    if degrees_of_freedom < 1:
        raise ValueError(f"need at least 1 degree of freedom, got {degrees_of_freedom}")
    return 2.0 * heat_ev_per_ps * (coupling_fs / 1000.0) / (degrees_of_freedom * units.kB)


def relaxation_heat(times_ps: np.ndarray, potential_ev: np.ndarray, n_atoms: int,
                    coupling_fs: float) -> tuple[LinearTrend, float]:
    """The potential energy's trend (meV/atom/ps, `linear_trend`) of an NVT run of `n_atoms` with
    zero total momentum, and the temperature offset (K) the heat that trend releases holds its CSVR
    thermostat at (`csvr_heat_offset_k` over 3N − 3 degrees of freedom)."""
    trend = linear_trend(times_ps, np.asarray(potential_ev, dtype=float) / n_atoms * 1000.0)
    return trend, csvr_heat_offset_k(-trend.slope * n_atoms / 1000.0, coupling_fs, 3 * n_atoms - 3)
