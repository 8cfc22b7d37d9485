"""Seeded random sequential packing (RSA) and a cheap repulsive relaxation.

Two packers share one rule: a candidate point, drawn uniformly in a region, is accepted iff it lies
at least `PAIR_MIN_A[a, b]` (Å) from every atom already present; candidates are taken in the order
the seeded generator draws them, so one seed gives one structure.

- `pack_periodic`: small periodic cells of any shape (DFT-sized, ≲ 200 atoms); brute-force minimum
  image over the 27 neighbouring images.
- `pack_open`: large non-periodic regions (core–shell particles, 1e4–1e6 atoms); candidates are
  screened in batches with scipy `cKDTree`, then conflicts inside a batch are resolved in draw order,
  which gives exactly the sequential-RSA result for the same candidate stream.

`soft_relax` pushes pairs closer than `PAIR_SOFT_A` apart with a few deterministic steepest-descent
steps of a harmonic repulsion, and never lets any pair fall below `PAIR_MIN_A` (a step that would is
discarded and the relaxation stops).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list
from scipy.spatial import cKDTree

# Hard minima (Å) guaranteed by every random packing: a packed atom is never closer than this to
# any other atom. Bond lengths for scale: Si–Si 2.35, C–C 1.42 (sp2)/1.54 (sp3), Si–C 1.89,
# Li–Si ~2.6 (Li15Si4), Li–C 2.34 (LiC6), Li–Li 2.67 (Li15Si4) / 3.04 (bcc Li).
PAIR_MIN_A: dict[frozenset[str], float] = {
    frozenset({"Si"}): 1.9,
    frozenset({"C"}): 1.3,
    frozenset({"Li"}): 2.0,
    frozenset({"Li", "Si"}): 2.0,
    frozenset({"Li", "C"}): 1.8,
    frozenset({"Si", "C"}): 1.7,
}

# Targets (Å) of the repulsive relaxation: pairs closer than this are pushed apart.
PAIR_SOFT_A: dict[frozenset[str], float] = {
    frozenset({"Si"}): 2.25,
    frozenset({"C"}): 1.42,
    frozenset({"Li"}): 2.45,
    frozenset({"Li", "Si"}): 2.45,
    frozenset({"Li", "C"}): 2.1,
    frozenset({"Si", "C"}): 1.85,
}


def pair_min_a(a: str, b: str, table: Mapping[frozenset[str], float] = PAIR_MIN_A) -> float:
    """Minimum distance in Å for the species pair (a, b) (symmetric)."""
    try:
        return table[frozenset({a, b})]
    except KeyError:
        raise ValueError(f"no minimum distance defined for the pair {a}–{b}") from None


def pair_min_distances_a(atoms: Atoms, cutoff_a: float = 3.0) -> dict[frozenset[str], float]:
    """Smallest distance in Å per species pair present within `cutoff_a` (minimum image)."""
    i, j, d = neighbor_list("ijd", atoms, cutoff_a)
    symbols = np.array(atoms.get_chemical_symbols())
    out: dict[frozenset[str], float] = {}
    for si, sj, dist in zip(symbols[i], symbols[j], d):
        key = frozenset({si, sj})
        if dist < out.get(key, np.inf):
            out[key] = float(dist)
    return out


def _cutoff_matrix(species: Sequence[str], table: Mapping[frozenset[str], float]) -> np.ndarray:
    return np.array([[pair_min_a(a, b, table) for b in species] for a in species])


_IMAGES = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], float)


def _min_image_distances(frac_point: np.ndarray, frac_others: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Distances in Å from one fractional point to each of `frac_others` (27-image minimum image)."""
    d = frac_others - frac_point
    d -= np.round(d)
    cart = (d[:, None, :] + _IMAGES[None, :, :]) @ cell
    return np.sqrt((cart**2).sum(axis=2)).min(axis=1)


