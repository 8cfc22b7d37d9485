"""MD accuracy: NEP MD on exactly the AIMD reference's cell, temperature, time step and length
(and longer, to show convergence) → partial RDFs and Li diffusivity against the CP2K AIMD; plus the
energy drift of an NVE run as MD stability."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..config import TaskSpec, finite_number, integer, unknown_keys, unknown_name
from ..engines.base import MDProtocol
from ..errors import InputError
from ..metrics.diffusion import arrhenius_fit, diffusivity, msd_multiple_origins
from ..metrics.equilibration import relaxation_heat, thermostat_offset
from ..metrics.rdf import minimum_image_radius_a, rdf_l1_error, rdf_trajectory, rdf_wasserstein1
from ..metrics.stability import nve_energy_drift_ev_per_atom_per_ps
from . import TaskContext, TaskOutcome, cpu_engine, engine_label
from . import md_adf_vdos
from .accuracy import missing_species, model_species

#: Parameters an md_accuracy task reads (suite files are checked against them when loaded).
TASK_PARAMS = frozenset({"runs", "length_factors", "min_rdf_production_ps", "max_temperature_offset",
                         "min_temperature_offset_z", "min_diffusion_production_ps", "r_max_a", "n_bins",
                         "seed", "nve"}) | md_adf_vdos.PARAMS
MIN_DIFFUSION_PS = 0.5  # shortest production run from which a diffusivity is fitted
NVE_KEYS = frozenset({"builder", "params", "temperature_k", "timestep_fs", "steps", "seed", "nvt_steps"})
#: NVT steps (CSVR at the nve table's temperature) run before the NVE check when its table names none:
#: a builder's packing releases enough heat to take an unthermostatted a-Li2Si cell from 900 K to a
#: ~3,600 K melt, so without them the drift is measured at a temperature each model sets itself.
DEFAULT_NVE_NVT_STEPS = 1000


def _positive_int(value: Any) -> bool:
    number = integer(value)
    return number is not None and number >= 1


def _positive_number(value: Any) -> bool:
    number = finite_number(value)
    return number is not None and number > 0


def check_params(params: dict[str, Any]) -> str | None:
    """What is wrong with an md_accuracy task's `runs`, `length_factors`, `n_bins`, numeric bounds
    or `nve` table, or None. (Whether each run exists in aimd.toml is checked when the task runs:
    the suite does not know which reference folder it will be given.)"""
    from .. import systems

    runs = params.get("runs")
    if runs is not None and (not isinstance(runs, list) or not all(isinstance(r, str) for r in runs)):
        return f"runs must be a list of AIMD run ids ([] for the NVE check alone), got {runs!r}"
    factors = params.get("length_factors", [1, 4])
    if not isinstance(factors, list) or not factors or not all(_positive_int(f) for f in factors):
        return f"length_factors must be a non-empty list of integers >= 1, got {factors!r}"
    if factors[0] != 1:  # g(r) and D are compared on the first: it must have the AIMD's own length
        return f"length_factors must start with 1 (the run compared with the AIMD has its length), got {factors!r}"
    n_bins = params.get("n_bins", 80)
    if not (_positive_int(n_bins) and n_bins >= 2):
        return f"n_bins must be an integer >= 2, got {n_bins!r}"
    for key in ("min_rdf_production_ps", "max_temperature_offset", "min_temperature_offset_z",
                "min_diffusion_production_ps"):
        value = params.get(key)
        if value is not None and not (finite_number(value) is not None and value >= 0):
            return f"{key} must be a number >= 0, got {value!r}"
    if "r_max_a" in params and not _positive_number(params["r_max_a"]):
        return f"r_max_a must be a number > 0, got {params['r_max_a']!r}"
    for where, table in (("seed", params), ("nve seed", params.get("nve") or {})):
        seed = table.get("seed", 0) if isinstance(table, dict) else 0
        if not (integer(seed) is not None and seed >= 0):
            return f"{where} must be an integer >= 0, got {seed!r}"
    problem = md_adf_vdos.param_problem(params)
    if problem:
        return problem
    nve = params.get("nve")
    if nve is None:
        return None
    if not isinstance(nve, dict):
        return f"nve must be a table, got {nve!r}"
    problem = unknown_keys(nve, NVE_KEYS)
    if problem:
        return f"nve has {problem}"
    problem = unknown_name(nve.get("builder"), systems.BUILDERS, "builder")
    if problem:
        return f"nve has {problem}"
    problem = systems.param_problem(nve["builder"], nve.get("params", {}))
    if problem:
        return f"nve {problem}"
    for key in ("temperature_k", "timestep_fs"):
        if not _positive_number(nve.get(key)):
            return f"nve {key} must be a number > 0, got {nve.get(key)!r}"
    if not _positive_int(nve.get("steps")):
        return f"nve steps must be an integer >= 1, got {nve.get('steps')!r}"
    nvt_steps = integer(nve.get("nvt_steps", DEFAULT_NVE_NVT_STEPS))
    if nvt_steps is None or nvt_steps < 0:
        return f"nve nvt_steps must be an integer >= 0, got {nve.get('nvt_steps')!r}"
    return None


#: Largest |log-log slope − 1| of the AIMD's Li MSD over the fit window for it to count as diffusive
#: there. A short run's window sits at tens of fs, where the MSD still carries ballistic motion
#: (slope up to 2) or caging (below 1): a "D" fitted there is no diffusivity, so none is compared.
MAX_LOGLOG_SLOPE_DEVIATION = 0.15
MIN_RDF_PS = 0.1  # shortest production run whose g(r) is compared (10–20 frames at the runs' 5–10 fs spacing)
#: An AIMD production whose mean T is more than this fraction off its thermostat temperature, and
#: significantly so (below), counts as not equilibrated.
MAX_TEMPERATURE_OFFSET = 0.10
#: ... significantly: by more than this many standard errors of the mean. A 32-atom cell's instantaneous
#: T scatters by ~14 % (σ/T = √(2/3N)) and is correlated over the thermostat's time, so the mean of a
#: 0.2–0.4 ps production has a standard error of ~4 %: 10 % alone is 2.5 σ, within reach of chance.
MIN_TEMPERATURE_OFFSET_Z = 3.0


def compare_rdf(ref_traj: Any, model_traj: Any, r_max_a: float, n_bins: int) -> dict[str, Any]:
    """Partial g(r) of both trajectories and their L1 / Wasserstein-1 agreement per pair."""
    g_ref = rdf_trajectory(ref_traj, r_max_a, n_bins)
    g_mod = rdf_trajectory(model_traj, r_max_a, n_bins)
    pairs: dict[str, Any] = {}
    for pair, ref in g_ref.partials.items():
        if pair not in g_mod.partials:
            continue
        model = g_mod.partials[pair]
        # a pair never closer than r_max in one run (a sparse species) has g ≡ 0 there: no W1, while
        # L1 still tells a model that loses a shell the AIMD has
        w1 = rdf_wasserstein1(g_ref.r_a, ref, model) if np.any(ref > 0) and np.any(model > 0) else None
        pairs["-".join(pair)] = {"ref": ref, "model": model, "l1": rdf_l1_error(g_ref.r_a, ref, model),
                                 "w1_a": w1}
    return {"r_a": g_ref.r_a, "pairs": pairs}


def trajectory_halves(traj: Any) -> tuple[Any, Any]:
    """The first and the second half of a trajectory's frames (an odd middle frame goes to the second)."""
    half = traj.n_frames // 2
    parts = []
    for frames in (slice(0, half), slice(half, traj.n_frames)):
        parts.append(dataclasses.replace(traj, times_ps=traj.times_ps[frames],
                                         positions_a=traj.positions_a[frames], cells_a=traj.cells_a[frames]))
    return parts[0], parts[1]


