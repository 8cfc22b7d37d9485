"""The project's DFT reference set: spec → candidate pool → DIRECT selection → CP2K labels.

Layout under `reference_data/`:
  spec.toml                         what to build (families, pool sizes, selections, seed)
  dft/cache/<hash>.json.gz          one labelled item (or a `.failed.json` for an SCF failure),
                                    keyed by the sha256 of its inputs; a rerun skips finished items
  dft/<motif>.extxyz.xz             assembled frames per motif family with energy/forces/stress
  dft/manifest.json                 CP2K version, settings, input-template hash, per-frame and
                                    per-file sha256, wall times, the train/test split, selection
Everything is written atomically; a killed build resumes where it stopped.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from ase import Atoms

from .config import finite_number, unknown_keys, unknown_name
from .errors import ConfigError, EngineError, InputError, SCFNotConverged
from .provenance import (
    LockHeld, atomic_write_bytes, atomic_write_files, atomic_write_json, content_hash, exclusive_lock,
    hardware_info, json_document, package_versions, sha256_bytes, sha256_file,
)
from .structures import check_structure, labels_of, read_structures, structures_bytes, with_labels
from .systems import BUILDERS, param_problem

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO_ROOT / "reference_data"
MOTIFS = ("crystalline", "amorphous", "interfacial", "strained", "surface")
#: Per-structure features DIRECT may cluster on: the structural fingerprint (`sampling`) or the
#: per-structure mean NEP descriptor of the spec's sampler model (`md_pool.mean_descriptors`).
DESCRIPTORS = ("fingerprint", "nep")


@dataclass(frozen=True)
class SelectionVersion:
    """How candidates are seeded and picked; a spec names its version (`selection_version`).

    Attributes:
        family_seeds: seed candidate i of family f from (spec seed, f, i). Version 1 seeds it from
            (spec seed, i) in every family, so candidate i of a strained family is candidate i of the
            matching amorphous family strained by a few per cent (0.09 Å RMS apart), and the two can
            land in opposite splits.
        cutoff_sigmas / min_feature_std / canonical_order: the DIRECT guards of `sampling`.
        recorded_ties: a tie in picking a cluster's centre (its two members equally far from the
            centroid) goes to the candidate the set's manifest records (`recorded_picks`). Version 1
            leaves ties to float rounding, which differs between machines; this makes a rebuild of
            the committed set select what it labelled. Version 2 breaks ties by canonical order.
    """

    family_seeds: bool
    cutoff_sigmas: float | None
    min_feature_std: float
    canonical_order: bool
    recorded_ties: bool = False


#: Version 1 selected the committed reference set (spec.toml names no version); version 2 fixes
#: what a review found in it (docs/cp2k_settings.md, "Selection versions"). New specs should say 2.
SELECTION_VERSIONS = {
    1: SelectionVersion(family_seeds=False, cutoff_sigmas=None, min_feature_std=0.0, canonical_order=False,
                        recorded_ties=True),
    2: SelectionVersion(family_seeds=True, cutoff_sigmas=4.0, min_feature_std=1e-6, canonical_order=True),
}
LATEST_SELECTION_VERSION = max(SELECTION_VERSIONS)


@dataclass(frozen=True)
class Family:
    """A group of candidates from one builder.

    Attributes:
        builder: name in `nepbench.systems` (e.g. "a-LixSi").
        motif: motif family recorded on every frame.
        pool: number of candidates generated (seeds 0..pool-1, offset by the spec seed).
        select: number kept by DIRECT sampling.
        params: builder parameters; a list value is cycled over the candidates.
        strain_range: (min, max) isotropic/shear strain drawn per candidate, or None.
        rattle_a: Gaussian rattle std in Å applied after straining; several values are cycled
            over the candidates.
        md: NEP MD sampling (`md_sampling.MDSampling`): candidates are MD snapshots of `md.runs`
            runs instead of built structures, and `pool` is runs × snapshots per run.
    """

    builder: str
    motif: str
    pool: int
    select: int
    params: dict[str, Any] = field(default_factory=dict)
    strain_range: tuple[float, float] | None = None
    rattle_a: tuple[float, ...] = (0.0,)
    md: Any = None

    def rattle_for(self, index: int) -> float:
        return self.rattle_a[index % len(self.rattle_a)]

    @property
    def key(self) -> str:
        return f"{self.motif}/{self.builder}"


@dataclass(frozen=True)
class ReferenceSpec:
    name: str
    seed: int
    test_fraction: float
    families: tuple[Family, ...]
    cp2k_preset: str = "label"
    path: str = ""
    selection_version: int = 1
    descriptor: str = "fingerprint"
    sampler_model: str | None = None
    out_dir: str = "dft"

    @property
    def out_path(self) -> Path:
        """Where the set is built: `out_dir` beside the spec file."""
        return Path(self.path).parent / self.out_dir

    @property
    def selection(self) -> SelectionVersion:
        return SELECTION_VERSIONS[self.selection_version]


def _spec_number(path: Path, where: str, value: Any, kind: type, low: float, high: float | None = None) -> Any:
    """`value` as `kind` within [low, high] (high None: no upper bound), else ConfigError naming it."""
    number = finite_number(value)
    if number is None or (kind is int and not number.is_integer()):
        raise ConfigError(f"{path}: {where} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    number = kind(number)
    if number < low or (high is not None and number > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{path}: {where} must be {bounds}, got {value!r}")
    return number


#: Keys spec.toml may hold at its top and in each [[family]] (`cp2k_preset`: engines.cp2k.SETTINGS_PRESETS).
SPEC_KEYS = frozenset({"name", "seed", "test_fraction", "cp2k_preset", "selection_version", "family",
                       "descriptor", "sampler_model", "out_dir"})
FAMILY_KEYS = frozenset({"builder", "motif", "pool", "select", "params", "strain_range", "rattle_a", "md"})


def load_spec(path: str | Path) -> ReferenceSpec:
    """Parse `reference_data/spec.toml` (see the file for the format); ConfigError names the file,
    the family and the problem."""
    from .textfiles import load_toml, prefixed

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: reference spec not found")
    data = load_toml(path, prefixed(ConfigError))
    problem = unknown_keys(data, SPEC_KEYS)
    if problem:
        raise ConfigError(f"{path}: {problem}")
    from .engines.cp2k import SETTINGS_PRESETS

    problem = unknown_name(data.get("cp2k_preset", "label"), SETTINGS_PRESETS, "cp2k_preset")
    if problem:
        raise ConfigError(f"{path}: {problem}")
    families = []
    if not isinstance(data.get("family", []), list):
        raise ConfigError(f"{path}: family must be an array of tables ([[family]]), got {data['family']!r}")
    for index, raw in enumerate(data.get("family", [])):
        where = f"family #{index}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: {where} must be a table ([[family]])")
        problem = unknown_keys(raw, FAMILY_KEYS)
        if problem:
            raise ConfigError(f"{path}: {where} has {problem}")
        problem = unknown_name(raw["builder"], BUILDERS, "builder") if "builder" in raw else None
        if problem is None and "builder" in raw:  # parameters the builder does not take, or of the wrong kind
            problem = _family_params_problem(raw["builder"], raw.get("params", {}))
        if problem:
            raise ConfigError(f"{path}: {where}: {problem}")
        try:
            motif = raw["motif"]
            if motif not in MOTIFS:
                raise ConfigError(f"{path}: {where} motif {motif!r} not in {MOTIFS}")
            strain = raw.get("strain_range")
            if strain is not None and (not isinstance(strain, list) or len(strain) != 2):
                raise ConfigError(f"{path}: {where} strain_range must be [min, max], got {strain!r}")
            if strain is not None and all(finite_number(v) is not None for v in strain) and strain[0] > strain[1]:
                raise ConfigError(f"{path}: {where} strain_range must be [min, max] with min <= max, got {strain!r}")
            md = None
            if "md" in raw:
                from .md_sampling import MDSampling

                md = MDSampling.from_dict(raw["md"], f"{path}: {where}")
                pool = md.runs * md.snapshots_per_run
            else:
                pool = _spec_number(path, f"{where} pool", raw["pool"], int, 1)
            select = _spec_number(path, f"{where} select", raw["select"], int, 1, pool)
            rattle = [_spec_number(path, f"{where} rattle_a", r, float, 0.0)
                      for r in np.atleast_1d(raw.get("rattle_a", 0.0)).tolist()]
            families.append(Family(
                builder=str(raw["builder"]), motif=motif, pool=pool, select=select,
                params=dict(raw.get("params", {})),
                strain_range=(_spec_number(path, f"{where} strain_range", strain[0], float, -0.5, 0.5),
                              _spec_number(path, f"{where} strain_range", strain[1], float, -0.5, 0.5))
                if strain else None,
                rattle_a=tuple(rattle),
                md=md,
            ))
        except KeyError as exc:
            raise ConfigError(f"{path}: {where} lacks {exc.args[0]!r}") from None
    if not families:
        raise ConfigError(f"{path}: no [[family]] tables")
    version = _spec_number(path, "selection_version", data.get("selection_version", 1), int, 1)
    if version not in SELECTION_VERSIONS:
        raise ConfigError(f"{path}: selection_version {version} unknown (known: "
                          f"{', '.join(map(str, sorted(SELECTION_VERSIONS)))})")
    descriptor = str(data.get("descriptor", "fingerprint"))
    problem = unknown_name(descriptor, DESCRIPTORS, "descriptor")
    if problem:
        raise ConfigError(f"{path}: {problem}")
    sampler = data.get("sampler_model")
    if (descriptor == "nep" or any(f.md is not None for f in families)) and not isinstance(sampler, str):
        raise ConfigError(f"{path}: NEP descriptors and [[family]] md tables need sampler_model (a model name or path)")
    out_dir = str(data.get("out_dir", "dft"))
    if Path(out_dir).name != out_dir or out_dir in ("", ".", ".."):
        raise ConfigError(f"{path}: out_dir must be a plain folder name beside the spec, got {out_dir!r}")
    return ReferenceSpec(str(data.get("name", path.stem)), _spec_number(path, "seed", data.get("seed", 0), int, 0),
                         _spec_number(path, "test_fraction", data.get("test_fraction", 0.2), float, 0.0, 0.9),
                         tuple(families), str(data.get("cp2k_preset", "label")), str(path), version,
                         descriptor, sampler, out_dir)


# --------------------------------------------------------------------------- candidates

def _params_for(family: Family, index: int) -> dict[str, Any]:
    """The builder parameters of candidate `index`: a list value is a cycle of alternatives."""
    return _params_at(family.params, index)


def _params_at(params: dict[str, Any], index: int) -> dict[str, Any]:
    return {k: (v[index % len(v)] if isinstance(v, list) else v) for k, v in params.items()}


def _family_params_problem(builder: str, params: Any) -> str | None:
    """`systems.param_problem` for every alternative a family's params cycle through, or None."""
    if not isinstance(params, dict):
        return param_problem(builder, params)
    if any(isinstance(v, list) and not v for v in params.values()):
        return f"builder {builder!r}: a parameter lists no alternatives (an empty list)"
    cycle = max([len(v) for v in params.values() if isinstance(v, list)], default=1)
    for index in range(cycle):
        problem = param_problem(builder, _params_at(params, index))
        if problem:
            return problem
    return None


def candidate_seed(spec: ReferenceSpec, family_number: int, index: int) -> int:
    """The seed of candidate `index` of family `family_number` (< 2**32): from (spec seed, index) in
    selection version 1, from (spec seed, family, index) from version 2 on."""
    if not spec.selection.family_seeds:
        return spec.seed * 100_003 + index
    return int(np.random.SeedSequence([spec.seed, family_number, index]).generate_state(1)[0])


def generate_candidates(spec: ReferenceSpec, family: Family, family_number: int | None = None) -> list[Atoms]:
    """The candidate pool of one family, deterministic from the spec seed (`candidate_seed`);
    `family_number` is the family's position in the spec (looked up when None)."""
    from . import systems

    number = spec.families.index(family) if family_number is None else family_number
    if family.md is not None:
        from .md_pool import md_family_pool

        return md_family_pool(spec, family, number)
    out = []
    for index in range(family.pool):
        seed = candidate_seed(spec, number, index)
        atoms = systems.build(family.builder, seed=seed, **_params_for(family, index))
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
#: metallic and semiconducting cells (docs/cp2k_settings.md, "Known limitation").
GAMMA_ONLY_MIN_WIDTH_A = 6.0


def narrow_cells(items: Sequence[Atoms], min_width_a: float = GAMMA_ONLY_MIN_WIDTH_A) -> dict[str, int]:
    """How many of `items` have a cell width (face to face, Å) under `min_width_a`, by builder."""
    from .cell import cell_thicknesses_a

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


def pick_family(spec: ReferenceSpec, number: int,
                recorded: Sequence[int] = ()) -> tuple[list[Atoms], list[int], int | None]:
    """(candidate pool, picked candidate indices ascending, PCA components kept or None) of the spec's
    family `number`, by DIRECT sampling with the spec's selection version (all of a family whose
    `select` equals its pool). `recorded`: the candidates the manifest lists for this family, which
    win ties where the version says so (`SelectionVersion.recorded_ties`)."""
    from .sampling import direct_select, structural_fingerprint

    family = spec.families[number]
    pool = generate_candidates(spec, family, number)
    if family.select == len(pool):
        return pool, list(range(len(pool))), None
    version = spec.selection
    if spec.descriptor == "nep":
        from .md_pool import mean_descriptors

        features = mean_descriptors(pool, spec.sampler_model)
    else:
        features = np.array([structural_fingerprint(a, cutoff_sigmas=version.cutoff_sigmas) for a in pool])
    result = direct_select(features, n_clusters=family.select, k_per_cluster=1, seed=spec.seed,
                           min_feature_std=version.min_feature_std, canonical_order=version.canonical_order,
                           prefer=recorded if version.recorded_ties else ())
    return pool, [int(i) for i in result.indices], int(result.n_components)


def origin_test_runs(n_runs: int, test_fraction: float, rng: np.random.Generator) -> set[int]:
    """Which of `n_runs` MD runs form the test split: round(test_fraction × n_runs), at least one
    and at most n_runs − 1 when there are two or more runs (so both splits see the family)."""
    n_test = int(round(test_fraction * n_runs))
    if n_runs >= 2:
        n_test = min(max(n_test, 1), n_runs - 1)
    return {int(r) for r in rng.permutation(n_runs)[:n_test]}


