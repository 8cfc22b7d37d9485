"""What a suite run will cost before it runs (`nepbench run --dry-run`): per task its CP2K MD steps
and their cells, its NEP atom·steps and single points, GPU work, and a predicted wall time on this
machine from measured rates.

Rates (`Rates`): NEP atom·steps/s timed here on the throughput cell for about a second, and each
ASE-calculator comparator of the suite (CHGNet, SevenNet: ~100-250× slower per atom·step) timed
likewise on the 33-atom cell after one warm-up step; CP2K s/step
from the CP2K tuning study's record for this CPU (1 rank, scaled to the task's ranks by the measured
2-rank speed-up of 1.3, and to N by the measured N^1.02), else the cost of the committed AIMD runs.
The prediction is an estimate to plan by, not a measurement: the run records the real times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import Suite, TaskSpec

#: CP2K cost exponent s/step ∝ N^b measured by the tuning study (33, 63 and 96 atoms, 1 rank).
CP2K_EXPONENT = 1.02
#: One MD step on 2 ranks took 1/1.3 of a 1-rank step here (docs/cp2k_settings.md, "Ranks").
TWO_RANK_SPEEDUP = 1.3


@dataclass(frozen=True)
class Rates:
    """Measured speeds that turn planned work into seconds.

    Attributes:
        nep_atom_steps_per_s: NEP on this CPU (atom·steps per second, one process).
        cp2k_s_per_step_n: CP2K s/step at `cp2k_n_atoms` atoms on 1 rank.
        cp2k_n_atoms: the size that rate was measured at.
        source: where the CP2K rate comes from, for the printout.
        model_atom_steps_per_s: atom·steps per second of models timed on their own (the ASE
            comparators), by model name; other models run at `nep_atom_steps_per_s`.
    """

    nep_atom_steps_per_s: float
    cp2k_s_per_step_n: float
    cp2k_n_atoms: int
    source: str
    model_atom_steps_per_s: dict[str, float] = field(default_factory=dict)

    def atom_steps_per_s(self, model: str = "") -> float:
        """The rate of `model`: its own where it was timed, else NEP's."""
        return self.model_atom_steps_per_s.get(model, self.nep_atom_steps_per_s)

    def cp2k_s_per_step(self, n_atoms: int, ranks: int = 1) -> float:
        """Predicted CP2K s/step for `n_atoms` atoms on `ranks` ranks (2 or more: ×1/1.3)."""
        one = self.cp2k_s_per_step_n * (n_atoms / self.cp2k_n_atoms) ** CP2K_EXPONENT
        return one / TWO_RANK_SPEEDUP if ranks >= 2 else one


@dataclass
class TaskPlan:
    """The work one task will do: CP2K MD steps per cell size (`cp2k_steps`: {n_atoms: steps}),
    `cp2k_ranks`, NEP atom·steps (MD and single points together), GPU atom·steps (not predicted in
    time), and `notes` (what the estimate leaves out)."""

    task_id: str
    task_type: str
    model: str = ""
    cp2k_steps: dict[int, int] = field(default_factory=dict)
    cp2k_ranks: int = 1
    nep_atom_steps: float = 0.0
    gpu_atom_steps: float = 0.0
    notes: list[str] = field(default_factory=list)

    def predicted_wall_s(self, rates: Rates) -> float:
        cp2k = sum(steps * rates.cp2k_s_per_step(n, self.cp2k_ranks) for n, steps in self.cp2k_steps.items())
        return cp2k + self.nep_atom_steps / rates.atom_steps_per_s(self.model)

    def line(self, rates: Rates) -> str:
        """One line: id, type, CP2K steps and cells, NEP atom·steps, GPU work, predicted wall time."""
        from .runner import duration

        bits = []
        if self.cp2k_steps:
            cells = ", ".join(f"{s}×{n} atoms" for n, s in sorted(self.cp2k_steps.items()))
            bits.append(f"CP2K {sum(self.cp2k_steps.values())} MD steps ({cells}, {self.cp2k_ranks} rank(s))")
        engine = self.model if self.model in rates.model_atom_steps_per_s else "NEP"
        bits.append(f"{engine} {self.nep_atom_steps:.3g} atom·steps")
        if self.gpu_atom_steps:
            bits.append(f"GPU {self.gpu_atom_steps:.3g} atom·steps (not timed: GPU speed unknown here)")
        notes = f" [{'; '.join(self.notes)}]" if self.notes else ""
        return f"{self.task_id} ({self.task_type}): {'; '.join(bits)}; ~{duration(self.predicted_wall_s(rates))}{notes}"


