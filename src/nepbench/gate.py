"""Accuracy regression gate: compare a run's results with a committed baseline (pure functions).

`nepbench verify` asks "does the model meet the claim?" (absolute bounds from the suite). The gate
asks "did this change make anything worse than it was?": every metric a criterion judges (plus any
metric the tolerance table names with a direction) is compared with the same metric in the
baseline, task by task. A run fails the gate when

  * a metric is worse than the baseline by more than its tolerance, max(abs, rel × |baseline|),
    in the metric's own unit ("worse" = higher when the criterion has good < bad, lower when
    good > bad; both bounds inclusive: exactly at the tolerance passes);
  * a criterion flips to "fail" (pass → fail or warn → fail), or was judged in the baseline and
    cannot be judged now;
  * a compared metric is missing or non-finite in the run;
  * a task's reference data differ from the baseline's (its records' `data_sha256`, which the
    runner takes over the files that task type reads, `tasks.TASK_REFERENCE_DATA`: the DFT manifest
    for parity, the AIMD manifest and spec for MD), unless the caller allows it (compare anyway) or
    skips such tasks (`skip_data_changed`: the other tasks are still gated, which is how new AIMD
    frames are rebaselined without letting a parity regression in): a baseline taken on other data
    compares other things.

The model may differ from the baseline's (that is how a new model is checked); it is reported.
Reading files and writing the baseline live in `nepbench.commands.gate`; this module only turns
documents (dicts) into snapshots and snapshots into a `GateResult`.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from .config import finite_number, params_difference, real_number, unknown_keys
from .errors import ConfigError, NepbenchError

BASELINE_SCHEMA = "nepbench.gate-baseline/1"
REPORT_SCHEMA = "nepbench.report/1"
DEFAULT_REL = 0.05
DEFAULT_ABS = 0.0
EXIT_PASS, EXIT_REGRESSION, EXIT_BAD_INPUT = 0, 1, 2
VERDICT_RANK = {"pass": 0, "warn": 1, "fail": 2}
REBASELINE_HINT = ("rebaseline with `make baseline` (after committing the new reference data), "
                   "or pass --allow-data-change to compare anyway")


class GateInputError(NepbenchError):
    """A results document or baseline the gate cannot read (exit 2)."""

    exit_code = EXIT_BAD_INPUT


# ----------------------------------------------------------------------------- tolerances


@dataclass(frozen=True)
class Tolerance:
    """How much worse than the baseline a metric may get, in the metric's own unit.

    Attributes:
        rel: allowed worsening as a fraction of |baseline| (0.05 = 5 %).
        abs: allowed worsening in the metric's unit (e.g. meV/Å for a force RMSE).
        better: "lower" or "higher" for a metric no criterion judges; None to take the
            direction from the criterion (good < bad: lower is better).
    """

    rel: float = DEFAULT_REL
    abs: float = DEFAULT_ABS
    better: str | None = None

    def allowed(self, baseline: float) -> float:
        """Largest allowed worsening for `baseline`: max(abs, rel × |baseline|)."""
        return max(self.abs, self.rel * abs(baseline))

    def describe(self, unit: str = "") -> str:
        """E.g. "max(2 meV/Å, 5 % of baseline)"."""
        unit = f" {unit}" if unit else ""
        return f"max({self.abs:g}{unit}, {100 * self.rel:g} % of baseline)"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rel": self.rel, "abs": self.abs}
        if self.better:
            out["better"] = self.better
        return out


@dataclass(frozen=True)
class Tolerances:
    """Per-metric tolerances with a default for criterion metrics not listed."""

    default: Tolerance = field(default_factory=Tolerance)
    per_metric: Mapping[str, Tolerance] = field(default_factory=dict)

    def for_metric(self, metric: str) -> Tolerance:
        return self.per_metric.get(metric, self.default)

    def to_dict(self) -> dict[str, Any]:
        return {"default_rel": self.default.rel, "default_abs": self.default.abs,
                "tolerance": [{"metric": m, **t.to_dict()} for m, t in sorted(self.per_metric.items())]}


def _finite_nonneg(table: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: {key} must be a finite number >= 0, got {value!r}")
    return float(value)


def parse_tolerances(table: Mapping[str, Any] | None, where: str = "[gate]") -> Tolerances:
    """Tolerances from a suite's `[gate]` table or a baseline's `tolerances` block.

    Format: `default_rel`, `default_abs` and a list `tolerance` of {metric, rel, abs, better}.
    A missing table gives the defaults (5 % relative, 0 absolute). ConfigError names the entry.
    """
    if table is None:
        return Tolerances()
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    problem = unknown_keys(table, ("default_rel", "default_abs", "tolerance"))
    if problem:
        raise ConfigError(f"{where}: {problem}")
    default = Tolerance(_finite_nonneg(table, "default_rel", DEFAULT_REL, where),
                        _finite_nonneg(table, "default_abs", DEFAULT_ABS, where))
    per_metric: dict[str, Tolerance] = {}
    entries = table.get("tolerance", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: 'tolerance' must be a list of tables")
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("metric"), str):
            raise ConfigError(f"{where}: tolerance #{index} needs a 'metric' name")
        here = f"{where} tolerance {entry['metric']!r}"
        problem = unknown_keys(entry, ("metric", "rel", "abs", "better"))
        if problem:
            raise ConfigError(f"{here}: {problem}")
        better = entry.get("better")
        if better not in (None, "lower", "higher"):
            raise ConfigError(f"{here}: better must be 'lower' or 'higher', got {better!r}")
        if entry["metric"] in per_metric:
            raise ConfigError(f"{here} is listed twice")
        per_metric[entry["metric"]] = Tolerance(_finite_nonneg(entry, "rel", default.rel, here),
                                                _finite_nonneg(entry, "abs", default.abs, here), better)
    return Tolerances(default, per_metric)


# ----------------------------------------------------------------------------- snapshots


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
    return Snapshot(source, metrics, units, statuses, reasons, criteria, data, models, params, data_files)


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


# ----------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Comparison:
    """One metric compared with the baseline.

    Attributes:
        task / metric: where the value comes from (task template, metric name).
        baseline / value: the two values (value None when missing or non-finite in the run).
        unit: the metric's unit.
        lower_is_better: direction of "better".
        worse_by: how much worse than the baseline (negative: better), in `unit`; None if missing.
        allowed: the tolerance for this baseline value, in `unit`.
        tolerance: the tolerance rule.
        ok: True when within tolerance (worse_by <= allowed).
    """

    task: str
    metric: str
    baseline: float
    value: float | None
    unit: str
    lower_is_better: bool
    worse_by: float | None
    allowed: float
    tolerance: Tolerance
    ok: bool


@dataclass(frozen=True)
class Finding:
    """A reason the gate fails.

    Attributes:
        kind: "worse", "flip", "unmeasured", "missing", "data", "params" or "unit".
        subject: the metric, criterion id or "data_sha256" it is about.
        message: one line naming the subject, both values and the tolerance or bound.
        where: (task template, metric) the finding concerns, where there is one.
    """

    kind: str
    subject: str
    message: str
    where: tuple[str, str] | None = None


@dataclass
class GateResult:
    """What the gate found: failures (exit 1 when any), notes (printed, never failing), the table."""

    failures: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_REGRESSION


def fmt(value: float | None) -> str:
    """A value as the gate prints it (6 significant digits; "missing" for None)."""
    return "missing" if value is None else f"{value:.6g}"


def _with_unit(value: float | None, unit: str) -> str:
    return fmt(value) + (f" {unit}" if unit and value is not None else "")


def worse_by(baseline: float, value: float, lower_is_better: bool) -> float:
    """How much worse `value` is than `baseline` (> 0 worse, < 0 better), in their unit."""
    return value - baseline if lower_is_better else baseline - value


def compare_metric(task: str, metric: str, baseline: float, value: float | None, lower_is_better: bool,
                   tolerance: Tolerance, unit: str = "") -> Comparison:
    """Compare one metric: within tolerance when worse_by <= max(abs, rel × |baseline|)."""
    allowed = tolerance.allowed(baseline)
    if value is None:
        return Comparison(task, metric, baseline, None, unit, lower_is_better, None, allowed, tolerance, False)
    delta = worse_by(baseline, value, lower_is_better)
    return Comparison(task, metric, baseline, value, unit, lower_is_better, delta, allowed, tolerance,
                      delta <= allowed)


def describe_worse(c: Comparison) -> str:
    """The failure line of a metric beyond tolerance: names the metric, both values and the tolerance."""
    direction = "lower is better" if c.lower_is_better else "higher is better"
    rel = f", {100 * c.worse_by / abs(c.baseline):+.1f} %" if c.baseline and c.worse_by is not None else ""
    return (f"{c.metric} [{c.task}]: {_with_unit(c.value, c.unit)} vs baseline {_with_unit(c.baseline, c.unit)} "
            f"(worse by {fmt(c.worse_by)}{rel}) beyond the tolerance {_with_unit(c.allowed, c.unit)} = "
            f"{c.tolerance.describe(c.unit)}; {direction}")


def null_gated_metrics(snap: Snapshot, tolerances: Tolerances) -> list[str]:
    """"metric [task]" for each metric the gate would compare whose value in `snap` is null or
    non-finite: a baseline holding one would leave that metric unguarded."""
    return [f"{metric} [{task}]" for (task, metric) in sorted(metric_rules(snap, tolerances))
            if (task, metric) in snap.metrics and snap.metrics[(task, metric)] is None]


def metric_rules(baseline: Snapshot, tolerances: Tolerances) -> dict[tuple[str, str], bool]:
    """(task template, metric) → lower_is_better for every metric the gate compares.

    Criterion metrics take the criterion's direction (good < bad: lower is better); metrics
    named in the tolerance table with `better` are compared in every task that reports them.
    """
    rules: dict[tuple[str, str], bool] = {}
    for crit in baseline.criteria.values():
        rules[(crit.task, crit.metric)] = crit.lower_is_better
    for metric, tol in tolerances.per_metric.items():
        if tol.better is None:
            continue
        for task, name in baseline.metrics:
            if name == metric:
                rules.setdefault((task, name), tol.better == "lower")
    return rules


def check_data(baseline: Snapshot, run: Snapshot, allow_data_change: bool, result: GateResult,
               skip_data_changed: bool = False) -> set[str]:
    """Per task: fail when its reference-data hash differs from the baseline's; with
    `allow_data_change` note it and compare anyway; with `skip_data_changed` note it and return the
    task, which the caller leaves out of the comparison. Returns the tasks to leave out."""
    skipped: set[str] = set()
    for task in sorted(set(baseline.statuses) & set(run.statuses)):
        base, now = baseline.data_sha256.get(task), run.data_sha256.get(task)
        if base == now:
            continue
        if base is None or now is None:
            result.notes.append(f"[{task}]: no reference-data sha256 recorded on one side: data identity not checked")
            continue
        files = ", ".join(run.data_files.get(task, ())) or "reference_data/"
        text = (f"[{task}]: reference data ({files}) differ: the baseline {baseline.source} was taken on data "
                f"sha256 {base[:12]}, this run on {now[:12]}")
        if task not in baseline.data_files:
            text += (" (the baseline predates per-task data hashes: its hash covers all of reference_data/, so "
                     "it differs even where this task's files did not change)")
        if allow_data_change:
            result.notes.append(f"{text}; compared anyway (--allow-data-change): differences may come from the data")
        elif skip_data_changed:
            result.notes.append(f"{text}; not compared (--skip-data-changed)")
            skipped.add(task)
        else:
            result.failures.append(Finding("data", task, f"{text}; {REBASELINE_HINT}"))
    return skipped


def check_models(baseline: Snapshot, run: Snapshot, result: GateResult) -> None:
    """Note every task whose model differs from the baseline's (expected when testing a new model)."""
    for task, (name, sha) in sorted(run.models.items()):
        base = baseline.models.get(task)
        if base and base[1] != sha:
            result.notes.append(f"{task}: model {name} (sha256 {sha[:12]}) compared with the baseline's "
                                f"{base[0]} (sha256 {base[1][:12]})")


