"""MD accuracy: NEP MD on exactly the AIMD reference's cell, temperature, time step and length
(and longer, to show convergence) → partial RDFs and Li diffusivity against the CP2K AIMD; plus the
energy drift of an NVE run as MD stability.

This module holds the task (`run_md_accuracy` and its steps), its parameters (`MdAccuracyParams`),
its series (`MdSeries`) and the g(r) comparison; beside it md_adf_vdos.py (ADF, vDOS),
md_diffusion.py (Li diffusivity, Arrhenius) and md_nve.py (the NVE stability check).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NotRequired, TypedDict

import numpy as np

from ..checks import finite_number, integer

from ..spec import TaskSpec
from ..engines.base import MDProtocol
from ..errors import InputError
from ..metrics.equilibration import relaxation_heat, thermostat_offset
from ..metrics.rdf import minimum_image_radius_a, rdf_l1_error, rdf_trajectory, rdf_wasserstein1
from . import TaskContext, TaskOutcome, cpu_engine, engine_label
from . import md_adf_vdos, md_diffusion
from .md_adf_vdos import AdfRun, AdfVdosParams, CurvePair, VdosRun
from .md_diffusion import ArrheniusPoints
from .md_nve import DEFAULT_NVE, NveParams, NveSeries, record_nve_check
from .params import positive_int, positive_number
from .parity import missing_species, model_species
# read from here by the asv benchmarks (benchmarks/bench_accuracy.py, also run against older
# commits) and aimd_sizing: they live in md_diffusion.py and md_nve.py
from .md_diffusion import LiDComparison, compare_li_d, is_diffusive, li_diffusivity, species_mask  # noqa: F401
from .md_nve import run_nve_check  # noqa: F401

MIN_DIFFUSION_PS = 0.5  # shortest production run from which a diffusivity is fitted
MIN_RDF_PS = 0.1  # shortest production run whose g(r) is compared (10–20 frames at the runs' 5–10 fs spacing)
#: An AIMD production whose mean T is more than this fraction off its thermostat temperature, and
#: significantly so (below), counts as not equilibrated.
MAX_TEMPERATURE_OFFSET = 0.10
#: ... significantly: by more than this many standard errors of the mean. A 32-atom cell's instantaneous
#: T scatters by ~14 % (σ/T = √(2/3N)) and is correlated over the thermostat's time, so the mean of a
#: 0.2–0.4 ps production has a standard error of ~4 %: 10 % alone is 2.5 σ, within reach of chance.
MIN_TEMPERATURE_OFFSET_Z = 3.0


@dataclasses.dataclass(frozen=True)
class MdAccuracyParams(AdfVdosParams):
    """An md_accuracy task's parameters (suite `[[task]]` keys of the same names; the ADF / vDOS
    ones come from `AdfVdosParams`).

    runs: the AIMD run ids of aimd.toml compared (None: all; (): the NVE check alone);
    length_factors: the model's production lengths in AIMD production lengths, the first 1 (compared);
    min_rdf_production_ps / min_diffusion_production_ps: the shortest AIMD production whose g(r) /
    Li D is compared (ps); max_temperature_offset (fraction) and min_temperature_offset_z (standard
    errors): an AIMD production further off its thermostat counts as not equilibrated; r_max_a (Å)
    and n_bins: the g(r) range and bins; seed: the model runs' velocities (seed + length factor);
    nve: the NVE stability check's table (`NveParams`; DEFAULT_NVE where none is given).
    """

    runs: tuple[str, ...] | None = None
    length_factors: tuple[int, ...] = (1, 4)
    min_rdf_production_ps: float = MIN_RDF_PS
    max_temperature_offset: float = MAX_TEMPERATURE_OFFSET
    min_temperature_offset_z: float = MIN_TEMPERATURE_OFFSET_Z
    min_diffusion_production_ps: float = MIN_DIFFUSION_PS
    r_max_a: float = 6.0
    n_bins: int = 80
    seed: int = 0
    nve: NveParams = DEFAULT_NVE

    @classmethod
    def problem(cls, params: dict[str, Any]) -> str | None:
        """What is wrong with an md_accuracy task's `runs`, `length_factors`, `n_bins`, numeric bounds
        or `nve` table, or None. (Whether each run exists in aimd.toml is checked when the task runs:
        the suite does not know which reference folder it will be given.)"""
        runs = params.get("runs")
        if runs is not None and (not isinstance(runs, list) or not all(isinstance(r, str) for r in runs)):
            return f"runs must be a list of AIMD run ids ([] for the NVE check alone), got {runs!r}"
        factors = params.get("length_factors", list(cls.length_factors))
        if not isinstance(factors, list) or not factors or not all(positive_int(f) for f in factors):
            return f"length_factors must be a non-empty list of integers >= 1, got {factors!r}"
        if factors[0] != 1:  # g(r) and D are compared on the first: it must have the AIMD's own length
            return f"length_factors must start with 1 (the run compared with the AIMD has its length), got {factors!r}"
        n_bins = params.get("n_bins", cls.n_bins)
        if not (positive_int(n_bins) and n_bins >= 2):
            return f"n_bins must be an integer >= 2, got {n_bins!r}"
        for key in ("min_rdf_production_ps", "max_temperature_offset", "min_temperature_offset_z",
                    "min_diffusion_production_ps"):
            value = params.get(key)
            if value is not None and not (finite_number(value) is not None and value >= 0):
                return f"{key} must be a number >= 0, got {value!r}"
        if "r_max_a" in params and not positive_number(params["r_max_a"]):
            return f"r_max_a must be a number > 0, got {params['r_max_a']!r}"
        for where, table in (("seed", params), ("nve seed", params.get("nve") or {})):
            seed = table.get("seed", 0) if isinstance(table, dict) else 0
            if not (integer(seed) is not None and seed >= 0):
                return f"{where} must be an integer >= 0, got {seed!r}"
        problem = super().problem(params)
        if problem:
            return problem
        nve = params.get("nve")
        return None if nve is None else NveParams.problem(nve)

    @classmethod
    def converted(cls, params: dict[str, Any]) -> dict[str, Any]:
        """As `TaskParams.converted`, the `nve` table read by `NveParams.from_params`."""
        out = super().converted(params)
        if out.get("nve") is None:
            out.pop("nve", None)
        elif not isinstance(out["nve"], NveParams):
            out["nve"] = NveParams.from_params(out["nve"])
        return out


#: Parameters an md_accuracy task reads, and what is wrong with their values (one line) or None: the suite
#: loader checks a suite file's tasks with them.
TASK_PARAMS = MdAccuracyParams.names()
check_params = MdAccuracyParams.check


class RdfRun(TypedDict):
    """Series `rdf.<run>`: partial g(r) per species pair ("Li-Si") on `r_a` (Å)."""

    r_a: list[float]
    pairs: dict[str, CurvePair]


class MsdCurve(TypedDict):
    """Series `msd.<run>.<species>`: MSD (Å²) of the AIMD and the model against the lag (ps)."""

    time_ps: list[float]
    ref: list[float]
    model: list[float]
    fit_window_ps: NotRequired[list[float]]  # the D fit window (t_start, t_end): no task writes it yet


class RunSummary(TypedDict):
    """Series `runs.<run>`: the compared AIMD run's production (ps), steps, wall time (s) and T (K)."""

    aimd_production_ps: float
    aimd_steps: int
    aimd_wall_s: float
    temperature_k: float