def _throughput(spec: TaskSpec, reference_dir: Path) -> TaskPlan:
    from .tasks.throughput import ThroughputParams
    from .tasks.throughput_cells import base_cell, unique_cells

    p = ThroughputParams.from_params(spec.params)
    plan = TaskPlan(spec.id, spec.type, cp2k_ranks=p.cp2k_ranks)
    base = base_cell(p)
    sizes = list(p.identical_sizes) if p.identical_sizes is not None else [len(base)]
    presets = 2 if p.cp2k_untuned else 1
    for atoms in unique_cells(base, sizes):
        n = len(atoms)
        plan.cp2k_steps[n] = plan.cp2k_steps.get(n, 0) + presets * (p.cp2k_warmup + p.cp2k_steps)
        plan.nep_atom_steps += n * (p.nep_warmup + p.nep_steps) * p.repeats
    plan.nep_atom_steps += len(p.nep_sizes) * p.nep_atom_steps
    plan.nep_atom_steps += sum(n * (p.nep_warmup + p.nep_steps) * p.repeats for n in p.cp2k_scaling_n_atoms)
    plan.gpu_atom_steps = len(p.gpu_sizes) * p.gpu_atom_steps
    return plan


def _md_accuracy(spec: TaskSpec, reference_dir: Path) -> TaskPlan:
    from .aimd import load_aimd_manifest
    from .tasks.md_accuracy import MdAccuracyParams

    p = MdAccuracyParams.from_params(spec.params)
    plan = TaskPlan(spec.id, spec.type)
    manifest_path = reference_dir / "aimd" / "manifest.json"
    runs = load_aimd_manifest(manifest_path).get("runs", {}) if manifest_path.is_file() else {}
    for run_id in p.runs or list(runs):
        run = runs.get(run_id)
        if not run:
            plan.notes.append(f"{run_id}: no AIMD yet")
            continue
        protocol = run["protocol"]
        production_steps = max(0, int(protocol["steps"]) - int(protocol["warmup_steps"]))
        plan.nep_atom_steps += run["n_atoms"] * production_steps * sum(p.length_factors)
    from .systems import build

    nve_atoms = len(build(p.nve.builder, seed=p.nve.seed, **p.nve.params))
    plan.nep_atom_steps += nve_atoms * (p.nve.nvt_steps + p.nve.steps)
    return plan


def _parity(spec: TaskSpec, reference_dir: Path) -> TaskPlan:
    from .reference import load_manifest
    from .tasks.parity import ParityParams

    p = ParityParams.from_params(spec.params)
    plan = TaskPlan(spec.id, spec.type)
    path = reference_dir / p.dataset / "manifest.json"
    if not path.is_file():
        plan.notes.append(f"no {p.dataset} set yet")
        return plan
    for entry in load_manifest(path).get("files", {}).values():
        plan.nep_atom_steps += sum(int(f["n_atoms"]) for f in entry.get("frames", []))  # both splits
    plan.notes.append("single points of every frame (both splits: offsets are fitted on train)")
    return plan


def _expansion(spec: TaskSpec, reference_dir: Path) -> TaskPlan:
    from .tasks.expansion import ExpansionParams, planned_cost

    cost = planned_cost(ExpansionParams.from_params(spec.params))
    return TaskPlan(spec.id, spec.type, nep_atom_steps=float(cost["atom_steps"]),
                    notes=["relaxations may stop early: an upper bound"])


PLANNERS = {"throughput": _throughput, "md_accuracy": _md_accuracy, "parity": _parity, "expansion": _expansion}


def plan_suite(suite: Suite, reference_dir: Path) -> list[TaskPlan]:
    """Every task's `TaskPlan`, in suite order (a task type without a planner gets an empty plan
    with a note; an ASE-calculator model plans no GPU work). CP2K is timed once per run for throughput tasks that differ only in their model
    (`tasks.cp2k_timing.cp2k_timing_shared`), so only the first of them is planned to pay for it."""
    from .models import ASE_KIND, load_registry

    ase_models = {name for name, record in load_registry().items() if record.kind == ASE_KIND}
    plans = []
    cp2k_timed: dict[str, str] = {}  # a throughput task's parameters less its model → the task that pays CP2K
    for spec in suite.tasks:
        planner = PLANNERS.get(spec.type)
        plan = planner(spec, reference_dir) if planner else TaskPlan(spec.id, spec.type, notes=["no plan"])
        plan.model = str(spec.params.get("model") or "")
        if plan.gpu_atom_steps and plan.model in ase_models:
            plan.gpu_atom_steps = 0.0
            plan.notes.append("GPUMD not applicable to an ASE-calculator model")
        if spec.type == "throughput" and plan.cp2k_steps:
            key = repr(sorted((k, repr(v)) for k, v in spec.params.items() if k != "model"))
            if key in cp2k_timed:
                plan.cp2k_steps = {}
                plan.notes = [f"CP2K's timing is shared with {cp2k_timed[key]}"]
            else:
                cp2k_timed[key] = spec.id
        plans.append(plan)
    return plans


