"""Mean squared displacement, diffusivity with a block-averaged uncertainty, and Arrhenius fits.

Pure functions, no I/O. Positions in Å, times in ps, MSD in Å², D in cm²/s (1 Å²/ps = 1e-4 cm²/s),
energies in eV, temperatures in K.

Fit-window rule (one rule for every engine, see docs/metrics.md): the Einstein relation
MSD(t) = 2 d D t + c is fitted by least squares over lag times from `start_fraction` (default 10 %)
to `end_fraction` (default 50 %) of the span of one block (the trajectory cut into `n_blocks`
blocks for the uncertainty): the first part holds the ballistic and caging regime, lags beyond half
the span are averaged over too few time origins. The log-log slope over the window is returned as a
check: near 1 means diffusive, well below 1 sub-diffusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from ase import units

#: 1 Å²/ps in cm²/s.
A2_PER_PS_TO_CM2_PER_S = 1e-4


def _positions(positions_a: object, name: str = "positions_a") -> np.ndarray:
    pos = np.asarray(positions_a, dtype=float)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"{name} must be (n_frames, n_atoms, 3), got shape {pos.shape}")
    if pos.shape[0] < 2 or pos.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 frames and 1 atom, got shape {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError(f"{name} contains NaN or inf")
    return pos


def _timestep_ps(times_ps: object, n_frames: int) -> float:
    t = np.asarray(times_ps, dtype=float)
    if t.shape != (n_frames,):
        raise ValueError(f"times_ps has shape {t.shape}, expected ({n_frames},)")
    if not np.all(np.isfinite(t)):
        raise ValueError("times_ps contains NaN or inf")
    dt = np.diff(t)
    step = float(np.mean(dt))
    if step <= 0 or np.any(np.abs(dt - step) > 1e-4 * step):
        raise ValueError("times_ps must be increasing with a uniform spacing")
    return step


def _select(pos: np.ndarray, mask: object) -> np.ndarray:
    if mask is None:
        return pos
    m = np.asarray(mask)
    if m.dtype != bool or m.shape != (pos.shape[1],):
        raise ValueError(f"mask must be a boolean array of length n_atoms={pos.shape[1]}")
    if not m.any():
        raise ValueError("mask selects no atoms")
    return pos[:, m]


def _msd_fft(x: np.ndarray, n_lags: int, chunk: int = 4096) -> np.ndarray:
    """Sum over columns of the all-origins MSD of x (n_frames, n_cols), lags 0..n_lags-1."""
    n = x.shape[0]
    x = x - x[0]  # displacements are unchanged; smaller numbers, less cancellation
    sq = np.sum(x * x, axis=1)
    csum = np.concatenate([[0.0], np.cumsum(sq)])
    m = np.arange(n_lags)
    # S1(m) = sum_{t=0}^{n-m-1} (|x(t)|^2 + |x(t+m)|^2)
    s1 = csum[n - m] + (csum[n] - csum[m])
    power = np.zeros(n + 1)
    nfft = 2 * n
    for c0 in range(0, x.shape[1], chunk):
        f = np.fft.rfft(x[:, c0 : c0 + chunk], n=nfft, axis=0)
        power += np.sum(f.real**2 + f.imag**2, axis=1)
    s2 = np.fft.irfft(power, n=nfft)[:n_lags]  # sum_t x(t) . x(t+m)
    return (s1 - 2.0 * s2) / (n - m)


def _msd_strided(x: np.ndarray, n_lags: int, stride: int) -> np.ndarray:
    """Sum over columns of the MSD with time origins 0, stride, 2*stride, ..."""
    n = x.shape[0]
    out = np.zeros(n_lags)
    origins_all = np.arange(0, n, stride)
    for k in range(1, n_lags):
        origins = origins_all[origins_all + k < n]
        d = x[origins + k] - x[origins]
        out[k] = np.einsum("ij,ij->", d, d) / len(origins)
    return out


def msd_multiple_origins(
    positions_a: np.ndarray,
    times_ps: np.ndarray,
    mask: np.ndarray | None = None,
    origin_stride: int = 1,
    max_lag_frames: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared displacement averaged over atoms and time origins.

    MSD(k dt) = < |r_i(t0 + k dt) - r_i(t0)|^2 > over selected atoms i and origins
    t0 = 0, s dt, 2 s dt, ... with t0 + k dt inside the trajectory. With origin_stride 1 every frame
    is an origin and the sum is done by FFT (O(n log n)); larger strides loop over lags.

    Args:
        positions_a: (n_frames, n_atoms, 3) *unwrapped* positions in Å (see `unwrap_positions`).
        times_ps: (n_frames,) frame times in ps, uniformly spaced.
        mask: boolean (n_atoms,) selecting the species (e.g. `np.array(symbols) == "Li"`); None = all.
        origin_stride: frames between time origins (>= 1).
        max_lag_frames: largest lag in frames (default n_frames - 1).

    Returns:
        (lag_times_ps, msd_a2): lags 0, dt, ..., max_lag dt in ps and the MSD in Å².

    Raises:
        ValueError: bad shapes, NaN, non-uniform times, empty mask, stride < 1, bad max_lag.
    """
    pos = _positions(positions_a)
    dt = _timestep_ps(times_ps, pos.shape[0])
    sel = _select(pos, mask)
    if int(origin_stride) != origin_stride or origin_stride < 1:
        raise ValueError(f"origin_stride must be an integer >= 1, got {origin_stride}")
    n = pos.shape[0]
    max_lag = n - 1 if max_lag_frames is None else int(max_lag_frames)
    if not 1 <= max_lag <= n - 1:
        raise ValueError(f"max_lag_frames must be in [1, {n - 1}], got {max_lag_frames}")
    x = sel.reshape(n, -1)
    if origin_stride == 1:
        total = _msd_fft(x, max_lag + 1)
    else:
        total = _msd_strided(x, max_lag + 1, int(origin_stride))
    msd = np.maximum(total / sel.shape[1], 0.0)
    msd[0] = 0.0
    return np.arange(max_lag + 1) * dt, msd


