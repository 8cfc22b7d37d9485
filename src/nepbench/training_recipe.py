"""A training recipe: the sources, the base hyper-parameters, the search grid and the ensemble size
of one trained model, read from a TOML file committed beside the model.

    name = "nepbench-lisic-v2"
    seed = 2027                  # validation split and ensemble seeds (member k: seed + k)
    validation_fraction = 0.2    # of the tested sources' train origins
    members = 3                  # ensemble size (≥ 1; ≥ 2 for an uncertainty)
    [config]                     # training.TrainingConfig fields: the base of every trial
    generations = 10000
    [search]                     # grid over TrainingConfig fields, each trial `steps` long
    steps = 3000
    neurons = [30, 50]
    [[source]]                   # training_data.Source fields, paths relative to the repository
    name = "dft-v2"
    kind = "reference"
    path = "reference_data/dft-v2"

Docs: docs/training.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, InputError
from .training import TrainingConfig
from .training_data import Source

RECIPE_KEYS = frozenset({"name", "seed", "validation_fraction", "members", "config", "search", "source"})
#: TrainingConfig fields a recipe may not search or set: the recipe's own seed decides them.
RECIPE_OWNED = frozenset({"seed"})


@dataclass(frozen=True)
class Recipe:
    """A parsed, checked recipe.

    Attributes:
        name: the model's registry name.
        seed: seed of the validation split; ensemble member k trains with seed + k.
        validation_fraction: share of the tested sources' origins held out for the search.
        members: ensemble size.
        sources: the labelled sources (training_data.Source).
        config: base TrainingConfig (its seed is `seed`).
        search: (field, values) pairs of the grid, in file order; empty for no search.
        search_steps: training steps of each search trial.
        path: the recipe file.
    """

    name: str
    seed: int
    validation_fraction: float
    members: int
    sources: tuple[Source, ...]
    config: TrainingConfig
    search: tuple[tuple[str, tuple[Any, ...]], ...]
    search_steps: int
    path: Path

    def grid(self) -> list[dict[str, Any]]:
        """Every trial's overrides of `config` (the cartesian product of `search`, file order);
        [{}] when there is nothing to search."""
        names = [name for name, _ in self.search]
        return [dict(zip(names, values)) for values in itertools.product(*(v for _, v in self.search))]

    def trial_config(self, overrides: dict[str, Any]) -> TrainingConfig:
        """The base config with a trial's overrides and the search length."""
        return _config({**self.config.to_dict(), **overrides, "generations": self.search_steps}, self.path)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "validation_fraction": self.validation_fraction,
                "members": self.members, "sources": [dataclasses.asdict(s) for s in self.sources],
                "config": self.config.to_dict(), "search": {k: list(v) for k, v in self.search},
                "search_steps": self.search_steps, "path": self.path.as_posix()}


def _config(values: dict[str, Any], path: Path) -> TrainingConfig:
    try:
        return TrainingConfig.from_dict(values)
    except ConfigError as exc:
        raise InputError(path, str(exc)) from None


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe. Raises InputError naming the file for unreadable TOML, unknown keys,
    a bad source, config or grid value (every grid point is checked before any training)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(path, f"cannot read recipe ({exc})") from None
    unknown = sorted(set(data) - RECIPE_KEYS)
    if unknown:
        raise InputError(path, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(RECIPE_KEYS))})")
    for key in ("name", "source"):
        if key not in data:
            raise InputError(path, f"missing `{key}`")
    config_table = dict(data.get("config", {}))
    search_table = dict(data.get("search", {}))
    owned = sorted(RECIPE_OWNED & (set(config_table) | set(search_table)))
    if owned:
        raise InputError(path, f"{', '.join(owned)} is set by the recipe's top-level seed, not in [config]/[search]")
    seed, members = data.get("seed", 0), data.get("members", 1)
    fraction = data.get("validation_fraction", 0.2)
    if not isinstance(seed, int) or not isinstance(members, int) or members < 1:
        raise InputError(path, f"seed must be an integer and members an integer ≥ 1 (got {seed!r}, {members!r})")
    if not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise InputError(path, f"validation_fraction {fraction!r} (need 0 ≤ fraction < 1)")
    try:
        sources = tuple(Source.from_dict(s) for s in data["source"])
    except ConfigError as exc:
        raise InputError(path, str(exc)) from None
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise InputError(path, f"source names repeat: {names}")
    config = _config({**config_table, "seed": seed}, path)
    steps = search_table.pop("steps", config.generations)
    search = []
    for name, values in search_table.items():
        if not isinstance(values, list) or not values:
            raise InputError(path, f"[search] {name} must be a non-empty list of values")
        search.append((name, tuple(tuple(v) if isinstance(v, list) else v for v in values)))
    recipe = Recipe(str(data["name"]), seed, float(fraction), members, sources, config, tuple(search),
                    int(steps), path)
    for overrides in recipe.grid():  # every grid point must be a valid config before hours are spent
        recipe.trial_config(overrides)
    return recipe
