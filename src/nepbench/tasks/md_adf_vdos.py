"""md_accuracy's bond-angle distributions (ADF) and vibrational densities of states (vDOS).

Per compared AIMD run: the ADF per central species (`metrics.adf`, first-shell cutoffs from the
covalent radii) and the vDOS per species (`metrics.vdos`, from finite-difference velocities of the
stored positions) of the AIMD production and of the model's run of the same length, scored like
g(r): the largest normalised L1 over species (`adf_l1_error_max.<run>`, `vdos_l1_error_max.<run>`)
beside the same distance between the AIMD's own two halves (`*_aimd_halves.<run>`, the sampling
floor), and the largest of each over runs. Cheap: it reuses the trajectories the task already has.
Its parameters (`AdfVdosParams`) are the md_accuracy task's too; its series blocks are `AdfRun` and
`VdosRun`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np

from ..checks import finite_number, integer
from ..metrics.adf import COVALENT_CUTOFF_FACTOR, adf_l1_error, adf_trajectory, covalent_cutoffs_a
from ..metrics.vdos import SEGMENT_PS, vdos, vdos_l1_error
from .params import TaskParams

ADF_N_BINS = 90  # 2° bins


@dataclass(frozen=True)
class AdfVdosParams(TaskParams):
    """The md_accuracy parameters read here (`MdAccuracyParams` extends this class).

    adf_cutoff_factor: first-shell cutoff as a multiple of the summed covalent radii; adf_n_bins:
    angle bins over 0–180°; vdos_segment_ps: the Welch segment of the vDOS (ps).
    """

    TASK = "md_accuracy"

    adf_cutoff_factor: float = COVALENT_CUTOFF_FACTOR
    adf_n_bins: int = ADF_N_BINS
    vdos_segment_ps: float = SEGMENT_PS

    @classmethod
    def problem(cls, params: dict[str, Any]) -> str | None:
        """What is wrong with the ADF / vDOS parameters of an md_accuracy task, or None."""
        for key in ("adf_cutoff_factor", "vdos_segment_ps"):
            if key in params:
                value = finite_number(params[key])
                if value is None or value <= 0:
                    return f"{key} must be a number > 0, got {params[key]!r}"
        if "adf_n_bins" in params:
            n = integer(params["adf_n_bins"])
            if n is None or n < 2:
                return f"adf_n_bins must be an integer >= 2, got {params['adf_n_bins']!r}"
        return None


class CurvePair(TypedDict):
    """One distribution of the AIMD reference and of the model's run, on a shared axis."""

    ref: list[float]
    model: list[float]


class AdfRun(TypedDict):
    """md_accuracy series `adf.<run>`: bond-angle distributions per triplet ("*-Si-*", centre in
    the middle) on `theta_deg` (°), and the first-shell cutoffs used (Å, per pair "Li-Si")."""

    theta_deg: list[float]
    cutoffs_a: dict[str, float]
    triplets: dict[str, CurvePair]


class VdosRun(TypedDict):
    """md_accuracy series `vdos.<run>`: vDOS per species (1/THz) on `freq_thz`, up to `nyquist_thz`."""

    freq_thz: list[float]
    nyquist_thz: float
    species: dict[str, CurvePair]


@dataclass
class Totals:
    """Per-run values collected for the task-wide maxima."""

    adf: list[float] = field(default_factory=list)
    adf_halves: list[float] = field(default_factory=list)
    vdos: list[float] = field(default_factory=list)
    vdos_halves: list[float] = field(default_factory=list)


def compare_adf(ref_traj: Any, model_traj: Any, cutoffs: dict, n_bins: int) -> dict[str, Any]:
    """ADF per central species of both trajectories and their `adf_l1_error` (reference first);
    species with angles in only one run are left out of "centres" and named in "missing"."""
    ref = adf_trajectory(ref_traj, cutoffs, n_bins)
    mod = adf_trajectory(model_traj, cutoffs, n_bins)
    centres = {}
    for s, p_ref in ref.distributions.items():
        if s in mod.distributions:
            centres[s] = {"ref": p_ref, "model": mod.distributions[s],
                          "l1": adf_l1_error(ref.edges_deg, p_ref, mod.distributions[s])}
    missing = sorted(set(ref.distributions) ^ set(mod.distributions))
    return {"theta_deg": ref.theta_deg, "centres": centres, "missing": missing}


def compare_vdos(ref_traj: Any, model_traj: Any, segment_ps: float) -> dict[str, Any]:
    """vDOS per species of both trajectories on one frequency grid (one Welch segment length, cut
    to the shorter run) and their `vdos_l1_error`."""
    dt = float(ref_traj.times_ps[1] - ref_traj.times_ps[0])
    dt_model = float(model_traj.times_ps[1] - model_traj.times_ps[0])
    if abs(dt - dt_model) > 1e-9 * dt:
        raise ValueError(f"frame spacings differ: reference {dt} ps, model {dt_model} ps")
    seg = min(int(round(segment_ps / dt)), ref_traj.n_frames - 1, model_traj.n_frames - 1)
    out: dict[str, Any] = {}
    freq = np.empty(0)
    nyquist = 0.0
    for s in sorted(set(ref_traj.symbols)):
        mask_r = np.array([x == s for x in ref_traj.symbols])
        mask_m = np.array([x == s for x in model_traj.symbols])
        a = vdos(ref_traj.positions_a, ref_traj.times_ps, mask_r, segment_frames=seg)
        b = vdos(model_traj.positions_a, model_traj.times_ps, mask_m, segment_frames=seg)
        freq, nyquist = a.freq_thz, a.nyquist_thz
        out[s] = {"ref": a.dos_per_thz, "model": b.dos_per_thz,
                  "l1": vdos_l1_error(a.freq_thz, a.dos_per_thz, b.dos_per_thz)}
    return {"freq_thz": freq, "nyquist_thz": nyquist, "segment_frames": seg, "species": out}


