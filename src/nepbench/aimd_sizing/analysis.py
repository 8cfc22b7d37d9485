"""Pure analysis of a NEP production for the sizing study: the production cut into disjoint windows
of each candidate length, each window judged as md_accuracy would judge an AIMD run that long
(g(r), ADF and vDOS halves; Li diffusion), and the shortest length that passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..engines.base import Trajectory
from ..metrics.diffusion import msd_multiple_origins
from ..metrics.rdf import rdf_frame, rdf_l1_error
from .cases import SizingTargets


def window_slices(n_frames: int, frames_per_window: int) -> list[slice]:
    """Disjoint consecutive windows of `frames_per_window` frames from frame 0 (a remainder is
    dropped). Raises ValueError for a window of < 2 frames."""
    if frames_per_window < 2:
        raise ValueError(f"a window needs >= 2 frames, got {frames_per_window}")
    return [slice(k * frames_per_window, (k + 1) * frames_per_window)
            for k in range(n_frames // frames_per_window)]


def frames_for_length(length_ps: float, frame_ps: float) -> int:
    """Frames an AIMD production of `length_ps` records at `frame_ps` spacing (both ends included,
    as the AIMD frames are)."""
    if not (length_ps > 0 and frame_ps > 0):
        raise ValueError("length_ps and frame_ps must be > 0")
    return int(round(length_ps / frame_ps)) + 1


def per_frame_partials(traj: Trajectory, r_max_a: float, n_bins: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(r_a, {"A-B": (n_frames, n_bins) g_AB(r) of each frame}) with `metrics.rdf.rdf_frame`; the
    mean over any set of frames is that set's `rdf_trajectory` g(r)."""
    rows: dict[str, list[np.ndarray]] = {}
    r_a = np.empty(0)
    for k in range(traj.n_frames):
        res = rdf_frame(traj.positions_a[k], traj.cells_a[k], traj.symbols, r_max_a, n_bins)
        r_a = res.r_a
        for pair, g in res.partials.items():
            rows.setdefault("-".join(pair), []).append(g)
    return r_a, {pair: np.asarray(v) for pair, v in rows.items()}


def halves_l1(r_a: np.ndarray, partials: Mapping[str, np.ndarray], frames: slice) -> dict[str, float]:
    """Per pair, `rdf_l1_error` between the g(r) of the first and the second half of `frames`
    (first half = the first n//2 frames, as `tasks.md_accuracy.trajectory_halves`), the first as
    reference: md_accuracy's `rdf_l1_aimd_halves` per pair for a run made of those frames."""
    out = {}
    for pair, g in partials.items():
        sel = g[frames]
        if len(sel) < 2:
            raise ValueError(f"need >= 2 frames to split in halves, got {len(sel)}")
        half = len(sel) // 2
        out[pair] = rdf_l1_error(r_a, sel[:half].mean(axis=0), sel[half:].mean(axis=0))
    return out


def rdf_halves_by_length(traj: Trajectory, frame_ps: float, lengths_ps: Sequence[float], r_max_a: float,
                         n_bins: int) -> dict[float, dict[str, list[float]]]:
    """For each length L, per pair, the halves L1 of every disjoint L-long window of `traj`
    (lengths with fewer than 1 window are left out)."""
    r_a, partials = per_frame_partials(traj, r_max_a, n_bins)
    out: dict[float, dict[str, list[float]]] = {}
    for length in lengths_ps:
        slices = window_slices(traj.n_frames, frames_for_length(length, frame_ps)) \
            if frames_for_length(length, frame_ps) <= traj.n_frames else []
        if not slices:
            continue
        per_window = [halves_l1(r_a, partials, s) for s in slices]
        out[float(length)] = {pair: [w[pair] for w in per_window] for pair in per_window[0]}
    return out


