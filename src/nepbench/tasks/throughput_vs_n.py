"""The speed-up as a function of N on one core each: CP2K's cost from the tuning study's record,
NEP (and GPUMD where there is a GPU) timed here on the same cells; the N at which the fitted ratio
reaches the claimed one (the throughput task's `cp2k_vs_n` series)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np

from ..metrics import throughput as tp
from ..provenance import hardware_info
from . import engine_label
from .throughput_cells import base_cell, protocol_for, time_md

if TYPE_CHECKING:
    from .throughput import ThroughputParams


class OneCoreRow(TypedDict):
    """Series `cp2k_vs_n[i]`: s/step on one core each, CP2K's from the tuning study's record."""

    n_atoms: int
    cp2k_s_per_step: float
    nep_s_per_step: float
    ratio: float
    cp2k_source: str
    cp2k_cpu_model: NotRequired[str]  # the CPU the record was measured on (records since 2026-12-07)
    cp2k_untuned_s_per_step: NotRequired[float]
    ratio_untuned: NotRequired[float]
    gpu_s_per_step: NotRequired[float]  # GPUMD here on the same cell, where a GPU is
    ratio_gpu: NotRequired[float]  # CP2K (1 rank, recorded) ÷ GPUMD


#: Largest N (atoms) at which a fitted crossing of the claimed ratio is reported: beyond it the two
#: power laws are extrapolated far outside the measured sizes.
MAX_CROSSING_N = 1e9


def scaling_with_n(p: ThroughputParams, nep: Any, tuned: Any, untuned: Any, gpumd: Any = None,
                   cp2k_here: bool = True) -> tuple[list[OneCoreRow], dict[str, float], dict[str, str],
                                                    dict[str, str], str]:
    """The speed-up as a function of N on one core each: CP2K's cost at the `cp2k_scaling_n_atoms`
    cells (the throughput cell built with that many atoms) read from the CP2K tuning study's record
    (`cp2k_tuning.cached_md_timing`: 1 MPI rank, CPU-equivalent s/step, measured on a CPU of this
    model), NEP timed here on 1 thread on the same cells, and with `gpumd` GPUMD on them too
    (`speedup_gpu_1rank_n<N>`). Where CP2K is not installed here (`cp2k_here` false, e.g. a GPU
    node), the record of another CPU is used and named in every row and unit. Returns (rows,
    metrics, units, reasons, method text). Exponents of s/step ∝ N^b for both codes and the N at
    which the fitted ratio reaches `claimed_speedup` are metrics where ≥ 2 sizes have a CP2K timing."""
    from .. import cp2k_tuning

    sizes = list(p.cp2k_scaling_n_atoms)
    if not sizes:
        return [], {}, {}, {}, ""
    record = cp2k_tuning.load_record(cp2k_tuning.DEFAULT_RECORD_ABS)
    cpu = hardware_info()["cpu_model"]
    rows, missing = [], []
    metrics: dict[str, float] = {}
    units: dict[str, str] = {}
    for n in sizes:
        atoms = base_cell(p, n_atoms=n)
        entry_cpu = cpu if cp2k_here else cp2k_tuning.recorded_cpu(record, atoms, tuned, cpu)
        tuned_t = cp2k_tuning.cached_md_timing(record, atoms, tuned, entry_cpu) if entry_cpu else None
        if tuned_t is None:
            missing.append(len(atoms))
            continue
        untuned_t = cp2k_tuning.cached_md_timing(record, atoms, untuned, entry_cpu)
        nep_prot = protocol_for(p, p.nep_steps, p.nep_warmup)
        nep_s = time_md(nep, atoms, nep_prot, p.repeats)["median"]
        cp2k_s = cp2k_tuning.md_cost_s(tuned_t)
        where = "" if entry_cpu == cpu else f", measured on {entry_cpu}, not this machine"
        row = {"n_atoms": len(atoms), "cp2k_s_per_step": cp2k_s, "nep_s_per_step": nep_s,
               "ratio": cp2k_s / nep_s, "cp2k_source": f"tuning study record, {tuned_t['variant']}{where}",
               "cp2k_cpu_model": entry_cpu}
        if untuned_t is not None:
            row.update(cp2k_untuned_s_per_step=cp2k_tuning.md_cost_s(untuned_t),
                       ratio_untuned=cp2k_tuning.md_cost_s(untuned_t) / nep_s)
        if gpumd is not None:
            gpu_s = time_md(gpumd, atoms, nep_prot, 1)["median"]
            row.update(gpu_s_per_step=gpu_s, ratio_gpu=cp2k_s / gpu_s)
            metrics[f"speedup_gpu_1rank_n{len(atoms)}"] = cp2k_s / gpu_s
            units[f"speedup_gpu_1rank_n{len(atoms)}"] = f"× (GPUMD here vs CP2K 1 rank, recorded{where})"
        rows.append(row)
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
        claimed = p.claimed_speedup
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