def pack_periodic(
    cell: np.ndarray,
    symbols: Sequence[str],
    rng: np.random.Generator,
    fixed: Atoms | None = None,
    frac_low: Sequence[float] = (0.0, 0.0, 0.0),
    frac_high: Sequence[float] = (1.0, 1.0, 1.0),
    max_attempts_per_atom: int = 20_000,
) -> Atoms:
    """Add `symbols` (in the given order) to a periodic cell by seeded RSA.

    Args:
        cell: 3×3 cell matrix in Å (rows are lattice vectors); any shape.
        symbols: species to insert, one per atom, inserted in this order.
        rng: numpy Generator; the only source of randomness.
        fixed: atoms already present (e.g. a Si slab); kept unchanged and respected by the minima.
        frac_low, frac_high: candidates are uniform in this box of fractional coordinates
            (e.g. a z-window); values may exceed [0, 1) and are wrapped.
        max_attempts_per_atom: give up (ValueError) if one atom cannot be placed in this many draws.

    Returns:
        `fixed` (or nothing) followed by the inserted atoms, periodic in all directions, wrapped.

    Every inserted atom keeps at least `PAIR_MIN_A` from all atoms (minimum image).
    """
    cell = np.asarray(cell, dtype=float)
    if fixed is not None:
        base_symbols = list(fixed.get_chemical_symbols())
        frac = list(np.linalg.solve(cell.T, fixed.positions.T).T)
    else:
        base_symbols, frac = [], []
    species = sorted(set(base_symbols) | set(symbols))
    index = {s: k for k, s in enumerate(species)}
    cutoffs = _cutoff_matrix(species, PAIR_MIN_A)
    kinds = [index[s] for s in base_symbols]
    low = np.asarray(frac_low, float)
    span = np.asarray(frac_high, float) - low
    for symbol in symbols:
        k = index[symbol]
        for _ in range(max_attempts_per_atom):
            trial = low + span * rng.random(3)
            if frac:
                dist = _min_image_distances(trial, np.array(frac), cell)
                if np.any(dist < cutoffs[k, kinds]):
                    continue
            frac.append(trial)
            kinds.append(k)
            break
        else:
            raise ValueError(
                f"random packing failed: no room for {symbol} atom #{len(frac) + 1} after "
                f"{max_attempts_per_atom} draws (density too high for the pair minima)"
            )
    atoms = Atoms(
        symbols=base_symbols + list(symbols),
        scaled_positions=np.mod(np.array(frac), 1.0),
        cell=cell,
        pbc=True,
    )
    return atoms


