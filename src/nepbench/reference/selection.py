"""Candidate pools and DIRECT selection: which structures of each spec family get CP2K labels.

`generate_candidates` builds (or, for MD families, samples) a family's pool from the spec seed;
`pick_family` chooses by DIRECT sampling (with `select_by = "ensemble_sigma"` among the candidates
the sampler model's ensemble disagrees on most: `uncertain_pick`); `select_items` draws the
train/test split and orders the items round-robin over families. The manifest's record of past
picks is read back by `recorded_picks` / `manifest_picks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from ..errors import InputError
from ..structures import check_structure
from .spec import Family, ReferenceSpec, params_at
from .uncertain_pick import UncertainCut, frame_sigma_ev_per_a, sampler_members, uncertain_cut
from .verification import load_manifest


def params_for(family: Family, index: int) -> dict[str, Any]:
    """The builder parameters of candidate `index`: a list value is a cycle of alternatives."""
    return params_at(family.params, index)


def candidate_seed(spec: ReferenceSpec, family_number: int, index: int) -> int:
    """The seed of candidate `index` of family `family_number` (< 2**32): from (spec seed, index) in
    selection version 1, from (spec seed, family, index) from version 2 on."""
    if not spec.selection.family_seeds:
        return spec.seed * 100_003 + index
    return int(np.random.SeedSequence([spec.seed, family_number, index]).generate_state(1)[0])


def generate_candidates(spec: ReferenceSpec, family: Family, family_number: int | None = None) -> list[Atoms]:
    """The candidate pool of one family, deterministic from the spec seed (`candidate_seed`);
    `family_number` is the family's position in the spec (looked up when None)."""
    from .. import systems

    number = spec.families.index(family) if family_number is None else family_number
    if family.md is not None:
        from ..md_pool import md_family_pool

        return md_family_pool(spec, family, number)
    out = []
    for index in range(family.pool):
        seed = candidate_seed(spec, number, index)
        atoms = systems.build(family.builder, seed=seed, **params_for(family, index))
        if family.strain_range is not None:
            rng = np.random.default_rng(seed)
            eps = float(rng.uniform(*family.strain_range))
            atoms = systems.strain(atoms, eps, seed=seed, rattle_a=family.rattle_for(index))
        elif family.rattle_for(index) > 0:
            atoms = atoms.copy()
            atoms.rattle(stdev=family.rattle_for(index), seed=seed % (2**32))
        atoms.info.update({"motif": family.motif, "builder": family.builder, "candidate": index})
        check_structure(atoms, f"{spec.path}:{family.key}#{index}", min_distance_a=0.8)
        out.append(atoms)
    return out


@dataclass
class Selection:
    """Items chosen for labelling, with the DIRECT bookkeeping per family."""

    items: list[Atoms]
    pool_size: int
    per_family: dict[str, dict[str, Any]]

    @property
    def selected_fraction(self) -> float:
        return len(self.items) / self.pool_size


#: Below this cell width (Å) CP2K's Γ-only sampling is far from k-point converged for these
#: metallic and semiconducting cells (docs/cp2k_settings.md, "k-point study").
GAMMA_ONLY_MIN_WIDTH_A = 6.0


def narrow_cells(items: Sequence[Atoms], min_width_a: float = GAMMA_ONLY_MIN_WIDTH_A) -> dict[str, int]:
    """How many of `items` have a cell width (face to face, Å) under `min_width_a`, by builder."""
    from ..cell import cell_thicknesses_a

    counts: dict[str, int] = {}
    for atoms in items:
        if float(cell_thicknesses_a(atoms.cell.array).min()) < min_width_a:
            key = str(atoms.info.get("builder", "?"))
            counts[key] = counts.get(key, 0) + 1
    return counts


def recorded_picks(out_dir: str | Path) -> dict[str, list[int]]:
    """The candidates each family picked when the set in `out_dir` was built, from its manifest.json
    (`manifest_picks`); empty when there is no manifest yet.

    Raises:
        InputError naming the manifest: unreadable, or a selection record `manifest_picks` refuses.
    """
    path = Path(out_dir) / "manifest.json"
    if not path.exists():
        return {}
    return manifest_picks(load_manifest(path), path)


