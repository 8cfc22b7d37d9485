"""DIRECT sampling (Qi et al., npj Comput. Mater. 2024) and a structural fingerprint to feed it.

Pure functions, no I/O. The pipeline follows the reference implementation `maml.sampling.direct`:

1. each structure → one fixed-length vector (`structural_fingerprint`, usable before any NEP
   model exists; per-structure mean NEP descriptors can be passed instead);
2. StandardScaler (zero mean, unit variance per feature; constant features stay 0);
3. PCA, keeping the components with eigenvalue > 1 (Kaiser's rule; at least one), optionally
   multiplied by their explained-variance ratios (maml's `weighting_PCs`);
4. BIRCH (scikit-learn) with `n_clusters` final clusters: start at `threshold_init`; while fewer
   leaf subclusters than `n_clusters` appear, multiply the threshold by found/n and refit;
5. per cluster take k members: "center" = k members at evenly spaced ranks of distance to the
   cluster centroid (k = 1: the member nearest the centroid), "smallest" = the k with fewest
   atoms, "random" = k distinct members drawn with `seed`;
6. drop duplicates; `selected_fraction` = picks / pool.

Two numerical guards, off by default so that a reference set selected without them (selection
version 1, see reference.SELECTION_VERSIONS) is selected again the same way:
- `structural_fingerprint(cutoff_sigmas=4)` sets each Gaussian to zero beyond 4σ. Without it, bins
  where no pair can be (Li–Li at 0.16 Å) hold tails of ~1e-28 that vary between structures;
- `direct_select(min_feature_std=…)` drops features that barely vary before StandardScaler, which
  would otherwise scale such noise to unit variance, as much weight as any real feature (measured on
  the LiC6 pool: those bins carried 58 % of PC2's loading and changed 4 of 6 picks);
- `direct_select(canonical_order=True)` fits BIRCH on the rows in lexicographic order, so the picks
  do not depend on the order the candidates come in (BIRCH builds its tree in input order).

Ties. The centroid of a 2-member cluster is equally far from both members, so which one "center"
takes is decided by the last bits of two equal distances, which differ between platforms and BLAS
builds. `canonical_order=True` rounds the distances and takes the row first in lexicographic order;
`direct_select(prefer=…)` instead gives a tie (`TIE_RTOL`) to a preferred index, e.g. one a committed
reference set already labelled, so that set is selected again wherever it is rebuilt.

One deliberate difference from maml: the centroid of a final cluster is the mean of its members'
PCA coordinates (maml maps each label to one of its BIRCH subcluster centres, the last one found).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import combinations_with_replacement
from typing import Collection, Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii
from ase.neighborlist import neighbor_list
from sklearn.cluster import Birch
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

SELECTIONS = ("center", "smallest", "random")
#: Two distances to a cluster centroid within this relative difference are a tie (rounding only).
TIE_RTOL = 1e-9
BOND_SCALE = 1.2  # a bond: distance < 1.2 × (sum of covalent radii)


# --------------------------------------------------------------------------- fingerprint

def fingerprint_length(n_species: int, n_bins: int) -> int:
    """Length of `structural_fingerprint` for `n_species` species and `n_bins` RDF bins."""
    n_pairs = n_species * (n_species + 1) // 2
    return n_species + 1 + n_pairs * n_bins + 2 * n_species


def structural_fingerprint(atoms: Atoms, species: Sequence[str] = ("Li", "Si", "C"), r_max: float = 5.0,
                           n_bins: int = 16, sigma_a: float | None = None,
                           cutoff_sigmas: float | None = None) -> np.ndarray:
    """A fixed-length, deterministic description of one structure.

    Layout (S species, P = S(S+1)/2 pairs):
      [0:S]            composition fractions, in `species` order
      [S]              number density, atoms/Å³ (0 for a cell without volume)
      [S+1 : S+1+P·B]  per-pair smoothed radial densities, pair order (a, b) with a ≤ b in
                       `species` order: f_ab(r_k) = (1/N) Σ_{i∈a, j∈b or i∈b, j∈a, i≠j}
                       G_σ(r_k − r_ij) / (4π r_k²), r_k = bin centres on (0, r_max] Å, G a unit
                       Gaussian of width σ (default bin width) — in atoms/Å³ per atom
      [.. : ..+2S]     per species: mean and standard deviation of the coordination number
                       (neighbours closer than 1.2 × sum of covalent radii); 0 if absent

    Args:
        atoms: periodic or not.
        species: species the vector knows (a structure with any other raises ValueError).
        r_max: largest distance in Å.
        n_bins: radial bins.
        sigma_a: Gaussian smoothing width in Å.
        cutoff_sigmas: each Gaussian is zero beyond this many σ (None: never cut, selection v1).
    """
    if n_bins < 1 or not r_max > 0:
        raise ValueError("need n_bins ≥ 1 and r_max > 0 Å")
    if cutoff_sigmas is not None and not cutoff_sigmas > 0:
        raise ValueError(f"cutoff_sigmas must be > 0, got {cutoff_sigmas}")
    species = list(species)
    symbols = np.array(atoms.get_chemical_symbols())
    n = len(symbols)
    if n == 0:
        raise ValueError("structure has no atoms")
    extra = sorted(set(symbols) - set(species))
    if extra:
        raise ValueError(f"species {', '.join(extra)} not in fingerprint species {species}")
    if not np.all(np.isfinite(atoms.positions)):
        raise ValueError("non-finite coordinates")
    kind = np.array([species.index(s) for s in symbols])
    s_count = len(species)
    composition = np.bincount(kind, minlength=s_count) / n
    volume = abs(atoms.cell.volume) if any(atoms.pbc) else 0.0
    density = n / volume if volume > 1e-9 else 0.0

    width = r_max / n_bins
    sigma = width if sigma_a is None else float(sigma_a)
    centres = (np.arange(n_bins) + 0.5) * width
    radii = np.array([covalent_radii[atomic_numbers[s]] for s in species])
    bond = BOND_SCALE * (radii[:, None] + radii[None, :])
    # pairs whose Gaussian reaches the last bin centre: 4σ beyond r_max, or the cut if it is wider
    # (a wider cut with a 4σ search dropped tails it promised; versions 1 and 2 cut at 4σ or none)
    reach = max(r_max + max(4.0, cutoff_sigmas or 4.0) * sigma, float(bond.max()))
    i, j, d = neighbor_list("ijd", atoms, reach)
    ki, kj = kind[i], kind[j]

    pairs = list(combinations_with_replacement(range(s_count), 2))
    rdf = np.zeros((len(pairs), n_bins))
    shell = 4 * np.pi * centres**2
    for p, (a, b) in enumerate(pairs):
        mask = ((ki == a) & (kj == b)) | ((ki == b) & (kj == a)) if a != b else (ki == a) & (kj == a)
        if np.any(mask):
            z = (centres[None, :] - d[mask, None]) / sigma
            g = np.exp(-0.5 * z ** 2) / (np.sqrt(2 * np.pi) * sigma)
            if cutoff_sigmas is not None:
                g[np.abs(z) > cutoff_sigmas] = 0.0
            rdf[p] = g.sum(axis=0) / shell / n

    bonded = d < bond[ki, kj]
    coordination = np.bincount(i[bonded], minlength=n).astype(float)
    coord_stats = np.zeros(2 * s_count)
    for a in range(s_count):
        values = coordination[kind == a]
        if len(values):
            coord_stats[2 * a] = values.mean()
            coord_stats[2 * a + 1] = values.std()
    return np.concatenate([composition, [density], rdf.ravel(), coord_stats])


# --------------------------------------------------------------------------- DIRECT

@dataclass(frozen=True)
class DirectSelection:
    """Result of `direct_select`.

    Attributes:
        indices: selected structure indices, sorted ascending, no duplicates.
        labels: final BIRCH cluster label of every structure (n,).
        pca_coordinates: the (weighted) PCA coordinates clustered, shape (n, n_components).
        n_components: PCs kept by Kaiser's rule (eigenvalue > 1; at least 1).
        explained_variance_ratio: variance ratio of each kept PC.
        threshold: the BIRCH threshold finally used.
        selected_fraction: len(indices) / n.
    """

    indices: np.ndarray
    labels: np.ndarray
    pca_coordinates: np.ndarray
    n_components: int
    explained_variance_ratio: np.ndarray
    threshold: float
    selected_fraction: float


def _validate(features: np.ndarray, n_clusters: int, k_per_cluster: int, selection: str,
              n_atoms: Sequence[int] | None) -> np.ndarray:
    x = np.asarray(features, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (n_structures, n_features), got shape {x.shape}")
    n = x.shape[0]
    if n < 2 or x.shape[1] < 1:
        raise ValueError(f"need at least 2 structures and 1 feature, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = np.unique(np.nonzero(~np.isfinite(x))[0])
        raise ValueError(f"non-finite (NaN/inf) features in structure(s) {bad[:10].tolist()}")
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in 1..{n} (the number of structures), got {n_clusters}")
    if k_per_cluster < 1:
        raise ValueError(f"k_per_cluster must be ≥ 1, got {k_per_cluster}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if selection == "smallest":
        if n_atoms is None or len(n_atoms) != n:
            raise ValueError('selection="smallest" needs n_atoms, one count per structure')
    distinct = len(np.unique(x, axis=0))
    if distinct < n_clusters:
        raise ValueError(f"only {distinct} distinct feature vectors for {n_clusters} clusters")
    return x


def pca_kaiser(features: np.ndarray, explained_variance_weighting: bool = True,
               min_feature_std: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Standardise, PCA, keep PCs with eigenvalue > 1 (≥ 1 PC); returns (coordinates, variance ratios).

    Features whose standard deviation (in their own unit) is at most `min_feature_std` are dropped
    before standardising (0: only constant ones, which StandardScaler leaves at 0 anyway).
    """
    features = np.asarray(features, dtype=float)
    if min_feature_std > 0:
        features = features[:, features.std(axis=0) > min_feature_std]
    if features.shape[1] == 0:
        return np.zeros((len(features), 1)), np.zeros(1)
    scaled = StandardScaler().fit_transform(features)
    if not np.any(scaled):  # every feature constant: one null component
        return np.zeros((len(scaled), 1)), np.zeros(1)
    pca = PCA(svd_solver="full").fit(scaled)
    m = max(1, int(np.sum(pca.explained_variance_ > 1.0)))
    coords = pca.transform(scaled)[:, :m]
    ratio = pca.explained_variance_ratio_[:m]
    if explained_variance_weighting:
        coords = coords * ratio
    return coords, ratio