def diffusive_fit_window_ps(
    span_ps: float, start_fraction: float = 0.1, end_fraction: float = 0.5
) -> tuple[float, float]:
    """The MSD fit window (t_start, t_end) in ps: [start_fraction, end_fraction] x span_ps.

    `diffusivity` passes the span of one block (trajectory span / n_blocks, to within a frame).
    """
    if not (np.isfinite(span_ps) and span_ps > 0):
        raise ValueError(f"span_ps must be finite and > 0, got {span_ps}")
    if not 0.0 <= start_fraction < end_fraction <= 1.0:
        raise ValueError("need 0 <= start_fraction < end_fraction <= 1")
    return start_fraction * span_ps, end_fraction * span_ps


def _fit_window(
    lag_ps: np.ndarray, msd: np.ndarray, window: tuple[float, float], dimensions: int
) -> tuple[float, float]:
    """(D in Å²/ps, log-log slope) from a linear fit of the MSD over the window."""
    eps = 1e-9 * lag_ps[1]
    inside = (lag_ps >= window[0] - eps) & (lag_ps <= window[1] + eps) & (lag_ps > 0)
    if inside.sum() < 3:
        raise ValueError(
            f"fit window {window[0]:.4g}-{window[1]:.4g} ps holds {inside.sum()} lag(s); need >= 3 "
            "(trajectory too short for its frame spacing)"
        )
    t, y = lag_ps[inside], msd[inside]
    slope = float(np.polyfit(t, y, 1)[0])
    loglog = float(np.polyfit(np.log(t), np.log(y), 1)[0]) if np.all(y > 0) else float("nan")
    return slope / (2.0 * dimensions), loglog


@dataclass(frozen=True)
class Diffusivity:
    """Tracer diffusion coefficient from the MSD.

    Attributes:
        d_cm2_per_s: D = slope / (2 x dimensions) of the whole-trajectory MSD over the window, cm²/s.
        stderr_cm2_per_s: standard error from block averaging: std(D_blocks, ddof=1)/sqrt(n_blocks).
        fit_window_ps: (t_start, t_end) of the fit in ps (the same for the whole trajectory and
            for each block).
        method: how the number was obtained (recorded with the result).
        block_d_cm2_per_s: D of each contiguous block over the same window, cm²/s.
        loglog_slope: d ln MSD / d ln t over the fit window (1 = diffusive).
        n_atoms: atoms averaged.
    """

    d_cm2_per_s: float
    stderr_cm2_per_s: float
    fit_window_ps: tuple[float, float]
    method: str
    block_d_cm2_per_s: tuple[float, ...]
    loglog_slope: float
    n_atoms: int