def _all_pairs(atoms: Atoms, cutoff_a: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, vector r_j − r_i in Å) for every i < j closer than `cutoff_a` (27-image minimum image)."""
    cell = atoms.cell.array
    frac = atoms.get_scaled_positions(wrap=False)
    n = len(atoms)
    iu, ju = np.triu_indices(n, k=1)
    d = frac[ju] - frac[iu]
    d -= np.round(d)
    cart = (d[:, None, :] + _IMAGES[None, :, :]) @ cell
    norms = np.sqrt((cart**2).sum(axis=2))
    best = norms.argmin(axis=1)
    vec = cart[np.arange(len(iu)), best]
    dist = norms[np.arange(len(iu)), best]
    keep = dist < cutoff_a
    return iu[keep], ju[keep], vec[keep]


def soft_relax(
    atoms: Atoms,
    n_steps: int = 40,
    step_a: float = 0.1,
    movable: np.ndarray | None = None,
) -> Atoms:
    """A few steepest-descent steps of a harmonic repulsion towards `PAIR_SOFT_A` (deterministic).

    Args:
        atoms: periodic cell (small: all pairs are enumerated).
        n_steps: number of steps.
        step_a: largest displacement of any atom in one step, in Å.
        movable: boolean mask of atoms allowed to move (default: all).

    Returns:
        A relaxed copy. A step that would bring any pair below `PAIR_MIN_A` is discarded and the
        relaxation stops there, so the hard minima of the input are kept.
    """
    out = atoms.copy()
    symbols = out.get_chemical_symbols()
    species = sorted(set(symbols))
    index = np.array([species.index(s) for s in symbols])
    soft = _cutoff_matrix(species, PAIR_SOFT_A)
    hard = _cutoff_matrix(species, PAIR_MIN_A)
    mask = np.ones(len(out), bool) if movable is None else np.asarray(movable, bool)
    reach = float(soft.max())
    for _ in range(n_steps):
        i, j, vec = _all_pairs(out, reach)
        dist = np.linalg.norm(vec, axis=1)
        target = soft[index[i], index[j]]
        overlap = target - dist
        push = overlap > 0
        if not np.any(push):
            break
        i, j, vec, dist, overlap = i[push], j[push], vec[push], dist[push], overlap[push]
        unit = vec / dist[:, None]
        force = np.zeros_like(out.positions)
        np.add.at(force, i, -overlap[:, None] * unit)
        np.add.at(force, j, overlap[:, None] * unit)
        force[~mask] = 0.0
        largest = np.linalg.norm(force, axis=1).max()
        if largest == 0.0:
            break
        trial = out.copy()
        trial.positions += force * min(1.0, step_a / largest)
        ti, tj, tvec = _all_pairs(trial, float(hard.max()))
        if np.any(np.linalg.norm(tvec, axis=1) < hard[index[ti], index[tj]]):
            break
        out = trial
    out.wrap()
    return out


def pack_open(
    symbol: str,
    n_atoms: int,
    sampler: Callable[[np.random.Generator, int], np.ndarray],
    rng: np.random.Generator,
    fixed_positions: np.ndarray | None = None,
    fixed_symbols: Sequence[str] | None = None,
    max_rounds: int = 200,
) -> np.ndarray:
    """Positions (Å) of `n_atoms` atoms of one species packed by seeded RSA in an open region.

    Args:
        symbol: the species packed.
        n_atoms: how many to place.
        sampler: `sampler(rng, m)` returns m candidate points (m×3, Å) uniform in the region.
        rng: numpy Generator.
        fixed_positions, fixed_symbols: atoms already present (not moved; e.g. the Si core);
            candidates keep `PAIR_MIN_A` from them too.
        max_rounds: give up (ValueError) after this many candidate batches.

    Candidates are screened in batches with `cKDTree`; inside a batch a candidate is kept iff no
    earlier kept candidate (in draw order) conflicts with it, so the result equals sequential RSA.
    Non-periodic: no minimum image.
    """
    d_self = pair_min_a(symbol, symbol)
    fixed_trees: list[tuple[cKDTree, float]] = []
    if fixed_positions is not None and len(fixed_positions):
        fixed_symbols = list(fixed_symbols or [])
        for other in sorted(set(fixed_symbols)):
            pts = np.asarray(fixed_positions)[np.array(fixed_symbols) == other]
            fixed_trees.append((cKDTree(pts), pair_min_a(symbol, other)))
    accepted = np.empty((0, 3))
    for _ in range(max_rounds):
        remaining = n_atoms - len(accepted)
        if remaining <= 0:
            break
        batch = sampler(rng, int(remaining * 1.3) + 64)
        keep = np.ones(len(batch), bool)
        for tree, d_min in fixed_trees:
            dist, _ = tree.query(batch, k=1, distance_upper_bound=d_min)
            keep &= ~(dist < d_min)
        if len(accepted):
            dist, _ = cKDTree(accepted).query(batch, k=1, distance_upper_bound=d_self)
            keep &= ~(dist < d_self)
        batch = batch[keep]
        if not len(batch):
            continue
        conflicts = cKDTree(batch).query_pairs(d_self, output_type="ndarray")
        ok = np.ones(len(batch), bool)
        if len(conflicts):
            earlier: dict[int, list[int]] = {}
            for a, b in conflicts:
                lo, hi = (int(a), int(b)) if a < b else (int(b), int(a))
                earlier.setdefault(hi, []).append(lo)
            for hi in sorted(earlier):
                if any(ok[lo] for lo in earlier[hi]):
                    ok[hi] = False
        accepted = np.vstack([accepted, batch[ok][:remaining]])
    if len(accepted) < n_atoms:
        raise ValueError(
            f"random packing failed: placed {len(accepted)} of {n_atoms} {symbol} atoms in "
            f"{max_rounds} rounds (density too high for the pair minima)"
        )
    return accepted
