"""Tasks: engine runs + metrics → a `TaskOutcome`. The runner adds provenance and caching."""

from __future__ import annotations

import os

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..spec import TaskSpec


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


#: Where a task states the stage it is in for the runner's progress line (`runner.Progress`):
#: `ctx.shared[STAGE_KEY] = "relaxation 2/6 (t = 0.8 nm, seed 1)"`; the runner clears it per task.
STAGE_KEY = "progress_stage"


def set_stage(shared: dict[str, Any], text: str) -> None:
    """State the task's current stage (one short line) for the progress line."""
    shared[STAGE_KEY] = text


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
        model_source: the registry record's source of the model (kind "ase": an ASE-calculator
            comparator, whose `model_path` is its weights file); empty for a NEP given as a file.
        model_species: the species of the model's registry record (an ASE model has no nep.txt
            header to read them from); empty where the header says.
    """

    work_dir: Path
    reference_dir: Path
    model_path: Path | None = None
    model_name: str | None = None
    model_sha256: str | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    model_source: dict[str, Any] = field(default_factory=dict)
    model_species: tuple[str, ...] = ()

    @property
    def model_kind(self) -> str:
        """"ase" for an ASE-calculator model (a comparator), else "nep"."""
        return "ase" if self.model_source.get("kind") == "ase" else "nep"

    def model_info(self) -> Any:
        """The model under test as a `models.ModelInfo` (species read from the nep.txt header of a NEP)."""
        from ..models import ModelInfo, read_nep_header

        if self.model_path is None:
            raise ValueError("this task has no model")
        if self.model_kind == "ase":
            species, version = tuple(self.model_species), "ase"
        else:
            version, species = read_nep_header(self.model_path)
        return ModelInfo(name=self.model_name or self.model_path.name, path=self.model_path,
                         sha256=self.model_sha256 or "", species=tuple(species), nep_version=version,
                         source=dict(self.model_source))


def cpu_engine(ctx: TaskContext, threads: int | None = None) -> Any:
    """The CPU engine of the task's model: NepCpuEngine for a NEP, AseCalcEngine (engines/ase_calc.py)
    for an ASE-calculator comparator; `threads` as each engine takes it. None: for a NEP, the
    cores other processes leave idle now (`cpu_load.idle_cores`) unless OMP_NUM_THREADS is set;
    for a comparator, its default."""
    if ctx.model_kind != "ase":  # looked up on the module at call time, so a test's stand-in takes its place
        from ..engines import nep_cpu

        if threads is None and not os.environ.get("OMP_NUM_THREADS"):
            from ..cpu_load import idle_cores

            threads = idle_cores()
        return nep_cpu.NepCpuEngine(ctx.model_path) if threads is None else \
            nep_cpu.NepCpuEngine(ctx.model_path, threads=threads)
    from ..engines.ase_calc import AseCalcEngine

    return AseCalcEngine(ctx.model_info(), threads=threads)


def gpumd_not_applicable(ctx: TaskContext) -> str | None:
    """Why GPUMD cannot run the task's model (an ASE-calculator comparator: GPUMD runs NEP potentials
    only), or None for a NEP."""
    if ctx.model_kind != "ase":
        return None
    return (f"not applicable: GPUMD runs NEP potentials only; {ctx.model_name} is an ASE-calculator "
            "comparator (run on the CPU through ASE)")


def engine_label(engine: Any) -> str:
    """How a method line names the model's engine: "NEP" for nep_cpu, else the model's name."""
    spec = getattr(engine, "spec", None)
    return spec.name if getattr(engine, "name", "nep_cpu") == "ase_calc" and spec is not None else "NEP"


TaskFunction = Callable[[TaskSpec, TaskContext], TaskOutcome]


#: Task type → (module under nepbench.tasks, its run function). Each module also declares
#: `TASK_PARAMS`, the parameters its tasks read; suite files are checked against them when loaded.
TASK_MODULES = {
    "parity": ("parity", "run_parity"),
    "md_accuracy": ("md_accuracy", "run_md_accuracy"),
    "throughput": ("throughput", "run_throughput"),
    "expansion": ("expansion", "run_expansion"),
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