def diffusivity(
    positions_a: np.ndarray,
    times_ps: np.ndarray,
    mask: np.ndarray | None = None,
    origin_stride: int = 1,
    n_blocks: int = 5,
    start_fraction: float = 0.1,
    end_fraction: float = 0.5,
    axes: tuple[int, ...] = (0, 1, 2),
) -> Diffusivity:
    """Tracer diffusivity (cm²/s) of the selected atoms, with a block-averaged standard error.

    The trajectory is cut into `n_blocks` contiguous blocks of equal length. The fit window is
    [start_fraction, end_fraction] x the span of one block (`diffusive_fit_window_ps`). D is the
    slope of a least-squares line MSD = 2 d D t + c over that window, divided by 2 d, where the MSD
    sums the d = len(axes) Cartesian components in `axes` (all three by default), with the MSD of the *whole* trajectory (all time origins); each block gets its own MSD and D
    over the *same* window, and stderr = std(D_blocks, ddof=1) / sqrt(n_blocks).

    Why one window for both: for diffusive motion the relative error of a slope fitted over a fixed
    *fraction* of a trajectory does not shrink with the trajectory's length (the MSD at lag tau has
    a relative error ~ sqrt(tau / T)), so a full-trajectory fit over a fraction of the full span
    would have about the error of a single block, not std/sqrt(n). With a common absolute window the
    full-trajectory D averages n times more origins than a block, and std/sqrt(n) is its error
    (checked on random walks: median |D - D_true| / stderr = 0.55 for 5 blocks over 60 seeds).

    Args:
        positions_a: (n_frames, n_atoms, 3) unwrapped positions in Å.
        times_ps: (n_frames,) uniformly spaced times in ps.
        mask: boolean (n_atoms,) species selection; None = all atoms.
        origin_stride: frames between MSD time origins.
        n_blocks: number of blocks for the uncertainty (>= 3; the stderr has n_blocks - 1 degrees
            of freedom, so 3 blocks give a rough error bar: a 95 % interval is +-4.3 stderr).
        start_fraction, end_fraction: the fit window as fractions of one block's span.
        axes: the Cartesian components (0 = x, 1 = y, 2 = z) whose displacements enter the MSD:
            (0, 1) gives the in-plane D of a slab whose normal is z, (2,) the D across it.

    Raises:
        ValueError: as `msd_multiple_origins`, n_blocks < 3, or blocks too short for the window.
    """
    if int(n_blocks) != n_blocks or n_blocks < 3:
        raise ValueError(f"n_blocks must be an integer >= 3, got {n_blocks}")
    axes = tuple(axes)
    if not axes or len(set(axes)) != len(axes) or not set(axes) <= {0, 1, 2}:
        raise ValueError(f"axes must be distinct Cartesian components among 0, 1, 2, got {axes}")
    dimensions = len(axes)
    pos = _positions(positions_a)
    times = np.asarray(times_ps, dtype=float)
    dt = _timestep_ps(times, pos.shape[0])
    sel = _select(pos, mask)
    if dimensions < 3:  # components left out of the MSD move by zero
        sel = sel.copy()
        sel[..., [a for a in range(3) if a not in axes]] = 0.0
    block_len = pos.shape[0] // int(n_blocks)
    if block_len < 2:
        raise ValueError(f"{pos.shape[0]} frames are too few for {n_blocks} blocks")
    window = diffusive_fit_window_ps((block_len - 1) * dt, start_fraction, end_fraction)
    max_lag = min(block_len - 1, int(np.floor(window[1] / dt + 1e-9)))

    def fit(p: np.ndarray, t: np.ndarray) -> tuple[float, float]:
        lag, msd = msd_multiple_origins(p, t, None, origin_stride, max(1, max_lag))
        return _fit_window(lag, msd, window, dimensions)

    d_full, loglog = fit(sel, times)
    blocks = []
    for b in range(int(n_blocks)):
        sl = slice(b * block_len, (b + 1) * block_len)
        blocks.append(fit(sel[sl], times[sl])[0] * A2_PER_PS_TO_CM2_PER_S)
    stderr = float(np.std(blocks, ddof=1) / np.sqrt(len(blocks)))
    return Diffusivity(
        d_cm2_per_s=d_full * A2_PER_PS_TO_CM2_PER_S,
        stderr_cm2_per_s=stderr,
        fit_window_ps=window,
        method=(
            f"MSD (multiple origins, stride {origin_stride}), linear fit over "
            f"[{start_fraction:g}, {end_fraction:g}] x block span, D = slope/{2 * dimensions}"
            f"{'' if dimensions == 3 else ' over axes ' + ''.join('xyz'[a] for a in axes)}; "
            f"stderr from {n_blocks} contiguous blocks"
        ),
        block_d_cm2_per_s=tuple(float(x) for x in blocks),
        loglog_slope=loglog,
        n_atoms=int(sel.shape[1]),
    )


class ArrheniusFit(NamedTuple):
    """D(T) = D0 exp(-Ea / (k_B T)); unpacks as (ea_ev, ea_stderr_ev, d0_cm2_per_s).

    Attributes:
        ea_ev: activation energy in eV.
        ea_stderr_ev: its standard error in eV (NaN when it cannot be estimated: two points
            without stated uncertainties).
        d0_cm2_per_s: pre-exponential factor in cm²/s.
    """

    ea_ev: float
    ea_stderr_ev: float
    d0_cm2_per_s: float


