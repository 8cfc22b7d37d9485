"""Li insertion: the largest empty spheres inside the particle's core (Delaunay circumcentres, Å) and
the particle with Li appended there.

The protocol and its reasons: docs/metrics.md, "The lithiation protocol".
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from .measure import core_radius_a, host_centre_a
from .params import ExpansionParams

#: Tag of the inserted Li (the builder tags the core Si CORE_TAG = 1 and the shell C SHELL_TAG = 2).
LI_TAG = 3
#: Atoms within this distance (Å) beyond the insertion region take part in the void search.
_VOID_SEARCH_PAD_A = 4.0
#: Empty-sphere radii are compared in steps of this size (Å); equal ones are taken in seeded random order.
_VOID_RADIUS_QUANTUM_A = 0.05


def circumcentres_a(points_a: np.ndarray, simplices: np.ndarray) -> np.ndarray:
    """Circumcentres (Å) of tetrahedra `simplices` (m, 4) of `points_a`; degenerate (flat) ones are dropped."""
    p = points_a[simplices]
    a = 2.0 * (p[:, 1:] - p[:, :1])
    b = np.sum(p[:, 1:] ** 2, axis=2) - np.sum(p[:, :1] ** 2, axis=2)
    det = np.linalg.det(a)
    scale = np.max(np.abs(a), axis=(1, 2)) ** 3
    ok = np.abs(det) > 1e-8 * np.maximum(scale, 1e-300)
    return np.linalg.solve(a[ok], b[ok][..., None])[..., 0]


def insertion_sites(positions_a: np.ndarray, centre_a: np.ndarray, region_radius_a: float, n_sites: int,
                    min_distance_a: float, rng: np.random.Generator) -> np.ndarray:
    """Up to `n_sites` Li positions (Å) at the largest empty spheres within `region_radius_a` of `centre_a`.

    Candidates are the Voronoi vertices of the atoms within region_radius_a + 4 Å, taken largest
    empty sphere first (radii compared in 0.05 Å steps, equal ones in `rng` order) and kept when
    ≥ `min_distance_a` from every atom and every site already kept. Fewer than `n_sites` come back
    when the region holds no more such voids. ValueError on bad arguments or too few atoms.
    """
    pos = np.asarray(positions_a, dtype=float)
    c = np.asarray(centre_a, dtype=float)
    if n_sites < 0 or not (region_radius_a > 0 and min_distance_a > 0):
        raise ValueError("need n_sites >= 0, region_radius_a > 0 and min_distance_a > 0")
    if n_sites == 0:
        return np.empty((0, 3))
    cand, radius = _void_candidates(pos, c, region_radius_a, min_distance_a)
    if len(cand) == 0:
        return np.empty((0, 3))
    order = np.lexsort((rng.random(len(cand)), -np.floor(radius / _VOID_RADIUS_QUANTUM_A)))
    chosen: list[np.ndarray] = []
    cells: dict[tuple[int, int, int], list[int]] = {}
    for i in order:
        x = cand[i]
        key = tuple(np.floor(x / min_distance_a).astype(int))
        if _near_chosen(x, key, chosen, cells, min_distance_a**2):
            continue
        cells.setdefault(key, []).append(len(chosen))
        chosen.append(x)
        if len(chosen) == n_sites:
            break
    return np.array(chosen).reshape(-1, 3)


def _void_candidates(pos: np.ndarray, c: np.ndarray, region_radius_a: float,
                     min_distance_a: float) -> tuple[np.ndarray, np.ndarray]:
    """(candidate sites (Å), their empty-sphere radii (Å)): the distinct circumcentres within
    `region_radius_a` of `c` whose nearest atom is ≥ `min_distance_a` away."""
    from scipy.spatial import Delaunay, QhullError, cKDTree

    near = pos[np.linalg.norm(pos - c, axis=1) <= region_radius_a + _VOID_SEARCH_PAD_A]
    if len(near) < 5:
        raise ValueError(f"only {len(near)} atoms near the insertion region; no voids to search")
    try:
        tri = Delaunay(near)
    except QhullError as exc:
        raise ValueError(f"Delaunay triangulation failed: {str(exc).splitlines()[0]}") from None
    cand = circumcentres_a(near, tri.simplices)
    cand = cand[np.all(np.isfinite(cand), axis=1)]
    cand = cand[np.linalg.norm(cand - c, axis=1) <= region_radius_a]
    if len(cand) == 0:
        return cand, np.empty(0)
    cand = np.unique(np.round(cand, 6), axis=0)  # cospherical lattices give one vertex many times
    radius = cKDTree(pos).query(cand, k=1)[0]
    keep = radius >= min_distance_a
    return cand[keep], radius[keep]


def _near_chosen(x: np.ndarray, key: tuple[int, ...], chosen: list[np.ndarray],
                 cells: dict[tuple[int, int, int], list[int]], d2: float) -> bool:
    """Whether a site already chosen lies within √d2 of `x` (searching the 27 grid cells about `key`)."""
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                for j in cells.get((key[0] + dx, key[1] + dy, key[2] + dz), ()):
                    if np.sum((chosen[j] - x) ** 2) < d2:
                        return True
    return False


def lithiate(atoms: Atoms, n_new: int, p: ExpansionParams, rng: np.random.Generator,
             n_host: int) -> tuple[Atoms, int]:
    """`atoms` with up to `n_new` Li appended (tag LI_TAG) at `insertion_sites` inside the core; returns
    (new atoms, number inserted). ValueError where core_margin_a leaves no insertion region."""
    c = host_centre_a(atoms, n_host)
    region = core_radius_a(atoms, c) - p.core_margin_a
    if region <= 0:
        raise ValueError(f"core radius minus core_margin_a ({p.core_margin_a} Å) leaves no region")
    sites = insertion_sites(atoms.positions, c, region, n_new, p.min_distance_a, rng)
    out = atoms.copy()
    if len(sites):
        li = Atoms(["Li"] * len(sites), positions=sites, tags=[LI_TAG] * len(sites))
        out.extend(li)
    return out, len(sites)
