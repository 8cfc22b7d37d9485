"""Criteria → verdicts: pure functions that judge one measured metric against its good/bad bounds.

A criterion (from the suite file) bounds one metric of one task: lower is better when good < bad,
higher is better when good > bad. The score maps the value linearly from `bad` (0) to `good` (1),
clipped to [0, 1]. Both bounds are inclusive:

    score == 1  (at least as good as `good`)  → "pass"
    0 < score < 1                             → "warn"
    score == 0  (as bad as `bad`, or worse)   → "fail"

A criterion that cannot be judged is "not_measured", with the reason: no record for its task, the
task skipped (the record's reason, e.g. "no GPU: nvidia-smi not found"), not applicable, failed,
the metric absent, non-numeric or non-finite.

Exit codes of `nepbench verify` (see `exit_code`):

    1  any criterion fails (a measured regression is reported first);
    2  nothing could be judged, or a gap nobody explained (a task failed, has no record, lacks the
       metric without saying why, or reported NaN/inf), or `strict` and any criterion not measured;
    0  otherwise ("warn" counts as a pass; explained gaps such as "skipped: no GPU" are printed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

from ..checks import finite_number, real_number

from ..spec import Criterion, criterion_from_mapping
from ..errors import ConfigError

VERDICTS = ("pass", "warn", "fail", "not_measured")
EXIT_OK, EXIT_FAIL, EXIT_CANNOT_JUDGE = 0, 1, 2


@dataclass(frozen=True)
class Verdict:
    """The judgement of one criterion.

    Attributes:
        criterion: the criterion id.
        claim: the claim it tests, in words.
        task / metric: where the value comes from.
        value: the measured value, or None when not measured.
        unit: unit of value, good and bad.
        good / bad: the bounds (score 1 at good, 0 at bad).
        source: where the bounds come from.
        verdict: "pass", "warn", "fail" or "not_measured".
        score: linear score in [0, 1] between bad and good, None when not measured.
        reason: why it was not measured (one line), else None.
        method: how the value was measured (the record's method line).
        hardware: where it was measured (CPU model, cores, GPUs).
        model: the model's name, or None for model-free tasks.
        task_status: the record's status, or None when there is no record.
        unexpected: True for a gap nobody explained (failed task, no record, metric silently
            absent, NaN/inf) or one the run could not resolve (its record's `unresolved_metrics`:
            not converged, a broken measurement): the gate cannot vouch for the claim, so verify
            exits 2.
        floor_metric / floor_value: the criterion's `floor` metric and its value in the record
            (the reference's own sampling noise, in `unit`), or "" / None.
    """

    criterion: str
    claim: str
    task: str
    metric: str
    value: float | None
    unit: str
    good: float
    bad: float
    source: str
    verdict: str
    score: float | None = None
    reason: str | None = None
    method: str = ""
    hardware: str = ""
    model: str | None = None
    task_status: str | None = None
    unexpected: bool = False
    floor_metric: str = ""
    floor_value: float | None = None

    @property
    def lower_is_better(self) -> bool:
        return self.good < self.bad

    @property
    def judged(self) -> bool:
        """True when a value was compared with the bounds (pass, warn or fail)."""
        return self.verdict != "not_measured"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lower_is_better": self.lower_is_better}


def validate_criterion(raw: Criterion | Mapping[str, Any]) -> Criterion:
    """A checked `Criterion` from a dict (suite.json) or a `Criterion` (`config.criterion_from_mapping`).

    Raises:
        ConfigError: a field is missing, good or bad is not a finite number, or good == bad;
            the message names the criterion.
    """
    data = raw.to_dict() if isinstance(raw, Criterion) else raw
    name = data.get("id", "?") if isinstance(data, Mapping) else data
    return criterion_from_mapping(data, f"criterion {name!r}")


def score(value: float, good: float, bad: float) -> float:
    """Linear score of `value`: 0 at `bad`, 1 at `good`, clipped to [0, 1]."""
    return min(1.0, max(0.0, (value - bad) / (good - bad)))


def verdict_of_score(s: float) -> str:
    """"pass" at 1, "fail" at 0, "warn" between (both bounds inclusive)."""
    if s >= 1.0:
        return "pass"
    if s <= 0.0:
        return "fail"
    return "warn"


def hardware_summary(record: Mapping[str, Any] | None) -> str:
    """One line: CPU model, logical cores and GPUs from a record's provenance."""
    if not record:
        return ""
    hw = (record.get("provenance") or {}).get("hardware") or {}
    if not isinstance(hw, Mapping):
        return str(hw)
    if not hw:
        return "hardware not recorded"  # not "no GPU": nothing says what ran it
    parts = []
    if hw.get("cpu_model"):
        cores = hw.get("logical_cores")
        parts.append(f"{hw['cpu_model']}" + (f" ({cores} logical cores)" if cores else ""))
    gpus = hw.get("gpus") or []
    parts.append("GPU: " + ", ".join(map(str, gpus)) if gpus else "no GPU")
    return "; ".join(parts)


def _unmeasured_reason(crit: Criterion, record: Mapping[str, Any] | None) -> tuple[str, bool] | None:
    """(reason, unexpected) when the record cannot give the criterion a value, else None."""
    if record is None:
        return f"no result record for task {crit.task!r}", True
    status = record.get("status")
    given = str(record.get("reason") or "").strip()
    reason = given or "no reason given"
    if status in ("skipped", "not_applicable"):  # explained only when a reason is given
        return f"{'skipped' if status == 'skipped' else 'not applicable'}: {reason}", not given
    if status == "failed":
        return f"task failed: {reason}", True
    if status != "done":
        return f"task status {status!r}", True
    metrics = record.get("metrics") or {}
    if crit.metric not in metrics:
        explained = (record.get("metric_reasons") or {}).get(crit.metric)
        if explained:  # a run that could not resolve its own value blocks; a missing GPU does not
            unresolved = crit.metric in (record.get("unresolved_metrics") or ())
            state = "unresolved" if unresolved else "not measured"
            return f"{crit.metric} {state}: {explained.removeprefix(f'{state}: ')}", unresolved  # said once
        have = ", ".join(sorted(metrics)) or "none"
        return f"task {crit.task!r} reported no metric {crit.metric!r} (has: {have})", True
    if metrics[crit.metric] is None:
        return f"metric {crit.metric!r} is null (NaN or inf in the run)", True
    value = real_number(metrics[crit.metric])
    if value is None:
        return f"metric {crit.metric!r} is not a number ({metrics[crit.metric]!r})", True
    if not math.isfinite(value):
        return f"metric {crit.metric!r} is not finite ({value})", True
    return None


def judge(criterion: Criterion | Mapping[str, Any], record: Mapping[str, Any] | None) -> Verdict:
    """Judge one criterion against its task's result record (None when the task has no record)."""
    crit = validate_criterion(criterion)
    model = (record or {}).get("model") or {}
    common = dict(criterion=crit.id, claim=crit.claim, task=crit.task, metric=crit.metric,
                  unit=crit.unit, good=crit.good, bad=crit.bad, source=crit.source,
                  method=str((record or {}).get("method") or ""), hardware=hardware_summary(record),
                  model=model.get("name") if isinstance(model, Mapping) else None,
                  task_status=(record or {}).get("status"))
    gap = _unmeasured_reason(crit, record)
    if gap is not None:
        reason, unexpected = gap
        return Verdict(value=None, verdict="not_measured", reason=reason, unexpected=unexpected, **common)
    value = float(record["metrics"][crit.metric])  # type: ignore[index]
    s = score(value, crit.good, crit.bad)
    floor = finite_number(record["metrics"].get(crit.floor)) if crit.floor else None  # type: ignore[index]
    return Verdict(value=value, verdict=verdict_of_score(s), score=s, floor_metric=crit.floor,
                   floor_value=floor, **common)


def judge_all(criteria: Iterable[Criterion | Mapping[str, Any]],
              records: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]) -> list[Verdict]:
    """Judge every criterion (in order) against the records, matched by task id.

    `records` is a list of result records or a mapping task_id → record. All criteria are validated
    first, so a malformed suite raises ConfigError before anything is judged.
    """
    checked = [validate_criterion(c) for c in criteria]
    ids = [c.id for c in checked]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"criterion {duplicates[0]!r} is defined more than once")
    by_task = records if isinstance(records, Mapping) else {r.get("task_id"): r for r in records}
    return [judge(c, by_task.get(c.task)) for c in checked]


def exit_code(verdicts: Sequence[Verdict], strict: bool = False) -> int:
    """0 all judged criteria pass (warn counts as pass), 1 any fails, 2 cannot judge.

    2 ("cannot judge") when nothing was judged at all, when a gap is unexpected (a failed task, a
    missing record, a silently missing or non-finite metric, a metric the run could not resolve), or when `strict` and any criterion is
    not measured. A fail wins over every reason for 2.
    """
    if any(v.verdict == "fail" for v in verdicts):
        return EXIT_FAIL
    if not any(v.judged for v in verdicts):
        return EXIT_CANNOT_JUDGE
    if any(v.unexpected for v in verdicts):
        return EXIT_CANNOT_JUDGE
    if strict and any(not v.judged for v in verdicts):
        return EXIT_CANNOT_JUDGE
    return EXIT_OK


def counts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """How many verdicts of each kind, in VERDICTS order."""
    return {kind: sum(v.verdict == kind for v in verdicts) for kind in VERDICTS}


#: Criteria (by base id, before "[model]") that say whether a model is near DFT at all.
ACCURACY_CRITERIA = ("force_rmse", "energy_rmse")


def accuracy_caveats(verdicts: Sequence[Verdict]) -> list[str]:
    """One line per model that fails an accuracy criterion, warning that its other verdicts rest on it.

    Speed, expansion and MD verdicts of a model are measured with that model; when its forces or
    energies fail against DFT, a "pass" elsewhere says nothing about the physics. Returns [] when
    every model passes or warns on the accuracy criteria (or none were measured).
    """
    failing: dict[str, list[str]] = {}
    for v in verdicts:
        base = v.criterion.split("[", 1)[0]
        if base in ACCURACY_CRITERIA and v.verdict == "fail":
            failing.setdefault(v.model or "the model", []).append(base)
    return [f"{model} fails {', '.join(names)} against the DFT reference: its other verdicts (speed, MD, "
            f"expansion) are measured with a potential that is not near-DFT on these frames"
            for model, names in failing.items()]


def floor_caveats(verdicts: Sequence[Verdict]) -> list[str]:
    """One line per judged criterion whose reference noise alone is beyond its pass bound.

    The criterion's `floor` metric measures how far the reference disagrees with itself (say, the
    AIMD g(r) of its first half against its second; each half has half the samples, so it errs
    high). When that is worse than `good`, a pass is hardly within reach however good the model is,
    and a fail near the floor is partly noise: the line gives both numbers and says that a longer
    reference is what would sharpen the verdict.
    """
    lines = []
    for v in verdicts:
        if not v.judged or v.floor_value is None or v.value is None:
            continue
        beyond = v.floor_value > v.good if v.lower_is_better else v.floor_value < v.good
        if beyond:
            unit = f" {v.unit}" if v.unit else ""
            lines.append(f"{v.criterion}: the reference's own sampling noise ({v.floor_metric} = "
                         f"{v.floor_value:.3g}{unit}) is beyond the pass bound ({v.good:g}{unit}): the "
                         f"verdict is limited by the reference's length as much as by the model "
                         f"(measured: {v.value:.3g}{unit})")
    return lines
