"""Criteria → verdicts: bounds in both directions, not-measured reasons, exit codes, bad criteria."""

import math

import pytest

from nepbench.spec import Criterion
from nepbench.errors import ConfigError
from nepbench.report.criteria import Verdict, exit_code, judge, judge_all, score, validate_criterion

LOWER = {"id": "force_rmse", "claim": "Forces near DFT accuracy", "task": "parity-m", "metric": "force_rmse",
         "good": 100.0, "bad": 200.0, "unit": "meV/Å", "source": "paper Table 2"}
HIGHER = {"id": "speedup", "claim": "NEP ~70,000x faster than AIMD", "task": "speed", "metric": "ratio",
          "good": 70000.0, "bad": 7000.0, "unit": "×", "source": "paper abstract"}


def record(task="parity-m", status="done", reason=None, **metrics):
    return {"schema": "nepbench.result/1", "task_id": task, "task_type": "parity", "status": status,
            "reason": reason, "metrics": metrics, "model": {"name": "m", "sha256": "ab" * 32},
            "method": "held-out frames", "provenance": {"hardware": {"cpu_model": "Xeon", "logical_cores": 2,
                                                                     "gpus": []}}}


@pytest.mark.parametrize("value, verdict, expected_score", [
    (50.0, "pass", 1.0), (100.0, "pass", 1.0), (100.0001, "warn", None), (150.0, "warn", 0.5),
    (199.999, "warn", None), (200.0, "fail", 0.0), (400.0, "fail", 0.0),
])
def test_lower_is_better_bounds(value, verdict, expected_score):
    v = judge(LOWER, record(force_rmse=value))
    assert v.verdict == verdict and v.value == value and v.judged
    if expected_score is not None:
        assert v.score == pytest.approx(expected_score)
    assert 0.0 <= v.score <= 1.0 and v.lower_is_better


@pytest.mark.parametrize("value, verdict, expected_score", [
    (1e6, "pass", 1.0), (70000.0, "pass", 1.0), (38500.0, "warn", 0.5), (69999.0, "warn", None),
    (7000.0, "fail", 0.0), (10.0, "fail", 0.0),
])
def test_higher_is_better_bounds(value, verdict, expected_score):
    v = judge(HIGHER, record(task="speed", ratio=value))
    assert v.verdict == verdict and not v.lower_is_better
    if expected_score is not None:
        assert v.score == pytest.approx(expected_score)


def test_score_is_linear_and_clipped():
    assert score(125.0, 100.0, 200.0) == pytest.approx(0.75)
    assert score(-5.0, 100.0, 200.0) == 1.0 and score(1e9, 100.0, 200.0) == 0.0


def test_verdict_carries_method_hardware_model_and_source():
    v = judge(LOWER, record(force_rmse=120.0))
    assert v.method == "held-out frames" and "Xeon (2 logical cores)" in v.hardware and "no GPU" in v.hardware
    assert v.model == "m" and v.source == "paper Table 2" and v.unit == "meV/Å" and v.task == "parity-m"
    assert v.to_dict()["lower_is_better"] is True


@pytest.mark.parametrize("rec, expected, unexpected", [
    (None, "no result record for task 'parity-m'", True),
    (record(status="skipped", reason="no GPU: nvidia-smi not found"), "skipped: no GPU: nvidia-smi not found", False),
    (record(status="not_applicable", reason="model lacks species C"), "not applicable: model lacks species C", False),
    (record(status="failed", reason="SCF not converged"), "task failed: SCF not converged", True),
    # a skip nobody explained is a gap verify must not wave through (exit 2, not 0)
    (record(status="skipped", reason=None), "skipped: no reason given", True),
    (record(status="not_applicable", reason="  "), "not applicable: no reason given", True),
    (record(other=1.0), "reported no metric 'force_rmse' (has: other)", True),
    (record(force_rmse=math.nan), "not finite", True),
    (record(force_rmse=math.inf), "not finite", True),
    (record(force_rmse=None), "null", True),
    (record(force_rmse="12"), "not a number", True),
    (record(force_rmse=True), "not a number", True),
])
def test_not_measured_with_reason(rec, expected, unexpected):
    v = judge(LOWER, rec)
    assert v.verdict == "not_measured" and v.value is None and v.score is None and not v.judged
    assert expected in v.reason
    assert v.unexpected is unexpected


def test_a_record_without_hardware_provenance_does_not_claim_no_gpu():
    rec = record(force_rmse=120.0)
    rec["provenance"] = {}
    assert judge(LOWER, rec).hardware == "hardware not recorded"


