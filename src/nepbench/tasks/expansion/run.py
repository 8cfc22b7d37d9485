"""`run_expansion`, the task's entry point: choose the engine, check the planned cost, run every
(thickness, seed) particle, summarise, and write the method line.

What the task measures and why: docs/metrics.md, "Core–shell expansion".
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np

from ...spec import TaskSpec
from ...errors import ConfigError, EngineNotAvailable
from .. import TaskContext, TaskOutcome, cpu_engine, gpumd_not_applicable, set_stage
from ..parity import model_species
from .headline import CROSS_CHECK_MARGIN_PERCENT
from .params import ExpansionParams, planned_cost, radial_edges_for, t_key
from .particle import run_particle
from .relax import Relaxer, md_window_text
from .summary import built_sizes_text, summarise


def make_engine(p: ExpansionParams, ctx: TaskContext) -> tuple[Any, str]:
    """The engine the protocol runs on, and its version.

    "gpumd" without a GPU raises EngineNotAvailable ("no GPU: ..."); "auto" takes GPUMD when it is
    available and the relaxation is MD (the optimisers run through ASE), else the CPU engine: nep_cpu
    for a NEP, ase_calc for an ASE-calculator comparator (which GPUMD cannot run: `run_expansion`
    reports "gpumd" with one as not applicable, and "auto" takes the CPU engine).
    """
    if ctx.model_kind != "ase" and (p.engine == "gpumd" or (p.engine == "auto" and p.relax == "md")):
        from ...engines.gpumd import GpumdEngine

        # temporary run folders: a kept dump of ~5e5 atoms × 41 frames (`md_sample_interval`) is ~1.2 GB,
        # × 31 runs per particle
        gpumd = GpumdEngine(ctx.model_path)
        ok, reason = gpumd.available()
        if ok:
            return gpumd, gpumd.version()
        if p.engine == "gpumd":
            raise EngineNotAvailable(f"no GPU: {reason} (the full-size expansion experiment runs on GPUMD)")
    engine = cpu_engine(ctx, threads=p.nep_threads)
    return engine, engine.version()


def run_expansion(spec: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    """Core–shell expansion on lithiation vs carbon-shell thickness (docs/metrics.md, "Core–shell
    expansion"). ConfigError for bad parameters or a plan over `max_atom_steps`; EngineNotAvailable
    ("no GPU: ...") for engine = "gpumd" without one; "not_applicable" for a model lacking Li, Si or C,
    or an ASE comparator asked to run on GPUMD."""
    start = time.perf_counter()
    p = ExpansionParams.from_params(dict(spec.params))
    species = set(model_species(ctx))
    if not {"Li", "Si", "C"} <= species:
        return TaskOutcome("not_applicable", reason=f"model {ctx.model_name} lacks "
                           f"{', '.join(sorted({'Li', 'Si', 'C'} - species))} (needs Li, Si and C)")
    not_applicable = gpumd_not_applicable(ctx) if p.engine == "gpumd" else None
    if not_applicable:  # the full-size experiment's engine; an ASE comparator runs it with engine = "nep_cpu"
        return TaskOutcome("not_applicable", reason=f"{not_applicable}; this task asks for engine = \"gpumd\"")
    engine, version = make_engine(p, ctx)
    plan = planned_cost(p)
    if plan["atom_steps"] > p.max_atom_steps:
        raise ConfigError(f"expansion task: the plan takes {plan['atom_steps']:.3g} atom·steps, over max_atom_steps "
                          f"= {p.max_atom_steps:.3g} (predicted {plan['predicted_wall_s'] / 3600:.2g} h)")
    edges = radial_edges_for(p)
    relaxer = Relaxer(p, engine)
    cases = [(t, seed) for t in p.shell_thicknesses_nm for seed in p.seeds]
    results = []
    for k, (t, seed) in enumerate(cases, start=1):
        set_stage(ctx.shared, f"particle {k}/{len(cases)}: shell {t_key(t)} nm, seed {seed} "
                              f"(reference, {len(p.x_schedule)} lithiation stage(s){', control' if p.control else ''})")
        results.append(run_particle(p, t, seed, relaxer, edges, ctx.work_dir / "structures"))
    metrics, units, series, reasons, unresolved = summarise(p, results, edges)
    wall = time.perf_counter() - start
    rate = float(np.median(relaxer.measured_rates)) if relaxer.measured_rates else float("nan")
    metrics.update({"atom_steps": relaxer.atom_steps, "atom_steps_planned": plan["atom_steps"],
                    "wall_s": wall, "predicted_wall_s": plan["predicted_wall_s"],
                    "atom_steps_per_s": rate, "x_target": p.target_x,
                    "x_reached_min": min(r["x_reached"] for r in results)})
    units.update({"atom_steps": "atom·step", "atom_steps_planned": "atom·step (upper bound)", "wall_s": "s",
                  "predicted_wall_s": "s", "atom_steps_per_s": "atom·step/s (median over relaxations)",
                  "x_target": "Li/Si", "x_reached_min": "Li/Si"})
    series["plan"] = plan
    series["params"] = asdict(p)
    method = method_line(p, metrics, reasons, built_sizes_text(results), f"{engine.name} ({version})",
                         relaxer.atom_steps, wall, plan)
    return TaskOutcome("done", metrics=metrics, metric_units=units, series=series, method=method,
                       engines={engine.name: version}, seed=int(p.seeds[0]), metric_reasons=reasons,
                       unresolved_metrics=unresolved)


def method_line(p: ExpansionParams, metrics: dict[str, float], reasons: dict[str, str], sizes: str,
                engine: str, atom_steps: float, wall_s: float, plan: dict[str, Any]) -> str:
    """The outcome's method line: the particles as built (`sizes`), the protocol, the relaxation on
    `engine` ("name (version)"), the caveats (convergence, the gate's reason, cross-check flags) and
    the cost (atom·steps, wall time in s, against the `plan`)."""
    relax = (f"{p.relax.upper()} (ASE, maxstep {p.maxstep_a:g} Å) ≤{p.reference_steps} steps (reference) and "
             f"≤{p.relax_steps} per stage, fmax {p.fmax_ev_per_a:g} eV/Å"
             if p.relax != "md" else
             f"NVT MD (CSVR) at {p.temperature_k:g} K, dt {p.timestep_fs:g} fs, {p.reference_steps} steps "
             f"(reference) and {p.relax_steps} per stage, {md_window_text(p.relax_steps, p.average_frames)}")
    return (f"Si@C particle, {p.core} Si core R = {p.core_radius_nm:g} nm, a-C shell "
            f"{p.shell_density_g_cm3:g} g/cm³, t = {', '.join(t_key(t) for t in p.shell_thicknesses_nm)} nm "
            f"({sizes}), seeds {list(p.seeds)}, in vacuum (non-periodic). Lithiation: Li inserted at the "
            f"largest empty spheres inside the core (Delaunay circumcentres, ≥{p.min_distance_a:g} Å from "
            f"every atom, ≥{p.core_margin_a:g} Å inside the core surface) in steps of Δx = {p.dx:g} up to "
            f"x = {p.target_x:g} Li/Si (reached: {metrics['x_reached_min']:.3g} min), each step relaxed by "
            f"{relax} on {engine}. ΔV/V0 against "
            f"{'an Li-free copy relaxed identically (control)' if p.control else 'the relaxed unlithiated particle'}"
            f"; volumes by '{p.volume_method}' (docs/metrics.md), mean ± stderr over seeds. "
            f"{_caveats(p, metrics, reasons)}"
            f"Cost {atom_steps:.3g} atom·steps in {wall_s:.0f} s "
            f"(planned ≤{plan['atom_steps']:.3g}, predicted {plan['predicted_wall_s']:.0f} s at "
            f"{p.predicted_atom_steps_per_s:.3g} atom·step/s).")


def _caveats(p: ExpansionParams, metrics: dict[str, float], reasons: dict[str, str]) -> str:
    """The method line's sentences on convergence, a withheld headline and cross-check flags ("" if none)."""
    head = f"particle_dv_change_last_half_max_abs_percent.t{t_key(p.headline_t)}"
    text = (f"Not converged where ΔV/V0 still moves: at t = {t_key(p.headline_t)} nm it changed by up to "
            f"{metrics[head]:.2g} % points (largest |change| over seeds) over the second half of the last "
            f"relaxation (then a lower bound where it rises). " if head in metrics else "")
    gate = reasons.get(f"particle_dv_over_v0_percent_at_t{t_key(p.headline_t)}")
    if gate:
        text += f"Headline ΔV/V0 at t = {t_key(p.headline_t)} nm not judged: {gate}. "
    flagged = [t_key(t) for t in p.shell_thicknesses_nm
               if metrics[f"particle_dv_cross_check_excess_percent.t{t_key(t)}"] > CROSS_CHECK_MARGIN_PERCENT]
    if flagged:
        text += (f"Cross-check: at t = {', '.join(flagged)} nm a hull or probe ΔV/V0 exceeds the "
                 f"'{p.volume_method}' one by more than {CROSS_CHECK_MARGIN_PERCENT:g} % points "
                 f"(particle_dv_cross_check_excess_percent): material outside the measured surface "
                 f"(e.g. Li that left the shell) or a non-spherical swelling. ")
    return text
