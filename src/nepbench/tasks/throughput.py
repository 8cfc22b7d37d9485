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
is withheld (`metric_reasons`, and out of the series' rows; the timings stay in the series). NEP on the CPU runs on as many threads as CP2K
has ranks (`nep_threads` overrides), and both counts are recorded with every row.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from dataclasses import asdict
from typing import Any, TypeVar

import numpy as np
from ase import Atoms

from ..config import TaskSpec
from ..engines.base import MDProtocol
from ..errors import EngineNotAvailable
from ..metrics import throughput as tp
from ..provenance import content_hash, hardware_info
from . import TaskContext, TaskOutcome, cpu_engine, engine_label, gpumd_not_applicable

T = TypeVar("T")


#: Parameters a throughput task reads (suite files are checked against them when loaded).
TASK_PARAMS = frozenset({
    "builder", "builder_params", "temperature_k", "timestep_fs", "seed", "repeats", "identical_sizes",
    "cp2k_ranks", "cp2k_steps", "cp2k_warmup", "nep_threads", "nep_steps", "nep_warmup", "nep_sizes",
    "nep_atom_steps", "extrapolate_to_n", "gpu_sizes", "gpu_atom_steps", "cp2k_untuned", "cp2k_scaling_n_atoms",
    "claimed_speedup"})


def check_params(params: dict[str, Any]) -> str | None:
    """What is wrong with a throughput task's CP2K timing window, or None: CP2K books its first
    step's set-up into step 1, which is never timed, so with `cp2k_warmup` = 0 `cp2k_steps` must be
    ≥ 2 (else no step is timed and the ratio divides by zero after CP2K has run)."""
    from ..config import integer

    steps, warmup = integer(params.get("cp2k_steps", 2)), integer(params.get("cp2k_warmup", 1))
    if steps is None or steps < 1 or warmup is None or warmup < 0:
        return (f"cp2k_steps must be an integer >= 1 and cp2k_warmup one >= 0, got "
                f"{params.get('cp2k_steps')!r} and {params.get('cp2k_warmup')!r}")
    if warmup == 0 and steps < 2:
        return ("cp2k_steps = 1 with cp2k_warmup = 0 times no step (CP2K's step 1 carries its set-up and "
                "is never timed): use cp2k_warmup >= 1 or cp2k_steps >= 2")
    from .. import systems

    problem = systems.param_problem(params.get("builder", "a-LixSi"), params.get("builder_params", {"x": 2.0}))
    if problem:
        return problem
    threads = params.get("nep_threads")
    if threads is not None and (integer(threads) is None or threads < 1):
        return f"nep_threads must be an integer >= 1 (or unset: as many as CP2K's ranks), got {threads!r}"
    return None


def _cp2k_ratio_keys(metrics: dict[str, float]) -> list[str]:
    """The metrics that divide by CP2K's time (withheld when CP2K was timed on a busy machine)."""
    return [k for k in metrics if (k.startswith(("speedup_cpu_identical_n", "speedup_gpu_identical_n",
                                                 "speedup_cpu_extrapolated_n")) and not k.endswith("_n_atoms"))
            or k == "speedup_gpu_vs_cp2k_per_atom_step"]


def base_cell(params: dict[str, Any]) -> Atoms:
    """The cell every engine runs: a seeded amorphous LixSi cell from the builders."""
    from .. import systems

    return systems.build(params.get("builder", "a-LixSi"), seed=int(params.get("seed", 7)),
                         **params.get("builder_params", {"x": 2.0}))


def cell_of_size(base: Atoms, target_atoms: int) -> Atoms:
    """`base` repeated n×n×n with n chosen so the atom count is nearest `target_atoms`."""
    n = max(1, int(round((target_atoms / len(base)) ** (1 / 3))))
    return base.repeat((n, n, n))


def protocol_for(params: dict[str, Any], steps: int, warmup: int) -> MDProtocol:
    return MDProtocol(ensemble="nvt", temperature_k=float(params.get("temperature_k", 900.0)),
                      timestep_fs=float(params.get("timestep_fs", 1.0)), steps=steps,
                      sample_interval=max(1, steps), seed=int(params.get("seed", 7)),
                      thermostat_coupling_fs=100.0, warmup_steps=warmup)


def time_md(engine, atoms: Atoms, protocol: MDProtocol, repeats: int) -> dict[str, float]:
    """s/step over `repeats` runs (warm-up excluded by the engine), summarised."""
    per_step = [engine.md(atoms, protocol).timing.s_per_step for _ in range(repeats)]
    return tp.summarise_repeats(per_step)


def _busy_jiffies(cpus: Collection[int] | None = None) -> int:
    """CPU time the cores `cpus` (None: all) spent busy since boot (user, nice, system, irq,
    softirq, steal), in clock ticks, from /proc/stat's `cpuN` lines (its first line for all)."""
    with open("/proc/stat", encoding="ascii") as handle:
        lines = handle.read().splitlines()
    total = 0
    for line in lines:
        name, *values = line.split() or [""]
        suffix = name[3:]
        if not (name == "cpu" if cpus is None else name.startswith("cpu") and suffix.isdigit() and int(suffix) in cpus):
            continue
        user, nice, system, _idle, _iowait, irq, softirq, steal = ([int(x) for x in values] + [0] * 8)[:8]
        total += user + nice + system + irq + softirq + steal
    return total


def _usable_cpu_ids() -> set[int] | None:
    """The CPU ids of this process's affinity mask (a Slurm allocation), None where unknown."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def other_cores_busy_while(run: Callable[[], T]) -> tuple[T, float | None]:
    """(run(), cores' worth of CPU that processes other than this one and its finished children
    used on this process's cores while `run` ran), the second None where /proc/stat cannot be read.

    Measured over the run itself, so work that starts after CP2K does is seen; on the cores this
    process may use (its affinity mask), so a busy core outside a Slurm allocation does not count
    and one inside it does. `run`'s subprocesses (CP2K's MPI ranks) are reaped children and count
    as this process's own. A 1-minute load average would count the suite's own NEP runs of the
    minute before as other work."""
    try:
        cpus, ticks, own = _usable_cpu_ids(), os.sysconf("SC_CLK_TCK"), os.times()
        busy, start = _busy_jiffies(cpus), time.monotonic()
    except (OSError, ValueError, AttributeError):
        return run(), None
    result = run()
    try:
        busy_after, end, own_after = _busy_jiffies(cpus), time.monotonic(), os.times()
    except (OSError, ValueError, AttributeError):
        return result, None
    own_s = sum(getattr(own_after, k) - getattr(own, k)
                for k in ("user", "system", "children_user", "children_system"))
    return result, max(0.0, ((busy_after - busy) / ticks - own_s) / max(end - start, 1e-9))


def other_cores_busy(window_s: float = 1.0) -> float | None:
    """`other_cores_busy_while` over `window_s` seconds of sleep."""
    return other_cores_busy_while(lambda: time.sleep(window_s))[1]


def cp2k_timing_shared(cp2k, atoms: Atoms, protocol: MDProtocol, shared: dict[str, Any]) -> dict[str, Any]:
    """CP2K s/step for this cell and protocol, measured once per invocation and shared by its models.

    The CP2K side of a speed ratio does not depend on the NEP model, so when a suite compares
    several models their throughput tasks reuse one measurement. `shared` is the invocation's
    `TaskContext.shared`: the timing never outlives the run that measured it, so a rerun, a rerun
    with --force, or a Slurm array task on another node measures CP2K on its own machine. The key
    covers the cell, the protocol, and the CP2K settings, version and rank count.
    """
    key = content_hash({"numbers": atoms.numbers.tolist(), "positions": np.round(atoms.positions, 6).tolist(),
                        "cell": np.round(atoms.cell.array, 6).tolist(), "protocol": asdict(protocol),
                        "settings": asdict(cp2k.settings), "version": cp2k.version(),
                        "ranks": getattr(cp2k, "ranks", None)})[:24]
    cache = shared.setdefault("cp2k_timing", {})
    if key in cache:
        return cache[key]
    result, busy_during = other_cores_busy_while(lambda: cp2k.md(atoms, protocol))
    timing = tp.summarise_repeats([result.timing.s_per_step])
    # SCF iterations of the timed step(s), recorded because a fresh start has little wavefunction
    # history; on the quick cell steps 1-10 all took 10 (docs/cp2k_settings.md), so steps 2-3 are
    # steady state there
    timing["scf_iterations_per_step"] = result.extra.get("scf_iterations_per_timed_step")
    timing["other_cores_busy_during"] = busy_during
    cache[key] = timing
    return timing


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a Slurm allocation), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


#: Cores' worth of other processes' CPU tolerated beside CP2K's ranks (system noise; an idle
#: machine of the CI kind reads ~0.02): beyond it, a rank shares its core and waits in lockstep.
BUSY_SLACK_CORES = 0.2


def busy_cores_note(busy_during: float | None, ranks: int, cores: int | None) -> str | None:
    """A warning when other processes, while CP2K was timed, left fewer idle cores than CP2K has
    ranks, beyond BUSY_SLACK_CORES (`busy_during`: cores' worth of their CPU use on the `cores`
    this process may use, `other_cores_busy_while`)."""
    if busy_during is None or not cores:
        return None
    if busy_during + ranks > cores + BUSY_SLACK_CORES:
        return (f"the machine was busy when CP2K was timed (other processes used {busy_during:.2f} of the "
                f"{cores} cores this process may use while CP2K ran; CP2K on {ranks} ranks): CP2K's s/step "
                f"may be inflated, and the ratio with it")
    return None


def unique_cells(base: Atoms, targets: list[int]) -> list[Atoms]:
    """The cells for `targets` (0 or below len(base): `base` itself), one per distinct atom count,
    in ascending size: two targets that round to the same repeat would time one cell twice."""
    cells: dict[int, Atoms] = {}
    for target in targets:
        atoms = cell_of_size(base, target) if target >= len(base) else base
        cells.setdefault(len(atoms), atoms)
    return [cells[n] for n in sorted(cells)]


def nearest_sizes(n_atoms: list[int], target: int, k: int = 2) -> list[int]:
    """Indices of the `k` sizes nearest `target` on a log scale (ties to the smaller), in size order."""
    order = sorted(range(len(n_atoms)), key=lambda i: (abs(np.log(n_atoms[i] / target)), n_atoms[i]))
    return sorted(order[:k], key=lambda i: n_atoms[i])


def settings_text(settings: Any) -> str:
    """A CP2K settings preset in a few words for a method line."""
    extra = [f"{k} {v}" for k, v in (("NGRIDS", settings.ngrids), ("EPS_PGF_ORB", settings.eps_pgf_orb),
                                     ("diag", settings.diag_library)) if v is not None]
    if settings.mixing_method != "BROYDEN_MIXING":
        extra.append(settings.mixing_method.split("_")[0].title() + " mixing")
    return (f"{settings.xc}/{settings.basis_set}, {settings.cutoff_ry:g}/{settings.rel_cutoff_ry:g} Ry, "
            f"EPS_DEFAULT {settings.eps_default:.0e}, EPS_SCF {settings.eps_scf:.0e}, "
            f"{settings.extrapolation} {settings.extrapolation_order}" + "".join(f", {e}" for e in extra))


#: Largest N (atoms) at which a fitted crossing of the claimed ratio is reported: beyond it the two
#: power laws are extrapolated far outside the measured sizes.
MAX_CROSSING_N = 1e9


def scaling_with_n(p: dict[str, Any], nep: Any, tuned: Any, untuned: Any) -> tuple[
        list[dict[str, Any]], dict[str, float], dict[str, str], dict[str, str], str]:
    """The speed-up as a function of N on one core each: CP2K's cost at the `cp2k_scaling_n_atoms`
    cells (the throughput cell built with that many atoms) read from the CP2K tuning study's record
    (`cp2k_tuning.cached_md_timing`: 1 MPI rank, CPU-equivalent s/step, measured on a CPU of this
    model), NEP timed here on 1 thread on the same cells. Returns (rows, metrics, units, reasons,
    method text). Exponents of s/step ∝ N^b for both codes and the N at which the fitted ratio
    reaches `claimed_speedup` are metrics where ≥ 2 sizes have a CP2K timing."""
    from .. import cp2k_tuning, systems

    sizes = [int(n) for n in p.get("cp2k_scaling_n_atoms", [])]
    if not sizes:
        return [], {}, {}, {}, ""
    record = cp2k_tuning.load_record(cp2k_tuning.DEFAULT_RECORD_ABS)
    cpu = hardware_info()["cpu_model"]
    rows, missing = [], []
    for n in sizes:
        atoms = systems.build(p.get("builder", "a-LixSi"), seed=int(p.get("seed", 7)),
                              **{**p.get("builder_params", {"x": 2.0}), "n_atoms": n})
        tuned_t = cp2k_tuning.cached_md_timing(record, atoms, tuned, cpu)
        if tuned_t is None:
            missing.append(len(atoms))
            continue
        untuned_t = cp2k_tuning.cached_md_timing(record, atoms, untuned, cpu)
        nep_prot = protocol_for(p, int(p.get("nep_steps", 200)), int(p.get("nep_warmup", 10)))
        nep_s = time_md(nep, atoms, nep_prot, int(p.get("repeats", 3)))["median"]
        cp2k_s = cp2k_tuning.md_cost_s(tuned_t)
        row = {"n_atoms": len(atoms), "cp2k_s_per_step": cp2k_s, "nep_s_per_step": nep_s,
               "ratio": cp2k_s / nep_s, "cp2k_source": f"tuning study record, {tuned_t['variant']}"}
        if untuned_t is not None:
            row.update(cp2k_untuned_s_per_step=cp2k_tuning.md_cost_s(untuned_t),
                       ratio_untuned=cp2k_tuning.md_cost_s(untuned_t) / nep_s)
        rows.append(row)
    metrics: dict[str, float] = {}
    units: dict[str, str] = {}
    reasons: dict[str, str] = {}
    if missing:
        reasons["cp2k_cost_vs_n"] = (f"not measured: CP2K's cost at N = {', '.join(map(str, missing))} is not in "
                                     f"reference_data/studies/cp2k_tuning.json for this CPU ({cpu}); "
                                     "run `nepbench reference tune --variant <adopted> --case md:a-Li2Si-N`")
    text = ""
    if len(rows) >= 2:
        n = [r["n_atoms"] for r in rows]
        b_c, a_c, e_c = tp.fit_scaling_exponent(n, [r["cp2k_s_per_step"] for r in rows])
        b_n, a_n, _ = tp.fit_scaling_exponent(n, [r["nep_s_per_step"] for r in rows])
        claimed = float(p.get("claimed_speedup", 70000.0))
        metrics.update(scaling_exponent_cp2k_1core=b_c, scaling_exponent_nep_1core=b_n)
        units.update(scaling_exponent_cp2k_1core="(s/step ∝ N^b)", scaling_exponent_nep_1core="(s/step ∝ N^b)")
        n_star = tp.n_at_ratio(claimed, b_c, a_c, b_n, a_n)
        if np.isfinite(n_star) and 1.0 <= n_star <= MAX_CROSSING_N:
            metrics["n_atoms_at_claimed_speedup"] = n_star
            units["n_atoms_at_claimed_speedup"] = f"atoms (fitted ratio = {claimed:,.0f}×, 1 core each)"
        else:
            reasons["n_atoms_at_claimed_speedup"] = (
                f"not reached: the fitted ratio ({rows[0]['ratio']:,.0f}× at N = {n[0]}, ∝ N^{b_c - b_n:+.2f}) "
                f"meets {claimed:,.0f}× at no N between 1 and {MAX_CROSSING_N:.0e} atoms")
        for r in rows:
            key = f"speedup_1core_n{r['n_atoms']}"
            metrics[key] = r["ratio"]
            units[key] = "× (CP2K tuned, 1 rank, vs NEP 1 thread)"
        text = (f"; against N (1 core each: CP2K 1 rank from the tuning study record, CPU-equivalent s/step; "
                f"{engine_label(nep)} 1 thread here): N = {', '.join(map(str, n))}, CP2K s/step ∝ N^{b_c:.2f}"
                + (f" ± {e_c:.2f}" if np.isfinite(e_c) else "") + f", {engine_label(nep)} ∝ N^{b_n:.2f}")
    elif rows:
        reasons.setdefault("n_atoms_at_claimed_speedup", "not measured: CP2K's cost is recorded at one size only")
    return rows, metrics, units, reasons, text


def run_throughput(spec: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    from ..engines.cp2k import AIMD_SETTINGS, AIMD_V1_SETTINGS, CP2KEngine

    p = spec.params
    base = base_cell(p)
    asked_ranks = int(p.get("cp2k_ranks", 2))
    ranks = max(1, min(asked_ranks, usable_cores()))  # mpirun refuses more ranks than slots
    # NEP_CPU, or an ASE-calculator comparator (its torch threads): CP2K's cores, not more
    nep = cpu_engine(ctx, threads=p.get("nep_threads") or ranks)
    nep_name = getattr(nep, "name", "nep_cpu")
    label = engine_label(nep)
    engines = {nep_name: nep.version()}
    metrics: dict[str, float] = {}
    units: dict[str, str] = {}
    notes: list[str] = []
    busy_notes: list[str] = []
    hardware = hardware_info()
    cpu = f"{hardware['cpu_model']} ({hardware['logical_cores']} logical cores)"
    gpumd, gpu_reason = _gpumd_or_reason(ctx)
    if gpumd is not None:
        engines["gpumd"] = gpumd.version()

    identical: list[dict[str, Any]] = []
    if ranks < asked_ranks:
        notes.append(f"CP2K on {ranks} ranks, not the suite's {asked_ranks}: this process may use {ranks} cores")
    try:
        cp2k = CP2KEngine(AIMD_SETTINGS, ranks=ranks)
        engines["cp2k"] = cp2k.version()
    except EngineNotAvailable:
        cp2k = None
    cp2k_threads = ranks * AIMD_SETTINGS.omp_threads
    nep_threads = nep.effective_threads()
    code = "NEP_CPU" if nep_name == "nep_cpu" else f"{label} (torch)"
    cores_text = (f"CP2K {ranks} MPI rank(s) × {AIMD_SETTINGS.omp_threads} OpenMP thread(s), "
                  f"{code} {nep_threads if nep_threads is not None else 'default'} thread(s)")
    if nep_threads is not None and nep_threads != cp2k_threads:
        notes.append(f"{code} on {nep_threads} thread(s) against CP2K's {cp2k_threads}: "
                     + ("calorine's CPUNEP build is single-threaded" if nep.backend == "calorine"
                        else "nep_threads set in the suite"))
    for atoms in unique_cells(base, list(p.get("identical_sizes", [len(base)]))) if cp2k else []:
        prot = protocol_for(p, int(p.get("cp2k_steps", 2)), int(p.get("cp2k_warmup", 1)))
        cp2k_t = cp2k_timing_shared(cp2k, atoms, prot, ctx.shared)
        busy = busy_cores_note(cp2k_t.get("other_cores_busy_during"), ranks, usable_cores())
        if busy and busy not in busy_notes:
            busy_notes.append(busy)
        untuned_t = None
        if p.get("cp2k_untuned", False) and AIMD_V1_SETTINGS != AIMD_SETTINGS:
            untuned_t = cp2k_timing_shared(CP2KEngine(AIMD_V1_SETTINGS, ranks=ranks), atoms, prot, ctx.shared)
            busy = busy_cores_note(untuned_t.get("other_cores_busy_during"), ranks, usable_cores())
            if busy and busy not in busy_notes:
                busy_notes.append(busy)
        nep_prot = protocol_for(p, int(p.get("nep_steps", 200)), int(p.get("nep_warmup", 10)))
        nep_t = time_md(nep, atoms, nep_prot, int(p.get("repeats", 3)))
        n = len(atoms)
        row = {"n_atoms": n, "cp2k_s_per_step": cp2k_t["median"],
               "cp2k_scf_iterations_per_step": cp2k_t.get("scf_iterations_per_step"),
               "cp2k_other_cores_busy_during": cp2k_t.get("other_cores_busy_during"),
               "nep_s_per_step": nep_t["median"], "nep_s_per_step_min": nep_t["min"],
               "nep_s_per_step_max": nep_t["max"], "nep_engine": nep_name if label == "NEP" else label,
               "ratio": tp.speed_ratio(n / nep_t["median"], n / cp2k_t["median"]),
               "cp2k_ranks": ranks, "cp2k_omp_threads": AIMD_SETTINGS.omp_threads, "nep_threads": nep_threads,
               "hardware": f"both on {cpu}; {cores_text}"}
        metrics[f"speedup_cpu_identical_n{n}"] = row["ratio"]
        units[f"speedup_cpu_identical_n{n}"] = "×"
        if untuned_t is not None:
            row.update(cp2k_untuned_s_per_step=untuned_t["median"],
                       ratio_untuned=tp.speed_ratio(n / nep_t["median"], n / untuned_t["median"]))
            metrics[f"speedup_cpu_identical_n{n}_untuned"] = row["ratio_untuned"]
            units[f"speedup_cpu_identical_n{n}_untuned"] = "× (against the untuned CP2K preset)"
        if gpumd is not None:
            gpu_t = time_md(gpumd, atoms, nep_prot, 1)
            row.update({"gpu_s_per_step": gpu_t["median"],
                        "ratio_gpu": tp.speed_ratio(n / gpu_t["median"], n / cp2k_t["median"])})
            metrics[f"speedup_gpu_identical_n{n}"] = row["ratio_gpu"]
            units[f"speedup_gpu_identical_n{n}"] = "× (GPU NEP vs CPU CP2K)"
        identical.append(row)
    if identical:
        largest = identical[-1]  # unique_cells: ascending size
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
    cp2k_n = [row["n_atoms"] for row in identical]
    cp2k_s = [row["cp2k_s_per_step"] for row in identical]

    scaling: dict[str, dict[str, list[float]]] = {}
    fits: dict[str, dict[str, Any]] = {}
    nep_n, nep_s = [], []
    for atoms in unique_cells(base, list(p.get("nep_sizes", [64, 512, 4096]))):
        steps = max(5, int(p.get("nep_atom_steps", 2_000_000) // len(atoms)))
        t = time_md(nep, atoms, protocol_for(p, steps, max(2, steps // 10)), int(p.get("repeats", 3)))
        nep_n.append(len(atoms))
        nep_s.append(t["median"])
    # an ASE comparator's line and metrics carry its engine's name (ase_calc), so no NEP's are mistaken for it
    scaling[nep_name] = {"n_atoms": nep_n, "s_per_atom_step": [s / n for s, n in zip(nep_s, nep_n)]}
    metrics[f"{nep_name}_atom_steps_per_s_max"] = max(n / s for n, s in zip(nep_n, nep_s))
    units[f"{nep_name}_atom_steps_per_s_max"] = "atom·step/s"
    if len(cp2k_n) >= 2 and len(nep_n) >= 2:
        scaling["cp2k"] = {"n_atoms": cp2k_n, "s_per_atom_step": [s / n for s, n in zip(cp2k_s, cp2k_n)]}
        target_n = int(p.get("extrapolate_to_n", 1000))
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
        notes.append(f"ratio at N = {target_n} from CP2K's fit s/step ∝ N^{b_cp2k:.2f} ({error_text}) over "
                     f"N = {', '.join(map(str, cp2k_n))} and {label}'s sizes "
                     f"{', '.join(str(nep_n[i]) for i in near)}")

    gpu_note = ""
    if gpumd is not None:
        gpu_note = f"; GPUMD: {engines['gpumd']} on {', '.join(hardware['gpus'])}, one run per size"
        g_n, g_rate = [], []
        for atoms in unique_cells(base, list(p.get("gpu_sizes", [4096, 32768, 262144]))):
            steps = max(100, int(p.get("gpu_atom_steps", 2e8) // len(atoms)))
            res = gpumd.md(atoms, protocol_for(p, steps, max(10, steps // 10)))
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
            others = "" if busy_notes else ", ".join(f"{row['n_atoms']} atoms "
                               f"{tp.speed_ratio(g_rate[best], row['n_atoms'] / row['cp2k_s_per_step']):,.0f}×"
                               for row in identical if row is not cheapest)
            notes.append(f"GPU-vs-CP2K per atom·step: CP2K on {cheapest['n_atoms']} atoms (its lowest cost per "
                         f"atom·step, the least favourable side), GPUMD at its best size of the sweep, "
                         f"{g_n[best]} atoms" + (f"; with CP2K's other cells: {others}" if others else ""))
    method = ("NVT (CSVR) at {T} K, {dt} fs, each engine on the same cells for the identical-N rows "
              "(CP2K {cs} timed step(s) after {cw} warm-up, {m} {ns} after {nw}); {c} on {cpu}; {cores}; "
              "warm-up excluded; {m} median of {r} repeats".format(m=label,
                  T=p.get("temperature_k", 900.0), dt=p.get("timestep_fs", 1.0),
                  cs=int(p.get("cp2k_steps", 2)), cw=int(p.get("cp2k_warmup", 1)),
                  ns=int(p.get("nep_steps", 200)), nw=int(p.get("nep_warmup", 10)),
                  c=engines.get("cp2k", "CP2K not installed"), cpu=cpu, cores=cores_text, r=p.get("repeats", 3)))
    method += (f"; CP2K settings (tuned, the AIMD preset): {settings_text(AIMD_SETTINGS)}"
               + (f"; untuned preset (ratio reported beside): {settings_text(AIMD_V1_SETTINGS)}"
                  if p.get("cp2k_untuned", False) and AIMD_V1_SETTINGS != AIMD_SETTINGS else ""))
    scaling_rows, scaling_metrics, scaling_units, scaling_reasons, scaling_text = scaling_with_n(
        p, cpu_engine(ctx, threads=1), AIMD_SETTINGS, AIMD_V1_SETTINGS) if cp2k is not None else ([], {}, {}, {}, "")
    metrics.update(scaling_metrics)
    units.update(scaling_units)
    method += scaling_text
    method += gpu_note + "".join(f"; {note}" for note in notes + busy_notes)
    reasons: dict[str, str] = dict(scaling_reasons)
    if busy_notes:  # an inflated CP2K time inflates every ratio: none is stated, in metrics or series
        for key in _cp2k_ratio_keys(metrics):
            reasons[key] = f"not measured: {busy_notes[0]}; rerun on an idle machine"
            del metrics[key]
        for row in identical:
            row.pop("ratio", None)
            row.pop("ratio_gpu", None)
            row.pop("ratio_untuned", None)
    if cp2k is None:
        for key in ("speedup_cpu_identical_n", "speedup_gpu_identical_n", "speedup_gpu_vs_cp2k_per_atom_step"):
            reasons[key] = "not measured: CP2K (cp2k.psmp) is not installed here"
    elif len(cp2k_n) < 2 or len(nep_n) < 2:
        target_n = int(p.get("extrapolate_to_n", 1000))
        reasons[f"speedup_cpu_extrapolated_n{target_n}"] = (
            f"not measured: CP2K was timed on {len(cp2k_n)} and {label} on {len(nep_n)} distinct cell size(s); "
            "each scaling fit needs 2")
    if gpu_reason:
        gpu_words = gpu_reason if gpu_reason.startswith("not applicable") else f"not measured: {gpu_reason}"
        method += f"; GPU {gpu_words}"
        for key in ("gpumd_atom_steps_per_s_max", "speedup_gpu_vs_cp2k_per_atom_step", "speedup_gpu_identical_n"):
            if key not in metrics and key not in reasons:
                reasons[key] = gpu_words
    return TaskOutcome("done", metrics=metrics, metric_units=units,
                       series={"identical_n": identical, "scaling": scaling, "fits": fits,
                               "cp2k_vs_n": scaling_rows}, method=method,
                       engines=engines, seed=int(p.get("seed", 7)), metric_reasons=reasons)


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
