"""Ensemble disagreement as an uncertainty estimate: pure functions, no I/O.

An ensemble is M models trained alike with different seeds. Where they disagree on a force, at least
some of them are wrong: the spread flags configurations the training data did not cover. Units:
forces and spreads in eV/Å. Reasoning: docs/training.md ("Ensemble uncertainty").
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def ensemble_force_sigma(forces_ev_per_a: np.ndarray) -> np.ndarray:
    """Per-atom spread σ_i (eV/Å) of an ensemble's forces, shape (M, n_atoms, 3) → (n_atoms,):
    σ_i = sqrt(mean over x, y, z of the variance across the M members), variance with ddof = 1.
    Raises ValueError for fewer than 2 members, a wrong shape or non-finite forces."""
    f = np.asarray(forces_ev_per_a, dtype=float)
    if f.ndim != 3 or f.shape[2] != 3:
        raise ValueError(f"forces must have shape (members, atoms, 3), got {f.shape}")
    if f.shape[0] < 2:
        raise ValueError("an ensemble needs at least 2 members")
    if not np.all(np.isfinite(f)):
        raise ValueError("forces contain NaN or inf")
    return np.sqrt(f.var(axis=0, ddof=1).mean(axis=1))


def frame_rms(per_atom: np.ndarray, frame_sizes: Sequence[int]) -> np.ndarray:
    """Root mean square of a per-atom quantity over each frame's atoms (frames concatenated in
    order, `frame_sizes` atoms each). Raises ValueError when the sizes do not add up."""
    values = np.asarray(per_atom, dtype=float)
    sizes = np.asarray(frame_sizes, dtype=int)
    if sizes.sum() != values.shape[0] or np.any(sizes < 1):
        raise ValueError(f"frame sizes add up to {sizes.sum()}, not {values.shape[0]}")
    edges = np.concatenate([[0], np.cumsum(sizes)])
    return np.array([np.sqrt(np.mean(values[a:b] ** 2)) for a, b in zip(edges[:-1], edges[1:])])


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of x and y (average ranks for ties); nan for fewer than 3
    pairs or a constant input. Used to ask whether a larger spread marks a larger error."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("x and y must be 1-D and of one length")
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size)
    ranks[order] = np.arange(values.size, dtype=float)
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks
