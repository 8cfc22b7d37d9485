"""Suite files (TOML) → frozen dataclasses. Criteria are data: good/bad bounds, unit and source.

A suite file has a `[suite]` table (name, description), `[[task]]` tables (id, type, plus
type-specific parameters) and `[[criterion]]` tables (id, claim, task, metric, good, bad, unit,
source, and optionally floor). Lower is better when good < bad, higher is better when good > bad.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .textfiles import load_toml, prefixed

TASK_TYPES = ("parity", "md_accuracy", "throughput", "expansion")


@dataclass(frozen=True)
class TaskSpec:
    """One task of a suite: `type` picks the task function; `params` are its arguments."""

    id: str
    type: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "title": self.title,
                "params": dict(self.params), "models": list(self.models)}


@dataclass(frozen=True)
class Criterion:
    """A claim turned into a bound on one metric of one task.

    `floor` (optional) names a metric of the same task that measures the reference's own sampling
    noise in the metric's unit (e.g. the AIMD g(r) between its two halves); the report says when
    that noise alone is beyond the pass bound.
    """

    id: str
    claim: str
    task: str
    metric: str
    good: float
    bad: float
    unit: str
    source: str
    floor: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    tasks: tuple[TaskSpec, ...]
    criteria: tuple[Criterion, ...]
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "path": self.path,
                "tasks": [t.to_dict() for t in self.tasks],
                "criteria": [c.to_dict() for c in self.criteria]}

    def task(self, task_id: str) -> TaskSpec:
        for spec in self.tasks:
            if spec.id == task_id:
                return spec
        raise ConfigError(f"{self.path}: no task {task_id!r} (have {', '.join(t.id for t in self.tasks)})")


CRITERION_FIELDS = ("id", "claim", "task", "metric", "good", "bad", "unit", "source")
#: Top-level tables a suite file may hold ([gate] is read by `nepbench gate`), and [suite]'s keys.
SUITE_TABLES = frozenset({"suite", "task", "criterion", "gate"})
SUITE_HEAD_KEYS = frozenset({"name", "description", "models"})
#: A suite's name: one folder name (`nepbench run` writes to reports/<name> by default).
SUITE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def real_number(value: Any) -> float | None:
    """`value` as a float, or None for bools (numpy's too), strings and other non-numbers."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def integer(value: Any) -> int | None:
    """`value` as an int when it is an integer (numpy's too), else None: bools, floats such as 2.0
    and strings are not integers here (a TOML `steps = true` must not run 1 step)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def unknown_keys(table: Mapping[str, Any], known: Iterable[str]) -> str | None:
    """"unknown key(s) a, b (known: …)" for the keys of `table` not in `known`, else None: the one
    wording every loader of a TOML table uses (a misspelt key would otherwise be ignored)."""
    known = sorted(known)
    unknown = sorted(set(table) - set(known))
    return f"unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})" if unknown else None


def unknown_name(value: Any, known: Iterable[str], what: str) -> str | None:
    """"unknown <what> 'x' (known: …)" when `value` is not a string among `known` (a builder, a CP2K
    settings preset), else None: the one check and wording for a name a TOML file picks from a list."""
    known = list(known)
    if isinstance(value, str) and value in known:
        return None
    return f"unknown {what} {value!r} (known: {', '.join(known)})"


def finite_number(value: Any) -> float | None:
    """`real_number(value)` when it is finite, else None (a criterion bound, a gate value)."""
    number = real_number(value)
    return number if number is not None and math.isfinite(number) else None


def params_difference(old_params: Any, new_params: Any) -> str | None:
    """"key: old → new; …" over the keys whose values differ between two tasks' parameters, or None
    when they agree (also None where either side records none, as in old records). The report
    compares a record with its suite task, the gate a run with its baseline."""
    if not isinstance(old_params, Mapping) or not isinstance(new_params, Mapping):
        return None
    keys = sorted(k for k in set(old_params) | set(new_params) if old_params.get(k) != new_params.get(k))
    return "; ".join(f"{k}: {old_params.get(k)!r} → {new_params.get(k)!r}" for k in keys) or None


def criterion_from_mapping(raw: Any, where: str) -> Criterion:
    """A checked `Criterion` from a suite table or a suite.json entry; `where` starts each error.

    Raises:
        ConfigError: not a table, an unknown field, a field missing, good or bad not a finite
            number, or good == bad.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table of fields, got {type(raw).__name__}")
    problem = unknown_keys(raw, (*CRITERION_FIELDS, "floor"))  # a misspelt `flor` must not vanish
    if problem:
        raise ConfigError(f"{where}: {problem}")
    missing = [key for key in CRITERION_FIELDS if key not in raw]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(missing)}")
    good, bad = finite_number(raw["good"]), finite_number(raw["bad"])
    if good is None or bad is None:
        raise ConfigError(f"{where}: good and bad must be finite numbers "
                          f"(got good={raw['good']!r}, bad={raw['bad']!r})")
    if good == bad:
        raise ConfigError(f"{where}: good and bad must differ (both {good:g})")
    return Criterion(str(raw["id"]), str(raw["claim"]), str(raw["task"]), str(raw["metric"]),
                     good, bad, str(raw["unit"]), str(raw["source"]), str(raw.get("floor") or ""))


def _criterion(raw: dict[str, Any], path: Path, index: int) -> Criterion:
    return criterion_from_mapping(raw, f"{path}: criterion {raw.get('id', index)!r}")


