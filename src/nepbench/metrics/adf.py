"""Bond-angle distributions (ADF) per central species, and their agreement metric.

Pure functions, no I/O. Lengths in Å, angles in degrees.

Definition: for every atom i of central species A and every unordered pair {j, k} of its
neighbours (j ≠ k, each within the cutoff of its species pair with A, minimum image or periodic
images as ASE's `neighbor_list` returns them), the angle θ_jik = arccos(r̂_ij · r̂_ik) is counted.
P_A(θ) is the histogram over all such angles of all frames, normalised to unit area on [0°, 180°]
(density per degree). Structureless reference: directions of two neighbours independent and
uniform give P(θ) = sin θ / 2 per radian, the ADF analogue of g(r) = 1.

Agreement (`adf_l1_error`) is normalised like g(r)'s (`metrics.rdf.rdf_l1_error`):
∫|P_ref − P| dθ / ∫|P_ref − P_ideal| dθ, capped at 1: 0 = identical, 1 = no closer to the reference
than an ideal gas is. Reasoning and the default cutoffs: docs/metrics.md ("Bond angles (ADF)").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .rdf import L1_CAP, typed_frames

#: Default first-shell cutoff factor: r_c(A, B) = factor × (r_cov(A) + r_cov(B)), ASE covalent radii
#: (Li 1.28, Si 1.11, C 0.76 Å): Si–Si 2.89, Li–Si 3.11, Li–Li 3.33, C–C 1.98, Li–C 2.65 Å, each
#: past its g(r) first peak and near its first minimum (docs/metrics.md).
COVALENT_CUTOFF_FACTOR = 1.3


def covalent_cutoffs_a(species: Iterable[str], factor: float = COVALENT_CUTOFF_FACTOR) -> dict[tuple[str, str], float]:
    """First-shell cutoffs (Å) for every species pair (both orders): factor × the sum of ASE's
    covalent radii. Raises ValueError for an unknown symbol or factor ≤ 0."""
    from ase.data import atomic_numbers, covalent_radii

    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be finite and > 0, got {factor}")
    radii = {}
    for s in species:
        if s not in atomic_numbers:
            raise ValueError(f"unknown chemical symbol {s!r}")
        radii[s] = float(covalent_radii[atomic_numbers[s]])
    return {(a, b): factor * (radii[a] + radii[b]) for a in radii for b in radii}


@dataclass(frozen=True)
class ADFResult:
    """Bond-angle distributions, summed over frames.

    Attributes:
        theta_deg: (n_bins,) bin centres in degrees; edges_deg: (n_bins + 1,) from 0 to 180.
        distributions: P_A(θ) per central species A with at least one angle, unit area (1/degree).
        n_angles: angles counted per central species (all frames).
        coordination: mean neighbours within the cutoffs per central atom, per species.
        n_frames: frames summed.
    """

    theta_deg: np.ndarray
    edges_deg: np.ndarray
    distributions: dict[str, np.ndarray]
    n_angles: dict[str, int]
    coordination: dict[str, float]
    n_frames: int


def _cutoff_table(species: Sequence[str], cutoffs_a: float | Mapping[tuple[str, str], float]) -> np.ndarray:
    n = len(species)
    table = np.empty((n, n))
    for a, sa in enumerate(species):
        for b, sb in enumerate(species):
            if isinstance(cutoffs_a, Mapping):
                value = cutoffs_a.get((sa, sb), cutoffs_a.get((sb, sa)))
                if value is None:
                    raise ValueError(f"no cutoff for species pair {sa}-{sb}")
            else:
                value = cutoffs_a
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"cutoff for {sa}-{sb} must be finite and > 0, got {value}")
            table[a, b] = float(value)
    return table


#: Largest n_atoms² × image shifts searched by brute force (numpy, ~10 ms); beyond it ASE's
#: `neighbor_list`, which is ~50 ms a frame on 28-atom cells whose width is near twice the cutoff.
BRUTE_FORCE_PAIRS = 2_000_000


def _neighbours(pos: np.ndarray, cell: np.ndarray, r_cut: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, vector i→j) of every neighbour within r_cut, periodic images included (i ≠ j or a
    non-zero image shift)."""
    from ..cell import cell_thicknesses_a

    n = len(pos)
    reach = np.ceil(r_cut / cell_thicknesses_a(cell) + 0.5).astype(int)  # after the minimum image, |Δf| ≤ ½
    grid = np.stack(np.meshgrid(*(np.arange(-k, k + 1) for k in reach), indexing="ij"), -1).reshape(-1, 3)
    if n * n * len(grid) > BRUTE_FORCE_PAIRS:
        from ase import Atoms
        from ase.neighborlist import neighbor_list

        atoms = Atoms(numbers=np.ones(n, int), positions=pos, cell=cell, pbc=True)
        return neighbor_list("ijD", atoms, r_cut, self_interaction=False)
    frac = np.linalg.solve(cell.T, pos.T).T
    dfrac = frac[None, :, :] - frac[:, None, :]
    dfrac -= np.round(dfrac)
    mic = (dfrac.reshape(-1, 3) @ cell).reshape(n, n, 1, 3)
    vec = mic + (grid @ cell)[None, None]  # (n, n, shifts, 3)
    dist2 = np.einsum("ijsk,ijsk->ijs", vec, vec)
    inside = dist2 <= r_cut * r_cut
    inside &= dist2 > 1e-20  # an atom is not its own neighbour (a coincident image would be no bond)
    i, j, k = np.nonzero(inside)
    return i, j, vec[i, j, k]


