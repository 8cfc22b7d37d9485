"""Tests of nepbench.metrics.vdos: harmonic oscillators, the difference correction, Nyquist and
aliasing, the metric, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from nepbench.metrics.vdos import midpoint_velocities, nyquist_thz, vdos, vdos_l1_error

DT_PS = 0.01  # frames every 10 fs, as the a-Li3Si AIMD runs record them


def _oscillators(freqs_thz: list[float], velocity_amplitude: float = 1.0, n_frames: int = 2000,
                 per_freq: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unwrapped positions of harmonic oscillators (per_freq atoms per frequency, random phase per
    axis) whose velocity amplitude is the same at every frequency, and their times (ps)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) * DT_PS
    atoms = []
    for f in freqs_thz:
        omega = 2 * np.pi * f
        for _ in range(per_freq):
            phase = rng.uniform(0, 2 * np.pi, 3)
            atoms.append(velocity_amplitude / omega * np.sin(omega * t[:, None] + phase) + rng.uniform(0, 10, 3))
    return np.stack(atoms, axis=1), t


def _area(res, low: float, high: float) -> float:
    inside = (res.freq_thz >= low) & (res.freq_thz <= high)
    return float(np.trapezoid(res.dos_per_thz[inside], res.freq_thz[inside]))


def test_harmonic_oscillator_peaks_at_its_frequency() -> None:
    pos, t = _oscillators([12.0])
    res = vdos(pos, t, segment_ps=2.0)
    df = res.freq_thz[1] - res.freq_thz[0]
    assert df == pytest.approx(0.5)  # resolution 1 / segment
    assert abs(res.freq_thz[np.argmax(res.dos_per_thz)] - 12.0) <= df / 2
    assert np.trapezoid(res.dos_per_thz, res.freq_thz) == pytest.approx(1.0)
    assert _area(res, 10.0, 14.0) > 0.95


def test_nyquist_limit_and_grid() -> None:
    assert nyquist_thz(DT_PS) == pytest.approx(50.0)
    assert nyquist_thz(0.005) == pytest.approx(100.0)
    pos, t = _oscillators([12.0], n_frames=400)
    res = vdos(pos, t)
    assert res.nyquist_thz == pytest.approx(50.0)
    assert res.freq_thz[-1] == pytest.approx(50.0)
    assert res.segment_frames == 50  # 0.5 ps of 10 fs samples


def test_difference_correction_restores_equal_weights() -> None:
    # equal velocity amplitudes: each mode carries the same kinetic energy, so the same area
    pos, t = _oscillators([5.0, 30.0])
    corrected = vdos(pos, t, segment_ps=2.0)
    raw = vdos(pos, t, segment_ps=2.0, correct_difference=False)
    low_c, high_c = _area(corrected, 3, 7), _area(corrected, 28, 32)
    assert high_c / low_c == pytest.approx(1.0, abs=0.03)
    expected = (np.sinc(30.0 * DT_PS) / np.sinc(5.0 * DT_PS)) ** 2  # the midpoint difference's power transfer
    assert _area(raw, 28, 32) / _area(raw, 3, 7) == pytest.approx(expected, abs=0.03)
    assert expected < 0.8  # the correction matters at these frequencies


def test_mask_selects_atoms() -> None:
    pos, t = _oscillators([5.0, 30.0])
    mask = np.zeros(pos.shape[1], bool)
    mask[:6] = True  # the 5 THz oscillators
    res = vdos(pos, t, mask=mask, segment_ps=2.0)
    assert res.n_atoms == 6
    assert _area(res, 3, 7) > 0.95


def test_motion_above_nyquist_aliases() -> None:
    pos, t = _oscillators([70.0])  # 20 THz above the 50 THz Nyquist: folds to 100 − 70 = 30 THz
    res = vdos(pos, t, segment_ps=2.0, correct_difference=False)
    assert abs(res.freq_thz[np.argmax(res.dos_per_thz)] - 30.0) <= 0.5


def test_l1_error_scale() -> None:
    pos, t = _oscillators([12.0])
    a = vdos(pos, t).dos_per_thz
    f = vdos(pos, t).freq_thz
    assert vdos_l1_error(f, a, a) == 0.0
    assert vdos_l1_error(f, a, 3 * a) == pytest.approx(0.0)  # each spectrum is normalised first
    other = vdos(*_oscillators([40.0]), segment_ps=0.5).dos_per_thz
    d = vdos_l1_error(f, a, other)
    assert 0.9 < d <= 1.0 and d == pytest.approx(vdos_l1_error(f, other, a))
    box_a = np.where(f < 10, 1.0, 0.0)
    box_b = np.where(f < 20, 1.0, 0.0)
    # unit-area boxes on a grid: half of b's mass lies outside a
    assert vdos_l1_error(f, box_a, box_b) == pytest.approx(0.5, abs=0.05)


def test_midpoint_velocities() -> None:
    t = np.arange(5) * DT_PS
    pos = np.zeros((5, 1, 3))
    pos[:, 0, 0] = 2.0 * t  # 2 Å/ps along x
    vel, dt = midpoint_velocities(pos, t)
    assert dt == pytest.approx(DT_PS)
    np.testing.assert_allclose(vel[:, 0, 0], 2.0)
    assert vel.shape == (4, 1, 3)


def test_bad_input_raises() -> None:
    pos, t = _oscillators([12.0], n_frames=100)
    with pytest.raises(ValueError, match="at least 3 frames"):
        vdos(pos[:2], t[:2])
    bent = t.copy()
    bent[50:] += 0.003
    with pytest.raises(ValueError, match="uniformly"):
        vdos(pos, bent)
    with pytest.raises(ValueError, match="selects no atoms"):
        vdos(pos, t, mask=np.zeros(pos.shape[1], bool))
    with pytest.raises(ValueError, match="boolean"):
        vdos(pos, t, mask=np.ones(3, bool))
    with pytest.raises(ValueError, match="zero spectrum"):
        vdos(np.ones_like(pos), t)
    with pytest.raises(ValueError, match="too short"):
        vdos(pos, t, segment_frames=3)
    with pytest.raises(ValueError, match="finite"):
        bad = pos.copy()
        bad[3, 0, 0] = np.nan
        vdos(bad, t)
    with pytest.raises(ValueError, match="> 0"):
        nyquist_thz(0.0)
    f = np.linspace(0, 50, 11)
    with pytest.raises(ValueError, match="zero area"):
        vdos_l1_error(f, np.zeros(11), np.ones(11))
    with pytest.raises(ValueError, match="matching"):
        vdos_l1_error(f, np.ones(11), np.ones(10))
    with pytest.raises(ValueError, match="increase"):
        vdos_l1_error(f[::-1], np.ones(11), np.ones(11))