def rdf_halves_l1_max(ref_traj: Any, r_max_a: float, n_bins: int) -> float:
    """Largest RDF L1 error, over species pairs, between the first and second half of a reference run.

    It shows how much g(r) from a run of this length moves by sampling alone, so a model–AIMD
    `rdf_l1_error_max` near it cannot be told from noise. Each half has half the frames, so it errs
    high (by about √2 for uncorrelated frames). Needs at least 2 frames.
    """
    if ref_traj.n_frames < 2:
        raise ValueError(f"need at least 2 frames to split a run in halves, got {ref_traj.n_frames}")
    first, second = trajectory_halves(ref_traj)
    return max(v["l1"] for v in compare_rdf(first, second, r_max_a, n_bins)["pairs"].values())


#: Blocks of the Li diffusivity's standard error (stderr has LI_D_BLOCKS - 1 degrees of freedom).
LI_D_BLOCKS = 3
#: One-sided confidence of the bound on a flat model MSD's D (`d_log10_ratio`).
D_BOUND_CONFIDENCE = 0.95


def species_mask(traj: Any, species: str = "Li") -> np.ndarray:
    """Which atoms of the trajectory are `species` (bool per atom)."""
    return np.array([s == species for s in traj.symbols], dtype=bool)


def has_species(traj: Any, species: str = "Li") -> bool:
    """Whether any atom of the trajectory is `species` (no MSD or D without one)."""
    return bool(species_mask(traj, species).any())


