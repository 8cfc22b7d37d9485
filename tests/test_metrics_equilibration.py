"""Equilibration detection and statistical inefficiency on series whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from nepbench.metrics.equilibration import (
    csvr_heat_offset_k, detect_equilibration, linear_trend, statistical_inefficiency, thermostat_offset,
)


def _ar1(rho: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=n)
    x = np.empty(n)
    x[0] = noise[0] / np.sqrt(1 - rho**2)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + noise[i]
    return x


def test_white_noise_has_inefficiency_near_one() -> None:
    g = [statistical_inefficiency(np.random.default_rng(s).normal(size=4000)) for s in range(10)]
    assert np.mean(g) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_ar1_inefficiency_matches_its_closed_form(rho: float) -> None:
    g = np.mean([statistical_inefficiency(_ar1(rho, 20000, seed)) for seed in range(5)])
    assert g == pytest.approx((1 + rho) / (1 - rho), rel=0.12)


def test_constant_series_has_inefficiency_one() -> None:
    assert statistical_inefficiency(np.full(50, 3.0)) == 1.0


def test_stationary_series_is_judged_stationary_from_the_start() -> None:
    found = detect_equilibration(np.random.default_rng(3).normal(size=300))
    assert found.start_index < 30 and found.n_samples == 300
    assert found.effective_samples == pytest.approx((300 - found.start_index) / found.statistical_inefficiency)


@pytest.mark.parametrize("seed", range(5))
def test_a_decaying_transient_is_cut_off(seed: int) -> None:
    """A relaxation of 15 noise widths decaying over 20 samples, then noise: equilibration is
    found after the transient has fallen to about the noise, not at the start."""
    n = 400
    t = np.arange(n)
    x = 15.0 * np.exp(-t / 20.0) + np.random.default_rng(seed).normal(size=n)
    found = detect_equilibration(x)
    assert 30 <= found.start_index <= 120  # 15 e^(-t/20) is 1.0 at t = 54


def test_a_late_step_change_moves_the_start_past_it() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=150) + 6.0, rng.normal(size=250)])
    assert 145 <= detect_equilibration(x).start_index <= 165


@pytest.mark.parametrize("stride", [1, 4, 7])
def test_a_stride_picks_the_best_start_on_its_grid(stride: int) -> None:
    """With a stride the start is the best of the starts on the grid, found by brute force."""
    n = 300
    x = 10.0 * np.exp(-np.arange(n) / 15.0) + np.random.default_rng(1).normal(size=n)
    found = detect_equilibration(x, stride=stride)
    n_eff = {t0: (n - t0) / statistical_inefficiency(x[t0:]) for t0 in range(0, n - 9, stride)}
    assert found.start_index == max(n_eff, key=n_eff.get)
    assert found.effective_samples == pytest.approx(n_eff[found.start_index])


def test_a_stride_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="stride"):
        detect_equilibration(np.arange(20.0), stride=0)


@pytest.mark.parametrize("values, message", [
    (np.array([1.0, np.nan, 2.0] * 10), "NaN"),
    (np.ones((5, 5)), "one-dimensional"),
    (np.arange(5.0), "at least 10"),
])
def test_bad_series_is_refused(values: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        detect_equilibration(values)


def test_thermostat_offset_error_follows_the_correlation_of_the_samples() -> None:
    """AR(1) noise around 1000 K: the mean's standard error is σ √(g/n), with g the closed-form
    inefficiency of the process, so the same σ with more correlation gives a larger error."""
    rho, n = 0.8, 20000
    x = _ar1(rho, n, seed=4)
    temps = 1000.0 + 50.0 * x / x.std()
    found = thermostat_offset(temps, 900.0)
    g = (1 + rho) / (1 - rho)
    assert found.mean_k == pytest.approx(temps.mean())
    assert found.relative_offset == pytest.approx(temps.mean() / 900.0 - 1)
    assert found.stderr_k == pytest.approx(50.0 * np.sqrt(g / n), rel=0.15)
    assert found.z == pytest.approx((temps.mean() - 900.0) / found.stderr_k)
    uncorrelated = thermostat_offset(1000.0 + 50.0 * np.random.default_rng(4).normal(size=n), 900.0)
    assert uncorrelated.stderr_k == pytest.approx(50.0 / np.sqrt(n), rel=0.1)


def test_thermostat_offset_of_a_constant_series() -> None:
    assert thermostat_offset(np.full(20, 900.0), 900.0).z == 0.0
    hot = thermostat_offset(np.full(20, 990.0), 900.0)
    assert hot.z == np.inf and hot.stderr_k == 0.0 and hot.relative_offset == pytest.approx(0.1)


@pytest.mark.parametrize("temps, target, message", [
    (np.array([900.0]), 900.0, "at least 2"),
    (np.array([900.0, np.nan]), 900.0, "NaN"),
    (np.array([900.0, 910.0]), 0.0, "positive"),
    (np.array([900.0, 910.0]), np.nan, "positive"),
])
def test_thermostat_offset_refuses_bad_input(temps, target, message) -> None:
    with pytest.raises(ValueError, match=message):
        thermostat_offset(temps, target)


def test_linear_trend_recovers_a_slope_and_its_error_grows_with_correlation() -> None:
    """A line plus AR(1) noise: the slope comes back within its error, and the error is the
    ordinary one times √g (checked by the spread of slopes over 200 independent series)."""
    rho, n = 0.8, 2000
    t = np.arange(n) * 0.002  # ps
    slopes, errors = [], []
    for seed in range(200):
        found = linear_trend(t, -2.0 * t + _ar1(rho, n, seed))
        slopes.append(found.slope)
        errors.append(found.stderr)
    spread = float(np.std(slopes))
    assert np.mean(slopes) == pytest.approx(-2.0, abs=3 * spread / np.sqrt(200))
    assert np.median(errors) == pytest.approx(spread, rel=0.25)  # the stated error is the real spread
    naive = np.sqrt(1.0 / (1 - rho**2) / np.sum((t - t.mean()) ** 2))  # white-noise error of the same σ
    assert np.median(errors) > 2.0 * naive  # g = 9: √g = 3
    flat = linear_trend(t, _ar1(rho, n, 999))
    assert abs(flat.z) < 4


def test_linear_trend_edge_cases() -> None:
    flat = linear_trend([0.0, 1.0, 2.0], [5.0, 5.0, 5.0])
    assert flat.slope == 0.0 and flat.stderr == 0.0 and flat.z == 0.0
    exact = linear_trend([0.0, 1.0, 2.0], [1.0, 3.0, 5.0])
    assert exact.slope == pytest.approx(2.0) and exact.z == np.inf
    for times, values, message in [([0.0, 1.0], [1.0, 2.0], "at least 3"), ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], "equal"),
                                   ([0.0, 1.0, 2.0], [1.0, np.nan, 3.0], "NaN"), ([0.0, 1.0, 2.0], [1.0] * 4, "length")]:
        with pytest.raises(ValueError, match=message):
            linear_trend(times, values)


def test_csvr_heat_offset_matches_a_simulated_thermostat() -> None:
    """Integrate CSVR's mean kinetic energy, d<K>/dt = (K0 - <K>)/tau + P, with a constant heat
    input: it settles at K0 + P tau, and the function gives that as a temperature."""
    from ase import units

    n_dof, target_k, tau_fs, heat = 93, 1200.0, 50.0, 2.25  # eV/ps: a 32-atom cell, CP2K's 3N - 3
    k0 = 0.5 * n_dof * units.kB * target_k
    k, dt_ps = k0, 1e-4
    for _ in range(20000):  # 2 ps = 40 tau
        k += ((k0 - k) / (tau_fs / 1000) + heat) * dt_ps
    simulated_k = 2 * k / (n_dof * units.kB) - target_k
    assert csvr_heat_offset_k(heat, tau_fs, n_dof) == pytest.approx(simulated_k, rel=1e-3)
    assert csvr_heat_offset_k(heat, tau_fs, n_dof) == pytest.approx(28.1, abs=0.1)
    assert csvr_heat_offset_k(-heat, tau_fs, n_dof) == -csvr_heat_offset_k(heat, tau_fs, n_dof)
    for args in [(1.0, 0.0, 93), (1.0, 50.0, 0)]:
        with pytest.raises(ValueError):
            csvr_heat_offset_k(*args)


# --------------------------------------------------------------- hand-computed and analytic values


def test_statistical_inefficiency_by_hand():
    # C(1) = 1/7 over the 7 lag-1 products, C(2) = -1 stops the sum: g = 1 + 2 (1/7)(1 - 1/8) = 1.25
    assert statistical_inefficiency(np.array([1, 1, -1, -1, 1, 1, -1, -1.0])) == pytest.approx(1.25)
