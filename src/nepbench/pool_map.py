"""The DIRECT candidate pool of a reference spec in two dimensions: pool, picks and labelled frames
in the first two principal components of the whole pool (`nepbench train --plot-pool`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from ase import Atoms

from .errors import InputError


@dataclass
class PoolMap:
    """The reference set's candidate pool and its DIRECT picks in the first two principal components.

    The pool is regenerated from the spec with the seeded builders (as `nepbench reference build`
    does), described by `sampling.structural_fingerprint`, standardised and projected on the first
    two PCs of the *whole* pool (DIRECT itself ran per family; this map is one global view).

    Attributes:
        coords: (n_pool, 2) PC1, PC2 of each candidate.
        explained_variance_ratio: of PC1 and PC2.
        family: the manifest's family key of each candidate ("NN motif/builder").
        selected: DIRECT pick of each candidate (from the manifest's per-family record).
        split: "train"/"test" for candidates labelled in the assembled set, None otherwise.
        pool_size, n_selected, n_labelled: counts.
        selected_fraction: n_selected / pool_size; labelled_fraction: n_labelled / pool_size.
    """

    coords: np.ndarray
    explained_variance_ratio: np.ndarray
    family: list[str]
    selected: np.ndarray
    split: list[str | None]
    pool_size: int
    n_selected: int
    n_labelled: int

    @property
    def selected_fraction(self) -> float:
        return self.n_selected / self.pool_size

    @property
    def labelled_fraction(self) -> float:
        return self.n_labelled / self.pool_size

    def summary(self) -> dict[str, Any]:
        """Counts and fractions for provenance (no per-candidate arrays)."""
        per_family: dict[str, dict[str, int]] = {}
        for fam, sel, split in zip(self.family, self.selected, self.split):
            entry = per_family.setdefault(fam, {"pool": 0, "selected": 0, "train": 0, "test": 0})
            entry["pool"] += 1
            entry["selected"] += int(sel)
            if split in ("train", "test"):
                entry[split] += 1
        return {"pool_size": self.pool_size, "selected": self.n_selected, "labelled": self.n_labelled,
                "selected_fraction": round(self.selected_fraction, 4),
                "labelled_fraction": round(self.labelled_fraction, 4),
                "n_train_labelled": sum(s == "train" for s in self.split),
                "n_test_labelled": sum(s == "test" for s in self.split),
                "pca_explained_variance_ratio": [round(float(x), 4) for x in self.explained_variance_ratio],
                "per_family": per_family}


def pool_map(spec_path: str | os.PathLike[str], manifest: dict[str, Any],
             labelled: Iterable[Atoms] = ()) -> PoolMap:
    """Regenerate the DIRECT candidate pool of `spec_path` and place pool, picks and labels in 2-D PCA.

    Picks come from `manifest["selection"]["per_family"]` (what the build recorded); labelled
    frames are matched to picked candidates by `reference.item_hash` (structure + the manifest's
    CP2K settings and version), the key of the labelling cache. Raises InputError when the
    manifest has no selection record or its families do not match the spec.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from .reference import family_label, generate_candidates, item_hash, load_spec, manifest_picks
    from .sampling import structural_fingerprint

    spec = load_spec(spec_path)
    per_family = manifest_picks(manifest, "manifest.json")
    if not per_family:
        raise InputError("manifest.json", "no DIRECT selection record (selection.per_family)")
    if len(per_family) != len(spec.families):
        raise InputError("manifest.json", f"{len(per_family)} selected families, spec has {len(spec.families)}")
    cp2k = manifest.get("cp2k") or {}
    split_of = {str(a.info.get("hash")): str(a.info.get("split")) for a in labelled}
    features, family, selected, split = [], [], [], []
    for number, fam in enumerate(spec.families):
        label = family_label(number, fam)
        if label not in per_family:
            raise InputError("manifest.json", f"no selection record for spec family {label!r}: the manifest "
                             f"records {', '.join(sorted(per_family))}")
        picks = set(per_family[label])
        for index, atoms in enumerate(generate_candidates(spec, fam, number)):
            features.append(structural_fingerprint(atoms, cutoff_sigmas=spec.selection.cutoff_sigmas))
            family.append(label)
            selected.append(index in picks)
            key = item_hash(atoms, cp2k.get("settings", {}), cp2k.get("version", "")) if index in picks else None
            split.append(split_of.get(key) if key else None)
    features_arr = np.array(features)
    if spec.selection.min_feature_std > 0:  # DIRECT's guard, applied over the whole pool (DIRECT: per family)
        features_arr = features_arr[:, features_arr.std(axis=0) > spec.selection.min_feature_std]
    scaled = StandardScaler().fit_transform(features_arr)
    pca = PCA(n_components=2, svd_solver="full").fit(scaled)
    return PoolMap(coords=pca.transform(scaled), explained_variance_ratio=pca.explained_variance_ratio_,
                   family=family, selected=np.array(selected), split=split, pool_size=len(family),
                   n_selected=int(np.sum(selected)), n_labelled=sum(s is not None for s in split))