def check_params(baseline: Snapshot, run: Snapshot, result: GateResult) -> None:
    """Fail when a task ran with other parameters than the baseline's (another split, a shorter
    run): its numbers are not comparable, and a better-looking one proves nothing."""
    for task in sorted(set(baseline.params) & set(run.params)):
        shown = params_difference(baseline.params[task], run.params[task])
        if shown:
            result.failures.append(Finding("params", task, f"[{task}]: parameters differ from the baseline's "
                                           f"({shown}); rebaseline (`make baseline`) if intended"))


def check_criteria(baseline: Snapshot, run: Snapshot, result: GateResult) -> None:
    """Fail on a criterion that flips to "fail" or is no longer judged; note pass → warn."""
    for key, base in sorted(baseline.criteria.items()):
        now = run.criteria.get(key)
        if base.verdict not in VERDICT_RANK:
            continue  # not judged in the baseline: nothing to hold
        where = f"criterion {key} ({base.metric} [{base.task}])"
        if now is None or now.verdict not in VERDICT_RANK:
            why = "absent from this run" if now is None else (now.reason or "not measured")
            result.failures.append(Finding("unmeasured", key, f"{where}: {base.verdict} in the baseline "
                                           f"({_with_unit(base.value, base.unit)}), not judged now: {why}",
                                           (base.task, base.metric)))
            continue
        if now.verdict == "fail" and base.verdict != "fail":
            bound = f"bad bound {fmt(now.bad)} {now.unit}".rstrip()
            result.failures.append(Finding("flip", key, f"{where}: {base.verdict} → fail: "
                                           f"{_with_unit(now.value, now.unit)} vs baseline "
                                           f"{_with_unit(base.value, base.unit)} ({bound})", (base.task, base.metric)))
        elif VERDICT_RANK[now.verdict] > VERDICT_RANK[base.verdict]:
            result.notes.append(f"{where}: {base.verdict} → {now.verdict} "
                                f"({_with_unit(now.value, now.unit)} vs baseline {_with_unit(base.value, base.unit)})")