def canonical_row_order(rows: np.ndarray) -> np.ndarray:
    """Indices that sort `rows` lexicographically (first column first): the same rows in any order
    give the same sorted sequence."""
    rows = np.asarray(rows, dtype=float)
    return np.lexsort(rows.T[::-1]) if rows.shape[1] else np.arange(len(rows))


def birch_clusters(coords: np.ndarray, n_clusters: int, threshold_init: float = 0.5,
                   max_refits: int = 100, canonical_order: bool = False) -> tuple[np.ndarray, float]:
    """Final BIRCH labels with `n_clusters` clusters, lowering the threshold by found/n until the
    leaf subclusters number at least `n_clusters`; returns (labels, threshold used).

    `canonical_order`: fit on the rows in `canonical_row_order`, so the clusters do not depend on
    the order of `coords` (labels are returned in the order given)."""
    threshold = float(threshold_init)
    fit_rows = coords[canonical_row_order(coords)] if canonical_order else coords
    if n_clusters == 1:
        return np.zeros(len(coords), dtype=int), threshold
    for _ in range(max_refits):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = Birch(n_clusters=n_clusters, threshold=threshold).fit(fit_rows)
        found = len(model.subcluster_centers_)
        if found >= n_clusters:
            return model.predict(coords), threshold
        threshold *= found / n_clusters
    raise RuntimeError(f"BIRCH found fewer than {n_clusters} subclusters after {max_refits} refits")