def _frame_angles(pos: np.ndarray, cell: np.ndarray, types: np.ndarray, cut: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(angles in degrees, central type of each angle, neighbour count per atom) of one frame."""
    i, j, vec = _neighbours(pos, cell, float(cut.max()))
    dist = np.linalg.norm(vec, axis=1)
    keep = dist <= cut[types[i], types[j]]
    i, vec, dist = i[keep], vec[keep], dist[keep]
    n_atoms = len(pos)
    counts = np.bincount(i, minlength=n_atoms)
    if len(i) == 0 or counts.max() < 2:
        return np.empty(0), np.empty(0, int), counts
    order = np.argsort(i, kind="stable")
    i, unit = i[order], vec[order] / dist[order, None]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(i)) - starts[i]
    width = int(counts.max())
    padded = np.zeros((n_atoms, width, 3))
    padded[i, slot] = unit
    valid = np.zeros((n_atoms, width), bool)
    valid[i, slot] = True
    cos = np.einsum("aij,akj->aik", padded, padded)
    upper = np.triu(np.ones((width, width), bool), k=1)
    use = valid[:, :, None] & valid[:, None, :] & upper[None]
    centre = np.broadcast_to(types[:, None, None], use.shape)[use]
    angles = np.degrees(np.arccos(np.clip(cos[use], -1.0, 1.0)))
    return angles, centre, counts


def adf_frames(frames: Iterable[tuple[np.ndarray, np.ndarray, Sequence[str]]],
               cutoffs_a: float | Mapping[tuple[str, str], float], n_bins: int = 90) -> ADFResult:
    """Bond-angle distribution per central species, summed over frames.

    Args:
        frames: (positions_a (n_atoms, 3), cell_a (3, 3) rows, symbols) per frame; same symbols in
            every frame; fully periodic cells.
        cutoffs_a: one cutoff (Å) for every pair, or a cutoff per species pair (either order), e.g.
            `covalent_cutoffs_a`. A cutoff may exceed the minimum-image radius (periodic images of
            a neighbour then count as neighbours, as they physically are).
        n_bins: equal bins on [0°, 180°].

    Raises:
        ValueError: no frames, NaN, shape mismatch, symbols changing between frames, a singular
            cell, a missing or non-positive cutoff, n_bins < 1, or no central atom with two
            neighbours in any frame (no angle at all).
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    edges = np.linspace(0.0, 180.0, int(n_bins) + 1)
    species: tuple[str, ...] = ()
    cut = np.empty((0, 0))
    hist: np.ndarray | None = None
    neighbours = np.zeros(0)
    n_frames = 0
    for frame in typed_frames(frames):
        species, types = frame.species, frame.types
        if hist is None:
            cut = _cutoff_table(list(species), cutoffs_a)
            hist = np.zeros((len(species), int(n_bins)))
            neighbours = np.zeros(len(species))
        angles, centre, counts = _frame_angles(frame.positions_a, frame.cell_a, types, cut)
        for t in range(len(species)):
            hist[t] += np.histogram(angles[centre == t], bins=edges)[0]
        neighbours += np.bincount(types, weights=counts, minlength=len(species))
        n_frames += 1
    if n_frames == 0 or hist is None:
        raise ValueError("no frames given")
    width = np.diff(edges)
    dists, n_angles = {}, {}
    for t, s in enumerate(species):
        total = hist[t].sum()
        if total > 0:
            dists[s] = hist[t] / (total * width)
            n_angles[s] = int(total)
    if not dists:
        raise ValueError("no atom has two neighbours within the cutoffs: no bond angle to count")
    n_of = np.bincount(types, minlength=len(species))
    return ADFResult(theta_deg=0.5 * (edges[1:] + edges[:-1]), edges_deg=edges, distributions=dists,
                     n_angles=n_angles,
                     coordination={s: float(neighbours[t] / (n_of[t] * n_frames)) for t, s in enumerate(species)},
                     n_frames=n_frames)


def adf_trajectory(trajectory: object, cutoffs_a: float | Mapping[tuple[str, str], float], n_bins: int = 90,
                   start: int = 0, stride: int = 1) -> ADFResult:
    """`adf_frames` over frames start, start + stride, … of a trajectory with `symbols`,
    `positions_a` (n_frames, n_atoms, 3) and `cells_a` (n_frames, 3, 3) (`engines.base.Trajectory`;
    its `pbc` must be all True if present)."""
    if start < 0 or stride < 1:
        raise ValueError("start must be >= 0 and stride >= 1")
    pbc = getattr(trajectory, "pbc", (True, True, True))
    if not all(pbc):
        raise ValueError(f"the ADF needs a fully periodic cell, got pbc={tuple(pbc)}")
    positions = np.asarray(getattr(trajectory, "positions_a"))
    cells = np.asarray(getattr(trajectory, "cells_a"))
    symbols = getattr(trajectory, "symbols")
    if positions.ndim != 3 or cells.shape != (positions.shape[0], 3, 3):
        raise ValueError(f"positions_a {positions.shape} and cells_a {cells.shape} do not match")
    return adf_frames(((positions[k], cells[k], symbols) for k in range(start, positions.shape[0], stride)),
                      cutoffs_a, n_bins)


def ideal_adf(edges_deg: np.ndarray) -> np.ndarray:
    """The structureless ADF (independent uniform directions, density sin θ / 2 per radian)
    averaged over each bin of `edges_deg`, per degree (unit area on [0°, 180°])."""
    edges = np.asarray(edges_deg, dtype=float)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0) or edges[0] < 0 or edges[-1] > 180:
        raise ValueError("edges_deg must increase within [0, 180]")
    mass = 0.5 * (np.cos(np.radians(edges[:-1])) - np.cos(np.radians(edges[1:])))
    return mass / np.diff(edges)