def select_items(spec: ReferenceSpec, recorded: dict[str, list[int]] | None = None) -> Selection:
    """Generate every family's pool and choose `select` per family by DIRECT sampling (`pick_family`,
    given each family's `recorded` picks by manifest key); the split is drawn per family from (spec
    seed, family number)."""
    per_family_items: list[list[Atoms]] = []
    per_family: dict[str, dict[str, Any]] = {}
    pool_size = 0
    for number, family in enumerate(spec.families):
        items: list[Atoms] = []
        key = family_label(number, family)
        pool, picked, n_components = pick_family(spec, number, (recorded or {}).get(key, ()))
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
        if family.md is not None:
            from .md_pool import pool_record

            per_family[key].update(pool_record(spec, family, number), test_runs=sorted(test_runs))
        per_family_items.append(items)
    # round-robin over families, so a partial build already covers every motif and both splits
    ordered = [fam[k] for k in range(max(map(len, per_family_items))) for fam in per_family_items
               if k < len(fam)]
    return Selection(ordered, pool_size, per_family)


# --------------------------------------------------------------------------- labelling cache

def item_hash(atoms: Atoms, settings: dict[str, Any], cp2k_version: str) -> str:
    """sha256 of everything that determines a label: structure, CP2K settings and version."""
    return content_hash({
        "numbers": atoms.numbers, "positions": np.round(atoms.positions, 8),
        "cell": np.round(atoms.cell.array, 8), "pbc": atoms.pbc,
        "settings": settings, "cp2k": cp2k_version,
    })


def input_template_sha256(settings: Any) -> str | None:
    """sha256 of the CP2K single-point input nepbench writes for a fixed probe cell (Li, Si, C)
    with `settings`: it changes when the input writer does (a new keyword, another section), which
    the cache key (structure, settings, CP2K version) does not see. None for engines without
    CP2K settings (test stand-ins)."""
    from .engines.cp2k import CP2KSettings, build_input

    if not isinstance(settings, CP2KSettings):
        return None
    probe = Atoms("LiSiC", positions=[[0.0, 0.0, 0.0], [2.5, 0.0, 0.0], [0.0, 2.5, 0.0]],
                  cell=[8.0, 8.0, 8.0], pbc=True)
    return sha256_bytes(build_input(probe, settings).encode())


