"""DIRECT sampling and the structural fingerprint."""

from __future__ import annotations

import numpy as np
import pytest

from nepbench.sampling import (
    DirectSelection, direct_select, fingerprint_length, pca_kaiser, prefer_tied, structural_fingerprint,
)
from nepbench.systems import build, strain


def _blobs(n_blobs=5, per_blob=40, n_features=8, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 10.0, size=(n_blobs, n_features))
    x = np.vstack([c + rng.normal(0.0, spread, size=(per_blob, n_features)) for c in centres])
    truth = np.repeat(np.arange(n_blobs), per_blob)
    return x, truth


def test_every_blob_gets_exactly_one_pick():
    x, truth = _blobs()
    result = direct_select(x, n_clusters=5, k_per_cluster=1)
    assert isinstance(result, DirectSelection)
    assert sorted(truth[result.indices].tolist()) == [0, 1, 2, 3, 4]
    assert result.selected_fraction == pytest.approx(5 / 200)
    # the final clusters are the blobs (up to relabelling)
    for blob in range(5):
        assert len(set(result.labels[truth == blob])) == 1
    assert len(set(result.labels)) == 5
    assert result.pca_coordinates.shape == (200, result.n_components)
    assert len(result.explained_variance_ratio) == result.n_components
    assert np.all(np.diff(result.indices) > 0)


def test_k_per_cluster_fraction_without_duplicates():
    x, truth = _blobs(n_blobs=4, per_blob=30)
    result = direct_select(x, n_clusters=4, k_per_cluster=3)
    assert len(result.indices) == 12 and result.selected_fraction == pytest.approx(12 / 120)
    assert np.bincount(truth[result.indices]).tolist() == [3, 3, 3, 3]


def test_k_larger_than_a_cluster_takes_the_whole_cluster_once():
    x, _ = _blobs(n_blobs=3, per_blob=4)
    result = direct_select(x, n_clusters=3, k_per_cluster=10)
    assert result.indices.tolist() == list(range(12))
    assert result.selected_fraction == 1.0


def test_center_picks_the_member_nearest_the_centroid():
    x, _ = _blobs(n_blobs=4, per_blob=25, seed=3)
    result = direct_select(x, n_clusters=4, k_per_cluster=1, selection="center")
    expected = []
    for label in np.unique(result.labels):
        members = np.nonzero(result.labels == label)[0]
        coords = result.pca_coordinates[members]
        expected.append(members[np.argmin(np.linalg.norm(coords - coords.mean(axis=0), axis=1))])
    assert result.indices.tolist() == sorted(expected)


def test_center_with_k_spans_the_distance_ranks():
    x, _ = _blobs(n_blobs=2, per_blob=21, seed=4)
    result = direct_select(x, n_clusters=2, k_per_cluster=3)
    for label in np.unique(result.labels):
        members = np.nonzero(result.labels == label)[0]
        coords = result.pca_coordinates[members]
        order = members[np.argsort(np.linalg.norm(coords - coords.mean(axis=0), axis=1))]
        chosen = set(result.indices) & set(members)
        assert chosen == {order[0], order[10], order[20]}  # nearest, median, farthest


def test_smallest_picks_fewest_atoms():
    x, truth = _blobs(n_blobs=3, per_blob=10, seed=5)
    n_atoms = np.random.default_rng(1).integers(20, 200, size=30)
    result = direct_select(x, n_clusters=3, k_per_cluster=2, selection="smallest", n_atoms=n_atoms)
    for blob in range(3):
        members = np.nonzero(truth == blob)[0]
        smallest = set(members[np.argsort(n_atoms[members], kind="stable")[:2]])
        assert set(result.indices) & set(members) == smallest


def test_deterministic_and_random_selection_seeded():
    x, _ = _blobs(seed=6)
    a, b = direct_select(x, 5, 2), direct_select(x, 5, 2)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.labels, b.labels)
    r1 = direct_select(x, 5, 2, selection="random", seed=1)
    r2 = direct_select(x, 5, 2, selection="random", seed=1)
    assert np.array_equal(r1.indices, r2.indices) and len(r1.indices) == 10
    assert any(not np.array_equal(direct_select(x, 5, 2, selection="random", seed=s).indices, r1.indices)
               for s in range(2, 6))


def test_a_tie_goes_to_the_preferred_member_and_only_a_tie():
    members = np.array([4, 7, 9])
    distance = np.array([0.25, 0.25 * (1 + 1e-12), 0.3])  # 4 and 7 tied up to rounding, 9 farther
    assert prefer_tied([4], members, distance, prefer=()) == [4]
    assert prefer_tied([4], members, distance, prefer={7}) == [7]
    assert prefer_tied([4], members, distance, prefer={9}) == [4]  # not a tie: the nearer one stays
    assert prefer_tied([4, 7], members, distance, prefer={7}) == [4, 7]  # no member picked twice


