"""The AIMD sizing study as a whole: per case the NEP density, per size the (cached) production and
its analysis, the CP2K options and the recommendation; and the recomputation of the choices
from a stored record.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..metrics.diffusion import msd_multiple_origins
from .analysis import (
    adf_vdos_halves_by_length, diffusion_by_length, loglog_slope, pass_fraction, rdf_halves_by_length,
)
from .cases import SizingCase, SizingTargets
from .cost import COST_EXPONENTS, Cp2kCost, Option, options
from .production import (
    DensityResult, ProductionRun, wrapped_last, load_production, md_steps, npt_density, run_case_size,
    save_production, timestep_check,
)


def analyse_production(case: SizingCase, run: ProductionRun, targets: SizingTargets) -> dict[str, Any]:
    """Everything the study records for one case at one size (JSON-ready)."""
    from ..metrics.equilibration import linear_trend, thermostat_offset
    from ..tasks.md_accuracy import li_diffusivity, rdf_r_max_a

    traj = run.trajectory
    r_max = rdf_r_max_a(SimpleNamespace(trajectory=traj), targets.r_max_a)
    lengths = [length for length in targets.lengths_ps if length <= case.production_ps / 2 + 1e-9]
    halves = rdf_halves_by_length(traj, case.frame_ps, lengths, r_max, targets.n_bins)
    rdf_frac, rdf_worst_pair, rdf_median = {}, {}, {}
    for length, pairs in halves.items():
        worst = np.max(np.array(list(pairs.values())), axis=0)  # per window, the largest over pairs
        rdf_frac[length] = pass_fraction(worst <= targets.rdf_l1_bound)
        rdf_median[length] = float(np.median(worst))
        rdf_worst_pair[length] = max(pairs, key=lambda p: float(np.median(pairs[p])))
    diff = diffusion_by_length(traj, case.frame_ps, lengths, targets)
    angles_vib = adf_vdos_halves_by_length(traj, case.frame_ps, lengths)
    trend = linear_trend(traj.times_ps, run.potential_energy_ev / run.n_atoms * 1000.0)
    temp = thermostat_offset(run.temperature_k, case.temperature_k)
    whole = li_diffusivity(traj)
    lag, msd = msd_multiple_origins(traj.positions_a, traj.times_ps,
                                    mask=np.array([x == "Li" for x in traj.symbols]))
    half_run = float(traj.times_ps[-1] - traj.times_ps[0]) / 2
    slopes = {f"{a:g}-{a + 1:g}": loglog_slope(lag, msd, a, a + 1.0)
              for a in (0.2, 1.0, 2.0, 4.0, 8.0) if a + 1.0 <= half_run}
    n_li = int(sum(s == "Li" for s in traj.symbols))
    return {
        "n_atoms": run.n_atoms, "formula": run.formula, "n_li": n_li,
        "cell_a": float(traj.cells_a[0][0, 0]), "density_g_cm3": run.density_g_cm3, "rdf_r_max_a": r_max,
        "production_ps": float(traj.times_ps[-1]), "n_frames": traj.n_frames, "cpu_s": run.cpu_s,
        "stages": run.stages,
        "production_potential_trend_mev_per_atom_per_ps": [trend.slope, trend.stderr],
        "production_temperature_k": [temp.mean_k, temp.stderr_k],
        "li_d_whole_production_cm2_per_s": [whole.d_cm2_per_s, whole.stderr_cm2_per_s],
        "li_d_whole_production_loglog_slope": whole.loglog_slope,
        "li_msd_loglog_slope_whole_production": slopes,
        "rdf_halves_l1": {str(k): v for k, v in halves.items()},
        "rdf_pass_fraction": {str(k): v for k, v in rdf_frac.items()},
        "rdf_halves_max_median": {str(k): v for k, v in rdf_median.items()},
        "rdf_limiting_pair": {str(k): v for k, v in rdf_worst_pair.items()},
        "d_windows": {str(k): [dataclasses.asdict(w) for w in v] for k, v in diff.items()},
        "d_pass_fraction": {str(k): pass_fraction([w.passes for w in v]) for k, v in diff.items()},
        "adf_vdos_halves": {str(k): v for k, v in angles_vib.items()},
    }


def recommend(case: SizingCase, opts: Sequence[Option], exponent_key: str) -> dict[str, Any]:
    """The cheapest option meeting both targets, the cheapest meeting D alone and the cheapest
    meeting g(r) alone, at one cost exponent (None where no size meets them within the lengths
    measured)."""
    rdf_only = [o for o in opts if o.rdf_only_hours.get(exponent_key) is not None]
    best_rdf = min(rdf_only, key=lambda o: o.rdf_only_hours[exponent_key]) if rdf_only else None  # type: ignore[arg-type,return-value]
    both = [o for o in opts if o.hours.get(exponent_key) is not None]
    d_only = [o for o in opts if o.d_only_hours.get(exponent_key) is not None]
    best = min(both, key=lambda o: o.hours[exponent_key]) if both else None  # type: ignore[arg-type,return-value]
    first_d = min(d_only, key=lambda o: o.d_only_hours[exponent_key]) if d_only else None  # type: ignore[arg-type,return-value]
    return {"case": case.id,
            "both": None if best is None else {"size": best.size, "n_atoms": best.n_atoms,
                                               "production_ps": best.production_ps,
                                               "hours": best.hours[exponent_key]},
            "d_first": None if first_d is None else {
                "size": first_d.size, "n_atoms": first_d.n_atoms,
                "production_ps": first_d.d_production_ps, "hours": first_d.d_only_hours[exponent_key]},
            "rdf_only": None if best_rdf is None else {
                "size": best_rdf.size, "n_atoms": best_rdf.n_atoms,
                "production_ps": best_rdf.rdf_production_ps,
                "hours": best_rdf.rdf_only_hours[exponent_key]}}


#: Bump when the MD protocol code changes, so cached productions are not reused across it.
CACHE_VERSION = 1


def _density_path(cache_dir: Path, case: SizingCase, model_sha256: str) -> Path:
    from ..provenance import content_hash

    key = content_hash({"case": case.to_dict(), "model": model_sha256, "version": CACHE_VERSION})
    return cache_dir / f"{case.id}-density-{key[:16]}.json"


def _cache_path(cache_dir: Path, case: SizingCase, size: int, density: float, model_sha256: str) -> Path:
    from ..provenance import content_hash

    key = content_hash({"case": case.to_dict(), "size": size, "density": round(density, 6),
                        "model": model_sha256, "version": CACHE_VERSION})
    return cache_dir / f"{case.id}-{size}-{key[:16]}.npz"


def planned_atom_steps(case: SizingCase) -> int:
    """NEP atom·steps the study runs for `case` (NPT stage and every size), to budget it."""
    from .. import systems

    def steps(ps: float) -> int:
        return md_steps(ps, case.timestep_fs)

    sizes_atoms = [len(systems.build(case.builder, seed=case.seed, relax_steps=0, **case.build_params(s)))
                   for s in case.sizes]
    per_size = steps(case.equilibration_ps) + steps(case.production_ps) + steps(0.1)
    npt = steps(case.melt_ps + case.quench_ps + 2.0) + steps(case.npt_ps)
    return int(sum(n * per_size for n in sizes_atoms) + sizes_atoms[-1] * npt)


def aimd_halves_check(reference_dir: Path, targets: SizingTargets) -> dict[str, Any]:
    """Per pair, the halves L1 of each committed AIMD run's production (as md_accuracy computes it),
    to set beside the NEP estimate at the same size and length."""
    from ..aimd import load_aimd, load_aimd_spec
    from ..errors import InputError
    from ..tasks.md_accuracy import compare_rdf, rdf_r_max_a, trajectory_halves

    spec = load_aimd_spec(reference_dir / "aimd.toml")
    out: dict[str, Any] = {}
    for run in spec.runs:
        try:
            ref = load_aimd(spec, run.id)
        except InputError as exc:
            out[run.id] = {"error": str(exc)}
            continue
        r_max = rdf_r_max_a(ref, targets.r_max_a)
        first, second = trajectory_halves(ref.trajectory)
        pairs = compare_rdf(first, second, r_max, targets.n_bins)["pairs"]
        out[run.id] = {"n_atoms": len(ref.first_frame), "production_ps": ref.production_ps,
                       "rdf_r_max_a": r_max, "halves_l1": {k: v["l1"] for k, v in pairs.items()}}
    return out


def recompute_choices(result: dict[str, Any], speedup: float = 1.0,
                      exponents: Sequence[float] = COST_EXPONENTS) -> dict[str, Any]:
    """`result` (a `run_study` record) with each case's options and recommendation recomputed from
    its stored per-size pass fractions, targets and CP2K cost: a change to the pricing or the
    choice needs no MD and no trajectory analysis."""
    targets = SizingTargets(**{k: tuple(v) if isinstance(v, list) else v for k, v in result["targets"].items()})
    for c in result["cases"].values():
        raw = dict(c["case"])
        case = SizingCase(**{**raw, "sizes": tuple(raw["sizes"])})
        cost = Cp2kCost(**c["cp2k_cost"])
        per_size = {int(k): v for k, v in c["sizes"].items()}
        opts = options(case, per_size, targets, cost, speedup, exponents)
        c["options"] = [dataclasses.asdict(o) for o in opts]
        c["recommendation"] = {f"N^{p:g}": recommend(case, opts, f"N^{p:g}") for p in exponents}
    result["cost_exponents"] = list(exponents)
    return result


def run_study(cases: Sequence[SizingCase], model: str, targets: SizingTargets, cache_dir: Path,
              costs: Mapping[str, Cp2kCost], speedup: float, reference_dir: Path | None = None,
              log: Any = print) -> dict[str, Any]:
    """The whole study: per case the NEP NPT density, then per size the cached (or new) production
    and its analysis, the CP2K options and the recommendation (JSON-ready). `costs` maps case id to
    its `Cp2kCost`; `speedup` divides every CP2K cost (the expected gain of the CP2K tuning)."""
    from ..engines.nep_cpu import NepCpuEngine
    from ..provenance import hardware_info

    engine = NepCpuEngine(model, threads=1)
    cache_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"model": {"name": engine.model.name, "sha256": engine.model.sha256},
                           "engine": engine.describe(), "hardware": hardware_info(),
                           "targets": dataclasses.asdict(targets), "cp2k_speedup_assumed": speedup,
                           "cost_exponents": list(COST_EXPONENTS), "cases": {}}
    cpu_total = 0.0
    for case in cases:
        log(f"{case.id}: density")
        dens_path = _density_path(cache_dir, case, engine.model.sha256)
        if dens_path.exists():
            import json

            dens = DensityResult(**json.loads(dens_path.read_text()))
        else:
            dens = npt_density(case, engine)
            from ..files import atomic_write_json

            atomic_write_json(dens_path, dataclasses.asdict(dens))
        cpu_total += dens.cpu_s
        per_size: dict[int, dict[str, Any]] = {}
        for size in case.sizes:
            path = _cache_path(cache_dir, case, size, dens.density_g_cm3, engine.model.sha256)
            if path.exists():
                run = load_production(path)
                log(f"{case.id} {size}: cached production ({run.cpu_s:.0f} CPU s when made)")
            else:
                log(f"{case.id} {size}: equilibrating and producing")
                run = run_case_size(case, size, engine, dens.density_g_cm3)
                save_production(path, run)
                log(f"{case.id} {size}: {run.n_atoms} atoms, {run.cpu_s:.0f} CPU s")
            cpu_total += run.cpu_s
            per_size[size] = analyse_production(case, run, targets)
        smallest = load_production(_cache_path(cache_dir, case, case.sizes[0], dens.density_g_cm3, engine.model.sha256))
        cpu0 = time.process_time()
        step_check = timestep_check(wrapped_last(smallest.trajectory), case, engine)
        cpu_total += time.process_time() - cpu0
        cost = costs[case.id]
        opts = options(case, per_size, targets, cost, speedup)
        out["cases"][case.id] = {
            "case": case.to_dict(), "density": dataclasses.asdict(dens), "sizes": {str(k): v for k, v in per_size.items()},
            "nve_timestep_check": step_check,
            "cp2k_cost": dataclasses.asdict(cost), "options": [dataclasses.asdict(o) for o in opts],
            "recommendation": {f"N^{p:g}": recommend(case, opts, f"N^{p:g}") for p in COST_EXPONENTS}}
    out["nep_md_cpu_s"] = cpu_total
    if reference_dir is not None:
        out["aimd_committed_halves"] = aimd_halves_check(reference_dir, targets)
    return out
