"""Vibrational density of states (vDOS) from positions sampled every Δ, and its agreement metric.

Pure functions, no I/O. Positions in Å, times in ps, frequencies in THz (1 THz = 33.356 cm⁻¹).

The AIMD frames store positions only, every `sample_interval` steps (Δ = 5–10 fs), so velocities are
finite differences of the *unwrapped* positions at the midpoints, v(t + Δ/2) = (x(t + Δ) − x(t)) / Δ.
The vDOS is the power spectrum of those velocities (Wiener–Khinchin: the Fourier transform of the
velocity autocorrelation), estimated by Welch's method (Hann-windowed segments of `segment_ps`,
half overlapping, averaged over segments, atoms and axes), so its resolution is ≈ 1 / segment_ps.

Limits: the spectrum ends at the Nyquist frequency ν_N = 1 / (2Δ) (50 THz = 1,668 cm⁻¹ at 10 fs,
100 THz at 5 fs); motion faster than ν_N folds back below it (aliasing; the stiffest bond here,
C–C at ~48 THz, lies below ν_N for Δ ≤ 10 fs). The difference quotient passes a mode of frequency ν
with amplitude sinc(νΔ) (numpy's normalised sinc), so its power is divided by sinc²(νΔ) unless
`correct_difference=False`: exact for modes below ν_N, with at most a ×2.47 gain at ν_N itself.

Agreement (`vdos_l1_error`): both spectra normalised to unit area on [0, ν_N]; ½ ∫|a − b| dν, the
total-variation distance (0 identical, 1 disjoint). Reasoning: docs/metrics.md ("vDOS").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Default Welch segment (ps): resolution ≈ 2 THz, several segments in a 1 ps AIMD production half.
SEGMENT_PS = 0.5


@dataclass(frozen=True)
class VDOSResult:
    """A normalised vDOS.

    Attributes:
        freq_thz: (n,) frequencies from 0 to the Nyquist frequency, THz.
        dos_per_thz: (n,) vDOS with unit area over freq_thz (trapezoid), 1/THz.
        nyquist_thz: 1 / (2 × frame spacing), THz.
        segment_frames: velocity samples per Welch segment.
        n_atoms: atoms averaged.
    """

    freq_thz: np.ndarray
    dos_per_thz: np.ndarray
    nyquist_thz: float
    segment_frames: int
    n_atoms: int


def nyquist_thz(frame_spacing_ps: float) -> float:
    """1 / (2 Δ) in THz for frames every `frame_spacing_ps` ps (ValueError unless Δ > 0)."""
    if not (np.isfinite(frame_spacing_ps) and frame_spacing_ps > 0):
        raise ValueError(f"frame spacing must be finite and > 0 ps, got {frame_spacing_ps}")
    return 0.5 / frame_spacing_ps


def midpoint_velocities(positions_a: np.ndarray, times_ps: np.ndarray) -> tuple[np.ndarray, float]:
    """((n_frames − 1, n_atoms, 3) velocities in Å/ps at the midpoints between frames, Δ in ps) from
    unwrapped positions at uniformly spaced times.

    Raises:
        ValueError: bad shapes, NaN, fewer than 3 frames, non-uniform or non-increasing times.
    """
    pos = np.asarray(positions_a, dtype=float)
    t = np.asarray(times_ps, dtype=float)
    if pos.ndim != 3 or pos.shape[2] != 3 or pos.shape[1] == 0:
        raise ValueError(f"positions must be (n_frames, n_atoms, 3), got {pos.shape}")
    if t.shape != (pos.shape[0],):
        raise ValueError(f"times {t.shape} do not match {pos.shape[0]} frames")
    if pos.shape[0] < 3:
        raise ValueError(f"need at least 3 frames, got {pos.shape[0]}")
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(t))):
        raise ValueError("positions and times must be finite")
    steps = np.diff(t)
    dt = float(steps.mean())
    if dt <= 0 or np.max(np.abs(steps - dt)) > 1e-6 * dt:
        raise ValueError("times must increase uniformly")
    return np.diff(pos, axis=0) / dt, dt


def vdos(positions_a: np.ndarray, times_ps: np.ndarray, mask: np.ndarray | None = None,
         segment_ps: float = SEGMENT_PS, segment_frames: int | None = None,
         correct_difference: bool = True) -> VDOSResult:
    """vDOS of the selected atoms (all when `mask` is None) from unwrapped positions.

    Args:
        positions_a: (n_frames, n_atoms, 3) unwrapped positions, Å.
        times_ps: (n_frames,) uniformly spaced times, ps.
        mask: boolean (n_atoms,) selection (e.g. one species).
        segment_ps: Welch segment length, ps (cut to the velocity series' length).
        segment_frames: velocity samples per segment instead of `segment_ps` (so that runs of
            slightly different lengths share one frequency grid).
        correct_difference: divide by sinc²(νΔ), the midpoint difference's power transfer.

    Raises:
        ValueError: as `midpoint_velocities`, an empty or malformed mask, segment < 4 samples,
            or atoms that never move (zero spectrum).
    """
    from scipy.signal import welch

    vel, dt = midpoint_velocities(positions_a, times_ps)
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != (vel.shape[1],):
            raise ValueError(f"mask must be a boolean array of length n_atoms={vel.shape[1]}")
        if not m.any():
            raise ValueError("mask selects no atoms")
        vel = vel[:, m]
    n = vel.shape[0]
    seg = int(round(segment_ps / dt)) if segment_frames is None else int(segment_frames)
    seg = min(seg, n)
    if seg < 4:
        raise ValueError(f"a Welch segment of {seg} samples is too short (need >= 4)")
    series = vel.reshape(n, -1)
    freq, power = welch(series, fs=1.0 / dt, window="hann", nperseg=seg, noverlap=seg // 2, axis=0,
                        detrend=False, scaling="density")
    total = power.mean(axis=1)
    if correct_difference:
        total = total / np.sinc(freq * dt) ** 2
    area = float(np.trapezoid(total, freq))
    if not area > 0:
        raise ValueError("zero spectrum: the selected atoms do not move")
    return VDOSResult(freq_thz=freq, dos_per_thz=total / area, nyquist_thz=nyquist_thz(dt), segment_frames=seg,
                      n_atoms=int(vel.shape[1]))


def vdos_l1_error(freq_thz: np.ndarray, dos_ref: np.ndarray, dos: np.ndarray) -> float:
    """Total-variation distance ½ ∫|a − b| dν (trapezoid) between two spectra on one frequency
    grid, each first normalised to unit area: 0 identical, 1 disjoint.

    Raises:
        ValueError: shape mismatch, fewer than 2 points, non-increasing frequencies, NaN, negative
            values, or a spectrum with zero area.
    """
    f = np.asarray(freq_thz, dtype=float)
    a, b = np.asarray(dos_ref, dtype=float), np.asarray(dos, dtype=float)
    if f.ndim != 1 or len(f) < 2 or a.shape != f.shape or b.shape != f.shape:
        raise ValueError(f"need matching 1-D arrays of >= 2 points, got {f.shape}, {a.shape}, {b.shape}")
    if np.any(np.diff(f) <= 0):
        raise ValueError("frequencies must increase")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))) or np.any(a < 0) or np.any(b < 0):
        raise ValueError("spectra must be finite and >= 0")
    area_a, area_b = float(np.trapezoid(a, f)), float(np.trapezoid(b, f))
    if not (area_a > 0 and area_b > 0):
        raise ValueError("a spectrum has zero area")
    return float(min(1.0, 0.5 * np.trapezoid(np.abs(a / area_a - b / area_b), f)))