def measured_rates(reference_dir: Path, nep: Any = None, models: Any = ()) -> Rates:
    """Rates on this machine: NEP timed here on the throughput cell (`nep`: an engine; default
    the default model on the CPU), each ASE-calculator model among `models` (registry names)
    timed on the 33-atom cell with one torch thread, CP2K from the tuning record for this CPU,
    else the committed AIMD runs' median s/step."""
    from .provenance import hardware_info
    from .tasks.throughput import ThroughputParams
    from .tasks.throughput_cells import base_cell

    cell = base_cell(ThroughputParams())
    if nep is None:
        from .engines.nep_cpu import NepCpuEngine

        nep = NepCpuEngine("nep89-lisic")
    nep_rate = timed_rate(nep, cell.repeat((2, 2, 2)), steps=40, warmup=0)
    own = _ase_rates(models, cell)
    cpu = hardware_info()["cpu_model"]
    tuned = _tuning_rate(cpu)
    if tuned is not None:
        return Rates(nep_rate, tuned[0], tuned[1], f"CP2K tuning record for {cpu}", own)
    s_per_step, n = _aimd_rate(reference_dir)
    return Rates(nep_rate, s_per_step, n, "the committed AIMD runs' median s/step (1 rank, another CPU maybe)", own)


def timed_rate(engine: Any, atoms: Any, steps: int, warmup: int = 1) -> float:
    """atom·steps per second of `steps` NVT steps (900 K, 1 fs) of `engine` on `atoms`, after a
    `warmup`-step run that is not timed (model loading, first-call set-up)."""
    import time

    from .engines.base import MDProtocol

    if warmup:
        engine.md(atoms, MDProtocol("nvt", 900.0, 1.0, warmup, sample_interval=warmup, seed=1))
    start = time.perf_counter()
    engine.md(atoms, MDProtocol("nvt", 900.0, 1.0, steps, sample_interval=steps, seed=1))
    return len(atoms) * steps / (time.perf_counter() - start)


def _ase_rates(models: Any, atoms: Any) -> dict[str, float]:
    """atom·steps/s (`timed_rate`, 5 steps after 1) of each ASE-calculator registry model among
    `models`, one torch thread; a model whose package is missing is left out (the run skips it
    with the reason)."""
    from .errors import NepbenchError
    from .models import ASE_KIND, load_registry

    registry = load_registry()
    rates = {}
    for name in dict.fromkeys(models):
        record = registry.get(name)
        if record is None or record.kind != ASE_KIND:
            continue
        try:
            from .engines.ase_calc import AseCalcEngine

            rates[name] = timed_rate(AseCalcEngine(name, threads=1), atoms, steps=5, warmup=1)
        except NepbenchError:
            continue
    return rates


def _tuning_rate(cpu: str) -> tuple[float, int] | None:
    from . import cp2k_tuning
    from .engines.cp2k import AIMD_SETTINGS

    record = cp2k_tuning.load_record(cp2k_tuning.DEFAULT_RECORD_ABS)
    want = AIMD_SETTINGS.to_dict()
    for entry in record.get("results", {}).values():
        if (entry.get("kind") == "md" and not entry.get("error") and entry.get("cpu_model") == cpu
                and entry.get("ranks") == 1 and entry.get("settings") == want and entry.get("n_atoms")):
            return cp2k_tuning.md_cost_s(entry), int(entry["n_atoms"])
    return None


def _aimd_rate(reference_dir: Path) -> tuple[float, int]:
    from .aimd import load_aimd_manifest

    runs = load_aimd_manifest(reference_dir / "aimd" / "manifest.json").get("runs", {})
    rows = sorted((r["s_per_step_median"], r["n_atoms"]) for r in runs.values() if r.get("s_per_step_median"))
    return rows[len(rows) // 2] if rows else (40.0, 32)