class AimdThermo(TypedDict):
    """Series `aimd_thermo.<run>` (`aimd.thermo_history`): every committed AIMD step's T (K) and
    potential energy per atom relative to step 0 (eV/atom) against time (ps), the thermostat's
    target (K), the warm-up's end and the detected start of a stationary E_pot (ps, None: none)."""

    time_ps: list[float]
    temperature_k: list[float]
    potential_ev_per_atom: list[float]
    target_temperature_k: float
    warmup_ps: float
    equilibrated_ps: float | None


class MdSeries(TypedDict):
    """An md_accuracy record's `series` (numpy arrays when written, lists when read back from JSON);
    run-keyed blocks hold the compared runs only, except `aimd_thermo` (every run with a commit)."""

    rdf: dict[str, RdfRun]
    msd: dict[str, dict[str, MsdCurve]]  # run → species → curves
    runs: dict[str, RunSummary]
    aimd_thermo: dict[str, AimdThermo]
    adf: NotRequired[dict[str, AdfRun]]  # absent where no run gave an ADF (and in older records)
    vdos: NotRequired[dict[str, VdosRun]]  # likewise
    arrhenius: NotRequired[ArrheniusPoints]  # absent without a system at ≥ 2 temperatures
    nve: NveSeries


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




def warmup_verdict(history: dict[str, Any] | None, stationarity: Any) -> dict[str, Any]:
    """Whether an AIMD run's warm-up ended stationary, from its `thermo_history` (None: no commit yet).

    `stationarity` is `aimd.warmup_stationarity` (passed in, so this module imports no CP2K code).
    Returns its dict ("warmup_stationary": True, False, or None where the warm-up is too short to
    test) plus "reason": the sentence that refuses a diffusivity when it is False. A run whose
    warm-up drifts is still relaxing from its start, so its D is not compared (docs/metrics.md)."""
    if history is None or history.get("warmup_ps") is None:
        return {"warmup_stationary": None, "reason": None}
    verdict = stationarity(history["time_ps"], history["potential_ev_per_atom"], 1, history["warmup_ps"])
    reason = None
    if verdict["warmup_stationary"] is False:
        reason = (f"AIMD warm-up not stationary: E_pot trend {verdict['warmup_trend_mev_per_atom_per_ps']:+.1f} ± "
                  f"{verdict['warmup_trend_stderr_mev_per_atom_per_ps']:.1f} meV/atom/ps over its second half, so "
                  "its Li diffusivity is not compared; start the run pre-equilibrated (aimd.toml `prerelax`) "
                  "or lengthen its warm-up")
    return {**verdict, "reason": reason}


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



