"""Gate snapshots: what the gate compares, read from one results document (results.json, a baseline,
or `build_report`'s dict), keyed by task and criterion templates (the model name taken out)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from ..checks import finite_number, real_number
from ..errors import NepbenchError

EXIT_PASS, EXIT_REGRESSION, EXIT_BAD_INPUT = 0, 1, 2


class GateInputError(NepbenchError):
    """A results document or baseline the gate cannot read (exit 2)."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class CriterionState:
    """One criterion's verdict in a run, keyed by its template id (model suffix removed).

    Attributes:
        criterion: template id, e.g. "force_rmse" (the suite's "force_rmse[nep89-lisic]").
        task: task template, e.g. "parity-{model}".
        metric: the metric it judges.
        lower_is_better: True when good < bad.
        verdict: "pass", "warn", "fail" or "not_measured".
        value: the measured value (None when not measured); unit is `unit`.
        good / bad / unit: the criterion's bounds and unit.
        reason: why it was not measured, else None.
    """

    criterion: str
    task: str
    metric: str
    lower_is_better: bool
    verdict: str
    value: float | None
    good: float
    bad: float
    unit: str
    reason: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """What the gate compares, taken from one results document.

    Attributes:
        source: where it came from (file or folder), for messages.
        metrics: (task template, metric) → value (None for a null/non-finite value).
        units: (task template, metric) → unit string from the record.
        statuses: task template → record status ("done", "skipped", ...).
        reasons: (task template, metric) → why the task did not measure it, where stated.
        criteria: criterion template id → its state.
        data_sha256: task template → the reference-data hash its record carries (tasks that read
            no reference data are absent).
        models: task template → (model name, model sha256).
        params: task template → the task's parameters without "model" (what was measured, how).
        data_files: task template → the reference-data files its hash covers (records from before
            per-task hashes have none: their hash covers all of reference_data/).
    """

    source: str
    metrics: Mapping[tuple[str, str], float | None]
    units: Mapping[tuple[str, str], str]
    statuses: Mapping[str, str]
    reasons: Mapping[tuple[str, str], str]
    criteria: Mapping[str, CriterionState]
    data_sha256: Mapping[str, str]
    models: Mapping[str, tuple[str, str]]
    params: Mapping[str, Any] = field(default_factory=dict)
    data_files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _task_models(suite: Mapping[str, Any]) -> dict[str, str]:
    """task id → the model string it was expanded with (from the suite's task list)."""
    out = {}
    for task in suite.get("tasks", []) or []:
        if isinstance(task, Mapping) and task.get("models"):
            out[str(task["id"])] = str(task["models"][0])
    return out


def task_template(task_id: str, model: str | None) -> str:
    """`task_id` with its model string replaced by "{model}" (the last occurrence)."""
    if not model or model not in task_id:
        return task_id
    head, _, tail = task_id.rpartition(model)
    return f"{head}{{model}}{tail}"


def criterion_template(criterion_id: str, model: str | None) -> str:
    """`criterion_id` without its "[model]" suffix, e.g. "force_rmse[nep89-lisic]" → "force_rmse"."""
    if model and criterion_id.endswith(f"[{model}]"):
        return criterion_id[: -len(model) - 2]
    return re.sub(r"\[[^\[\]]*\]$", "", criterion_id)