def arrhenius_fit(
    temperatures_k: np.ndarray,
    d_cm2_per_s: np.ndarray,
    d_stderr: np.ndarray | None = None,
) -> ArrheniusFit:
    """Weighted least-squares fit of ln D = ln D0 - Ea / (k_B T), k_B from ase.units.

    With `d_stderr`, points are weighted by 1/sigma² with sigma_lnD = stderr / D, and the
    covariance is the weighted one, inflated by the reduced chi² when that exceeds 1 (the scatter is
    larger than the stated errors). Without it, ordinary least squares with the residual variance
    (NaN stderr for exactly two temperatures).

    Args:
        temperatures_k: (n,) temperatures in K, at least two distinct.
        d_cm2_per_s: (n,) diffusivities in cm²/s, > 0.
        d_stderr: optional (n,) standard errors of D in cm²/s, > 0.

    Raises:
        ValueError: fewer than 2 distinct temperatures, non-positive T or D, NaN, shape mismatch.
    """
    t = np.asarray(temperatures_k, dtype=float)
    d = np.asarray(d_cm2_per_s, dtype=float)
    if t.ndim != 1 or t.shape != d.shape:
        raise ValueError(f"shape mismatch: temperatures {t.shape}, D {d.shape}")
    if len(np.unique(t)) < 2:
        raise ValueError("an Arrhenius fit needs at least 2 distinct temperatures")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(d))):
        raise ValueError("temperatures and D must be finite")
    if np.any(t <= 0) or np.any(d <= 0):
        raise ValueError("temperatures and D must be > 0")
    x = 1.0 / (units.kB * t)  # 1/eV
    y = np.log(d)
    design = np.column_stack([np.ones_like(x), -x])  # y = ln D0 - Ea x
    n = len(t)
    if d_stderr is not None:
        s = np.asarray(d_stderr, dtype=float)
        if s.shape != d.shape or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("d_stderr must be finite, > 0 and match D")
        w = (d / s) ** 2  # 1 / sigma_lnD^2
        normal = design.T @ (design * w[:, None])
        beta = np.linalg.solve(normal, design.T @ (w * y))
        cov = np.linalg.inv(normal)
        if n > 2:
            chi2_red = float(np.sum(w * (y - design @ beta) ** 2)) / (n - 2)
            cov = cov * max(1.0, chi2_red)
        ea_err = float(np.sqrt(cov[1, 1]))
    else:
        beta, *_ = np.linalg.lstsq(design, y, rcond=None)
        if n > 2:
            s2 = float(np.sum((y - design @ beta) ** 2)) / (n - 2)
            ea_err = float(np.sqrt(s2 * np.linalg.inv(design.T @ design)[1, 1]))
        else:
            ea_err = float("nan")
    return ArrheniusFit(ea_ev=float(beta[1]), ea_stderr_ev=ea_err, d0_cm2_per_s=float(np.exp(beta[0])))


def unwrap_positions(wrapped_positions_a: np.ndarray, cells_a: np.ndarray) -> np.ndarray:
    """Unwrap positions by chaining minimum-image displacements between consecutive frames.

    x_u(t) = x_u(t-1) + mic(x_w(t) - x_w(t-1)), with the minimum image taken in the cell of frame t
    (the "TOR" scheme of von Bülow, Bullerjahn and Hummer, J. Chem. Phys. 153, 021101 (2020), which
    stays correct under NPT box fluctuations). Valid while no atom moves more than half the
    smallest cell width between frames.

    Args:
        wrapped_positions_a: (n_frames, n_atoms, 3) positions in Å, wrapped or partly wrapped.
        cells_a: (n_frames, 3, 3) or (3, 3) cell vectors (rows) in Å.

    Returns:
        (n_frames, n_atoms, 3) unwrapped positions in Å; frame 0 unchanged.
    """
    pos = _positions(wrapped_positions_a, "wrapped_positions_a")
    cells = np.asarray(cells_a, dtype=float)
    if cells.shape == (3, 3):
        cells = np.broadcast_to(cells, (pos.shape[0], 3, 3))
    if cells.shape != (pos.shape[0], 3, 3) or not np.all(np.isfinite(cells)):
        raise ValueError(f"cells_a must be finite (3, 3) or ({pos.shape[0]}, 3, 3), got {cells.shape}")
    if np.any(np.abs(np.linalg.det(cells)) <= 1e-12):
        raise ValueError("a cell is singular (zero volume)")
    step = np.diff(pos, axis=0)
    inv = np.linalg.inv(cells[1:])
    frac = np.einsum("fnj,fjk->fnk", step, inv)
    frac -= np.round(frac)
    step = np.einsum("fnj,fjk->fnk", frac, cells[1:])
    out = np.empty_like(pos)
    out[0] = pos[0]
    out[1:] = pos[0] + np.cumsum(step, axis=0)
    return out