def test_missing_metric_explained_by_the_record_is_an_expected_gap():
    rec = record(other=1.0)
    rec["metric_reasons"] = {"force_rmse": "GPU not available"}
    v = judge(LOWER, rec)
    assert v.verdict == "not_measured" and not v.unexpected and "GPU not available" in v.reason
    rec["metric_reasons"] = {"force_rmse": "not measured: CP2K is not installed here"}  # said once, not twice
    assert judge(LOWER, rec).reason == "force_rmse not measured: CP2K is not installed here"


def test_a_metric_the_run_could_not_resolve_is_not_waved_through():
    """A headline held back because the run's own result is broken or unsettled (an expansion that
    did not converge) is not a missing GPU: verify cannot vouch for the claim, so it exits 2."""
    rec = record(other=1.0)
    rec["metric_reasons"] = {"force_rmse": "ΔV/V0 still moved by +0.8 % points: not converged"}
    rec["unresolved_metrics"] = ["force_rmse"]
    v = judge(LOWER, rec)
    assert v.verdict == "not_measured" and v.unexpected and v.reason.startswith("force_rmse unresolved: ΔV/V0")
    assert exit_code([v, judge(HIGHER, record(task="speed", ratio=1e6))]) == 2
    rec["unresolved_metrics"] = ["other_metric"]  # another metric's flag does not spill over
    assert not judge(LOWER, rec).unexpected


def test_judge_all_matches_records_by_task_and_keeps_order():
    verdicts = judge_all([HIGHER, LOWER], [record(force_rmse=90.0), record(task="speed", ratio=8000.0)])
    assert [(v.criterion, v.verdict) for v in verdicts] == [("speedup", "warn"), ("force_rmse", "pass")]
    by_id = judge_all([LOWER], {"parity-m": record(force_rmse=250.0)})
    assert by_id[0].verdict == "fail"


def test_judge_accepts_config_criterion():
    crit = Criterion(**LOWER)
    assert judge(crit, record(force_rmse=100.0)).verdict == "pass"


def _v(verdict, unexpected=False):
    return Verdict("c", "claim", "t", "m", None if verdict == "not_measured" else 1.0, "u", 1.0, 2.0, "s",
                   verdict, unexpected=unexpected)


@pytest.mark.parametrize("kinds, strict, code", [
    (["pass"], False, 0),
    (["pass", "warn"], False, 0),
    (["warn"], False, 0),
    (["pass", "fail"], False, 1),
    (["fail", ("not_measured", True)], False, 1),  # a measured failure is reported first
    ([], False, 2),  # no criteria: nothing to judge
    (["not_measured"], False, 2),  # nothing could be judged
    (["pass", "not_measured"], False, 0),  # explained gap (e.g. no GPU) is printed, not blocking
    (["pass", "not_measured"], True, 2),
    (["pass", ("not_measured", True)], False, 2),  # failed task / missing record / NaN
    (["pass", "warn"], True, 0),
])
def test_exit_codes(kinds, strict, code):
    verdicts = [_v(*k) if isinstance(k, tuple) else _v(k) for k in kinds]
    assert exit_code(verdicts, strict=strict) == code


@pytest.mark.parametrize("change, message", [
    ({"good": 150.0, "bad": 150.0}, "good and bad must differ"),
    ({"good": "fast"}, "finite numbers"),
    ({"bad": None}, "finite numbers"),
    ({"bad": True}, "finite numbers"),
    ({"good": math.nan}, "finite numbers"),
])
def test_bad_criteria_raise_config_error_naming_the_criterion(change, message):
    with pytest.raises(ConfigError, match=message) as err:
        validate_criterion({**LOWER, **change})
    assert "'force_rmse'" in str(err.value)


def test_missing_fields_are_named():
    crit = {k: v for k, v in LOWER.items() if k not in ("metric", "source")}
    with pytest.raises(ConfigError, match=r"criterion 'force_rmse' lacks metric, source"):
        judge(crit, None)


def test_judge_all_validates_before_judging_and_rejects_duplicates():
    with pytest.raises(ConfigError, match="'broken'"):
        judge_all([LOWER, {**LOWER, "id": "broken", "good": "x"}], [])
    with pytest.raises(ConfigError, match="more than once"):
        judge_all([LOWER, LOWER], [])