def check_metrics(baseline: Snapshot, run: Snapshot, tolerances: Tolerances, result: GateResult) -> None:
    """Compare every gated metric; fail when worse beyond tolerance, missing or non-finite."""
    unmeasured = {f.where for f in result.failures if f.kind == "unmeasured"}
    for (task, metric), lower in sorted(metric_rules(baseline, tolerances).items()):
        if (task, metric) not in baseline.metrics:
            continue  # the baseline did not measure it either (e.g. skipped there): nothing to hold
        base = baseline.metrics[(task, metric)]
        if base is None:  # a gated metric must have a value to hold: else it would be off for good
            result.failures.append(Finding("baseline", metric, f"{metric} [{task}]: null or non-finite in the "
                                           "baseline, so nothing holds it; rebaseline from a run that measures it "
                                           "(`make baseline`)", (task, metric)))
            continue
        unit = baseline.units.get((task, metric)) or run.units.get((task, metric)) or _criterion_unit(baseline, task, metric)
        run_unit = run.units.get((task, metric))
        if baseline.units.get((task, metric)) and run_unit and run_unit != baseline.units[(task, metric)]:
            result.failures.append(Finding("unit", metric, f"{metric} [{task}]: reported in {run_unit!r}, the "
                                           f"baseline in {baseline.units[(task, metric)]!r}: not comparable",
                                           (task, metric)))
            continue
        value = run.metrics.get((task, metric))
        comparison = compare_metric(task, metric, base, value, lower, tolerances.for_metric(metric), unit)
        result.comparisons.append(comparison)
        if comparison.ok:
            continue
        if value is None and (task, metric) in unmeasured:
            continue  # already reported: its criterion cannot be judged now
        if value is None:
            status = run.statuses.get(task)
            why = (run.reasons.get((task, metric)) or
                   ("task absent from this run" if status is None else
                    "null or non-finite" if (task, metric) in run.metrics else f"task {status}, metric not reported"))
            result.failures.append(Finding("missing", metric, f"{metric} [{task}]: missing in this run ({why}); "
                                           f"baseline {_with_unit(base, unit)}", (task, metric)))
        else:
            result.failures.append(Finding("worse", metric, describe_worse(comparison), (task, metric)))
    gated_in_run = metric_rules(run, tolerances)
    for key in sorted(set(gated_in_run) & (set(run.metrics) - set(baseline.metrics))):
        result.notes.append(f"{key[1]} [{key[0]}]: new in this run, no baseline value")