def per_frame_adf_counts(traj: Trajectory, cutoffs_a: Mapping[tuple[str, str], float], n_bins: int
                         ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(edges_deg, {central species: (n_frames, n_bins) angle counts per frame}) with
    `metrics.adf.adf_frames`; summing any set of frames gives that set's ADF."""
    from ..metrics.adf import adf_frames

    species = sorted(set(traj.symbols))
    counts = {s: np.zeros((traj.n_frames, n_bins)) for s in species}
    edges = np.linspace(0.0, 180.0, n_bins + 1)
    for k in range(traj.n_frames):
        try:
            res = adf_frames([(traj.positions_a[k], traj.cells_a[k], traj.symbols)], cutoffs_a, n_bins)
        except ValueError:  # no angle in this frame
            continue
        for s, p in res.distributions.items():
            counts[s][k] = p * res.n_angles[s] * np.diff(res.edges_deg)
    return edges, {s: c for s, c in counts.items() if c.sum() > 0}


def adf_vdos_halves_by_length(traj: Trajectory, frame_ps: float, lengths_ps: Sequence[float],
                              cutoff_factor: float | None = None, n_bins: int = 90,
                              segment_ps: float | None = None) -> dict[float, dict[str, list[float]]]:
    """Per length, per window: the largest ADF halves L1 over central species ("adf") and the
    largest vDOS halves distance over species ("vdos"), as md_accuracy's `adf_l1_aimd_halves` and
    `vdos_l1_aimd_halves` would give for an AIMD run made of that window (cutoffs, bins and
    segment: the task's defaults unless given)."""
    from ..metrics.adf import COVALENT_CUTOFF_FACTOR, adf_l1_error, covalent_cutoffs_a
    from ..metrics.vdos import SEGMENT_PS
    from ..tasks.md_adf_vdos import compare_vdos
    from ..tasks.md_accuracy import trajectory_halves

    cutoffs = covalent_cutoffs_a(set(traj.symbols), COVALENT_CUTOFF_FACTOR if cutoff_factor is None else cutoff_factor)
    edges, counts = per_frame_adf_counts(traj, cutoffs, n_bins)
    width = np.diff(edges)
    out: dict[float, dict[str, list[float]]] = {}
    for length in lengths_ps:
        n = frames_for_length(length, frame_ps)
        if n > traj.n_frames:
            continue
        adf_rows, vdos_rows = [], []
        for sl in window_slices(traj.n_frames, n):
            half = (sl.stop - sl.start) // 2
            l1s = []
            for c in counts.values():
                a, b = c[sl.start:sl.start + half].sum(axis=0), c[sl.start + half:sl.stop].sum(axis=0)
                if a.sum() > 0 and b.sum() > 0:
                    l1s.append(adf_l1_error(edges, a / (a.sum() * width), b / (b.sum() * width)))
            adf_rows.append(max(l1s) if l1s else float("nan"))
            part = dataclasses.replace(traj, times_ps=traj.times_ps[sl], positions_a=traj.positions_a[sl],
                                       cells_a=traj.cells_a[sl])
            first, second = trajectory_halves(part)
            try:
                vd = compare_vdos(first, second, SEGMENT_PS if segment_ps is None else segment_ps)
                vdos_rows.append(max(v["l1"] for v in vd["species"].values()))
            except ValueError:
                vdos_rows.append(float("nan"))
        out[float(length)] = {"adf": adf_rows, "vdos": vdos_rows}
    return out


def loglog_slope(lag_ps: np.ndarray, msd_a2: np.ndarray, t_start_ps: float, t_end_ps: float) -> float:
    """Least-squares slope of ln MSD against ln t over lags in [t_start, t_end] (ps); NaN where the
    MSD is not positive there. Raises ValueError for fewer than 3 lags in the window."""
    eps = 1e-9 * max(t_end_ps, 1e-12)
    inside = (lag_ps >= t_start_ps - eps) & (lag_ps <= t_end_ps + eps) & (lag_ps > 0)
    if inside.sum() < 3:
        raise ValueError(f"window {t_start_ps:g}-{t_end_ps:g} ps holds {inside.sum()} lags; need >= 3")
    y = msd_a2[inside]
    if np.any(y <= 0):
        return float("nan")
    return float(np.polyfit(np.log(lag_ps[inside]), np.log(y), 1)[0])


@dataclass(frozen=True)
class WindowDiffusion:
    """Li diffusion in one window of length L (one would-be AIMD production).

    Attributes:
        d_cm2_per_s, rel_stderr: md_accuracy's D (3 blocks, window [0.1, 0.5] × block span) and
            its block standard error over |D| (inf for D = 0).
        task_slope: log-log MSD slope over that fit window; `task_accepts`: md_accuracy would
            call it diffusive (`is_diffusive`).
        window_slope: log-log slope of the window's all-origins MSD over the diffusive window
            (`SizingTargets`; NaN where L is too short for it).
        passes: window_slope ≥ min slope, rel_stderr ≤ max, and task_accepts.
    """

    d_cm2_per_s: float
    rel_stderr: float
    task_slope: float
    task_accepts: bool
    window_slope: float
    passes: bool


def window_diffusion(traj: Trajectory, targets: SizingTargets, species: str = "Li") -> WindowDiffusion:
    """`WindowDiffusion` of one window-trajectory (`traj`'s span is the window's length)."""
    from ..tasks.md_accuracy import is_diffusive, li_diffusivity, species_mask

    d = li_diffusivity(traj, species)
    rel = abs(d.stderr_cm2_per_s / d.d_cm2_per_s) if d.d_cm2_per_s != 0 else float("inf")
    span = float(traj.times_ps[-1] - traj.times_ps[0])
    t_start = targets.window_start_min_ps
    t_end = t_start + targets.diffusive_window_ps
    slope = float("nan")
    if t_end <= span / 2 + 1e-9:
        lag, msd = msd_multiple_origins(traj.positions_a, traj.times_ps, mask=species_mask(traj, species))
        slope = loglog_slope(lag, msd, t_start, t_end)
    accepts = is_diffusive(d)
    ok = bool(np.isfinite(slope) and slope >= targets.min_loglog_slope and rel <= targets.max_d_rel_stderr and accepts)
    return WindowDiffusion(d.d_cm2_per_s, float(rel), d.loglog_slope, accepts, slope, ok)


def diffusion_by_length(traj: Trajectory, frame_ps: float, lengths_ps: Sequence[float],
                        targets: SizingTargets) -> dict[float, list[WindowDiffusion]]:
    """`window_diffusion` of every disjoint window of each length (lengths without a window, or too
    short for md_accuracy's 3-block fit, are left out)."""
    out: dict[float, list[WindowDiffusion]] = {}
    for length in lengths_ps:
        n = frames_for_length(length, frame_ps)
        if n > traj.n_frames:
            continue
        rows = []
        for s in window_slices(traj.n_frames, n):
            part = dataclasses.replace(traj, times_ps=traj.times_ps[s], positions_a=traj.positions_a[s],
                                       cells_a=traj.cells_a[s])
            try:
                rows.append(window_diffusion(part, targets))
            except ValueError:  # too few frames for the block fit at this length
                break
        if rows:
            out[float(length)] = rows
    return out


def pass_fraction(flags: Sequence[bool]) -> float:
    """Fraction of True (ValueError for none)."""
    if not len(flags):
        raise ValueError("no windows")
    return float(np.mean(np.asarray(flags, dtype=bool)))


def required_length_ps(fractions: Mapping[float, float], min_fraction: float) -> float | None:
    """The shortest length whose pass fraction is ≥ `min_fraction` and stays so at every longer
    length measured (a lucky short length before failing longer ones does not count); None if none."""
    lengths = sorted(fractions)
    for k, length in enumerate(lengths):
        if all(fractions[m] >= min_fraction for m in lengths[k:]):
            return length
    return None
