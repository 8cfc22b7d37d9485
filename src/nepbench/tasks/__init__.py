"""Tasks: engine runs + metrics → a `TaskOutcome`. The runner adds provenance and caching."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import TaskSpec


@dataclass
class TaskOutcome:
    """What a task measured.

    Attributes:
        status: "done", "skipped" (a program or GPU is missing), "not_applicable" (e.g. the model
            lacks a species of the data) or "failed".
        reason: why it is not "done" (one line), else None.
        metrics: flat scalar metrics, units in the names.
        metric_units: unit of each metric for display.
        series: plot data (see report/ for the shapes by task type).
        method: one line saying how the numbers were measured.
        engines: engine name → version string for provenance.
        seed: the seed used.
        metric_reasons: metric name → why it was not measured (e.g. "no GPU: ..."), so the
            report shows an explained gap instead of a missing number.
        unresolved_metrics: the metrics of `metric_reasons` left out because the run's own result
            cannot speak for them (not converged, a broken measurement, the model's value not
            resolved), as opposed to a gap in what was available (no GPU, reference too short):
            `nepbench verify` counts a criterion on one as "cannot judge" (exit 2), not as explained.
    """

    status: str
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metric_units: dict[str, str] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    engines: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    metric_reasons: dict[str, str] = field(default_factory=dict)
    unresolved_metrics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unexplained = sorted(set(self.unresolved_metrics) - set(self.metric_reasons))
        if unexplained:
            raise ValueError(f"unresolved metrics without a reason: {', '.join(unexplained)}")


@dataclass(frozen=True)
class TaskContext:
    """What a task may use besides its parameters.

    Attributes:
        work_dir: scratch folder for this task (engine files), kept after the run.
        reference_dir: the reference set folder (reference_data/).
        model_path / model_name / model_sha256: the model under test, or None for model-free tasks.
        quick: True for the CPU-sized variant.
        shared: state the tasks of one `run_suite` call share (one dict per call, so nothing outlives
            the invocation or crosses machines), e.g. the throughput task's CP2K timings.
    """

    work_dir: Path
    reference_dir: Path
    model_path: Path | None = None
    model_name: str | None = None
    model_sha256: str | None = None
    shared: dict[str, Any] = field(default_factory=dict)


TaskFunction = Callable[[TaskSpec, TaskContext], TaskOutcome]


#: Task type → (module under nepbench.tasks, its run function). Each module also declares
#: `TASK_PARAMS`, the parameters its tasks read; suite files are checked against them when loaded.
TASK_MODULES = {
    "parity": ("accuracy", "run_parity"),
    "md_accuracy": ("md_accuracy", "run_md_accuracy"),
    "throughput": ("throughput", "run_throughput"),
    "expansion": ("lithiation", "run_expansion"),
}


#: Task type → the reference-data files (under reference_data/) its results depend on: a record's
#: `data_sha256` hashes these alone, so new AIMD frames leave parity's records, cache and gate
#: comparison alone, and new DFT labels leave the MD comparison's. A type not listed depends on all
#: of them (`REFERENCE_DATA_ALL`).
TASK_REFERENCE_DATA: dict[str, tuple[str, ...]] = {
    "parity": ("dft/manifest.json",),
    "md_accuracy": ("aimd/manifest.json", "aimd.toml"),
    "throughput": (),
    "expansion": (),
}
REFERENCE_DATA_ALL = ("dft/manifest.json", "aimd/manifest.json", "aimd.toml")


def _task_module(task_type: str) -> tuple[Any, str]:
    import importlib

    if task_type not in TASK_MODULES:
        raise KeyError(task_type)
    module, function = TASK_MODULES[task_type]
    return importlib.import_module(f"{__name__}.{module}"), function


def task_params(task_type: str) -> frozenset[str]:
    """The parameters tasks of `task_type` read (besides "model", which model expansion adds)."""
    return frozenset(_task_module(task_type)[0].TASK_PARAMS)


def task_param_problem(task_type: str, params: dict[str, Any]) -> str | None:
    """What is wrong with a task's parameter values (its module's `check_params`), or None.

    Checked when the suite is loaded, so a bad value is refused before anything runs or is written,
    not minutes later by the task (which would replace an earlier finished record with a failure).
    """
    check = getattr(_task_module(task_type)[0], "check_params", None)
    return check(params) if check else None


def task_function(task_type: str) -> TaskFunction:
    """The function that runs tasks of `task_type` (imported lazily)."""
    module, function = _task_module(task_type)
    return getattr(module, function)