def adf_l1_error(edges_deg: np.ndarray, p_ref: np.ndarray, p: np.ndarray, cap: float = L1_CAP) -> float:
    """Normalised L1 distance between two ADFs on the bins `edges_deg` (per-degree densities):
    Σ|p_ref − p| Δθ / Σ|p_ref − p_ideal| Δθ, capped at `cap` (0 identical; 1 no closer than the
    structureless `ideal_adf`).

    Raises:
        ValueError: shape mismatch, NaN or negative values, bad edges, cap ≤ 0, or a reference
            identical to the ideal one (no structure to normalise by).
    """
    edges = np.asarray(edges_deg, dtype=float)
    a, b = np.asarray(p_ref, dtype=float), np.asarray(p, dtype=float)
    ideal = ideal_adf(edges)
    if a.shape != ideal.shape or b.shape != ideal.shape:
        raise ValueError(f"shapes differ: edges give {ideal.shape}, p_ref {a.shape}, p {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))) or np.any(a < 0) or np.any(b < 0):
        raise ValueError("ADFs must be finite and >= 0")
    if not cap > 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    width = np.diff(edges)
    norm = float(np.sum(np.abs(a - ideal) * width))
    if norm <= 1e-12:
        raise ValueError("p_ref has no structure (it equals the ideal ADF)")
    return float(min(cap, np.sum(np.abs(a - b) * width) / norm))