def _criterion_unit(snapshot_: Snapshot, task: str, metric: str) -> str:
    for crit in snapshot_.criteria.values():
        if crit.task == task and crit.metric == metric:
            return crit.unit
    return ""


def compare(baseline: Snapshot, run: Snapshot, tolerances: Tolerances,
            allow_data_change: bool = False, skip_data_changed: bool = False) -> GateResult:
    """Judge `run` against `baseline`: data identity, criteria flips, metrics within tolerance.

    With `skip_data_changed`, tasks whose reference data differ are noted and left out; the others
    are judged as usual. It cannot be combined with `allow_data_change` (ValueError).
    """
    if allow_data_change and skip_data_changed:
        raise ValueError("allow_data_change and skip_data_changed exclude each other")
    result = GateResult()
    skipped = check_data(baseline, run, allow_data_change, result, skip_data_changed)
    if skipped:
        baseline, run = without_tasks(baseline, skipped), without_tasks(run, skipped)
        if not set(baseline.statuses) & set(run.statuses):
            result.failures.append(Finding(
                "data", "every task", "--skip-data-changed left nothing to compare: every task's reference data "
                "differ from the baseline's; look at the differences with --allow-data-change, then rebaseline "
                "(`make baseline ACCEPT_REGRESSION=1`)"))
    check_models(baseline, run, result)
    check_params(baseline, run, result)
    check_criteria(baseline, run, result)
    check_metrics(baseline, run, tolerances, result)
    return result


