"""The reference spec (`reference_data/spec.toml`): its families, selection versions and loader.

`load_spec` reads and checks the file; `Family`, `ReferenceSpec` and `SelectionVersion` are what
the rest of `nepbench.reference` works from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import finite_number, unknown_keys, unknown_name
from ..errors import ConfigError
from ..provenance import PROJECT_ROOT as REPO_ROOT
from ..systems import BUILDERS, param_problem

DEFAULT_ROOT = REPO_ROOT / "reference_data"
MOTIFS = ("crystalline", "amorphous", "interfacial", "strained", "surface")
#: Per-structure features DIRECT may cluster on: the structural fingerprint (`sampling`) or the
#: per-structure mean NEP descriptor of the spec's sampler model (`md_pool.mean_descriptors`).
DESCRIPTORS = ("fingerprint", "nep")
#: How each family's picks are chosen from its pool (`select_by`): DIRECT over the whole pool, or
#: DIRECT among the `uncertain_fraction` of it where the sampler model's seed ensemble disagrees most
#: (`reference.uncertain_pick`; an active-learning round, docs/training.md "Active learning").
SELECT_BY = ("direct", "ensemble_sigma")
DEFAULT_UNCERTAIN_FRACTION = 0.25


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
    """A loaded reference spec (`load_spec`; the file's keys are its fields, `family` → `families`).

    `select_by` is "direct" (DIRECT over each family's pool) or "ensemble_sigma" (DIRECT among the
    `uncertain_fraction` of the pool with the largest ensemble force spread of `sampler_model`,
    0 < fraction <= 1; `reference.uncertain_pick`).
    """

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
    select_by: str = "direct"
    uncertain_fraction: float = DEFAULT_UNCERTAIN_FRACTION

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
                       "descriptor", "sampler_model", "out_dir", "select_by", "uncertain_fraction"})
FAMILY_KEYS = frozenset({"builder", "motif", "pool", "select", "params", "strain_range", "rattle_a", "md"})


def params_at(params: dict[str, Any], index: int) -> dict[str, Any]:
    """`params` with every list value replaced by its entry `index` (cycled)."""
    return {k: (v[index % len(v)] if isinstance(v, list) else v) for k, v in params.items()}


def _family_params_problem(builder: str, params: Any) -> str | None:
    """`systems.param_problem` for every alternative a family's params cycle through, or None."""
    if not isinstance(params, dict):
        return param_problem(builder, params)
    if any(isinstance(v, list) and not v for v in params.values()):
        return f"builder {builder!r}: a parameter lists no alternatives (an empty list)"
    cycle = max([len(v) for v in params.values() if isinstance(v, list)], default=1)
    for index in range(cycle):
        problem = param_problem(builder, params_at(params, index))
        if problem:
            return problem
    return None


def _load_family(path: Path, index: int, raw: Any) -> Family:
    """The spec's [[family]] table number `index` (`raw`), checked; ConfigError names the file,
    the family and the problem."""
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
            from ..md_sampling import MDSampling

            md = MDSampling.from_dict(raw["md"], f"{path}: {where}")
            pool = md.runs * md.snapshots_per_run
        else:
            pool = _spec_number(path, f"{where} pool", raw["pool"], int, 1)
        select = _spec_number(path, f"{where} select", raw["select"], int, 1, pool)
        rattle = [_spec_number(path, f"{where} rattle_a", r, float, 0.0)
                  for r in np.atleast_1d(raw.get("rattle_a", 0.0)).tolist()]
        return Family(
            builder=str(raw["builder"]), motif=motif, pool=pool, select=select,
            params=dict(raw.get("params", {})),
            strain_range=(_spec_number(path, f"{where} strain_range", strain[0], float, -0.5, 0.5),
                          _spec_number(path, f"{where} strain_range", strain[1], float, -0.5, 0.5))
            if strain else None,
            rattle_a=tuple(rattle),
            md=md,
        )
    except KeyError as exc:
        raise ConfigError(f"{path}: {where} lacks {exc.args[0]!r}") from None


def load_spec(path: str | Path) -> ReferenceSpec:
    """Parse `reference_data/spec.toml` (see the file for the format); ConfigError names the file,
    the family and the problem."""
    from ..textfiles import load_toml, prefixed

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: reference spec not found")
    data = load_toml(path, prefixed(ConfigError))
    problem = unknown_keys(data, SPEC_KEYS)
    if problem:
        raise ConfigError(f"{path}: {problem}")
    from ..engines.cp2k import SETTINGS_PRESETS

    problem = unknown_name(data.get("cp2k_preset", "label"), SETTINGS_PRESETS, "cp2k_preset")
    if problem:
        raise ConfigError(f"{path}: {problem}")
    if not isinstance(data.get("family", []), list):
        raise ConfigError(f"{path}: family must be an array of tables ([[family]]), got {data['family']!r}")
    families = [_load_family(path, index, raw) for index, raw in enumerate(data.get("family", []))]
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
    select_by, fraction = _selection_mode(path, data)
    out_dir = str(data.get("out_dir", "dft"))
    if Path(out_dir).name != out_dir or out_dir in ("", ".", ".."):
        raise ConfigError(f"{path}: out_dir must be a plain folder name beside the spec, got {out_dir!r}")
    return ReferenceSpec(str(data.get("name", path.stem)), _spec_number(path, "seed", data.get("seed", 0), int, 0),
                         _spec_number(path, "test_fraction", data.get("test_fraction", 0.2), float, 0.0, 0.9),
                         tuple(families), str(data.get("cp2k_preset", "label")), str(path), version,
                         descriptor, sampler, out_dir, select_by, fraction)


def _selection_mode(path: Path, data: dict[str, Any]) -> tuple[str, float]:
    """(select_by, uncertain_fraction) of a spec's top table, checked; ConfigError naming `path`:
    an unknown mode, a fraction outside (0, 1], a fraction without "ensemble_sigma", or
    "ensemble_sigma" without a sampler_model. Whether the sampler model has an ensemble is checked
    when the spec selects (`uncertain_pick.sampler_members`), so loading a spec resolves no model."""
    select_by = data.get("select_by", "direct")
    problem = unknown_name(select_by, SELECT_BY, "select_by")
    if problem:
        raise ConfigError(f"{path}: {problem}")
    if "uncertain_fraction" not in data:
        fraction = DEFAULT_UNCERTAIN_FRACTION
    elif select_by != "ensemble_sigma":
        raise ConfigError(f"{path}: uncertain_fraction applies to select_by = \"ensemble_sigma\" only "
                          f"(select_by is {select_by!r})")
    else:
        fraction = _spec_number(path, "uncertain_fraction", data["uncertain_fraction"], float, 0.0, 1.0)
        if fraction <= 0:
            raise ConfigError(f"{path}: uncertain_fraction must be in (0, 1], got {data['uncertain_fraction']!r}")
    if select_by == "ensemble_sigma" and not isinstance(data.get("sampler_model"), str):
        raise ConfigError(f"{path}: select_by = \"ensemble_sigma\" needs sampler_model (a registered model with "
                          "a seed ensemble)")
    return select_by, fraction
