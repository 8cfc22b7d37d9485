"""Suite files (TOML) → `spec.Suite`.

A suite file has a `[suite]` table (name, description, models), `[[task]]` tables (id, type, plus
the parameters the type's `Params` declares) and `[[criterion]]` tables (id, claim, task, metric,
good, bad, unit, source, and optionally floor).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .checks import unknown_keys
from .errors import ConfigError
from .spec import Criterion, Suite, TaskSpec, criterion_from_mapping
from .tasks import TASK_MODULES, task_param_problem, task_params
from .textfiles import load_toml, prefixed

#: The task types a suite may name: the keys of `tasks.TASK_MODULES`.
TASK_TYPES = tuple(TASK_MODULES)
#: Top-level tables a suite file may hold ([gate] is read by `nepbench gate`), and [suite]'s keys.
SUITE_TABLES = frozenset({"suite", "task", "criterion", "gate"})
SUITE_HEAD_KEYS = frozenset({"name", "description", "models"})
#: A suite's name: one folder name (`nepbench run` writes to reports/<name> by default).
SUITE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def _criterion(raw: dict[str, Any], path: Path, index: int) -> Criterion:
    return criterion_from_mapping(raw, f"{path}: criterion {raw.get('id', index)!r}")


def _check_task_params(path: Path, task_id: str, task_type: str, params: Mapping[str, Any]) -> None:
    """ConfigError naming the file and task for a parameter its type does not read (a misspelt
    `splt` would otherwise leave the default in force without a word)."""
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