def manifest_picks(manifest: dict[str, Any], path: str | Path) -> dict[str, list[int]]:
    """The candidates each family picked, from a manifest's selection record: {family_label: [candidate
    index, ...]}; empty when the manifest records no selection.

    Raises:
        InputError naming `path` (the manifest's file): 'selection' is not an object whose 'per_family'
            maps each family to an entry with a 'candidates' list of integers.
    """
    selection = manifest.get("selection", {})
    per_family = selection.get("per_family", {}) if isinstance(selection, dict) else None
    if not isinstance(per_family, dict):
        raise InputError(path, "'selection' must be an object whose 'per_family' maps family → picks")
    out: dict[str, list[int]] = {}
    for key, entry in per_family.items():
        candidates = entry.get("candidates") if isinstance(entry, dict) else None
        if not (isinstance(candidates, list) and all(isinstance(c, int) for c in candidates)):
            raise InputError(path, f"selection.per_family[{key!r}] needs a 'candidates' list of integers")
        out[key] = candidates
    return out


def family_label(number: int, family: Family) -> str:
    """A family's key in the manifest's selection record: its position and motif/builder."""
    return f"{number:02d} {family.key}"


@dataclass
class FamilyPick:
    """One family's pool and picks (`pick_family_detail`).

    Attributes:
        pool: the family's candidates (`generate_candidates`).
        picked: picked candidate indices, ascending.
        n_components: PCA components DIRECT kept, None where it did not run (all were taken).
        uncertain: the σ cut of an active-learning round (`select_by = "ensemble_sigma"`), else None.
    """

    pool: list[Atoms]
    picked: list[int]
    n_components: int | None
    uncertain: UncertainCut | None = None


def pick_family(spec: ReferenceSpec, number: int,
                recorded: Sequence[int] = ()) -> tuple[list[Atoms], list[int], int | None]:
    """(candidate pool, picked candidate indices ascending, PCA components kept or None) of the spec's
    family `number` (`pick_family_detail`)."""
    pick = pick_family_detail(spec, number, recorded)
    return pick.pool, pick.picked, pick.n_components


def pick_family_detail(spec: ReferenceSpec, number: int, recorded: Sequence[int] = (),
                       members: Sequence[str | Path] | None = None) -> FamilyPick:
    """The spec's family `number`: its pool and the candidates picked by DIRECT sampling with the
    spec's selection version (all of a family whose `select` equals its pool). `recorded`: the
    candidates the manifest lists for this family, which win ties where the version says so
    (`SelectionVersion.recorded_ties`).

    With `select_by = "ensemble_sigma"` every candidate is scored by the ensemble force spread σ of
    the sampler model (`uncertain_pick.frame_sigma_ev_per_a` over `members`, the ensemble's nep.txt
    files; resolved with `uncertain_pick.sampler_members` when None), the `uncertain_fraction` of
    the pool with the largest σ is kept, and DIRECT picks `select` among those (all of them when
    `select` or fewer remain). Each candidate's info gets `ensemble_sigma_ev_per_a`.

    Raises:
        ConfigError naming the spec file: "ensemble_sigma" with a sampler model of fewer than 2
            members (`sampler_members`).
    """
    family = spec.families[number]
    if spec.select_by == "ensemble_sigma" and members is None:
        members = sampler_members(spec)  # before the pool: an MD pool costs minutes
    pool = generate_candidates(spec, family, number)
    if spec.select_by != "ensemble_sigma":
        if family.select == len(pool):
            return FamilyPick(pool, list(range(len(pool))), None)
        picked, n_components = _direct(spec, pool, list(range(len(pool))), family.select, recorded)
        return FamilyPick(pool, picked, n_components)
    assert members is not None
    sigma = frame_sigma_ev_per_a(pool, members, source=f"{spec.path}:{family_label(number, family)}")
    for atoms, value in zip(pool, sigma):
        atoms.info["ensemble_sigma_ev_per_a"] = float(value)
    cut = uncertain_cut(sigma, spec.uncertain_fraction)
    if len(cut.kept) <= family.select:
        return FamilyPick(pool, list(cut.kept), None, cut)
    picked, n_components = _direct(spec, pool, list(cut.kept), family.select, recorded)
    return FamilyPick(pool, picked, n_components, cut)


