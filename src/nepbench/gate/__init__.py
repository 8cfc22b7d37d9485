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
Reading files and writing the baseline live in `nepbench.commands.gate`; this package only turns
documents (dicts) into snapshots and snapshots into a `GateResult`.

Package layout (one job per module): `tolerances` (Tolerance(s), the `[gate]` table), `snapshots`
(results document → Snapshot, GateInputError), `comparison` (one metric vs its baseline, Finding,
GateResult and its printed lines), `rules` (the checks above and `compare`), `baseline` (the
baseline document). Everything is importable from `nepbench.gate`.
"""

from __future__ import annotations

from .baseline import BASELINE_SCHEMA, REPORT_SCHEMA, baseline_document, baseline_tolerances
from .comparison import Comparison, Finding, GateResult, compare_metric, describe_worse, fmt, result_lines, worse_by
from .rules import (
    REBASELINE_HINT,
    VERDICT_RANK,
    check_criteria,
    check_data,
    check_metrics,
    check_models,
    check_params,
    compare,
    metric_rules,
    null_gated_metrics,
)
from .snapshots import (
    EXIT_BAD_INPUT,
    EXIT_PASS,
    EXIT_REGRESSION,
    CriterionState,
    GateInputError,
    Snapshot,
    criterion_template,
    snapshot,
    task_template,
    without_tasks,
)
from .tolerances import DEFAULT_ABS, DEFAULT_REL, Tolerance, Tolerances, parse_tolerances

__all__ = [
    "BASELINE_SCHEMA", "DEFAULT_ABS", "DEFAULT_REL", "EXIT_BAD_INPUT", "EXIT_PASS", "EXIT_REGRESSION",
    "REBASELINE_HINT", "REPORT_SCHEMA", "VERDICT_RANK",
    "Comparison", "CriterionState", "Finding", "GateInputError", "GateResult", "Snapshot", "Tolerance", "Tolerances",
    "baseline_document", "baseline_tolerances", "check_criteria", "check_data", "check_metrics", "check_models",
    "check_params", "compare", "compare_metric", "criterion_template", "describe_worse", "fmt", "metric_rules",
    "null_gated_metrics", "parse_tolerances", "result_lines", "snapshot", "task_template", "without_tasks",
    "worse_by",
]