def _cache_path(cache_dir: Path, key: str, failed: bool = False) -> Path:
    return cache_dir / (f"{key[:24]}.failed.json" if failed else f"{key[:24]}.json.gz")


def _write_cached(path: Path, atoms: Atoms, energy: float, forces: np.ndarray,
                  stress: np.ndarray | None, wall_s: float, key: str, template_sha256: str | None = None) -> None:
    record = {
        "input_template_sha256": template_sha256,
        "hash": key, "symbols": atoms.get_chemical_symbols(), "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(), "pbc": atoms.pbc.tolist(),
        "info": {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float))},
        "energy_ev": energy, "forces_ev_per_a": np.asarray(forces).tolist(),
        "stress_ev_per_a3": None if stress is None else np.asarray(stress).tolist(), "wall_s": wall_s,
    }
    atomic_write_bytes(path, gzip.compress(json.dumps(record).encode(), mtime=0))


#: Per-frame fields the manifest lists that `verify` holds to the frame file's own info.
MANIFEST_FRAME_INFO = ("split", "builder", "hash")

#: Item fields `_assemble` takes from the spec's item as it is now, not from its cache record.
CURRENT_ITEM_INFO = ("motif", "builder", "candidate", "split")

#: Where `read_cached` puts the record's input-template hash; `_assemble` takes it out again.
TEMPLATE_INFO = "_input_template_sha256"


def read_cached(path: Path) -> Atoms:
    """A labelled frame from a cache record (info carries hash, wall_s, split, motif)."""
    try:
        record = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable cache record ({exc})") from None
    atoms = Atoms(record["symbols"], positions=record["positions"], cell=record["cell"], pbc=record["pbc"])
    atoms.info.update(record["info"])
    atoms.info["hash"] = record["hash"]
    atoms.info["wall_s"] = record["wall_s"]
    atoms.info[TEMPLATE_INFO] = record.get("input_template_sha256")  # None: labelled before it was kept
    stress = None if record["stress_ev_per_a3"] is None else np.array(record["stress_ev_per_a3"])
    return with_labels(atoms, record["energy_ev"], np.array(record["forces_ev_per_a"]), stress)


@dataclass
class BuildReport:
    labelled: int
    skipped_cached: int
    failed: int
    wall_s: float
    failures: list[str] = field(default_factory=list)
    skipped_busy: int = 0  # items another builder was labelling at the time
    skipped_failed: int = 0  # items whose SCF failed in an earlier build (left out; --retry-failed)


def label_items(items: Iterable[Atoms], engine: Any, cache_dir: Path, retry_failed: bool = False,
                on_item: Callable[[int, int], None] | None = None,
                limit: int | None = None) -> BuildReport:
    """Label every item with `engine.single_point`, skipping items already cached.

    An item whose SCF does not converge is logged in a `.failed.json` record and left out (later
    builds skip it and count it in `skipped_failed`, unless `retry_failed`). A run that crashes
    otherwise (no output, MPI that did not start, a timeout, a killed rank: the machine's fault as
    often as the item's) is counted as failed in this build only and tried again by the next one.
    Nothing half-written reaches the cache. Several builders may share one cache
    (e.g. one CP2K rank each on 2 cores): an item is locked while it is labelled
    (`.<key>.lock` in the cache folder) and the others skip it.
    """
    items = list(items)
    settings = engine.settings.to_dict()
    version = engine.version()
    template = input_template_sha256(engine.settings)
    report = BuildReport(0, 0, 0, 0.0)
    start = time.perf_counter()
    for index, atoms in enumerate(items):
        key = item_hash(atoms, settings, version)
        done, failed = _cache_path(cache_dir, key), _cache_path(cache_dir, key, failed=True)
        if done.exists():
            report.skipped_cached += 1
        elif failed.exists() and not retry_failed:
            report.skipped_failed += 1
        elif limit is not None and report.labelled + report.failed >= limit:
            break
        else:
            lock = cache_dir / f".{key[:24]}.lock"
            try:
                with exclusive_lock(lock, blocking=False):
                    if done.exists():  # another builder finished it just now
                        report.skipped_cached += 1
                    elif failed.exists() and not retry_failed:  # or recorded its SCF failure
                        report.skipped_failed += 1
                    else:
                        _label_one(atoms, engine, key, done, failed, report, template)
                    lock.unlink(missing_ok=True)  # a builder that opens it later finds `done`
            except LockHeld:  # another builder is labelling it now
                report.skipped_busy += 1
        if on_item:
            on_item(index + 1, len(items))
    report.wall_s = time.perf_counter() - start
    return report