def _table(owner: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """`owner[key]` when it is an object, {} when absent or null; GateInputError naming `where` else."""
    value = owner.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise GateInputError(f"{where}: '{key}' must be an object, got {type(value).__name__}")
    return value


def _metric_value(value: Any, where: str) -> float | None:
    """A recorded metric as a float (None for null or non-finite); GateInputError for anything that
    is not a number: a baseline value of "abc" or true must not pass as 'not compared'."""
    if value is None:
        return None
    if real_number(value) is None:
        raise GateInputError(f"{where}: not a number: {value!r}")
    return finite_number(value)


def snapshot(document: Mapping[str, Any], source: str) -> Snapshot:
    """A `Snapshot` of a results document (results.json, a baseline, or `build_report`'s dict).

    Raises GateInputError (naming `source`) when the document lacks records or verdicts, or when
    one task template holds records of more than one model (the gate compares one model per task).
    """
    records = document.get("records")
    verdicts = document.get("verdicts")
    if not isinstance(records, list) or not isinstance(verdicts, list):
        raise GateInputError(f"{source}: not a nepbench results document (no 'records' and 'verdicts' lists)")
    suite = _table(document, "suite", source)
    if not isinstance(suite.get("tasks", []) or [], list):
        raise GateInputError(f"{source}: 'suite.tasks' must be a list")
    models_of = _task_models(suite)
    metrics: dict[tuple[str, str], float | None] = {}
    units: dict[tuple[str, str], str] = {}
    reasons: dict[tuple[str, str], str] = {}
    statuses: dict[str, str] = {}
    models: dict[str, tuple[str, str]] = {}
    params: dict[str, Any] = {}
    template_of: dict[str, str] = {}
    data: dict[str, str] = {}
    data_files: dict[str, tuple[str, ...]] = {}
    for record in records:
        if not isinstance(record, Mapping) or not isinstance(record.get("task_id"), str):
            raise GateInputError(f"{source}: a record lacks its 'task_id'")
        task_id = record["task_id"]
        where = f"{source}: record {task_id!r}"
        record_metrics = _table(record, "metrics", where)
        record_units = _table(record, "metric_units", where)
        record_reasons = _table(record, "metric_reasons", where)
        provenance = _table(record, "provenance", where)
        model = record.get("model") if isinstance(record.get("model"), Mapping) else None
        template = task_template(task_id, models_of.get(task_id) or (model or {}).get("name"))
        if template in statuses:
            raise GateInputError(f"{source}: task {template!r} holds results of more than one model "
                                 f"(the gate compares one model per task; run the gate suite with one --model)")
        template_of[task_id] = template
        statuses[template] = str(record.get("status"))
        if model:
            models[template] = (str(model.get("name")), str(model.get("sha256")))
        if isinstance(record.get("params"), Mapping):
            params[template] = {k: v for k, v in record["params"].items() if k != "model"}
        for name, value in record_metrics.items():
            metrics[(template, name)] = _metric_value(value, f"{where}: metric {name!r}")
        for name, unit in record_units.items():
            units[(template, name)] = str(unit)
        for name, why in record_reasons.items():
            reasons[(template, name)] = str(why)
        sha = provenance.get("data_sha256")
        if sha:
            data[template] = str(sha)
        files = provenance.get("data_files")
        if isinstance(files, list) and files:
            data_files[template] = tuple(str(f) for f in files)
    criteria = _criteria(verdicts, template_of, models_of, source)
    return Snapshot(source, metrics, units, statuses, reasons, criteria, data, models, params, data_files)


def _criteria(verdicts: list[Any], template_of: Mapping[str, str], models_of: Mapping[str, str],
              source: str) -> dict[str, CriterionState]:
    """The verdicts as criterion template id → `CriterionState` (tasks by their templates)."""
    criteria: dict[str, CriterionState] = {}
    for v in verdicts:
        if not isinstance(v, Mapping) or "criterion" not in v:
            raise GateInputError(f"{source}: a verdict lacks its 'criterion'")
        task = template_of.get(str(v.get("task")), str(v.get("task")))
        model = models_of.get(str(v.get("task"))) or v.get("model")
        key = criterion_template(str(v["criterion"]), model)
        good, bad = finite_number(v.get("good")), finite_number(v.get("bad"))
        if good is None or bad is None:
            raise GateInputError(f"{source}: criterion {v['criterion']!r} has no numeric good/bad bounds")
        criteria[key] = CriterionState(key, task, str(v.get("metric")), good < bad, str(v.get("verdict")),
                                       finite_number(v.get("value")), good, bad, str(v.get("unit") or ""),
                                       v.get("reason"))
    return criteria


def without_tasks(snap: Snapshot, tasks: set[str]) -> Snapshot:
    """`snap` without the given task templates (their metrics, criteria, models and parameters)."""
    def by_task(mapping: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in mapping.items() if k not in tasks}

    def by_metric(mapping: Mapping[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
        return {k: v for k, v in mapping.items() if k[0] not in tasks}

    return replace(snap, metrics=by_metric(snap.metrics), units=by_metric(snap.units),
                   reasons=by_metric(snap.reasons), statuses=by_task(snap.statuses),
                   data_sha256=by_task(snap.data_sha256), models=by_task(snap.models),
                   params=by_task(snap.params), data_files=by_task(snap.data_files),
                   criteria={k: c for k, c in snap.criteria.items() if c.task not in tasks})