def test_two_member_clusters_pick_the_preferred_member():
    """Pairs mirrored about their midpoint: each centroid is equally far from both members, so
    without a preference rounding decides; `prefer` decides for every pair, either way."""
    rng = np.random.default_rng(3)
    centres = rng.normal(0.0, 20.0, size=(6, 4))
    offsets = rng.normal(0.0, 0.1, size=(6, 4))
    x = np.vstack([np.vstack([c + o, c - o]) for c, o in zip(centres, offsets)])  # rows 2i, 2i + 1
    result = direct_select(x, n_clusters=6)
    pairs = {(int(i) // 2) for i in result.indices}
    assert pairs == set(range(6))  # the clusters are the pairs
    for first in (True, False):
        preferred = [2 * i + (0 if first else 1) for i in range(6)]
        assert direct_select(x, n_clusters=6, prefer=preferred).indices.tolist() == preferred


def test_threshold_is_lowered_until_enough_subclusters():
    x, truth = _blobs(n_blobs=6, per_blob=10, seed=7)
    result = direct_select(x, n_clusters=6, threshold_init=50.0)
    assert result.threshold < 50.0
    assert sorted(truth[result.indices].tolist()) == list(range(6))


def test_kaiser_rule_counts_independent_signals():
    rng = np.random.default_rng(8)
    signals = rng.normal(size=(300, 2))
    x = np.hstack([np.repeat(signals[:, :1], 5, axis=1), np.repeat(signals[:, 1:], 5, axis=1)])
    x = x + rng.normal(0.0, 0.05, size=x.shape)
    coords, ratio = pca_kaiser(x, explained_variance_weighting=False)
    assert coords.shape == (300, 2) and ratio.sum() > 0.99
    weighted, _ = pca_kaiser(x, explained_variance_weighting=True)
    assert np.allclose(weighted, coords * ratio)
    # constant features: one null component is kept, and DIRECT still returns one pick
    coords, ratio = pca_kaiser(np.ones((6, 3)))
    assert coords.shape == (6, 1) and not np.any(coords) and ratio.tolist() == [0.0]
    assert direct_select(np.ones((6, 3)), n_clusters=1).indices.tolist() == [0]


@pytest.mark.parametrize("kwargs,match", [
    ({"features": np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 1.0]]), "n_clusters": 2}, "non-finite"),
    ({"features": np.arange(12.0).reshape(6, 2), "n_clusters": 7}, "n_clusters"),
    ({"features": np.arange(12.0).reshape(6, 2), "n_clusters": 0}, "n_clusters"),
    ({"features": np.arange(12.0).reshape(6, 2), "n_clusters": 2, "k_per_cluster": 0}, "k_per_cluster"),
    ({"features": np.arange(12.0).reshape(6, 2), "n_clusters": 2, "selection": "median"}, "selection"),
    ({"features": np.arange(12.0).reshape(6, 2), "n_clusters": 2, "selection": "smallest"}, "n_atoms"),
    ({"features": np.arange(6.0), "n_clusters": 2}, "2-D"),
    ({"features": np.ones((6, 3)), "n_clusters": 2}, "distinct"),
])
def test_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        direct_select(**kwargs)


# --------------------------------------------------------------------------- fingerprint

def test_fingerprint_layout_and_values():
    c_si = build("c-Si", seed=0)
    f = structural_fingerprint(c_si, n_bins=20)
    assert f.shape == (fingerprint_length(3, 20),) == (3 + 1 + 6 * 20 + 6,)
    assert f[:3].tolist() == [0.0, 1.0, 0.0]
    assert f[3] == pytest.approx(8 / 5.431**3)
    si_si = f[4 + 3 * 20: 4 + 4 * 20]  # pairs: Li-Li, Li-Si, Li-C, Si-Si, Si-C, C-C
    centres = (np.arange(20) + 0.5) * 0.25
    first_shell = (si_si * 4 * np.pi * centres**2 * 0.25)[centres < 3.1].sum()
    assert first_shell == pytest.approx(4.0, rel=0.02)  # the RDF integrates to 4 bonds
    assert np.argmax(si_si[centres < 3.1]) == int(2.352 / 0.25)  # peak in the 2.25–2.5 Å bin
    assert np.count_nonzero(f[4: 4 + 3 * 20]) == 0  # no Li pairs
    assert f[-6:].tolist() == [0.0, 0.0, 4.0, 0.0, 0.0, 0.0]  # Si: coordination 4 ± 0
    graphite = structural_fingerprint(build("graphite", seed=0))
    assert graphite[-2:].tolist() == [3.0, 0.0]