def _check_task_params(path: Path, task_id: str, task_type: str, params: Mapping[str, Any]) -> None:
    """ConfigError naming the file and task for a parameter its type does not read (a misspelt
    `splt` would otherwise leave the default in force without a word)."""
    from .tasks import task_param_problem, task_params

    known = task_params(task_type)
    unknown = sorted(set(params) - known - {"model"})
    if unknown:
        raise ConfigError(f"{path}: task {task_id!r} ({task_type}) has unknown parameter(s) "
                          f"{', '.join(unknown)} (known: {', '.join(sorted(known))})")
    problem = task_param_problem(task_type, dict(params))
    if problem:
        raise ConfigError(f"{path}: task {task_id!r} ({task_type}): {problem}")


def _model_names(value: Any, path: Path) -> tuple[str, ...]:
    """The `[suite] models` list: model names (strings)."""
    if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
        raise ConfigError(f"{path}: [suite] models must be a list of model names, e.g. [\"nep89-lisic\"], "
                          f"got {value!r}")
    return tuple(value)


def _fixed_model(path: Path, task_id: str, params: Mapping[str, Any]) -> tuple[str, ...]:
    """The model of a task whose id has no `{model}`: its `model` parameter, which every task type
    needs (a task with neither ran with no model and failed after loading its data).

    Raises:
        ConfigError naming the file and task: no `{model}` in the id and no `model` name, or both.
    """
    model = params.get("model")
    if "{model}" in task_id:
        if model is not None:
            raise ConfigError(f"{path}: task {task_id!r} has {{model}} in its id and model = {model!r}: "
                              "give one (the id runs every [suite] models entry, the key one model)")
        return ()
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{path}: task {task_id!r} names no model: put {{model}} in its id (one task per "
                          f"[suite] models entry) or give model = \"<name>\" (got {model!r})")
    return (model,)


def expand_models(tasks: list[TaskSpec], models: tuple[str, ...]) -> list[TaskSpec]:
    """Replace the `{model}` placeholder in task ids by each model name (one task per model)."""
    out: list[TaskSpec] = []
    for spec in tasks:
        if "{model}" not in spec.id:
            out.append(spec)
            continue
        for model in models:
            out.append(TaskSpec(spec.id.replace("{model}", model), spec.type,
                                f"{spec.title} ({model})", {**spec.params, "model": model}, (model,)))
    return out


def load_suite(path: str | Path, models: tuple[str, ...] | None = None) -> Suite:
    """Parse a suite TOML file; `models` overrides the suite's `[suite] models` list."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: suite file not found")
    data = load_toml(path, prefixed(ConfigError))
    unknown = sorted(set(data) - SUITE_TABLES)
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)} (known: {', '.join(sorted(SUITE_TABLES))})")
    head = data.get("suite", {})
    if not isinstance(head, Mapping):
        raise ConfigError(f"{path}: 'suite' must be a table ([suite]), got {type(head).__name__}")
    problem = unknown_keys(head, SUITE_HEAD_KEYS)
    if problem:
        raise ConfigError(f"{path}: [suite] has {problem}")
    suite_models = tuple(models or _model_names(head.get("models", []), path))
    for table in ("task", "criterion"):
        entries = data.get(table, [])
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            raise ConfigError(f"{path}: '{table}' must be an array of tables ([[{table}]])")
    tasks: list[TaskSpec] = []
    for index, raw in enumerate(data.get("task", [])):
        if "id" not in raw or "type" not in raw:
            raise ConfigError(f"{path}: task #{index} needs 'id' and 'type'")
        if raw["type"] not in TASK_TYPES:
            raise ConfigError(f"{path}: task {raw['id']!r} has unknown type {raw['type']!r} "
                              f"(known: {', '.join(TASK_TYPES)})")
        params = {k: v for k, v in raw.items() if k not in ("id", "type", "title")}
        _check_task_params(path, str(raw["id"]), str(raw["type"]), params)
        tasks.append(TaskSpec(str(raw["id"]), str(raw["type"]), str(raw.get("title", raw["id"])), params,
                              _fixed_model(path, str(raw["id"]), params)))
    if not tasks:  # a run of it would claim its --out folder and report nothing
        raise ConfigError(f"{path}: defines no task ([[task]] tables)")
    if any("{model}" in t.id for t in tasks) and not suite_models:
        raise ConfigError(f"{path}: tasks use {{model}} but no models are given")
    tasks = expand_models(tasks, suite_models)
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: duplicate task ids")
    criteria = [_criterion(raw, path, i) for i, raw in enumerate(data.get("criterion", []))]
    expanded: list[Criterion] = []
    for crit in criteria:
        if "{model}" in crit.task:
            for model in suite_models:
                expanded.append(Criterion(f"{crit.id}[{model}]", f"{crit.claim} ({model})",
                                          crit.task.replace("{model}", model), crit.metric,
                                          crit.good, crit.bad, crit.unit, crit.source, crit.floor))
        else:
            expanded.append(crit)
    crit_ids = [c.id for c in expanded]
    repeated = sorted({c for c in crit_ids if crit_ids.count(c) > 1})
    if repeated:
        raise ConfigError(f"{path}: duplicate criterion id(s) {', '.join(map(repr, repeated))}")
    for crit in expanded:
        if crit.task not in ids:
            raise ConfigError(f"{path}: criterion {crit.id!r} names unknown task {crit.task!r}")
    name = head.get("name", path.stem)
    if not (isinstance(name, str) and SUITE_NAME.fullmatch(name)):  # the default run folder is reports/<name>
        raise ConfigError(f"{path}: [suite] name must be letters, digits, '.', '_' or '-' (one folder name under "
                          f"reports/), got {name!r}")
    return Suite(name, str(head.get("description", "")),
                 tuple(tasks), tuple(expanded), str(path))
