"""Gate comparison results: one metric against its baseline value (`compare_metric`), the findings
that fail the gate, the `GateResult`, and the lines that print it."""

from __future__ import annotations

from dataclasses import dataclass, field

from .snapshots import EXIT_PASS, EXIT_REGRESSION, Snapshot
from .tolerances import Tolerance


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


def with_unit(value: float | None, unit: str) -> str:
    """`fmt(value)` followed by its unit (none after "missing")."""
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
    return (f"{c.metric} [{c.task}]: {with_unit(c.value, c.unit)} vs baseline {with_unit(c.baseline, c.unit)} "
            f"(worse by {fmt(c.worse_by)}{rel}) beyond the tolerance {with_unit(c.allowed, c.unit)} = "
            f"{c.tolerance.describe(c.unit)}; {direction}")


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