def li_diffusivity(traj: Any, species: str = "Li") -> Any:
    return diffusivity(traj.positions_a, traj.times_ps, mask=species_mask(traj, species), n_blocks=LI_D_BLOCKS)


def li_msd(traj: Any, species: str = "Li") -> tuple[np.ndarray, np.ndarray]:
    return msd_multiple_origins(traj.positions_a, traj.times_ps, mask=species_mask(traj, species))


def run_md_accuracy(spec: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    from ..aimd import load_aimd, load_aimd_spec, thermo_history

    p = spec.params
    aimd_spec = load_aimd_spec(ctx.reference_dir / "aimd.toml")
    engine = cpu_engine(ctx)  # nep_cpu, or ase_calc for a comparator: one ASE MD driver, one protocol
    label = engine_label(engine)
    species = model_species(ctx)
    factors = [int(f) for f in p.get("length_factors", [1, 4])]
    min_rdf_ps = float(p.get("min_rdf_production_ps", MIN_RDF_PS))
    max_t_offset = float(p.get("max_temperature_offset", MAX_TEMPERATURE_OFFSET))
    min_t_offset_z = float(p.get("min_temperature_offset_z", MIN_TEMPERATURE_OFFSET_Z))
    min_d_ps = float(p.get("min_diffusion_production_ps", MIN_DIFFUSION_PS))
    metrics: dict[str, float] = {}
    units: dict[str, str] = {}
    reasons: dict[str, str] = {}
    series: dict[str, Any] = {"rdf": {}, "msd": {}, "runs": {}, "aimd_thermo": {}}
    arrhenius_rows: list[tuple[str, float, Any, Any]] = []
    l1_all, w1_all, logratio_all, halves_all = [], [], [], []
    adf_vdos = md_adf_vdos.Totals()  # ADF and vDOS per run, scored like g(r)
    unresolved: list[str] = []  # runs with a diffusive AIMD whose model D could not be compared
    unresolved_metrics: list[str] = []  # their metrics: the model's value, not the reference, is missing
    method_bits = []
    for run_id in p.get("runs", [r.id for r in aimd_spec.runs]):
        history = thermo_history(aimd_spec, run_id)  # every run, compared or not: is it equilibrated?
        if history is not None:
            series["aimd_thermo"][run_id] = history
        try:
            ref = load_aimd(aimd_spec, run_id)
        except InputError as exc:
            reasons[f"rdf_l1_error_max.{run_id}"] = f"no AIMD reference yet: {exc}"
            continue
        lacking = missing_species([ref.first_frame], species)
        if lacking:
            reasons[f"rdf_l1_error_max.{run_id}"] = f"not applicable: model lacks {', '.join(lacking)}"
            continue
        if ref.production_ps < min_rdf_ps:  # load_aimd already refuses runs with < 2 production frames
            reasons[f"rdf_l1_error_max.{run_id}"] = (
                f"AIMD production {ref.production_ps:.3f} ps < {min_rdf_ps} ps: too short to compare g(r)")
            method_bits.append(f"{run_id}: {ref.production_ps:.3f} ps AIMD (too short)")
            continue
        run = ref.run
        temp = thermostat_offset(ref.thermo["temperature_k"], run.protocol.temperature_k)
        metrics[f"aimd_temperature_mean_k.{run_id}"] = temp.mean_k
        metrics[f"aimd_temperature_stderr_k.{run_id}"] = temp.stderr_k
        units.update({f"aimd_temperature_mean_k.{run_id}": "K", f"aimd_temperature_stderr_k.{run_id}": "K"})
        t_text = (f"T {temp.mean_k:.0f} ± {temp.stderr_k:.0f} K against {run.protocol.temperature_k:.0f} K "
                  f"({100 * temp.relative_offset:+.1f} %, {temp.z:+.1f} σ)")
        if len(ref.thermo["time_ps"]) >= 3:  # still relaxing? its heat holds the thermostat above target
            trend, heat_k = relaxation_heat(ref.thermo["time_ps"], ref.thermo["potential_energy_ev"],
                                            len(ref.first_frame), run.protocol.thermostat_coupling_fs)
            metrics[f"aimd_potential_trend_mev_per_atom_per_ps.{run_id}"] = trend.slope
            metrics[f"aimd_potential_trend_stderr_mev_per_atom_per_ps.{run_id}"] = trend.stderr
            metrics[f"aimd_thermostat_heat_offset_k.{run_id}"] = heat_k
            units.update({f"aimd_potential_trend_mev_per_atom_per_ps.{run_id}": "meV/atom/ps",
                          f"aimd_potential_trend_stderr_mev_per_atom_per_ps.{run_id}": "meV/atom/ps",
                          f"aimd_thermostat_heat_offset_k.{run_id}": "K (CSVR offset the E_pot trend implies)"})
            t_text += (f", E_pot trend {trend.slope:+.0f} ± {trend.stderr:.0f} meV/atom/ps "
                       f"(its heat holds T {heat_k:+.0f} K off target)")
        if abs(temp.relative_offset) > max_t_offset and abs(temp.z) > min_t_offset_z:
            reasons[f"rdf_l1_error_max.{run_id}"] = (
                f"AIMD production averages {temp.mean_k:.0f} ± {temp.stderr_k:.0f} K against its "
                f"{run.protocol.temperature_k:.0f} K thermostat ({100 * temp.relative_offset:+.0f} %, "
                f"{abs(temp.z):.1f} standard errors): not equilibrated; lengthen its warm-up in aimd.toml")
            method_bits.append(f"{run_id}: {ref.production_ps:.3f} ps AIMD (not equilibrated: {t_text})")
            continue
        model_trajs = {}
        for factor in factors:
            result = engine.md(ref.first_frame, matching_protocol(ref, factor, seed=int(p.get("seed", 0)) + factor))
            model_trajs[factor] = result.trajectory
            if factor == factors[0] and len(result.thermo["temperature_k"]) >= 2:  # the model's own T, 3N - 3 dof
                model_t = thermostat_offset(result.thermo["temperature_k"], run.protocol.temperature_k)
                metrics[f"model_temperature_mean_k.{run_id}"] = model_t.mean_k
                metrics[f"model_temperature_stderr_k.{run_id}"] = model_t.stderr_k
                units.update({f"model_temperature_mean_k.{run_id}": "K",
                              f"model_temperature_stderr_k.{run_id}": "K"})
                t_text += f"; {label} T {model_t.mean_k:.0f} ± {model_t.stderr_k:.0f} K"
        r_max = rdf_r_max_a(ref, float(p.get("r_max_a", 6.0)))
        rdf = compare_rdf(ref.trajectory, model_trajs[factors[0]], r_max, int(p.get("n_bins", 80)))
        l1, w1 = rdf_maxima(rdf)
        metrics[f"rdf_l1_error_max.{run_id}"] = l1
        if w1 is not None:
            metrics[f"rdf_w1_max_a.{run_id}"] = w1
            w1_all.append(w1)
        else:
            reasons[f"rdf_w1_max_a.{run_id}"] = f"no pair has neighbours within {r_max:.2f} Å in both runs"
        metrics[f"rdf_l1_aimd_halves.{run_id}"] = rdf_halves_l1_max(ref.trajectory, r_max, int(p.get("n_bins", 80)))
        halves_all.append(metrics[f"rdf_l1_aimd_halves.{run_id}"])
        l1_all.append(l1)
        t_text += md_adf_vdos.record_run(run_id, ref.trajectory, model_trajs[factors[0]], p, metrics, units,
                                          series, reasons, adf_vdos)
        series["rdf"][run_id] = {"r_a": rdf["r_a"], "pairs": {
            k: {"ref": v["ref"], "model": v["model"]} for k, v in rdf["pairs"].items()}}
        series["runs"][run_id] = {"aimd_production_ps": ref.production_ps, "aimd_steps": ref.total_steps,
                                  "aimd_wall_s": ref.total_wall_s, "temperature_k": run.protocol.temperature_k}
        li_d = compare_li_d(ref.trajectory, model_trajs[factors[0]], ref.production_ps, min_d_ps)
        if li_d.stage == "no_li":  # an a-Si or a-C reference: g(r) only
            reasons[f"li_d_log10_ratio.{run_id}"] = li_d.reason
            method_bits.append(f"{run_id}: {ref.production_ps:.2f} ps AIMD (no Li), {t_text}")
            continue
        lag, msd_ref = li_msd(ref.trajectory)
        lag_m, msd_mod = li_msd(model_trajs[factors[0]])
        n = min(len(lag), len(lag_m))
        series["msd"][run_id] = {"Li": {"time_ps": lag[:n], "ref": msd_ref[:n], "model": msd_mod[:n]}}
        if li_d.d_aimd is not None:
            metrics[f"li_d_aimd_loglog_slope.{run_id}"] = li_d.d_aimd.loglog_slope
        if li_d.stage != "diffusive":  # too short, or its MSD not yet diffusive
            reasons[f"li_d_log10_ratio.{run_id}"] = li_d.reason
            state = " (MSD not yet diffusive)" if li_d.stage == "not_diffusive" else ""
            method_bits.append(f"{run_id}: {ref.production_ps:.2f} ps AIMD{state}, {t_text}")
            continue
        d_ref = li_d.d_aimd
        d_mod = {factors[0]: li_d.d_model} | {f: li_diffusivity(model_trajs[f]) for f in factors[1:]}
        metrics[f"li_d_aimd_cm2_per_s.{run_id}"] = d_ref.d_cm2_per_s
        metrics[f"li_d_aimd_stderr_cm2_per_s.{run_id}"] = d_ref.stderr_cm2_per_s
        for f, d in d_mod.items():
            metrics[f"li_d_model_x{f}_cm2_per_s.{run_id}"] = d.d_cm2_per_s
            metrics[f"li_d_model_x{f}_stderr_cm2_per_s.{run_id}"] = d.stderr_cm2_per_s
        ratio, note = li_d.log10_ratio, li_d.note
        if ratio is None:  # the model's D, not the reference, is what could not be resolved
            reasons[f"li_d_log10_ratio.{run_id}"] = note
            unresolved.append(f"{run_id} ({note})")
            unresolved_metrics.append(f"li_d_log10_ratio.{run_id}")
        else:
            metrics[f"li_d_log10_ratio.{run_id}"] = ratio
            logratio_all.append(abs(ratio))
        arrhenius_rows.append((system_label(run.builder, run.params), run.protocol.temperature_k, d_ref,
                               d_mod[factors[0]]))  # the AIMD fit never depends on the model tested
        method_bits.append(f"{run_id}: {ref.production_ps:.2f} ps AIMD, {t_text}" + (f"; {note}" if note else ""))
    if l1_all:
        metrics["rdf_l1_error_max"] = max(l1_all)
        if w1_all:
            metrics["rdf_w1_max_a"] = max(w1_all)
        else:
            reasons["rdf_w1_max_a"] = "no compared run has a pair with neighbours within r_max in both runs"
        metrics["rdf_l1_aimd_halves_max"] = max(halves_all)
        units.update({"rdf_l1_error_max": "", "rdf_w1_max_a": "Å", "rdf_l1_aimd_halves_max": ""})
    else:
        reasons["rdf_l1_error_max"] = (
            f"no AIMD run has ≥{min_rdf_ps} ps of production yet (see reference_data/aimd/manifest.json)")
    md_adf_vdos.record_maxima(adf_vdos, metrics, units, reasons)
    if unresolved:  # a run the model cannot be judged on must not leave the others' maximum to pass
        reasons["li_d_log10_ratio_abs_max"] = f"the model's Li diffusivity is not resolved in {'; '.join(unresolved)}"
        unresolved_metrics.append("li_d_log10_ratio_abs_max")
    elif logratio_all:
        metrics["li_d_log10_ratio_abs_max"] = max(logratio_all)
        units["li_d_log10_ratio_abs_max"] = "|log10(D_NEP/D_AIMD)|"
    else:
        reasons["li_d_log10_ratio_abs_max"] = (
            f"no AIMD run has ≥{min_d_ps:g} ps of production with a diffusive Li MSD yet "
            "(see li_d_log10_ratio.<run> and reference_data/aimd/manifest.json)")
    _arrhenius(arrhenius_rows, metrics, series, reasons)
    nve_text = _nve_drift(p, engine, metrics, units, series)
    method = (f"{label} NVT (CSVR) from the AIMD frame after warm-up, same cell/T/dt/coupling; production "
              f"length ×{factors}; g(r) L1 (capped) and W1 per pair, max over pairs, beside the L1 between "
              "the AIMD's own two halves (sampling floor); ADF per central species and vDOS per species "
              "(finite-difference velocities), normalised L1 with their own halves floors; D(Li) from MSD, block stderr; "
              + "; ".join(method_bits + [nve_text]))
    return TaskOutcome("done", metrics=metrics, metric_units=units, series=series, method=method,
                       engines={getattr(engine, "name", "nep_cpu"): engine.version()}, seed=int(p.get("seed", 0)),
                       metric_reasons=reasons, unresolved_metrics=tuple(unresolved_metrics))


def matching_protocol(ref: Any, length_factor: int, seed: int) -> MDProtocol:
    """The NEP MD that matches an AIMD reference `ref` (`aimd.AimdReference`): NVT (CSVR) at its
    temperature, time step, thermostat coupling, sample interval and warm-up, for `length_factor`
    times its production length (ps), velocities from `seed`."""
    run = ref.run.protocol
    production_steps = max(1, int(round(ref.production_ps * 1000 / run.timestep_fs)))
    return MDProtocol("nvt", run.temperature_k, run.timestep_fs, production_steps * length_factor,
                      run.sample_interval, seed=seed, thermostat_coupling_fs=run.thermostat_coupling_fs,
                      warmup_steps=run.warmup_steps)


def rdf_r_max_a(ref: Any, r_max_a: float = 6.0) -> float:
    """The g(r) range (Å) compared for AIMD reference `ref`: `r_max_a`, cut to just inside its
    cell's minimum-image radius (beyond it g(r) counts an atom's own images)."""
    return min(r_max_a, 0.999 * minimum_image_radius_a(ref.trajectory.cells_a[0]))


def rdf_maxima(rdf: dict[str, Any]) -> tuple[float, float | None]:
    """(largest normalised L1, largest W1 in Å or None when no pair has neighbours within r_max in
    both runs) over the pairs of a `compare_rdf` result."""
    pairs = rdf["pairs"].values()
    w1s = [v["w1_a"] for v in pairs if v["w1_a"] is not None]
    return max(v["l1"] for v in pairs), (max(w1s) if w1s else None)


def is_diffusive(d: Any) -> bool:
    """Whether a `Diffusivity` is one: D > 0 and a log-log MSD slope within MAX_LOGLOG_SLOPE_DEVIATION
    of 1 over its fit window (a NaN slope, from a flat MSD, is not)."""
    return bool(d.d_cm2_per_s > 0 and abs(d.loglog_slope - 1.0) <= MAX_LOGLOG_SLOPE_DEVIATION)


def d_log10_ratio(d_model: float, d_model_stderr: float, d_aimd: float,
                  n_blocks: int = LI_D_BLOCKS) -> tuple[float | None, str | None]:
    """(log10(D_model / D_AIMD), note) for an AIMD diffusivity `d_aimd` > 0 (all in cm²/s).

    A model whose Li MSD does not grow over the fit window has a fitted D ≤ 0, whose logarithm is
    undefined. Its true D is then below D⁺ = max(D, 0) + t·stderr with one-sided confidence
    D_BOUND_CONFIDENCE (t: Student's quantile with n_blocks − 1 degrees of freedom, 2.92 for 3
    blocks), so log10(D⁺ / D_AIMD) bounds the ratio from above and its magnitude is the least
    disagreement the run allows at that confidence: that bound is returned, with a note saying so.
    When D⁺ does not lie in (0, D_AIMD), the run says nothing either way: (None, why).
    """
    from scipy import stats

    if d_model > 0:
        return float(np.log10(d_model / d_aimd)), None
    t = float(stats.t.ppf(D_BOUND_CONFIDENCE, n_blocks - 1))
    upper = max(d_model, 0.0) + t * d_model_stderr
    if 0 < upper < d_aimd:
        return (float(np.log10(upper / d_aimd)),
                f"model Li MSD flat over the fit window (D {d_model:.2e} ± {d_model_stderr:.1e} cm²/s): "
                f"the ratio is the one-sided {100 * D_BOUND_CONFIDENCE:.0f} % bound log10((D + {t:.2f} stderr)"
                f"/D_AIMD), its size the least disagreement at that confidence")
    return None, (f"model Li MSD flat over the fit window (D {d_model:.2e} ± {d_model_stderr:.1e} cm²/s), "
                  f"too noisy to bound against D_AIMD {d_aimd:.2e} cm²/s")


@dataclasses.dataclass(frozen=True)
class LiDComparison:
    """One AIMD run's Li diffusivity against the model's run from its frame, as this task judges it.

    `stage` is where it got to: "no_li" (no Li in the cell), "too_short" (AIMD production below
    the minimum), "not_diffusive" (AIMD Li MSD not diffusive over its fit window) or "diffusive"
    (both D fitted). `log10_ratio` is log10(D_model / D_AIMD), or the bound `d_log10_ratio` gives
    for a flat model MSD (`note` then says so); None where none is compared, and `reason` says why
    (at "diffusive": the model's D is not resolved). `d_aimd` and `d_model` are the fits made
    (`metrics.diffusion.Diffusivity`, cm²/s; None where the comparison stopped before them).
    """

    stage: str
    log10_ratio: float | None = None
    reason: str | None = None
    note: str | None = None
    d_aimd: Any = None
    d_model: Any = None


def compare_li_d(ref_traj: Any, model_traj: Any, production_ps: float, min_d_ps: float) -> LiDComparison:
    """The Li diffusivity comparison of AIMD trajectory `ref_traj` (`production_ps` ps of
    production) with `model_traj`: no D from runs shorter than `min_d_ps` ps or whose AIMD Li MSD
    is not diffusive (`is_diffusive`); the AIMD's D is fitted before the model's."""
    if not has_species(ref_traj):
        return LiDComparison("no_li", reason="no Li in this cell: no Li diffusivity to compare")
    if production_ps < min_d_ps:
        return LiDComparison("too_short",
                             reason=f"AIMD production {production_ps:.2f} ps < {min_d_ps:g} ps: too short to fit D")
    d_aimd = li_diffusivity(ref_traj)
    if not is_diffusive(d_aimd):
        w0, w1 = d_aimd.fit_window_ps
        return LiDComparison("not_diffusive", d_aimd=d_aimd, reason=(
            f"AIMD Li MSD not diffusive over its fit window {1000 * w0:.0f}–{1000 * w1:.0f} fs (log-log "
            f"slope {d_aimd.loglog_slope:.2f}, diffusive is 1 ± {MAX_LOGLOG_SLOPE_DEVIATION:g}): "
            f"{production_ps:.2f} ps of production is too short for D"))
    d_model = li_diffusivity(model_traj)
    ratio, note = d_log10_ratio(d_model.d_cm2_per_s, d_model.stderr_cm2_per_s, d_aimd.d_cm2_per_s)
    return LiDComparison("diffusive", ratio, note if ratio is None else None, note, d_aimd, d_model)


def system_label(builder: str, params: dict[str, Any]) -> str:
    """"a-LixSi(x=3.0)": the runs that share a builder and its parameters are one system at several T."""
    return f"{builder}({','.join(f'{k}={params[k]}' for k in sorted(params))})"


def _arrhenius(rows: list[tuple[str, float, Any, Any]], metrics: dict[str, float],
               series: dict[str, Any], reasons: dict[str, str] | None = None) -> None:
    """Activation energies (eV) of Li diffusion per system with ≥ 2 temperatures, AIMD and model,
    weighted by the block stderrs of D where every one is > 0: `li_ea_{aimd,model}_ev.<system>`
    and their stderrs; the points go to series["arrhenius"], one `system` label per point.

    `rows` holds every run with a diffusive AIMD MSD, so the AIMD fit is the same whichever model is
    tested. Each fit takes its points with D > 0 (a logarithm) and records how many temperatures it
    used (`li_ea_{aimd,model}_n_temperatures.<system>`); with fewer than 2 it has no Ea, and
    `reasons` names the temperatures left out."""
    by_system: dict[str, list[tuple[float, Any, Any]]] = {}
    for system, temp, d_ref, d_mod in rows:
        by_system.setdefault(system, []).append((temp, d_ref, d_mod))
    points_all: list[tuple[str, float, Any, Any]] = []
    for system, points in sorted(by_system.items()):
        if len({t for t, _, _ in points}) < 2:
            continue
        for key, pick in (("aimd", lambda r, m: r), ("model", lambda r, m: m)):
            used = [(t, d) for t, d in ((t, pick(r, m)) for t, r, m in points) if d.d_cm2_per_s > 0]
            used_temps = {t for t, _ in used}
            if len(used_temps) < 2:
                if reasons is not None:
                    left_out = sorted({t for t, _, _ in points} - used_temps)
                    reasons[f"li_ea_{key}_ev.{system}"] = (f"{key} Li D ≤ 0 at {', '.join(f'{t:.0f}' for t in left_out)}"
                                                          " K: fewer than 2 temperatures to fit")
                continue
            metrics[f"li_ea_{key}_n_temperatures.{system}"] = float(len(used_temps))
            temps = np.array([t for t, _ in used])
            errors = np.array([d.stderr_cm2_per_s for _, d in used])
            weighted = bool(np.all(np.isfinite(errors)) and np.all(errors > 0))
            fit = arrhenius_fit(temps, np.array([d.d_cm2_per_s for _, d in used]), errors if weighted else None)
            metrics[f"li_ea_{key}_ev.{system}"] = fit.ea_ev
            if np.isfinite(fit.ea_stderr_ev):
                metrics[f"li_ea_{key}_stderr_ev.{system}"] = fit.ea_stderr_ev
        points_all += [(system, t, r, m) for t, r, m in points]
    if points_all:
        series["arrhenius"] = {
            "system": [s for s, _, _, _ in points_all],
            "temperature_k": [t for _, t, _, _ in points_all],
            "d_ref_cm2_per_s": [r.d_cm2_per_s for _, _, r, _ in points_all],
            "d_model_cm2_per_s": [m.d_cm2_per_s for _, _, _, m in points_all],
            "d_ref_stderr": [r.stderr_cm2_per_s for _, _, r, _ in points_all],
            "d_model_stderr": [m.stderr_cm2_per_s for _, _, _, m in points_all]}


#: The NVE cell when a task's params name none (the quick and gate suites give the same cell with
#: its seed and NVT stage).
DEFAULT_NVE = {"builder": "a-LixSi", "params": {"x": 2.0}, "temperature_k": 900.0, "timestep_fs": 1.0,
               "steps": 2000}


@dataclasses.dataclass(frozen=True)
class NveCheck:
    """One NVE stability run (`run_nve_check`).

    Attributes:
        drift_abs_ev_per_atom_per_ps: |slope| of the total energy per atom (eV/atom/ps).
        drift_stderr_ev_per_atom_per_ps: its standard error (eV/atom/ps).
        residual_rms_ev_per_atom: RMS of the total energy about the fitted line (eV/atom).
        temperature_mean_k: mean kinetic temperature of the NVE run (K).
        time_ps / total_energy_ev_per_atom: the sampled total energy per atom (ps, eV/atom).
        words: the protocol in a phrase, for a method text.
    """

    drift_abs_ev_per_atom_per_ps: float
    drift_stderr_ev_per_atom_per_ps: float
    residual_rms_ev_per_atom: float
    temperature_mean_k: float
    time_ps: np.ndarray
    total_energy_ev_per_atom: np.ndarray
    words: str


def run_nve_check(nve: dict[str, Any], engine: Any) -> NveCheck:
    """Energy drift of an NVE run on the cell of an `nve` table (MD stability).

    The builder's packing is first equilibrated for `nvt_steps` (default DEFAULT_NVE_NVT_STEPS) of
    NVT (CSVR, 100 fs) at the table's temperature; the NVE run then starts from the last NVT frame
    with fresh Maxwell–Boltzmann velocities at that temperature (seed + 1), so it runs near the stated
    temperature. With nvt_steps = 0 the NVE run starts from the packing and heats as it relaxes
    (a-Li2Si from 900 K: a ~3,600 K melt with the default model). The md task and the asv benchmark
    both run it, so the nightly number is the gated one."""
    from .. import systems

    seed = int(nve.get("seed", 3))
    temperature_k, timestep_fs = float(nve["temperature_k"]), float(nve["timestep_fs"])
    nvt_steps = int(nve.get("nvt_steps", DEFAULT_NVE_NVT_STEPS))
    atoms = systems.build(nve["builder"], seed=seed, **nve.get("params", {}))
    start_words = f"from {temperature_k:.0f} K velocities on the packing"
    if nvt_steps > 0:
        nvt = MDProtocol("nvt", temperature_k, timestep_fs, nvt_steps, sample_interval=nvt_steps, seed=seed,
                         thermostat_coupling_fs=100.0)
        atoms = engine.md(atoms, nvt).trajectory.frame(-1)
        atoms.wrap()
        seed += 1
        start_words = (f"after {nvt_steps} NVT steps (CSVR, 100 fs) at {temperature_k:.0f} K, from fresh "
                       f"{temperature_k:.0f} K velocities")
    protocol = MDProtocol("nve", temperature_k, timestep_fs, int(nve["steps"]), sample_interval=10, seed=seed,
                          warmup_steps=0)
    result = engine.md(atoms, protocol)
    total = result.thermo["potential_energy_ev"] + result.thermo["kinetic_energy_ev"]
    drift = nve_energy_drift_ev_per_atom_per_ps(result.thermo["time_ps"], total, len(atoms))
    mean_t = float(np.mean(result.thermo["temperature_k"]))
    return NveCheck(abs(drift.drift_ev_per_atom_per_ps), drift.stderr_ev_per_atom_per_ps,
                    drift.residual_rms_ev_per_atom, mean_t, np.asarray(result.thermo["time_ps"]),
                    total / len(atoms),
                    f"NVE drift of {nve['builder']} ({len(atoms)} atoms) {start_words}, {int(nve['steps'])} "
                    f"steps of {timestep_fs:g} fs: mean T {mean_t:.0f} K")


def _nve_drift(p: dict[str, Any], engine: Any, metrics: dict[str, float], units: dict[str, str],
               series: dict[str, Any]) -> str:
    """`run_nve_check` on the task's `nve` table into the task's metrics and series; returns the
    method's words on it."""
    check = run_nve_check(p.get("nve", DEFAULT_NVE), engine)
    metrics["nve_drift_abs_ev_per_atom_per_ps"] = check.drift_abs_ev_per_atom_per_ps
    metrics["nve_drift_stderr_ev_per_atom_per_ps"] = check.drift_stderr_ev_per_atom_per_ps
    units["nve_drift_abs_ev_per_atom_per_ps"] = "eV/atom/ps"
    metrics["nve_temperature_mean_k"] = check.temperature_mean_k
    units["nve_temperature_mean_k"] = "K"
    series["nve"] = {"time_ps": check.time_ps, "total_energy_ev_per_atom": check.total_energy_ev_per_atom}
    return check.words