def test_fingerprint_invariances_and_sensitivity():
    atoms = build("a-LixSi", seed=1, x=2.0)
    f = structural_fingerprint(atoms)
    assert f[:3] == pytest.approx([22 / 33, 11 / 33, 0.0])
    shuffled = atoms[np.random.default_rng(0).permutation(len(atoms))]
    shuffled.translate([1.3, -0.4, 2.2])
    shuffled.wrap()
    assert np.allclose(structural_fingerprint(shuffled), f)
    assert np.array_equal(structural_fingerprint(atoms), f)
    other = structural_fingerprint(build("a-LixSi", seed=2, x=2.0))
    assert not np.allclose(other, f)
    with pytest.raises(ValueError, match="not in fingerprint species"):
        structural_fingerprint(atoms, species=("Si", "C"))


def test_direct_on_fingerprints_covers_each_family():
    pool, family = [], []
    for k in range(5):
        pool.append(strain(build("c-Si", seed=k, repeat=(1, 1, 2)), 0.02 * k - 0.04, seed=k, rattle_a=0.05))
        pool.append(build("a-LiC", seed=k))
        pool.append(build("a-LixSi", seed=k, x=3.0))
        family += ["c-Si", "a-LiC", "a-LixSi"]
    features = np.array([structural_fingerprint(a) for a in pool])
    result = direct_select(features, n_clusters=3, k_per_cluster=1, seed=0)
    assert sorted(family[i] for i in result.indices) == ["a-LiC", "a-LixSi", "c-Si"]


# --------------------------------------------------------------------------- the version-2 guards

def test_standardising_makes_the_picks_independent_of_feature_units():
    x, _ = _blobs(n_blobs=4, per_blob=25, n_features=6, seed=3)
    scaled = x.copy()
    scaled[:, 2] *= 1e6  # one feature in other units
    a = direct_select(x, n_clusters=4)
    b = direct_select(scaled, n_clusters=4)
    assert a.indices.tolist() == b.indices.tolist()
    # a PCA on unscaled features would be that one feature: the first PC would carry ~all the variance
    assert a.explained_variance_ratio[0] < 0.9 and b.explained_variance_ratio[0] < 0.9


def test_near_constant_noise_features_are_dropped_before_scaling():
    x, truth = _blobs(n_blobs=3, per_blob=20, n_features=2, spread=2.0, seed=5)
    noise = np.random.default_rng(9).normal(0.0, 1e-28, size=(len(x), 12))  # Gaussian tails, ~1e-28
    with_noise = np.hstack([x, noise])
    guarded = direct_select(with_noise, n_clusters=3, min_feature_std=1e-6)
    assert guarded.indices.tolist() == direct_select(x, n_clusters=3).indices.tolist()
    # without the guard, StandardScaler gives the noise 12 of 14 unit-variance dimensions
    unguarded = direct_select(with_noise, n_clusters=3)
    assert unguarded.n_components > guarded.n_components
    assert sorted(truth[guarded.indices].tolist()) == [0, 1, 2]


def test_canonical_order_makes_picks_independent_of_candidate_order():
    x, _ = _blobs(n_blobs=6, per_blob=2, n_features=3, spread=1.0, seed=11)  # 2-member clusters: centroid ties
    base = set(direct_select(x, n_clusters=6, canonical_order=True).indices.tolist())
    for r in range(5):
        perm = np.random.default_rng(r).permutation(len(x))
        picked = direct_select(x[perm], n_clusters=6, canonical_order=True).indices
        assert set(perm[picked].tolist()) == base


def test_fingerprint_cutoff_zeroes_bins_no_pair_can_reach():
    atoms = build("a-LixSi", seed=2, x=1.0, n_atoms=24)
    tails = structural_fingerprint(atoms)
    cut = structural_fingerprint(atoms, cutoff_sigmas=4.0)
    s = 3  # Li, Si, C
    # r = 0.16 Å in the Li-Li, Li-Si and Si-Si blocks (pair order LiLi LiSi LiC SiSi SiC CC)
    first_bins = np.array([s + 1 + p * 16 for p in (0, 1, 3)])
    assert np.all(tails[first_bins] > 0) and np.all(tails[first_bins] < 1e-8)  # tails of 2+ Å bonds
    assert np.all(cut[first_bins] == 0.0)
    np.testing.assert_allclose(cut, tails, atol=1e-3 * np.abs(tails).max())  # where it matters, unchanged
    with pytest.raises(ValueError, match="cutoff_sigmas"):
        structural_fingerprint(atoms, cutoff_sigmas=0.0)