def prefer_tied(chosen: list[int], members: np.ndarray, distance: np.ndarray,
                prefer: Collection[int]) -> list[int]:
    """`chosen` (members of one cluster) with each one not in `prefer` swapped for a preferred member
    at the same distance from the centroid (within `TIE_RTOL`) that is not chosen already.

    `distance[i]` is the distance of `members[i]` to the centroid (PCA units); a member nearer or
    farther than the chosen one is never swapped in, so only a tie changes hands.
    """
    if not prefer:
        return list(chosen)
    prefer = set(int(i) for i in prefer)
    at = {int(m): float(d) for m, d in zip(members, distance)}
    out = [int(c) for c in chosen]
    for slot, current in enumerate(out):
        if current in prefer:
            continue
        tied = [m for m in sorted(at) if m in prefer and m not in out
                and abs(at[m] - at[current]) <= TIE_RTOL * max(abs(at[current]), abs(at[m]))]
        if tied:
            out[slot] = tied[0]
    return out


def direct_select(features: np.ndarray, n_clusters: int, k_per_cluster: int = 1, selection: str = "center",
                  n_atoms: Sequence[int] | None = None, explained_variance_weighting: bool = True,
                  seed: int = 0, threshold_init: float = 0.5, min_feature_std: float = 0.0,
                  canonical_order: bool = False, prefer: Collection[int] = ()) -> DirectSelection:
    """Choose a diverse subset of structures by DIRECT sampling (see module docstring).

    Args:
        features: (n_structures, n_features), finite.
        n_clusters: BIRCH clusters n (1 ≤ n ≤ n_structures).
        k_per_cluster: members taken from each cluster (all of it if the cluster is smaller).
        selection: "center", "smallest" (needs `n_atoms`) or "random".
        n_atoms: atoms per structure, for "smallest" (ties go to the lower index).
        explained_variance_weighting: scale each kept PC by its explained-variance ratio.
        seed: used only by "random" (the other steps are deterministic).
        threshold_init: initial BIRCH threshold (in the weighted PCA space).
        min_feature_std: drop features varying less than this before standardising (`pca_kaiser`).
        canonical_order: fit BIRCH on the rows in lexicographic order (`birch_clusters`).
        prefer: structure indices that win a "center" tie (`prefer_tied`); the others' order is kept.

    Raises:
        ValueError: non-2-D or non-finite features, n_clusters outside 1..n, k < 1, unknown
            selection, missing n_atoms, or fewer distinct feature vectors than clusters.
    """
    x = _validate(features, n_clusters, k_per_cluster, selection, n_atoms)
    coords, ratio = pca_kaiser(x, explained_variance_weighting, min_feature_std)
    labels, threshold = birch_clusters(coords, n_clusters, threshold_init, canonical_order=canonical_order)
    rng = np.random.default_rng(seed)
    # canonical_order: ties (the two members of a 2-member cluster are equally far from its centroid,
    # up to rounding) go to the row first in lexicographic order, not to the lower index
    tie_rank = np.argsort(canonical_row_order(coords)) if canonical_order else np.arange(len(coords))
    picked: list[int] = []
    for label in np.unique(labels):
        members = np.nonzero(labels == label)[0]
        k = min(k_per_cluster, len(members))
        if selection == "center":
            centroid = coords[members].mean(axis=0)
            distance = np.linalg.norm(coords[members] - centroid, axis=1)
            if canonical_order:
                distance = np.round(distance, 10)
            order = members[np.lexsort((tie_rank[members], distance))]
            ranks = np.linspace(0, len(members) - 1, k).astype(int)
            picked.extend(prefer_tied(order[ranks].tolist(), members, distance, prefer))
        elif selection == "smallest":
            sizes = np.asarray(n_atoms)[members]
            picked.extend(members[np.argsort(sizes, kind="stable")[:k]].tolist())
        else:
            picked.extend(rng.choice(members, size=k, replace=False).tolist())
    indices = np.array(sorted(set(picked)), dtype=int)
    return DirectSelection(
        indices=indices, labels=labels, pca_coordinates=coords, n_components=coords.shape[1],
        explained_variance_ratio=ratio, threshold=threshold, selected_fraction=len(indices) / len(x),
    )