def _label_one(atoms: Atoms, engine: Any, key: str, done: Path, failed: Path, report: BuildReport,
               template_sha256: str | None = None) -> None:
    """Label one item into `done`, or record its SCF failure in `failed`; count it in `report`
    (another crash is counted, not recorded: the next build tries the item again)."""
    try:
        labels = engine.single_point(atoms)
    except (SCFNotConverged, EngineError) as exc:
        if not isinstance(exc, SCFNotConverged) and "not found" in str(exc):
            raise
        if isinstance(exc, SCFNotConverged):
            atomic_write_json(failed, {"hash": key, "error": str(exc), "info": {
                k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float))}})
        report.failed += 1
        report.failures.append(f"{atoms.info.get('builder')}#{atoms.info.get('candidate')}: {exc}")
    else:
        _write_cached(done, atoms, labels.energy_ev, labels.forces_ev_per_a,
                      labels.stress_ev_per_a3, labels.wall_s, key, template_sha256)
        report.labelled += 1


# --------------------------------------------------------------------------- assembly + manifest

def _fixed8(values: np.ndarray) -> list[str]:
    """Floats as extxyz writes per-atom arrays (8 decimals), so the text round trip is exact."""
    return [f"{v:.8f}" for v in np.asarray(values, dtype=float).ravel()]


def frame_sha256(atoms: Atoms) -> str:
    """sha256 of a labelled frame's content (species, geometry, labels, motif, split).

    Positions and forces enter at the 8 decimals the extxyz file stores; cell, energy and stress
    are stored at full precision, so the hash of a frame read back from its file is unchanged.
    """
    energy, forces, stress = labels_of(atoms)
    return content_hash({
        "symbols": atoms.get_chemical_symbols(), "positions": _fixed8(atoms.positions),
        "cell": atoms.cell.array.ravel().tolist(), "energy": repr(float(energy)),
        "forces": _fixed8(forces), "stress": None if stress is None else [repr(float(x)) for x in stress],
        "motif": atoms.info.get("motif"), "split": atoms.info.get("split"),
    })


def assemble(items: list[Atoms], engine_info: dict[str, Any], cache_dir: Path, out_dir: Path,
             spec: ReferenceSpec, selection: Selection | None) -> dict[str, Any]:
    """Write per-motif extxyz.xz files and manifest.json from the finished cache items.

    Builders sharing a cache assemble one at a time, so the files and the manifest always agree.
    """
    with exclusive_lock(Path(out_dir) / ".assemble.lock"):
        return _assemble(items, engine_info, cache_dir, Path(out_dir), spec, selection)


