"""Throughput: the same Atoms and the same MDProtocol on CP2K and on NEP engines.

Three comparisons, all recorded:
  (a) identical N: CP2K AIMD and NEP MD (CPU, and GPUMD where it runs) on the very same cells (the
      sizes CP2K affords here);
  (b) throughput: CP2K's lowest cost per atom·step over its cells (the side least favourable to the
      ratio: for DFT that is usually its smallest cell) against GPUMD's best atom·step/s over the GPU
      sweep, the two sizes named (the study's "×70,000" is such a ratio);
  (c) a size sweep: s/step for NEP from tens to ~1e5 atoms and CP2K at ≥ 2 sizes; the ratio at
      `extrapolate_to_n` comes from CP2K's power-law fit and NEP's two measured sizes nearest it, with
      the sizes and the exponent's standard error recorded (none from 2 sizes).
Warm-up steps are excluded from every timing. NEP repeats give min/median/max; CP2K is timed once
per cell and invocation (`TaskContext.shared`), so every model's ratio of one run divides by the same
CP2K measurement (of one invocation: a record reused from an earlier run's cache keeps that run's),
and a later run or another machine measures it again. The cores other processes keep busy on this
process's cores while CP2K runs are recorded: other work on the cores slows CP2K and inflates the
ratio, so where it left fewer idle cores than CP2K has ranks (beyond BUSY_SLACK_CORES) every ratio
is withheld (`metric_reasons`, and out of the series' rows; the timings stay in the series). NEP on
the CPU runs on as many threads as CP2K has ranks (`nep_threads` overrides), and both counts are
recorded with every row. Parameters: `ThroughputParams`; series: `ThroughputSeries`; CP2K's shared
timing: cp2k_timing.py; the busy-core meter: cpu_load.py; cells and timed MD: throughput_cells.py; the
speed-up against N from the tuning record: throughput_vs_n.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import numpy as np
from ase import Atoms

from ..checks import integer
from ..cpu_load import busy_cores_note, usable_cores

from ..errors import EngineNotAvailable
from ..metrics import throughput as tp
from ..provenance import hardware_info
from ..spec import TaskSpec
from . import TaskContext, TaskOutcome, cpu_engine, engine_label, gpumd_not_applicable, set_stage
from .cp2k_timing import cp2k_timing_shared, settings_text
from .params import TaskParams
from .throughput_cells import base_cell, protocol_for, time_md, unique_cells
from .throughput_vs_n import OneCoreRow, scaling_with_n

#: The throughput cell's builder parameters where the suite names none.
DEFAULT_BUILDER_PARAMS = {"x": 2.0}


@dataclass(frozen=True)
class ThroughputParams(TaskParams):
    """A throughput task's parameters (suite `[[task]]` keys of the same names).

    The cell: `builder` with `builder_params`, built with `seed` (also the MD velocities'); MD: NVT
    (CSVR) at `temperature_k` (K) with `timestep_fs` (fs). Identical cells: `identical_sizes` (atom
    counts, each the base cell repeated to the nearest; 0 or None: the base cell), CP2K on
    `cp2k_ranks` MPI ranks for `cp2k_warmup` + `cp2k_steps` steps (also the untuned preset when
    `cp2k_untuned`), NEP on `nep_threads` threads (None: as many as CP2K's ranks) for `nep_warmup` +
    `nep_steps` steps, median of `repeats`. Sweeps: NEP on the CPU over `nep_sizes` for about
    `nep_atom_steps` atom·steps each, GPUMD over `gpu_sizes` for `gpu_atom_steps`; the extrapolated
    ratio at `extrapolate_to_n` atoms. Against N on one core each: CP2K's cost at
    `cp2k_scaling_n_atoms` from the tuning study's record, and the N at which the fitted ratio
    reaches `claimed_speedup` (×).
    """

    TASK = "throughput"

    builder: str = "a-LixSi"
    builder_params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_BUILDER_PARAMS))
    seed: int = 7
    temperature_k: float = 900.0
    timestep_fs: float = 1.0
    identical_sizes: tuple[int, ...] | None = None
    cp2k_ranks: int = 2
    cp2k_steps: int = 2
    cp2k_warmup: int = 1
    cp2k_untuned: bool = False
    nep_threads: int | None = None
    nep_steps: int = 200
    nep_warmup: int = 10
    repeats: int = 3
    nep_sizes: tuple[int, ...] = (64, 512, 4096)
    nep_atom_steps: float = 2_000_000
    extrapolate_to_n: int = 1000
    gpu_sizes: tuple[int, ...] = (4096, 32768, 262144)
    gpu_atom_steps: float = 2e8
    cp2k_scaling_n_atoms: tuple[int, ...] = ()
    claimed_speedup: float = 70000.0

    @classmethod
    def problem(cls, params: dict[str, Any]) -> str | None:
        """What is wrong with a throughput task's CP2K timing window, cell or `nep_threads`, or None:
        CP2K books its first step's set-up into step 1, which is never timed, so with `cp2k_warmup` = 0
        `cp2k_steps` must be ≥ 2 (else no step is timed and the ratio divides by zero after CP2K has run)."""
        from .. import systems

        steps = integer(params.get("cp2k_steps", cls.cp2k_steps))
        warmup = integer(params.get("cp2k_warmup", cls.cp2k_warmup))
        if steps is None or steps < 1 or warmup is None or warmup < 0:
            return (f"cp2k_steps must be an integer >= 1 and cp2k_warmup one >= 0, got "
                    f"{params.get('cp2k_steps')!r} and {params.get('cp2k_warmup')!r}")
        if warmup == 0 and steps < 2:
            return ("cp2k_steps = 1 with cp2k_warmup = 0 times no step (CP2K's step 1 carries its set-up and "
                    "is never timed): use cp2k_warmup >= 1 or cp2k_steps >= 2")
        problem = systems.param_problem(params.get("builder", cls.builder),
                                        params.get("builder_params", DEFAULT_BUILDER_PARAMS))
        if problem:
            return problem
        threads = params.get("nep_threads")
        if threads is not None and (integer(threads) is None or threads < 1):
            return f"nep_threads must be an integer >= 1 (or unset: as many as CP2K's ranks), got {threads!r}"
        return None


#: Parameters a throughput task reads, and what is wrong with their values (one line) or None: the suite
#: loader checks a suite file's tasks with them.
TASK_PARAMS = ThroughputParams.names()
check_params = ThroughputParams.check


class IdenticalRow(TypedDict):
    """Series `identical_n[i]`: one cell CP2K and NEP both ran (ascending size): s/step (medians),
    the cores each used, and the speed ratios (CP2K s/step ÷ NEP s/step, withheld on a busy machine)."""

    n_atoms: int
    cp2k_s_per_step: float
    cp2k_scf_iterations_per_step: float | None
    cp2k_other_cores_busy_during: float | None  # cores' worth of other processes' CPU while CP2K ran
    nep_s_per_step: float
    nep_s_per_step_min: float
    nep_s_per_step_max: float
    nep_engine: str
    ratio: NotRequired[float]
    cp2k_ranks: int
    cp2k_omp_threads: int
    nep_threads: int | None
    hardware: str
    cp2k_untuned_s_per_step: NotRequired[float]  # with cp2k_untuned
    ratio_untuned: NotRequired[float]
    gpu_s_per_step: NotRequired[float]  # where GPUMD runs
    ratio_gpu: NotRequired[float]


class ScalingLine(TypedDict):
    """Series `scaling.<engine>`: wall time per atom·step (s) against the atom count."""

    n_atoms: list[int]
    s_per_atom_step: list[float]


class PowerLawFit(TypedDict):
    """Series `fits.<engine>`: s/step ≈ prefactor_s · N^exponent over the sizes `n_atoms`."""

    n_atoms: list[int]
    exponent: float
    prefactor_s: float
    exponent_stderr: float | None  # None from 2 sizes


class ThroughputSeries(TypedDict):
    """A throughput record's `series`."""

    identical_n: list[IdenticalRow]
    scaling: dict[str, ScalingLine]  # the CPU engine's name (nep_cpu, ase_calc), "cp2k", "gpumd"
    fits: dict[str, PowerLawFit]  # "cp2k" and the CPU engine's name, where both have ≥ 2 sizes
    cp2k_vs_n: NotRequired[list[OneCoreRow]]  # older records lack it


def _cp2k_ratio_keys(metrics: dict[str, float]) -> list[str]:
    """The metrics that divide by CP2K's time (withheld when CP2K was timed on a busy machine)."""
    return [k for k in metrics if (k.startswith(("speedup_cpu_identical_n", "speedup_gpu_identical_n",
                                                 "speedup_cpu_extrapolated_n")) and not k.endswith("_n_atoms"))
            or k == "speedup_gpu_vs_cp2k_per_atom_step"]


def nearest_sizes(n_atoms: list[int], target: int, k: int = 2) -> list[int]:
    """Indices of the `k` sizes nearest `target` on a log scale (ties to the smaller), in size order."""
    order = sorted(range(len(n_atoms)), key=lambda i: (abs(np.log(n_atoms[i] / target)), n_atoms[i]))
    return sorted(order[:k], key=lambda i: n_atoms[i])


@dataclass
class _Run:
    """What the steps of `run_throughput` share: its parameters, engines and the cores they use,
    and what they add to (metrics, units, reasons, method notes)."""

    p: ThroughputParams
    base: Atoms
    ranks: int
    nep: Any
    cp2k: Any  # CP2KEngine (the tuned AIMD preset), None where CP2K is not installed
    gpumd: Any  # GpumdEngine, None where GPUMD cannot run (`gpu_reason` says why)
    gpu_reason: str | None
    engines: dict[str, str]
    hardware: dict[str, Any]
    cores_text: str
    metrics: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    busy_notes: list[str] = field(default_factory=list)
    shared: dict[str, Any] = field(default_factory=dict)  # the run's TaskContext.shared (progress stage)

    @property
    def nep_name(self) -> str:
        return getattr(self.nep, "name", "nep_cpu")

    @property
    def label(self) -> str:
        return engine_label(self.nep)

    @property
    def cpu(self) -> str:
        return f"{self.hardware['cpu_model']} ({self.hardware['logical_cores']} logical cores)"

    def note_busy(self, timing: dict[str, Any]) -> None:
        """A busy-machine note for a CP2K timing (`busy_cores_note`), once per wording."""
        busy = busy_cores_note(timing.get("other_cores_busy_during"), self.ranks, usable_cores())
        if busy and busy not in self.busy_notes:
            self.busy_notes.append(busy)


def run_throughput(spec: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    """CP2K against NEP on identical cells, the NEP and GPUMD size sweeps with the fits across them,
    and the speed-up against N on one core each; series shaped as `ThroughputSeries`."""
    from ..engines.cp2k import AIMD_SETTINGS, AIMD_V1_SETTINGS

    p = ThroughputParams.from_params(spec.params)
    run = _start(p, ctx)
    identical = _identical_cells(run, ctx)
    scaling, fits, nep_n = _cpu_sweep(run, identical)
    gpu_note = _gpu_sweep(run, identical, scaling)
    method = ("NVT (CSVR) at {T} K, {dt} fs, each engine on the same cells for the identical-N rows "
              "(CP2K {cs} timed step(s) after {cw} warm-up, {m} {ns} after {nw}); {c} on {cpu}; {cores}; "
              "warm-up excluded; {m} median of {r} repeats".format(
                  m=run.label, T=p.temperature_k, dt=p.timestep_fs, cs=p.cp2k_steps, cw=p.cp2k_warmup,
                  ns=p.nep_steps, nw=p.nep_warmup, c=run.engines.get("cp2k", "CP2K not installed"), cpu=run.cpu,
                  cores=run.cores_text, r=p.repeats))
    method += (f"; CP2K settings (tuned, the AIMD preset): {settings_text(AIMD_SETTINGS)}"
               + (f"; untuned preset (ratio reported beside): {settings_text(AIMD_V1_SETTINGS)}"
                  if p.cp2k_untuned and AIMD_V1_SETTINGS != AIMD_SETTINGS else ""))
    scaling_rows, scaling_metrics, scaling_units, scaling_reasons, scaling_text = (
        scaling_with_n(p, cpu_engine(ctx, threads=1), AIMD_SETTINGS, AIMD_V1_SETTINGS, run.gpumd,
                       cp2k_here=run.cp2k is not None))
    run.metrics.update(scaling_metrics)
    run.units.update(scaling_units)
    method += scaling_text
    method += gpu_note + "".join(f"; {note}" for note in run.notes + run.busy_notes)
    run.reasons.update(scaling_reasons)
    method += _unmeasured_reasons(run, identical, nep_n)
    series: ThroughputSeries = {"identical_n": identical, "scaling": scaling, "fits": fits, "cp2k_vs_n": scaling_rows}
    return TaskOutcome("done", metrics=run.metrics, metric_units=run.units, series=series, method=method,
                       engines=run.engines, seed=p.seed, metric_reasons=run.reasons)


def _start(p: ThroughputParams, ctx: TaskContext) -> _Run:
    """The engines and the cores they get: CP2K on `cp2k_ranks` capped at the cores this process may
    use, NEP on as many threads (or `nep_threads`), GPUMD where it runs; notes where they differ."""
    from ..engines.cp2k import AIMD_SETTINGS, CP2KEngine

    ranks = max(1, min(p.cp2k_ranks, usable_cores()))  # mpirun refuses more ranks than slots
    # NEP_CPU, or an ASE-calculator comparator (its torch threads): CP2K's cores, not more
    nep = cpu_engine(ctx, threads=p.nep_threads or ranks)
    engines = {getattr(nep, "name", "nep_cpu"): nep.version()}
    hardware = hardware_info()
    gpumd, gpu_reason = _gpumd_or_reason(ctx)
    if gpumd is not None:
        engines["gpumd"] = gpumd.version()
    notes = []
    if ranks < p.cp2k_ranks:
        notes.append(f"CP2K on {ranks} ranks, not the suite's {p.cp2k_ranks}: this process may use {ranks} cores")
    try:
        cp2k = CP2KEngine(AIMD_SETTINGS, ranks=ranks)
        engines["cp2k"] = cp2k.version()
    except EngineNotAvailable:
        cp2k = None
    cp2k_threads = ranks * AIMD_SETTINGS.omp_threads
    nep_threads = nep.effective_threads()
    code = "NEP_CPU" if getattr(nep, "name", "nep_cpu") == "nep_cpu" else f"{engine_label(nep)} (torch)"
    cores_text = (f"CP2K {ranks} MPI rank(s) × {AIMD_SETTINGS.omp_threads} OpenMP thread(s), "
                  f"{code} {nep_threads if nep_threads is not None else 'default'} thread(s)")
    if nep_threads is not None and nep_threads != cp2k_threads:
        notes.append(f"{code} on {nep_threads} thread(s) against CP2K's {cp2k_threads}: "
                     + ("calorine's CPUNEP build is single-threaded" if nep.backend == "calorine"
                        else "nep_threads set in the suite"))
    return _Run(p, base_cell(p), ranks, nep, cp2k, gpumd, gpu_reason, engines, hardware, cores_text, notes=notes,
                shared=ctx.shared)


def _identical_cells(run: _Run, ctx: TaskContext) -> list[IdenticalRow]:
    """CP2K (its timing shared by the invocation's models), NEP and GPUMD on the very same cells:
    one row each, ascending size, and the largest cell's ratios as the headline metrics."""
    from ..engines.cp2k import AIMD_SETTINGS, AIMD_V1_SETTINGS, CP2KEngine

    p, metrics, units = run.p, run.metrics, run.units
    identical: list[IdenticalRow] = []
    sizes = list(p.identical_sizes) if p.identical_sizes is not None else [len(run.base)]
    cells = unique_cells(run.base, sizes) if run.cp2k else []
    for k, atoms in enumerate(cells, start=1):
        set_stage(ctx.shared, f"identical cell {k}/{len(cells)}: {len(atoms)} atoms, CP2K then {run.label}")
        prot = protocol_for(p, p.cp2k_steps, p.cp2k_warmup)
        cp2k_t = cp2k_timing_shared(run.cp2k, atoms, prot, ctx.shared)
        run.note_busy(cp2k_t)
        untuned_t = None
        if p.cp2k_untuned and AIMD_V1_SETTINGS != AIMD_SETTINGS:
            untuned_t = cp2k_timing_shared(CP2KEngine(AIMD_V1_SETTINGS, ranks=run.ranks), atoms, prot, ctx.shared)
            run.note_busy(untuned_t)
        nep_prot = protocol_for(p, p.nep_steps, p.nep_warmup)
        nep_t = time_md(run.nep, atoms, nep_prot, p.repeats)
        n = len(atoms)
        row: IdenticalRow = {
            "n_atoms": n, "cp2k_s_per_step": cp2k_t["median"],
            "cp2k_scf_iterations_per_step": cp2k_t.get("scf_iterations_per_step"),
            "cp2k_other_cores_busy_during": cp2k_t.get("other_cores_busy_during"),
            "nep_s_per_step": nep_t["median"], "nep_s_per_step_min": nep_t["min"],
            "nep_s_per_step_max": nep_t["max"], "nep_engine": run.nep_name if run.label == "NEP" else run.label,
            "ratio": tp.speed_ratio(n / nep_t["median"], n / cp2k_t["median"]),
            "cp2k_ranks": run.ranks, "cp2k_omp_threads": AIMD_SETTINGS.omp_threads,
            "nep_threads": run.nep.effective_threads(), "hardware": f"both on {run.cpu}; {run.cores_text}"}
        metrics[f"speedup_cpu_identical_n{n}"] = row["ratio"]
        units[f"speedup_cpu_identical_n{n}"] = "×"
        if untuned_t is not None:
            row.update(cp2k_untuned_s_per_step=untuned_t["median"],
                       ratio_untuned=tp.speed_ratio(n / nep_t["median"], n / untuned_t["median"]))
            metrics[f"speedup_cpu_identical_n{n}_untuned"] = row["ratio_untuned"]
            units[f"speedup_cpu_identical_n{n}_untuned"] = "× (against the untuned CP2K preset)"
        if run.gpumd is not None:
            gpu_t = time_md(run.gpumd, atoms, nep_prot, 1)
            row.update({"gpu_s_per_step": gpu_t["median"],
                        "ratio_gpu": tp.speed_ratio(n / gpu_t["median"], n / cp2k_t["median"])})
            metrics[f"speedup_gpu_identical_n{n}"] = row["ratio_gpu"]
            units[f"speedup_gpu_identical_n{n}"] = "× (GPU NEP vs CPU CP2K)"
        identical.append(row)
    if identical:
        _largest_cell_metrics(identical[-1], metrics, units)  # unique_cells: ascending size
    return identical


def _largest_cell_metrics(largest: IdenticalRow, metrics: dict[str, float], units: dict[str, str]) -> None:
    """The headline identical-N metrics, from the largest cell CP2K ran."""
    metrics["speedup_cpu_identical_n"] = largest["ratio"]
    metrics["speedup_cpu_identical_n_atoms"] = float(largest["n_atoms"])
    if "ratio_untuned" in largest:
        metrics["speedup_cpu_identical_n_untuned"] = largest["ratio_untuned"]
        units["speedup_cpu_identical_n_untuned"] = "× (against the untuned CP2K preset)"
    units["speedup_cpu_identical_n"] = "×"
    units["speedup_cpu_identical_n_atoms"] = "atoms"
    if "ratio_gpu" in largest:
        metrics["speedup_gpu_identical_n"] = largest["ratio_gpu"]
        units["speedup_gpu_identical_n"] = "× (GPU NEP vs CPU CP2K)"
    if largest["cp2k_scf_iterations_per_step"] is not None:
        metrics["cp2k_scf_iterations_per_step"] = largest["cp2k_scf_iterations_per_step"]
        units["cp2k_scf_iterations_per_step"] = "SCF iterations (timed CP2K steps)"


def _cpu_sweep(run: _Run, identical: list[IdenticalRow]) -> tuple[dict[str, ScalingLine], dict[str, PowerLawFit],
                                                                   list[int]]:
    """NEP on the CPU over `nep_sizes`, and where CP2K and NEP each have ≥ 2 sizes their power-law
    fits and the ratio extrapolated to `extrapolate_to_n`. Returns (scaling, fits, NEP's sizes)."""
    p, metrics, units = run.p, run.metrics, run.units
    nep_name, cp2k_n = run.nep_name, [row["n_atoms"] for row in identical]
    cp2k_s = [row["cp2k_s_per_step"] for row in identical]
    scaling: dict[str, ScalingLine] = {}
    fits: dict[str, PowerLawFit] = {}
    nep_n, nep_s = [], []
    for atoms in unique_cells(run.base, list(p.nep_sizes)):
        steps = max(5, int(p.nep_atom_steps // len(atoms)))
        set_stage(run.shared, f"{run.label} size sweep: {len(atoms)} atoms, {steps} steps")
        t = time_md(run.nep, atoms, protocol_for(p, steps, max(2, steps // 10)), p.repeats)
        nep_n.append(len(atoms))
        nep_s.append(t["median"])
    # an ASE comparator's line and metrics carry its engine's name (ase_calc), so no NEP's are mistaken for it
    scaling[nep_name] = {"n_atoms": nep_n, "s_per_atom_step": [s / n for s, n in zip(nep_s, nep_n)]}
    metrics[f"{nep_name}_atom_steps_per_s_max"] = max(n / s for n, s in zip(nep_n, nep_s))
    units[f"{nep_name}_atom_steps_per_s_max"] = "atom·step/s"
    if len(cp2k_n) >= 2 and len(nep_n) >= 2:
        scaling["cp2k"] = {"n_atoms": cp2k_n, "s_per_atom_step": [s / n for s, n in zip(cp2k_s, cp2k_n)]}
        target_n = p.extrapolate_to_n
        b_cp2k, a_cp2k, b_err = tp.fit_scaling_exponent(cp2k_n, cp2k_s)
        near = nearest_sizes(nep_n, target_n)
        b_nep, a_nep, _ = tp.fit_scaling_exponent([nep_n[i] for i in near], [nep_s[i] for i in near])
        metrics["cp2k_scaling_exponent"] = b_cp2k
        units["cp2k_scaling_exponent"] = "(s/step ∝ N^b)"
        if np.isfinite(b_err):
            metrics["cp2k_scaling_exponent_stderr"] = b_err
            units["cp2k_scaling_exponent_stderr"] = "(s/step ∝ N^b)"
        metrics[f"{nep_name}_scaling_exponent"] = b_nep
        units[f"{nep_name}_scaling_exponent"] = "(s/step ∝ N^b)"
        fits["cp2k"] = {"n_atoms": cp2k_n, "exponent": b_cp2k, "prefactor_s": a_cp2k,
                        "exponent_stderr": b_err if np.isfinite(b_err) else None}
        fits[nep_name] = {"n_atoms": [nep_n[i] for i in near], "exponent": b_nep, "prefactor_s": a_nep,
                          "exponent_stderr": None}
        metrics[f"speedup_cpu_extrapolated_n{target_n}"] = (
            tp.predict_s_per_step(target_n, b_cp2k, a_cp2k) / tp.predict_s_per_step(target_n, b_nep, a_nep))
        units[f"speedup_cpu_extrapolated_n{target_n}"] = "× (fit)"
        error_text = f"± {b_err:.2f}" if np.isfinite(b_err) else f"no error estimate from {len(cp2k_n)} sizes"
        run.notes.append(f"ratio at N = {target_n} from CP2K's fit s/step ∝ N^{b_cp2k:.2f} ({error_text}) over "
                         f"N = {', '.join(map(str, cp2k_n))} and {run.label}'s sizes "
                         f"{', '.join(str(nep_n[i]) for i in near)}")
    return scaling, fits, nep_n


def _gpu_sweep(run: _Run, identical: list[IdenticalRow], scaling: dict[str, ScalingLine]) -> str:
    """GPUMD over `gpu_sizes` (one run each) into `scaling`, its best atom·step/s, and against CP2K's
    cheapest cell per atom·step; returns the method's words on it ("" without GPUMD)."""
    if run.gpumd is None:
        return ""
    p, metrics, units = run.p, run.metrics, run.units
    gpu_note = f"; GPUMD: {run.engines['gpumd']} on {', '.join(run.hardware['gpus'])}, one run per size"
    g_n, g_rate = [], []
    for atoms in unique_cells(run.base, list(p.gpu_sizes)):
        steps = max(100, int(p.gpu_atom_steps // len(atoms)))
        set_stage(run.shared, f"GPUMD size sweep: {len(atoms)} atoms, {steps} steps")
        res = run.gpumd.md(atoms, protocol_for(p, steps, max(10, steps // 10)))
        g_n.append(len(atoms))
        g_rate.append(res.timing.atom_steps_per_s)
    scaling["gpumd"] = {"n_atoms": g_n, "s_per_atom_step": [1 / r for r in g_rate]}
    best = int(np.argmax(g_rate))
    metrics["gpumd_atom_steps_per_s_max"] = g_rate[best]
    units["gpumd_atom_steps_per_s_max"] = "atom·step/s"
    if identical:
        # CP2K's cost per atom·step grows with N for DFT, so its largest cell would flatter the
        # ratio: the cell with the lowest cost per atom·step is the side least favourable to it
        cheapest = min(identical, key=lambda row: row["cp2k_s_per_step"] / row["n_atoms"])
        cp2k_per_atom_step = cheapest["cp2k_s_per_step"] / cheapest["n_atoms"]
        metrics["speedup_gpu_vs_cp2k_per_atom_step"] = tp.speed_ratio(g_rate[best], 1.0 / cp2k_per_atom_step)
        units["speedup_gpu_vs_cp2k_per_atom_step"] = "× (GPU NEP vs CPU CP2K)"
        metrics["speedup_gpu_vs_cp2k_cp2k_n_atoms"] = float(cheapest["n_atoms"])
        metrics["speedup_gpu_vs_cp2k_gpu_n_atoms"] = float(g_n[best])
        units["speedup_gpu_vs_cp2k_cp2k_n_atoms"] = units["speedup_gpu_vs_cp2k_gpu_n_atoms"] = "atoms"
        others = "" if run.busy_notes else ", ".join(
            f"{row['n_atoms']} atoms {tp.speed_ratio(g_rate[best], row['n_atoms'] / row['cp2k_s_per_step']):,.0f}×"
            for row in identical if row is not cheapest)
        run.notes.append(f"GPU-vs-CP2K per atom·step: CP2K on {cheapest['n_atoms']} atoms (its lowest cost per "
                         f"atom·step, the least favourable side), GPUMD at its best size of the sweep, "
                         f"{g_n[best]} atoms" + (f"; with CP2K's other cells: {others}" if others else ""))
    return gpu_note


def _unmeasured_reasons(run: _Run, identical: list[IdenticalRow], nep_n: list[int]) -> str:
    """Why a ratio is not stated, into `run.reasons`: every ratio withheld (metrics and series rows)
    when CP2K was timed on a busy machine, none without CP2K, no extrapolation from < 2 sizes, no GPU
    metric without GPUMD. Returns the method's words on the GPU ("" where it ran)."""
    reasons = run.reasons
    if run.busy_notes:  # an inflated CP2K time inflates every ratio: none is stated, in metrics or series
        for key in _cp2k_ratio_keys(run.metrics):
            reasons[key] = f"not measured: {run.busy_notes[0]}; rerun on an idle machine"
            del run.metrics[key]
        for row in identical:
            row.pop("ratio", None)
            row.pop("ratio_gpu", None)
            row.pop("ratio_untuned", None)
    if run.cp2k is None:
        for key in ("speedup_cpu_identical_n", "speedup_gpu_identical_n", "speedup_gpu_vs_cp2k_per_atom_step"):
            reasons[key] = "not measured: CP2K (cp2k.psmp) is not installed here"
    elif len(identical) < 2 or len(nep_n) < 2:
        reasons[f"speedup_cpu_extrapolated_n{run.p.extrapolate_to_n}"] = (
            f"not measured: CP2K was timed on {len(identical)} and {run.label} on {len(nep_n)} distinct cell "
            "size(s); each scaling fit needs 2")
    if not run.gpu_reason:
        return ""
    gpu_words = run.gpu_reason if run.gpu_reason.startswith("not applicable") else f"not measured: {run.gpu_reason}"
    for key in ("gpumd_atom_steps_per_s_max", "speedup_gpu_vs_cp2k_per_atom_step", "speedup_gpu_identical_n"):
        if key not in run.metrics and key not in reasons:
            reasons[key] = gpu_words
    return f"; GPU {gpu_words}"


def _gpumd_or_reason(ctx: TaskContext) -> tuple[Any, str | None]:
    """(a GpumdEngine that writes thermo only, None) where GPUMD runs here, else (None, why not):
    also for an ASE-calculator comparator, which GPUMD cannot run (`gpumd_not_applicable`)."""
    not_applicable = gpumd_not_applicable(ctx)
    if not_applicable:
        return None, not_applicable
    try:
        from ..engines.gpumd import GpumdEngine

        gpumd = GpumdEngine(ctx.model_path, record_frames=False)  # GPUMD times its dumps in the loop
        ok, detail = gpumd.available()
    except EngineNotAvailable as exc:
        return None, str(exc)
    return (gpumd, None) if ok else (None, detail)