def record_run(run_id: str, ref_traj: Any, model_traj: Any, params: AdfVdosParams, metrics: dict[str, float],
               units: dict[str, str], series: dict[str, Any], reasons: dict[str, str], totals: Totals) -> str:
    """ADF and vDOS of one run into the task's metrics, series and totals; returns the method's
    words on it ("; ..." to append, or "").

    A run whose ADF or vDOS cannot be computed (no atom with two neighbours within the cutoffs,
    too few frames) gets a reason instead of a number; the other analysis still runs."""
    from .md_accuracy import trajectory_halves

    first, second = trajectory_halves(ref_traj)
    words = []
    try:
        cutoffs = covalent_cutoffs_a(set(ref_traj.symbols), params.adf_cutoff_factor)
        n_bins = params.adf_n_bins
        adf = compare_adf(ref_traj, model_traj, cutoffs, n_bins)
        halves = compare_adf(first, second, cutoffs, n_bins)
        if not adf["centres"] or not halves["centres"]:
            raise ValueError("no central species has bond angles in both runs")
        metrics[f"adf_l1_error_max.{run_id}"] = max(v["l1"] for v in adf["centres"].values())
        metrics[f"adf_l1_aimd_halves.{run_id}"] = max(v["l1"] for v in halves["centres"].values())
        totals.adf.append(metrics[f"adf_l1_error_max.{run_id}"])
        totals.adf_halves.append(metrics[f"adf_l1_aimd_halves.{run_id}"])
        units.update({f"adf_l1_error_max.{run_id}": "", f"adf_l1_aimd_halves.{run_id}": ""})
        series.setdefault("adf", {})[run_id] = {
            "theta_deg": adf["theta_deg"], "cutoffs_a": {f"{a}-{b}": c for (a, b), c in cutoffs.items() if a <= b},
            "triplets": {f"*-{s}-*": {"ref": v["ref"], "model": v["model"]} for s, v in adf["centres"].items()}}
        if adf["missing"]:
            words.append(f"ADF: no angles around {', '.join(adf['missing'])} in one run")
    except ValueError as exc:
        reasons[f"adf_l1_error_max.{run_id}"] = f"no ADF: {exc}"
    try:
        segment_ps = params.vdos_segment_ps
        vd = compare_vdos(ref_traj, model_traj, segment_ps)
        vh = compare_vdos(first, second, segment_ps)
        metrics[f"vdos_l1_error_max.{run_id}"] = max(v["l1"] for v in vd["species"].values())
        metrics[f"vdos_l1_aimd_halves.{run_id}"] = max(v["l1"] for v in vh["species"].values())
        metrics[f"vdos_nyquist_thz.{run_id}"] = vd["nyquist_thz"]
        totals.vdos.append(metrics[f"vdos_l1_error_max.{run_id}"])
        totals.vdos_halves.append(metrics[f"vdos_l1_aimd_halves.{run_id}"])
        units.update({f"vdos_l1_error_max.{run_id}": "", f"vdos_l1_aimd_halves.{run_id}": "",
                      f"vdos_nyquist_thz.{run_id}": "THz"})
        series.setdefault("vdos", {})[run_id] = {
            "freq_thz": vd["freq_thz"], "nyquist_thz": vd["nyquist_thz"],
            "species": {s: {"ref": v["ref"], "model": v["model"]} for s, v in vd["species"].items()}}
        words.append(f"vDOS to {vd['nyquist_thz']:.0f} THz (Nyquist of the frame spacing)")
    except ValueError as exc:
        reasons[f"vdos_l1_error_max.{run_id}"] = f"no vDOS: {exc}"
    return "".join(f"; {w}" for w in words)


def record_maxima(totals: Totals, metrics: dict[str, float], units: dict[str, str], reasons: dict[str, str]) -> None:
    """The task-wide maxima over runs (`adf_l1_error_max`, `adf_l1_aimd_halves_max`, and the vDOS
    pair), or a reason where no run gave one."""
    for key, values, halves in (("adf", totals.adf, totals.adf_halves), ("vdos", totals.vdos, totals.vdos_halves)):
        if values:
            metrics[f"{key}_l1_error_max"] = max(values)
            metrics[f"{key}_l1_aimd_halves_max"] = max(halves)
            units.update({f"{key}_l1_error_max": "", f"{key}_l1_aimd_halves_max": ""})
        else:
            reasons[f"{key}_l1_error_max"] = f"no compared AIMD run gave a {key.upper()} (see {key}_l1_error_max.<run>)"