@dataclasses.dataclass
class _Tally:
    """What the steps of `run_md_accuracy` add to, run by run."""

    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    units: dict[str, str] = dataclasses.field(default_factory=dict)
    reasons: dict[str, str] = dataclasses.field(default_factory=dict)
    series: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"rdf": {}, "msd": {}, "runs": {}, "aimd_thermo": {}})  # an `MdSeries`
    method_bits: list[str] = dataclasses.field(default_factory=list)
    arrhenius_rows: list[tuple[str, float, Any, Any]] = dataclasses.field(default_factory=list)
    rdf_l1: list[float] = dataclasses.field(default_factory=list)
    rdf_w1: list[float] = dataclasses.field(default_factory=list)
    rdf_halves: list[float] = dataclasses.field(default_factory=list)
    li_d_log_ratios: list[float] = dataclasses.field(default_factory=list)  # |log10(D_model/D_AIMD)|
    adf_vdos: md_adf_vdos.Totals = dataclasses.field(default_factory=md_adf_vdos.Totals)  # scored like g(r)
    unresolved: list[str] = dataclasses.field(default_factory=list)  # diffusive AIMD, model D not compared
    unresolved_metrics: list[str] = dataclasses.field(default_factory=list)  # their metrics (the model's gap)


def run_md_accuracy(spec: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    """The model's MD against each AIMD run of `runs` (g(r), ADF, vDOS, Li D; `_compare_run`), the
    task-wide maxima, Arrhenius fits, and the NVE stability check; series shaped as `MdSeries`."""
    from ..aimd import load_aimd, load_aimd_spec, thermo_history, warmup_stationarity

    p = MdAccuracyParams.from_params(spec.params)
    aimd_spec = load_aimd_spec(ctx.reference_dir / "aimd.toml")
    engine = cpu_engine(ctx)  # nep_cpu, or ase_calc for a comparator: one ASE MD driver, one protocol
    label = engine_label(engine)
    species = model_species(ctx)
    tally = _Tally()
    for run_id in p.runs if p.runs is not None else [r.id for r in aimd_spec.runs]:
        history = thermo_history(aimd_spec, run_id)  # every run, compared or not: is it equilibrated?
        if history is not None:
            tally.series["aimd_thermo"][run_id] = history
        stationary = warmup_verdict(history, warmup_stationarity)
        try:
            ref = load_aimd(aimd_spec, run_id)
        except InputError as exc:
            tally.reasons[f"rdf_l1_error_max.{run_id}"] = f"no AIMD reference yet: {exc}"
            continue
        _compare_run(run_id, ref, stationary, p, engine, label, species, tally)
    _record_maxima(p, tally)
    md_diffusion.record_arrhenius(tally.arrhenius_rows, tally.metrics, tally.series, tally.reasons)
    nve_text = record_nve_check(p.nve, engine, tally.metrics, tally.units, tally.series)
    method = (f"{label} NVT (CSVR) from the AIMD frame after warm-up, same cell/T/dt/coupling; production "
              f"length ×{list(p.length_factors)}; g(r) L1 (capped) and W1 per pair, max over pairs, beside the L1 "
              "between the AIMD's own two halves (sampling floor); ADF per central species and vDOS per species "
              "(finite-difference velocities), normalised L1 with their own halves floors; D(Li) from MSD, "
              "block stderr; " + "; ".join(tally.method_bits + [nve_text]))
    return TaskOutcome("done", metrics=tally.metrics, metric_units=tally.units, series=tally.series, method=method,
                       engines={getattr(engine, "name", "nep_cpu"): engine.version()}, seed=p.seed,
                       metric_reasons=tally.reasons, unresolved_metrics=tuple(tally.unresolved_metrics))


def _compare_run(run_id: str, ref: Any, stationary: dict[str, Any], p: MdAccuracyParams, engine: Any, label: str,
                 species: tuple[str, ...], tally: _Tally) -> None:
    """One AIMD run `ref` (`aimd.AimdReference`) against the model's runs from its frame, into
    `tally`; a run the model lacks a species of, too short, or off its thermostat gets a reason
    instead. `stationary`: its `warmup_verdict`."""
    lacking = missing_species([ref.first_frame], species)
    if lacking:
        tally.reasons[f"rdf_l1_error_max.{run_id}"] = f"not applicable: model lacks {', '.join(lacking)}"
        return
    if ref.production_ps < p.min_rdf_production_ps:  # load_aimd already refuses runs with < 2 production frames
        tally.reasons[f"rdf_l1_error_max.{run_id}"] = (
            f"AIMD production {ref.production_ps:.3f} ps < {p.min_rdf_production_ps} ps: too short to compare g(r)")
        tally.method_bits.append(f"{run_id}: {ref.production_ps:.3f} ps AIMD (too short)")
        return
    temp, t_text = _aimd_temperature(run_id, ref, tally)
    if abs(temp.relative_offset) > p.max_temperature_offset and abs(temp.z) > p.min_temperature_offset_z:
        tally.reasons[f"rdf_l1_error_max.{run_id}"] = (
            f"AIMD production averages {temp.mean_k:.0f} ± {temp.stderr_k:.0f} K against its "
            f"{ref.run.protocol.temperature_k:.0f} K thermostat ({100 * temp.relative_offset:+.0f} %, "
            f"{abs(temp.z):.1f} standard errors): not equilibrated; lengthen its warm-up in aimd.toml")
        tally.method_bits.append(f"{run_id}: {ref.production_ps:.3f} ps AIMD (not equilibrated: {t_text})")
        return
    model_trajs, model_text = _run_model(run_id, ref, p, engine, label, tally)
    t_text += model_text
    t_text += _compare_structure(run_id, ref, model_trajs[p.length_factors[0]], p, tally)
    _compare_diffusivity(run_id, ref, model_trajs, stationary, t_text, p, tally)


def _aimd_temperature(run_id: str, ref: Any, tally: _Tally) -> tuple[Any, str]:
    """The AIMD production's mean temperature against its thermostat (and, from 3 frames, its
    potential energy's trend and the heat that holds the thermostat off target) into `tally`;
    returns (`thermostat_offset` result, the method's words on it)."""
    run = ref.run
    metrics, units = tally.metrics, tally.units
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
    return temp, t_text


def _run_model(run_id: str, ref: Any, p: MdAccuracyParams, engine: Any, label: str,
               tally: _Tally) -> tuple[dict[int, Any], str]:
    """The model's MD from the AIMD frame for each length factor (`matching_protocol`, seed + factor),
    and the first run's own temperature into `tally`; returns ({factor: trajectory}, words on it)."""
    model_trajs, words = {}, ""
    for factor in p.length_factors:
        result = engine.md(ref.first_frame, matching_protocol(ref, factor, seed=p.seed + factor))
        model_trajs[factor] = result.trajectory
        if factor == p.length_factors[0] and len(result.thermo["temperature_k"]) >= 2:  # the model's own T, 3N - 3 dof
            model_t = thermostat_offset(result.thermo["temperature_k"], ref.run.protocol.temperature_k)
            tally.metrics[f"model_temperature_mean_k.{run_id}"] = model_t.mean_k
            tally.metrics[f"model_temperature_stderr_k.{run_id}"] = model_t.stderr_k
            tally.units.update({f"model_temperature_mean_k.{run_id}": "K",
                                f"model_temperature_stderr_k.{run_id}": "K"})
            words += f"; {label} T {model_t.mean_k:.0f} ± {model_t.stderr_k:.0f} K"
    return model_trajs, words


def _compare_structure(run_id: str, ref: Any, model_traj: Any, p: MdAccuracyParams, tally: _Tally) -> str:
    """g(r) (L1, W1 and the AIMD's halves floor), ADF and vDOS of the model's run `model_traj` against
    the AIMD's, and the run's series blocks, into `tally`; returns the method's words on ADF / vDOS."""
    metrics, reasons, series = tally.metrics, tally.reasons, tally.series
    r_max = rdf_r_max_a(ref, p.r_max_a)
    rdf = compare_rdf(ref.trajectory, model_traj, r_max, p.n_bins)
    l1, w1 = rdf_maxima(rdf)
    metrics[f"rdf_l1_error_max.{run_id}"] = l1
    if w1 is not None:
        metrics[f"rdf_w1_max_a.{run_id}"] = w1
        tally.rdf_w1.append(w1)
    else:
        reasons[f"rdf_w1_max_a.{run_id}"] = f"no pair has neighbours within {r_max:.2f} Å in both runs"
    metrics[f"rdf_l1_aimd_halves.{run_id}"] = rdf_halves_l1_max(ref.trajectory, r_max, p.n_bins)
    tally.rdf_halves.append(metrics[f"rdf_l1_aimd_halves.{run_id}"])
    tally.rdf_l1.append(l1)
    words = md_adf_vdos.record_run(run_id, ref.trajectory, model_traj, p, metrics, tally.units, series, reasons,
                                   tally.adf_vdos)
    series["rdf"][run_id] = {"r_a": rdf["r_a"], "pairs": {
        k: {"ref": v["ref"], "model": v["model"]} for k, v in rdf["pairs"].items()}}
    series["runs"][run_id] = {"aimd_production_ps": ref.production_ps, "aimd_steps": ref.total_steps,
                              "aimd_wall_s": ref.total_wall_s, "temperature_k": ref.run.protocol.temperature_k}
    return words


def _compare_diffusivity(run_id: str, ref: Any, model_trajs: dict[int, Any], stationary: dict[str, Any], t_text: str,
                         p: MdAccuracyParams, tally: _Tally) -> None:
    """Li MSD and diffusivity of the model's runs against the AIMD's (`md_diffusion.compare_li_d`),
    refused for a run whose warm-up is not stationary, into `tally` with the run's method words."""
    metrics, reasons = tally.metrics, tally.reasons
    first = p.length_factors[0]
    li_d = md_diffusion.compare_li_d(ref.trajectory, model_trajs[first], ref.production_ps,
                                     p.min_diffusion_production_ps)
    if li_d.stage == "no_li":  # an a-Si or a-C reference: g(r) only
        reasons[f"li_d_log10_ratio.{run_id}"] = li_d.reason
        tally.method_bits.append(f"{run_id}: {ref.production_ps:.2f} ps AIMD (no Li), {t_text}")
        return
    lag, msd_ref = md_diffusion.li_msd(ref.trajectory)
    lag_m, msd_mod = md_diffusion.li_msd(model_trajs[first])
    n = min(len(lag), len(lag_m))
    tally.series["msd"][run_id] = {"Li": {"time_ps": lag[:n], "ref": msd_ref[:n], "model": msd_mod[:n]}}
    if li_d.d_aimd is not None:
        metrics[f"li_d_aimd_loglog_slope.{run_id}"] = li_d.d_aimd.loglog_slope
    if li_d.stage == "diffusive" and stationary["warmup_stationary"] is False:
        reasons[f"li_d_log10_ratio.{run_id}"] = stationary["reason"]
        tally.method_bits.append(f"{run_id}: {ref.production_ps:.2f} ps AIMD (warm-up not stationary), {t_text}")
        return
    if li_d.stage != "diffusive":  # too short, or its MSD not yet diffusive
        reasons[f"li_d_log10_ratio.{run_id}"] = li_d.reason
        state = " (MSD not yet diffusive)" if li_d.stage == "not_diffusive" else ""
        tally.method_bits.append(f"{run_id}: {ref.production_ps:.2f} ps AIMD{state}, {t_text}")
        return
    d_ref = li_d.d_aimd
    d_mod = {first: li_d.d_model} | {f: md_diffusion.li_diffusivity(model_trajs[f]) for f in p.length_factors[1:]}
    metrics[f"li_d_aimd_cm2_per_s.{run_id}"] = d_ref.d_cm2_per_s
    metrics[f"li_d_aimd_stderr_cm2_per_s.{run_id}"] = d_ref.stderr_cm2_per_s
    for f, d in d_mod.items():
        metrics[f"li_d_model_x{f}_cm2_per_s.{run_id}"] = d.d_cm2_per_s
        metrics[f"li_d_model_x{f}_stderr_cm2_per_s.{run_id}"] = d.stderr_cm2_per_s
    ratio, note = li_d.log10_ratio, li_d.note
    if ratio is None:  # the model's D, not the reference, is what could not be resolved
        reasons[f"li_d_log10_ratio.{run_id}"] = note
        tally.unresolved.append(f"{run_id} ({note})")
        tally.unresolved_metrics.append(f"li_d_log10_ratio.{run_id}")
    else:
        metrics[f"li_d_log10_ratio.{run_id}"] = ratio
        tally.li_d_log_ratios.append(abs(ratio))
    run = ref.run
    tally.arrhenius_rows.append((md_diffusion.system_label(run.builder, run.params), run.protocol.temperature_k,
                                 d_ref, d_mod[first]))  # the AIMD fit never depends on the model tested
    tally.method_bits.append(f"{run_id}: {ref.production_ps:.2f} ps AIMD, {t_text}" + (f"; {note}" if note else ""))


def _record_maxima(p: MdAccuracyParams, tally: _Tally) -> None:
    """The task-wide maxima over the compared runs (g(r), ADF, vDOS, |log10 D ratio|), or why none."""
    metrics, units, reasons = tally.metrics, tally.units, tally.reasons
    if tally.rdf_l1:
        metrics["rdf_l1_error_max"] = max(tally.rdf_l1)
        if tally.rdf_w1:
            metrics["rdf_w1_max_a"] = max(tally.rdf_w1)
        else:
            reasons["rdf_w1_max_a"] = "no compared run has a pair with neighbours within r_max in both runs"
        metrics["rdf_l1_aimd_halves_max"] = max(tally.rdf_halves)
        units.update({"rdf_l1_error_max": "", "rdf_w1_max_a": "Å", "rdf_l1_aimd_halves_max": ""})
    else:
        reasons["rdf_l1_error_max"] = (
            f"no AIMD run has ≥{p.min_rdf_production_ps} ps of production yet "
            "(see reference_data/aimd/manifest.json)")
    md_adf_vdos.record_maxima(tally.adf_vdos, metrics, units, reasons)
    if tally.unresolved:  # a run the model cannot be judged on must not leave the others' maximum to pass
        reasons["li_d_log10_ratio_abs_max"] = ("the model's Li diffusivity is not resolved in "
                                               + "; ".join(tally.unresolved))
        tally.unresolved_metrics.append("li_d_log10_ratio_abs_max")
    elif tally.li_d_log_ratios:
        metrics["li_d_log10_ratio_abs_max"] = max(tally.li_d_log_ratios)
        units["li_d_log10_ratio_abs_max"] = "|log10(D_NEP/D_AIMD)|"
    else:
        reasons["li_d_log10_ratio_abs_max"] = (
            f"no AIMD run has ≥{p.min_diffusion_production_ps:g} ps of production with a diffusive Li MSD after a "
            "stationary warm-up yet (see li_d_log10_ratio.<run> and reference_data/aimd/manifest.json)")