def _assemble(items: list[Atoms], engine_info: dict[str, Any], cache_dir: Path, out_dir: Path,
              spec: ReferenceSpec, selection: Selection | None) -> dict[str, Any]:
    settings = engine_info["settings"]
    version = engine_info["version"]
    by_motif: dict[str, list[Atoms]] = {}
    failed: list[dict[str, Any]] = []
    templates: dict[str, int] = {}
    for atoms in items:
        key = item_hash(atoms, settings, version)
        done = _cache_path(cache_dir, key)
        if done.exists():
            frame = read_cached(done)
            used = frame.info.pop(TEMPLATE_INFO, None) or "not recorded"
            templates[used] = templates.get(used, 0) + 1
            # the labels are the cache's (its key is the structure, settings and CP2K version); what
            # the spec says of the item now is the item's: a family moved to another motif or
            # builder label must not keep its old one
            for key in CURRENT_ITEM_INFO:
                if key in atoms.info:
                    frame.info[key] = atoms.info[key]
            by_motif.setdefault(frame.info["motif"], []).append(frame)
        elif _cache_path(cache_dir, key, failed=True).exists():
            failed.append(json.loads(_cache_path(cache_dir, key, failed=True).read_text()))
    files: dict[str, Any] = {}
    contents: dict[Path, bytes] = {}
    for motif, frames in sorted(by_motif.items()):
        path = out_dir / f"{motif}.extxyz.xz"
        for frame in frames:
            frame.info["frame_sha256"] = frame_sha256(frame)
        contents[path] = structures_bytes(path.name, frames)
        files[path.name] = {
            "sha256": sha256_bytes(contents[path]), "n_frames": len(frames),
            "n_test": sum(f.info["split"] == "test" for f in frames),
            "frames": [{"frame_sha256": f.info["frame_sha256"], "hash": f.info["hash"],
                        "builder": f.info.get("builder"), "split": f.info["split"],
                        "n_atoms": len(f), "formula": f.get_chemical_formula(),
                        "wall_s": round(float(f.info["wall_s"]), 2)} for f in frames],
        }
    n_frames = sum(f["n_frames"] for f in files.values())
    manifest = {
        "schema": "nepbench.reference/1",
        "name": spec.name,
        "spec": Path(spec.path).name,
        "spec_sha256": sha256_file(spec.path) if spec.path else None,
        "cp2k": {"version": version, "settings": settings,
                 "input_template_sha256": engine_info.get("input_template_sha256"),
                 # frames per input template they were labelled with ("not recorded": before it was kept)
                 "frames_by_input_template": dict(sorted(templates.items()))},
        "seed": spec.seed,
        "test_fraction": spec.test_fraction,
        "selection": None if selection is None else {
            "method": (f"DIRECT ({'per-structure mean NEP descriptor of ' + str(spec.sampler_model) if spec.descriptor == 'nep' else 'structural fingerprint'}"
                       " → StandardScaler → PCA (Kaiser) → BIRCH → one per cluster, nearest the centroid), per family"
                       + ("; MD families split by origin (whole runs are test)" if any(f.md for f in spec.families) else "")),
            "pool_size": selection.pool_size, "selected": len(selection.items),
            "selected_fraction": round(selection.selected_fraction, 4),
            "selection_version": spec.selection_version,
            "per_family": selection.per_family,
        },
        "n_frames": n_frames,
        "n_failed": len(failed),
        "failed": failed,
        "total_cp2k_wall_s": round(sum(fr["wall_s"] for f in files.values() for fr in f["frames"]), 1),
        "files": files,
        "hardware": hardware_info(),
        "packages": package_versions(),
    }
    # frame files and manifest as one set (all staged, then renamed, the manifest last), so a kill
    # while writing leaves the old set whole, and one between the renames leaves frames that
    # `verify` finds at odds with the old manifest; then the files of motifs the spec no longer has
    stale = [p for p in out_dir.glob("*.extxyz.xz") if p not in contents]
    atomic_write_files({**contents, out_dir / "manifest.json": json_document(manifest).encode()})
    for path in stale:
        path.unlink(missing_ok=True)
    return manifest


# --------------------------------------------------------------------------- verification

@dataclass
class VerifyResult:
    ok: bool
    problems: list[str]
    n_frames: int
    n_files: int


def load_manifest(path: str | Path) -> dict[str, Any]:
    """A DFT reference manifest.json, checked for the shape its readers rely on: an object whose
    `files` maps each file name (a plain name: the file lies beside the manifest) to {"sha256",
    "frames": [{"frame_sha256", ...}, ...], ...}.

    Raises:
        InputError naming the file: unreadable, not UTF-8, malformed JSON, or another shape.
    """
    from .textfiles import load_json

    path = Path(path)
    manifest = load_json(path, InputError)
    if not isinstance(manifest, dict):
        raise InputError(path, f"expected a JSON object, got {type(manifest).__name__}")
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise InputError(path, f"'files' must be an object (file name → entry), got {type(files).__name__}")
    for name, entry in files.items():
        if Path(name).name != name or name in ("", ".", ".."):  # read and copied beside the manifest
            raise InputError(path, f"files entry {name!r} is not a plain file name (no folders, no '..')")
        frames = entry.get("frames") if isinstance(entry, dict) else None
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(frames, list)
                and all(isinstance(f, dict) and isinstance(f.get("frame_sha256"), str) for f in frames)):
            raise InputError(path, f"files entry {name!r} needs a 'sha256' string and a 'frames' list of "
                                   "objects with a 'frame_sha256'")
    return manifest