def _direct(spec: ReferenceSpec, pool: list[Atoms], among: list[int], n_select: int,
            recorded: Sequence[int]) -> tuple[list[int], int]:
    """(picked candidate indices ascending, PCA components kept) of DIRECT choosing `n_select` of the
    pool candidates `among` (ascending), on the spec's descriptor with its selection version."""
    from ..sampling import direct_select, structural_fingerprint

    version = spec.selection
    frames = [pool[i] for i in among]
    if spec.descriptor == "nep":
        from ..md_pool import mean_descriptors

        features = mean_descriptors(frames, spec.sampler_model)
    else:
        features = np.array([structural_fingerprint(a, cutoff_sigmas=version.cutoff_sigmas) for a in frames])
    recorded_set = set(recorded) if version.recorded_ties else set()
    result = direct_select(features, n_clusters=n_select, k_per_cluster=1, seed=spec.seed,
                           min_feature_std=version.min_feature_std, canonical_order=version.canonical_order,
                           prefer=[k for k, i in enumerate(among) if i in recorded_set])
    return sorted(among[int(k)] for k in result.indices), int(result.n_components)


def origin_test_runs(n_runs: int, test_fraction: float, rng: np.random.Generator) -> set[int]:
    """Which of `n_runs` MD runs form the test split: round(test_fraction × n_runs), at least one
    and at most n_runs − 1 when there are two or more runs (so both splits see the family)."""
    n_test = int(round(test_fraction * n_runs))
    if n_runs >= 2:
        n_test = min(max(n_test, 1), n_runs - 1)
    return {int(r) for r in rng.permutation(n_runs)[:n_test]}


def select_items(spec: ReferenceSpec, recorded: dict[str, list[int]] | None = None) -> Selection:
    """Generate every family's pool and choose `select` per family by DIRECT sampling
    (`pick_family_detail`, given each family's `recorded` picks by manifest key; with `select_by =
    "ensemble_sigma"` among the most uncertain candidates, and each family's entry in `per_family`
    records the cut: `UncertainCut.record`); the split is drawn per family from (spec seed, family
    number).

    Raises:
        ConfigError naming the spec file: "ensemble_sigma" with a sampler model of fewer than 2
            ensemble members (checked before any pool is made).
    """
    per_family_items: list[list[Atoms]] = []
    per_family: dict[str, dict[str, Any]] = {}
    pool_size = 0
    members = sampler_members(spec) if spec.select_by == "ensemble_sigma" else None
    for number, family in enumerate(spec.families):
        items: list[Atoms] = []
        key = family_label(number, family)
        pick = pick_family_detail(spec, number, (recorded or {}).get(key, ()), members)
        pool, picked, n_components = pick.pool, pick.picked, pick.n_components
        pool_size += len(pool)
        rng = np.random.default_rng([spec.seed, number])
        if family.md is not None:  # whole MD runs go to the test split: no test frame has a train sibling
            test_runs = origin_test_runs(family.md.runs, spec.test_fraction, rng)
            for index in picked:
                atoms = pool[index]
                atoms.info["split"] = "test" if int(atoms.info["run"]) in test_runs else "train"
                items.append(atoms)
        else:
            n_test = int(round(spec.test_fraction * len(picked)))
            test_set = set(rng.permutation(len(picked))[:n_test].tolist())
            for rank, index in enumerate(picked):
                atoms = pool[index]
                atoms.info["split"] = "test" if rank in test_set else "train"
                items.append(atoms)
        per_family[key] = {"pool": len(pool), "selected": len(picked),
                           "selected_fraction": round(len(picked) / max(len(pool), 1), 4),
                           "candidates": picked, "pca_components": n_components}
        if pick.uncertain is not None:
            per_family[key].update(pick.uncertain.record(picked))
        if family.md is not None:
            from ..md_pool import pool_record

            per_family[key].update(pool_record(spec, family, number), test_runs=sorted(test_runs))
        per_family_items.append(items)
    # round-robin over families, so a partial build already covers every motif and both splits
    ordered = [fam[k] for k in range(max(map(len, per_family_items))) for fam in per_family_items
               if k < len(fam)]
    return Selection(ordered, pool_size, per_family)
