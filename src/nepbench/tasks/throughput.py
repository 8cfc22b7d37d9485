"""Throughput: the same Atoms and the same MDProtocol on CP2K and on NEP engines.

Two comparisons, both recorded:
  (a) identical N: CP2K AIMD and NEP MD on the very same cells (the sizes CP2K affords here);
  (b) a size sweep: s/step for NEP from tens to ~1e5 atoms (CPU; GPU where GPUMD runs) and CP2K at
      ≥2 sizes, each fitted to s/step = a·N^b, so the ratio can be stated at any N with the fit named.
Warm-up steps are excluded from every timing; repeats give min/median/max.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from ..config import TaskSpec
from ..engines.base import MDProtocol
from ..errors import EngineNotAvailable
from ..metrics import throughput as tp
from ..provenance import atomic_write_json, code_sha256, content_hash, hardware_info
from . import TaskContext, TaskOutcome


#: Parameters a throughput task reads (suite files are checked against them when loaded).
TASK_PARAMS = frozenset({
    "builder", "builder_params", "temperature_k", "timestep_fs", "seed", "repeats", "identical_sizes",
    "cp2k_ranks", "cp2k_steps", "cp2k_warmup", "nep_threads", "nep_steps", "nep_warmup", "nep_sizes",
    "nep_atom_steps", "extrapolate_to_n", "gpu_sizes", "gpu_atom_steps"})


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


def cp2k_timing_shared(cp2k, atoms: Atoms, protocol: MDProtocol, cache_dir: Path) -> dict[str, float]:
    """CP2K s/step for this cell and protocol, measured once per suite run and shared by its models.

    The CP2K side of a speed ratio does not depend on the NEP model, so when a suite compares
    several models their throughput tasks reuse one measurement (same run, same machine). The key
    covers the cell, the protocol, the CP2K settings, version and rank count, and nepbench's code
    (`provenance.code_sha256`), so a rerun after a code change measures CP2K again with the NEP side.
    """
    key = content_hash({"numbers": atoms.numbers.tolist(), "positions": np.round(atoms.positions, 6).tolist(),
                        "cell": np.round(atoms.cell.array, 6).tolist(), "protocol": asdict(protocol),
                        "settings": asdict(cp2k.settings), "version": cp2k.version(),
                        "ranks": getattr(cp2k, "ranks", None), "code_sha256": code_sha256()})[:24]
    path = cache_dir / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = cp2k.md(atoms, protocol)
    timing = tp.summarise_repeats([result.timing.s_per_step])
    # SCF iterations of the timed step(s), recorded because a fresh start has little wavefunction
    # history; on the quick cell steps 1-10 all took 10 (docs/cp2k_settings.md), so steps 2-3 are
    # steady state there
    timing["scf_iterations_per_step"] = result.extra.get("scf_iterations_per_timed_step")
    atomic_write_json(path, timing)
    return timing


def run_throughput(spec: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    from ..engines.cp2k import AIMD_SETTINGS, CP2KEngine
    from ..engines.nep_cpu import NepCpuEngine

    p = spec.params
    base = base_cell(p)
    nep = NepCpuEngine(ctx.model_path, threads=p.get("nep_threads"))
    engines = {"nep_cpu": nep.version()}
    identical: list[dict[str, Any]] = []
    metrics: dict[str, float] = {}
    units: dict[str, str] = {}
    hardware = hardware_info()
    cpu = f"{hardware['cpu_model']} ({hardware['logical_cores']} logical cores)"

    cp2k_n, cp2k_s = [], []
    try:
        cp2k = CP2KEngine(AIMD_SETTINGS, ranks=int(p.get("cp2k_ranks", 2)))
        engines["cp2k"] = cp2k.version()
    except EngineNotAvailable:
        cp2k = None
    for target in p.get("identical_sizes", [len(base)]) if cp2k else []:
        atoms = cell_of_size(base, target) if target >= len(base) else base
        prot = protocol_for(p, int(p.get("cp2k_steps", 2)), int(p.get("cp2k_warmup", 1)))
        cp2k_t = cp2k_timing_shared(cp2k, atoms, prot, ctx.work_dir.parent / "_shared" / "cp2k_timing")
        nep_prot = protocol_for(p, int(p.get("nep_steps", 200)), int(p.get("nep_warmup", 10)))
        nep_t = time_md(nep, atoms, nep_prot, int(p.get("repeats", 3)))
        ratio = tp.speed_ratio(len(atoms) / nep_t["median"], len(atoms) / cp2k_t["median"])
        identical.append({"n_atoms": len(atoms), "cp2k_s_per_step": cp2k_t["median"],
                          "cp2k_scf_iterations_per_step": cp2k_t.get("scf_iterations_per_step"),
                          "nep_s_per_step": nep_t["median"], "nep_s_per_step_min": nep_t["min"],
                          "nep_s_per_step_max": nep_t["max"], "ratio": ratio, "nep_engine": "nep_cpu",
                          "hardware": f"both on {cpu}"})
        metrics[f"speedup_cpu_identical_n{len(atoms)}"] = ratio
        units[f"speedup_cpu_identical_n{len(atoms)}"] = "×"
        cp2k_n.append(len(atoms))
        cp2k_s.append(cp2k_t["median"])
    if identical:
        largest = max(identical, key=lambda row: row["n_atoms"])
        metrics["speedup_cpu_identical_n"] = largest["ratio"]
        metrics["speedup_cpu_identical_n_atoms"] = float(largest["n_atoms"])
        units["speedup_cpu_identical_n"] = "×"
        if largest["cp2k_scf_iterations_per_step"] is not None:
            metrics["cp2k_scf_iterations_per_step"] = largest["cp2k_scf_iterations_per_step"]
            units["cp2k_scf_iterations_per_step"] = "SCF iterations (timed CP2K steps)"

    scaling: dict[str, dict[str, list[float]]] = {}
    nep_n, nep_s = [], []
    for target in p.get("nep_sizes", [64, 512, 4096]):
        atoms = cell_of_size(base, target)
        steps = max(5, int(p.get("nep_atom_steps", 2_000_000) // len(atoms)))
        t = time_md(nep, atoms, protocol_for(p, steps, max(2, steps // 10)), int(p.get("repeats", 3)))
        nep_n.append(len(atoms))
        nep_s.append(t["median"])
    scaling["nep_cpu"] = {"n_atoms": nep_n, "s_per_atom_step": [s / n for s, n in zip(nep_s, nep_n)]}
    metrics["nep_cpu_atom_steps_per_s_max"] = max(n / s for n, s in zip(nep_n, nep_s))
    units["nep_cpu_atom_steps_per_s_max"] = "atom·step/s"
    if len(cp2k_n) >= 2:
        scaling["cp2k"] = {"n_atoms": cp2k_n, "s_per_atom_step": [s / n for s, n in zip(cp2k_s, cp2k_n)]}
        b_cp2k, a_cp2k, b_err = tp.fit_scaling_exponent(cp2k_n, cp2k_s)
        b_nep, a_nep, _ = tp.fit_scaling_exponent(nep_n, nep_s)
        metrics["cp2k_scaling_exponent"] = b_cp2k
        metrics["nep_cpu_scaling_exponent"] = b_nep
        target_n = int(p.get("extrapolate_to_n", 1000))
        metrics[f"speedup_cpu_extrapolated_n{target_n}"] = (
            tp.predict_s_per_step(target_n, b_cp2k, a_cp2k) / tp.predict_s_per_step(target_n, b_nep, a_nep))
        units[f"speedup_cpu_extrapolated_n{target_n}"] = "× (fit)"

    gpu_reason = None
    gpu_note = ""
    try:
        from ..engines.gpumd import GpumdEngine

        gpumd = GpumdEngine(ctx.model_path, record_frames=False)  # GPUMD times its dumps in the loop
        ok, gpu_detail = gpumd.available()
        gpu_reason = None if ok else gpu_detail
        if ok:
            engines["gpumd"] = gpumd.version()
            gpu_note = f"; GPUMD: {engines['gpumd']} on {', '.join(hardware['gpus'])}, one run per size"
            g_n, g_rate = [], []
            for target in p.get("gpu_sizes", [4096, 32768, 262144]):
                atoms = cell_of_size(base, target)
                steps = max(100, int(p.get("gpu_atom_steps", 2e8) // len(atoms)))
                res = gpumd.md(atoms, protocol_for(p, steps, max(10, steps // 10)))
                g_n.append(len(atoms))
                g_rate.append(res.timing.atom_steps_per_s)
            scaling["gpumd"] = {"n_atoms": g_n, "s_per_atom_step": [1 / r for r in g_rate]}
            metrics["gpumd_atom_steps_per_s_max"] = max(g_rate)
            units["gpumd_atom_steps_per_s_max"] = "atom·step/s"
            if cp2k_n:
                per_atom_step_cp2k = cp2k_s[-1] / cp2k_n[-1]
                metrics["speedup_gpu_vs_cp2k_per_atom_step"] = per_atom_step_cp2k * max(g_rate)
                units["speedup_gpu_vs_cp2k_per_atom_step"] = "× (GPU NEP vs CPU CP2K)"
    except EngineNotAvailable as exc:
        gpu_reason = str(exc)
    method = ("NVT (CSVR) at {T} K, {dt} fs, same cells and protocol for every engine; {c} on "
              "{cpu}; warm-up excluded; NEP median of {r} repeats".format(
                  T=p.get("temperature_k", 900.0), dt=p.get("timestep_fs", 1.0),
                  c=engines.get("cp2k", "CP2K not installed"), cpu=cpu, r=p.get("repeats", 3)))
    method += gpu_note
    reasons: dict[str, str] = {}
    if gpu_reason:
        method += f"; GPU not measured: {gpu_reason}"
        for key in ("gpumd_atom_steps_per_s_max", "speedup_gpu_vs_cp2k_per_atom_step"):
            if key not in metrics:
                reasons[key] = f"not measured: {gpu_reason}"
    return TaskOutcome("done", metrics=metrics, metric_units=units,
                       series={"identical_n": identical, "scaling": scaling}, method=method,
                       engines=engines, seed=int(p.get("seed", 7)), metric_reasons=reasons)