# ----------------------------------------------------------------------------- baseline document


def baseline_document(report: Mapping[str, Any], tolerances: Tolerances, source_run: str,
                      reference: Mapping[str, Any] | None = None,
                      now: _dt.datetime | None = None) -> dict[str, Any]:
    """The baseline: the run's results document without plot series, plus a `gate` block.

    The `gate` block records the schema, when and from which run it was taken, the reference-data
    hashes the records carry, per task template (`data_sha256`), `reference` (e.g.
    reference.data_sha256 of the DFT manifest and its frame count, where known), the models with
    their sha256, and the tolerances.
    """
    snap = snapshot(report, source_run)
    records = [{k: v for k, v in r.items() if k != "series"} for r in report["records"]]
    stamp = (now or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds")
    gate = {
        "schema": BASELINE_SCHEMA, "created_utc": stamp, "source_run": source_run,
        "data_sha256": dict(sorted(snap.data_sha256.items())),
        "reference": dict(reference or {}),
        "models": [{"task": t, "name": n, "sha256": s} for t, (n, s) in sorted(snap.models.items())],
        "tolerances": tolerances.to_dict(),
        "nepbench_commit": _first_commit(report),
    }
    keep = ("schema", "nepbench_version", "created_utc", "title", "suite", "verdicts", "summary", "provenance")
    return {**{k: report[k] for k in keep if k in report}, "records": records, "gate": gate}


def _first_commit(report: Mapping[str, Any]) -> str | None:
    for item in (report.get("provenance") or {}).get("nepbench") or []:
        if isinstance(item, Mapping) and item.get("commit"):
            return str(item["commit"])
    return None


def baseline_tolerances(document: Mapping[str, Any], source: str) -> Tolerances | None:
    """The tolerances a baseline was written with, or None for a plain results.json."""
    gate = document.get("gate")
    if not isinstance(gate, Mapping):
        return None
    try:
        return parse_tolerances(gate.get("tolerances"), f"{source}: gate.tolerances")
    except ConfigError as exc:
        raise GateInputError(str(exc)) from None


# ----------------------------------------------------------------------------- text


def result_lines(result: GateResult, baseline: Snapshot, run: Snapshot) -> list[str]:
    """Human-readable lines: the comparison table, notes, failures and the verdict."""
    lines = [f"gate: {run.source} vs baseline {baseline.source}"]
    for c in result.comparisons:
        mark = "ok  " if c.ok else "FAIL"
        arrow = "↓" if c.lower_is_better else "↑"
        lines.append(f"  {mark} {c.metric} [{c.task}] {arrow}: {fmt(c.value)} vs {fmt(c.baseline)} {c.unit} "
                     f"(worse by {fmt(c.worse_by)}, allowed {fmt(c.allowed)})".rstrip())
    lines += [f"  note: {n}" for n in result.notes]
    lines += [f"  REGRESSION: {f.message}" for f in result.failures]
    verdict = "pass" if result.passed else f"{len(result.failures)} regression(s)"
    lines.append(f"gate: exit {result.exit_code} ({verdict})")
    return lines