def test_accuracy_caveat_names_the_model_that_fails_forces_only():
    from nepbench.report.criteria import accuracy_caveats
    failing = judge({**LOWER, "id": "force_rmse[m]"}, record(force_rmse=250.0))
    warned = judge({**LOWER, "id": "force_rmse[m]"}, record(force_rmse=150.0))
    fast = judge({**HIGHER, "id": "speedup[m]", "task": "parity-m"}, record(ratio=1.0))
    notes = accuracy_caveats([failing, fast])
    assert len(notes) == 1 and notes[0].startswith("m fails force_rmse ")
    # a failing speed criterion or a warning on forces is no accuracy caveat
    assert accuracy_caveats([warned, fast]) == []


RDF = {"id": "rdf[m]", "claim": "Reproduces the AIMD g(r)", "task": "md-m", "metric": "rdf_l1_error_max",
       "good": 0.15, "bad": 0.40, "unit": "", "source": "docs", "floor": "rdf_l1_aimd_halves_max"}


def test_floor_beyond_the_pass_bound_is_noted_with_both_numbers():
    from nepbench.report.criteria import floor_caveats
    v = judge(RDF, record(task="md-m", rdf_l1_error_max=0.506, rdf_l1_aimd_halves_max=0.253))
    assert v.verdict == "fail" and v.floor_metric == "rdf_l1_aimd_halves_max" and v.floor_value == 0.253
    notes = floor_caveats([v])
    assert len(notes) == 1 and notes[0].startswith("rdf[m]: ")
    assert "rdf_l1_aimd_halves_max = 0.253" in notes[0] and "(0.15)" in notes[0] and "0.506" in notes[0]
    # the verdict itself is unchanged: the note qualifies it
    assert exit_code([v]) == 1


@pytest.mark.parametrize("metrics", [
    {"rdf_l1_error_max": 0.2, "rdf_l1_aimd_halves_max": 0.10},   # floor below the pass bound
    {"rdf_l1_error_max": 0.2},                                   # floor not measured
    {"rdf_l1_error_max": 0.2, "rdf_l1_aimd_halves_max": float("nan")},
])
def test_no_floor_note_when_the_floor_is_below_the_bound_or_absent(metrics):
    from nepbench.report.criteria import floor_caveats
    v = judge(RDF, record(task="md-m", **metrics))
    assert v.verdict == "warn" and floor_caveats([v]) == []


def test_higher_is_better_floor_counts_below_good():
    from nepbench.report.criteria import floor_caveats
    crit = {**HIGHER, "floor": "ratio_noise"}
    assert floor_caveats([judge(crit, record(task="speed", ratio=50000.0, ratio_noise=60000.0))])
    assert not floor_caveats([judge(crit, record(task="speed", ratio=50000.0, ratio_noise=80000.0))])


def test_suite_floor_survives_model_expansion():
    from pathlib import Path

    from nepbench.suite import load_suite
    suite = load_suite(Path(__file__).resolve().parents[1] / "suites" / "quick.toml", models=("nep89-lisic",))
    rdf = next(c for c in suite.criteria if c.id.startswith("rdf["))
    assert rdf.floor == "rdf_l1_aimd_halves_max"
    assert validate_criterion(rdf.to_dict()).floor == "rdf_l1_aimd_halves_max"


# --------------------------------------------------------------- found by a mutation review


from nepbench.report import criteria  # noqa: E402


@pytest.mark.parametrize("status", ["interrupted", "running", None])
def test_a_record_that_is_not_done_is_not_judged_even_with_metrics(status):
    """Kills criteria.py:149 (the `status != "done"` check dropped: its metrics are judged).

    An unfinished record may hold a partial (here: passing) value; the doc lists anything other
    than done/skipped/not_applicable as a gap nobody explained: not_measured, unexpected, exit 2.
    """
    v = judge(LOWER, record(status=status, force_rmse=50.0))
    assert v.verdict == "not_measured" and v.value is None and v.unexpected
    assert f"task status {status!r}" in v.reason
    assert exit_code([v]) == 2


def test_a_floor_exactly_at_the_pass_bound_is_no_caveat():
    """Kills criteria.py:261 `>` → `>=` (a floor equal to `good` reported as beyond it).

    The caveat is for noise *beyond* the pass bound; bounds are inclusive (score 1 at good → pass),
    so a reference noise of exactly 0.15 still lets a model reach a pass.
    """
    v = judge(RDF, record(task="md-m", rdf_l1_error_max=0.2, rdf_l1_aimd_halves_max=0.15))
    assert v.floor_value == 0.15 and criteria.floor_caveats([v]) == []
    assert judge(RDF, record(task="md-m", rdf_l1_error_max=0.15)).verdict == "pass"