def test_a_cut_wider_than_four_sigma_keeps_the_tails_it_promises():
    """The neighbour search reached r_max + 4σ whatever the cut: a pair 5σ beyond r_max, inside an
    8σ cut, was left out, and the last bin read zero."""
    from ase import Atoms

    r_max, sigma = 6.0, 0.3
    dimer = Atoms("Si2", positions=[[0, 0, 0], [r_max + 5 * sigma, 0, 0]], cell=[40, 40, 40], pbc=False)
    wide = structural_fingerprint(dimer, r_max=r_max, sigma_a=sigma, cutoff_sigmas=8.0)
    four = structural_fingerprint(dimer, r_max=r_max, sigma_a=sigma, cutoff_sigmas=4.0)
    s, n_bins = 3, 16
    si_si_last = s + 1 + 3 * n_bins + n_bins - 1  # pair order LiLi LiSi LiC SiSi: SiSi's last bin
    centre = (n_bins - 0.5) * r_max / n_bins
    z = (centre - (r_max + 5 * sigma)) / sigma
    expected = 2 * np.exp(-0.5 * z**2) / (np.sqrt(2 * np.pi) * sigma) / (4 * np.pi * centre**2) / 2
    assert wide[si_si_last] == pytest.approx(expected, rel=1e-9) and wide[si_si_last] > 0
    assert four[si_si_last] == 0.0  # |z| > 4: cut


# --------------------------------------------------------------- found by a mutation review

from nepbench.sampling import canonical_row_order  # noqa: E402


def _two_blobs(per_blob, seed=0):
    """Two well-separated 4-D Gaussian blobs of `per_blob` points each."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * 4, [50.0] * 4])
    return np.vstack([c + rng.normal(0.0, 1.0, size=(per_blob, 4)) for c in centres])


def test_center_ranks_are_truncated_like_maml():
    """Kills sampling.py:311 `.astype(int)` → `.round().astype(int)`.

    maml's SelectKFromClusters takes ranks `int(i) for i in np.linspace(0, n - 1, k)`: for n = 8
    and k = 3 that is linspace = [0, 3.5, 7] → ranks [0, 3, 7] (rounding would give 4).
    """
    x = _two_blobs(8, seed=4)
    result = direct_select(x, n_clusters=2, k_per_cluster=3)
    for label in np.unique(result.labels):
        members = np.nonzero(result.labels == label)[0]
        assert len(members) == 8
        coords = result.pca_coordinates[members]
        order = members[np.argsort(np.linalg.norm(coords - coords.mean(axis=0), axis=1))]
        assert set(result.indices) & set(members) == {order[0], order[3], order[7]}


def test_canonical_row_order_sorts_by_the_first_column_first():
    """Kills sampling.py:223 `rows.T[::-1]` → `rows.T` (the last column made the primary key).

    Lexicographic, first column first: (0, 0) < (0, 1) < (1, 0), i.e. rows 2, 1, 0. Sorting on the
    last column first would give 2, 0, 1, and break ties differently from a committed selection.
    """
    rows = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert canonical_row_order(rows).tolist() == [2, 1, 0]


def test_tie_tolerance_is_relative_to_the_distances():
    """Kills sampling.py:265 `<= TIE_RTOL * max(|d1|, |d2|)` → `<= TIE_RTOL` (absolute).

    100 and 100·(1 + 5e-10) differ by 5e-8 in absolute terms but 5e-10 relatively (< TIE_RTOL =
    1e-9): a tie, so the preferred 7 takes the slot. 1e-12 and 2e-12 differ by only 1e-12 but one is
    twice the other: not a tie, so the nearer 4 stays.
    """
    members = np.array([4, 7])
    assert prefer_tied([4], members, np.array([100.0, 100.0 * (1 + 5e-10)]), prefer={7}) == [7]
    assert prefer_tied([4], members, np.array([1e-12, 2e-12]), prefer={7}) == [4]


def test_several_tied_preferred_members_the_lowest_index_wins():
    """Kills sampling.py:267 `tied[0]` → `tied[-1]`.

    4, 7 and 9 are equally far from the centroid and 7 and 9 are both preferred: the swap must be
    deterministic and follow the lower-index rule DIRECT uses for other ties, so 7, not 9.
    """
    members = np.array([4, 7, 9])
    distance = np.array([0.25, 0.25, 0.25])
    assert prefer_tied([4], members, distance, prefer={9, 7}) == [7]


def test_smallest_ties_go_to_the_lower_index():
    """Kills sampling.py:315 (an unstable / reversed sort for "smallest").

    direct_select's doc: n_atoms for "smallest" (ties go to the lower index). Every structure has
    the same size, so each cluster's pick is its lowest index: 0 in the first blob, 8 in the second.
    """
    x = _two_blobs(8, seed=1)
    result = direct_select(x, n_clusters=2, selection="smallest", n_atoms=[10] * 16)
    assert result.indices.tolist() == [0, 8]