def verify(out_dir: str | Path = DEFAULT_ROOT / "dft") -> VerifyResult:
    """Check every file's and every frame's sha256 against the manifest."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(manifest_path, "manifest not found (run `nepbench reference build` first)")
    manifest = load_manifest(manifest_path)
    problems: list[str] = []
    n_frames = 0
    listed = manifest.get("files", {})
    if not listed:
        problems.append(f"{manifest_path}: lists no frame files")
    for extra in sorted(p.name for p in out_dir.glob("*.extxyz*") if p.name not in listed):
        problems.append(f"{out_dir / extra}: not in the manifest")
    for name, entry in listed.items():
        path = out_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        if sha256_file(path) != entry["sha256"]:
            problems.append(f"{path}: file sha256 differs from the manifest")
        try:
            frames = read_structures(path, require_labels=True)
        except (InputError, ValueError) as exc:  # ValueError: a structure check on a frame (e.g. a flat cell)
            problems.append(str(exc) if isinstance(exc, InputError) else f"{path}: unreadable frame ({exc})")
            continue
        expected = [f["frame_sha256"] for f in entry["frames"]]
        if len(frames) != len(expected):
            problems.append(f"{path}: {len(frames)} frames, manifest lists {len(expected)}")
        for index, (frame, want) in enumerate(zip(frames, expected)):
            got = frame_sha256(frame)
            if got != want:
                problems.append(f"{path}: frame {index} sha256 differs from the manifest")
            listed_frame = entry["frames"][index]
            differ = [key for key in MANIFEST_FRAME_INFO
                      if key in listed_frame and listed_frame[key] != frame.info.get(key)]
            if differ:  # what `show`, training and the splits read from the manifest must be the file's
                problems.append(f"{path}: frame {index}'s " + ", ".join(
                    f"{key} {listed_frame[key]!r} in the manifest, {frame.info.get(key)!r} in the file"
                    for key in differ))
        n_test = sum(frame.info.get("split") == "test" for frame in frames)
        listed_test = sum(f.get("split") == "test" for f in entry["frames"])
        if {entry.get("n_frames"), len(entry["frames"])} != {len(frames)} or {entry.get("n_test"), listed_test} != {n_test}:
            problems.append(f"{path}: manifest counts ({entry.get('n_frames')} frames, {entry.get('n_test')} test, "
                            f"{listed_test} listed as test) differ from the file's ({len(frames)}, {n_test})")
        n_frames += len(frames)
    if manifest.get("n_frames") != n_frames:
        problems.append(f"{manifest_path}: n_frames {manifest.get('n_frames')} but its files hold {n_frames}")
    failed = manifest.get("failed", [])
    if manifest.get("n_failed", len(failed)) != len(failed):
        problems.append(f"{manifest_path}: n_failed {manifest.get('n_failed')} but it lists {len(failed)} failed items")
    selected = (manifest.get("selection") or {}).get("selected")
    if isinstance(selected, int) and n_frames + len(failed) > selected:
        problems.append(f"{manifest_path}: {n_frames} frames and {len(failed)} failed items, more than the "
                        f"{selected} the selection records")
    return VerifyResult(not problems, problems, n_frames, len(listed))


def load_frames(out_dir: str | Path = DEFAULT_ROOT / "dft", split: str | None = None,
                motifs: Iterable[str] | None = None) -> list[Atoms]:
    """Labelled reference frames (optionally one split and some motifs), checked against the manifest."""
    out_dir = Path(out_dir)
    result = verify(out_dir)
    if not result.ok:
        raise InputError(out_dir / "manifest.json", "; ".join(result.problems[:3]))
    frames: list[Atoms] = []
    wanted = set(motifs) if motifs is not None else None
    for name in sorted(load_manifest(out_dir / "manifest.json")["files"]):
        for frame in read_structures(out_dir / name, require_labels=True):
            if (split is None or frame.info.get("split") == split) and (
                    wanted is None or frame.info.get("motif") in wanted):
                frames.append(frame)
    return frames


def data_sha256(out_dir: str | Path = DEFAULT_ROOT / "dft") -> str:
    """sha256 of the manifest: one hash that names the whole reference set."""
    return sha256_file(Path(out_dir) / "manifest.json")
