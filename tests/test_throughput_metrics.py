"""Throughput metrics: warm-up exclusion, repeat summaries, speed ratios and N-scaling fits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nepbench.metrics import throughput as tp


def test_atom_steps_per_s():
    assert tp.atom_steps_per_s(1000, 200, 4.0) == 50_000.0
    for bad in [(0, 10, 1.0), (10, 0, 1.0), (10, 10, 0.0), (10, 10, float("nan"))]:
        with pytest.raises(ValueError):
            tp.atom_steps_per_s(*bad)


def test_exclude_warmup_drops_the_slow_first_steps():
    times = [5.0, 2.0, 1.0, 1.0, 1.0, 1.0]  # first steps include set-up, JIT, neighbour lists
    kept = tp.exclude_warmup(times, 2)
    np.testing.assert_array_equal(kept, [1.0, 1.0, 1.0, 1.0])
    assert kept.mean() == 1.0 and np.mean(times) > 1.5
    np.testing.assert_array_equal(tp.exclude_warmup(times, 0), times)
    with pytest.raises(ValueError, match="leaves none"):
        tp.exclude_warmup(times, 6)
    with pytest.raises(ValueError):
        tp.exclude_warmup(times, -1)
    with pytest.raises(ValueError):
        tp.exclude_warmup([1.0, float("nan")], 0)


def test_summarise_repeats():
    assert tp.summarise_repeats([3.0, 1.0, 2.0, 10.0]) == {"min": 1.0, "median": 2.5, "max": 10.0, "n": 4}
    assert tp.summarise_repeats([7.0]) == {"min": 7.0, "median": 7.0, "max": 7.0, "n": 1}
    with pytest.raises(ValueError):
        tp.summarise_repeats([])
    with pytest.raises(ValueError):
        tp.summarise_repeats([1.0, math.inf])


def test_speed_ratio():
    assert tp.speed_ratio(1e7, 1e3) == pytest.approx(1e4)
    assert tp.speed_ratio(2.0, 4.0) == 0.5
    with pytest.raises(ValueError):
        tp.speed_ratio(1.0, 0.0)
    with pytest.raises(ValueError):
        tp.speed_ratio(-1.0, 1.0)


@pytest.mark.parametrize("exponent,prefactor", [(3.0, 2e-6), (1.0, 3e-7), (2.2, 1e-4)])
def test_fit_recovers_known_exponent_exactly(exponent, prefactor):
    n = np.array([32, 64, 128, 256, 512])
    b, a, err = tp.fit_scaling_exponent(n, prefactor * n**exponent)
    assert b == pytest.approx(exponent, abs=1e-10)
    assert a == pytest.approx(prefactor, rel=1e-9)
    assert err == pytest.approx(0.0, abs=1e-9)


def test_fit_with_noise_and_two_sizes():
    rng = np.random.default_rng(0)
    n = np.geomspace(64, 1e5, 12)
    t = 1e-6 * n * np.exp(rng.normal(0, 0.05, n.size))
    b, a, err = tp.fit_scaling_exponent(n, t)
    assert abs(b - 1.0) < 3 * err + 1e-3 and 0 < err < 0.05
    b2, a2, err2 = tp.fit_scaling_exponent([64, 128], [1.0, 8.0])
    assert b2 == pytest.approx(3.0) and a2 == pytest.approx(64.0**-3) and math.isnan(err2)


def test_fit_errors():
    with pytest.raises(ValueError, match="2 distinct sizes"):
        tp.fit_scaling_exponent([64], [1.0])
    with pytest.raises(ValueError, match="2 distinct sizes"):
        tp.fit_scaling_exponent([64, 64], [1.0, 1.1])
    with pytest.raises(ValueError, match="> 0"):
        tp.fit_scaling_exponent([64, 128], [1.0, 0.0])
    with pytest.raises(ValueError, match="> 0"):
        tp.fit_scaling_exponent([-64, 128], [1.0, 2.0])
    with pytest.raises(ValueError, match="equal length"):
        tp.fit_scaling_exponent([64, 128, 256], [1.0, 2.0])


def test_predict_and_ratio_at_size():
    n = np.array([32, 64, 128])
    cp2k = tp.fit_scaling_exponent(n, 1e-3 * n**3.0)   # s/step ~ N^3
    nep = tp.fit_scaling_exponent(n, 1e-6 * n**1.0)    # s/step ~ N
    assert tp.predict_s_per_step(100, cp2k[0], cp2k[1]) == pytest.approx(1e3)
    np.testing.assert_allclose(tp.predict_s_per_step(np.array([10, 20]), 1.0, 2.0), [20.0, 40.0])
    # ratio = (1e-3 N^3) / (1e-6 N) = 1e3 N^2: it depends strongly on N
    assert tp.ratio_at_size(100, nep, cp2k) == pytest.approx(1e7)
    assert tp.ratio_at_size(1000, nep, cp2k) == pytest.approx(1e9)
    with pytest.raises(ValueError):
        tp.predict_s_per_step(0, 1.0, 1.0)


# --------------------------------------------------------------- hand-computed and analytic values


def test_scaling_exponent_stderr_by_hand():
    # log t = b log N + c + r with r = (+d, -2d, +d) orthogonal to (1, log N): b exact, SS = 6 d^2 on 1 dof,
    # Sxx = 2 ln(10)^2  ->  stderr = d sqrt(3) / ln 10
    n = np.array([10.0, 100.0, 1000.0])
    d = 0.1
    t = 1e-6 * n**2 * np.exp([d, -2 * d, d])
    b, a, err = tp.fit_scaling_exponent(n, t)
    assert b == pytest.approx(2.0, abs=1e-12)
    assert err == pytest.approx(d * np.sqrt(3) / np.log(10), rel=1e-9)


def test_n_at_ratio_inverts_two_power_laws() -> None:
    from nepbench.metrics.throughput import n_at_ratio, predict_s_per_step

    # CP2K 0.01·N^2.5 s/step, NEP 1e-6·N s/step: ratio 1e4·N^1.5, so 7e4 at N = 7^(2/3) ≈ 3.66
    n = n_at_ratio(7e4, 2.5, 0.01, 1.0, 1e-6)
    assert n == pytest.approx(7 ** (2 / 3), rel=1e-12)
    assert predict_s_per_step(n, 2.5, 0.01) / predict_s_per_step(n, 1.0, 1e-6) == pytest.approx(7e4, rel=1e-9)
    assert np.isnan(n_at_ratio(7e4, 1.0, 0.01, 1.0, 1e-6))  # equal exponents: no crossing
    assert np.isnan(n_at_ratio(-1.0, 2.0, 0.01, 1.0, 1e-6))
