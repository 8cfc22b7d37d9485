"""Gate rules: judge a run's snapshot against the baseline's (reference data, models, parameters,
criterion flips, every gated metric within tolerance) into a `GateResult`."""

from __future__ import annotations

from ..checks import params_difference
from .comparison import Finding, GateResult, compare_metric, describe_worse, fmt, with_unit
from .snapshots import Snapshot, without_tasks
from .tolerances import Tolerances

VERDICT_RANK = {"pass": 0, "warn": 1, "fail": 2}
REBASELINE_HINT = ("rebaseline with `make baseline` (after committing the new reference data), "
                   "or pass --allow-data-change to compare anyway")


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
                                           f"({with_unit(base.value, base.unit)}), not judged now: {why}",
                                           (base.task, base.metric)))
            continue
        if now.verdict == "fail" and base.verdict != "fail":
            bound = f"bad bound {fmt(now.bad)} {now.unit}".rstrip()
            result.failures.append(Finding("flip", key, f"{where}: {base.verdict} → fail: "
                                           f"{with_unit(now.value, now.unit)} vs baseline "
                                           f"{with_unit(base.value, base.unit)} ({bound})", (base.task, base.metric)))
        elif VERDICT_RANK[now.verdict] > VERDICT_RANK[base.verdict]:
            result.notes.append(f"{where}: {base.verdict} → {now.verdict} "
                                f"({with_unit(now.value, now.unit)} vs baseline {with_unit(base.value, base.unit)})")


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
                                           f"baseline {with_unit(base, unit)}", (task, metric)))
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
