"""md_accuracy's Li diffusivity comparison: D of the AIMD and of the model's run from its frame
(`compare_li_d`, stopping at the first stage that rules a comparison out), its log ratio or bound
for a flat model MSD (`d_log10_ratio`), and the activation energies over a system's temperatures
(`record_arrhenius`, series block `ArrheniusPoints`). Why each stage: docs/metrics.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypedDict

import numpy as np

from ..metrics.diffusion import arrhenius_fit, diffusivity, msd_multiple_origins

#: Largest |log-log slope − 1| of the AIMD's Li MSD over the fit window for it to count as diffusive
#: there. A short run's window sits at tens of fs, where the MSD still carries ballistic motion
#: (slope up to 2) or caging (below 1): a "D" fitted there is no diffusivity, so none is compared.
MAX_LOGLOG_SLOPE_DEVIATION = 0.15
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
    """The `species` atoms' diffusivity (`metrics.diffusion.Diffusivity`, cm²/s), LI_D_BLOCKS blocks."""
    return diffusivity(traj.positions_a, traj.times_ps, mask=species_mask(traj, species), n_blocks=LI_D_BLOCKS)


def li_msd(traj: Any, species: str = "Li") -> tuple[np.ndarray, np.ndarray]:
    """(lag in ps, MSD in Å²) of the `species` atoms over multiple time origins."""
    return msd_multiple_origins(traj.positions_a, traj.times_ps, mask=species_mask(traj, species))



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


class ArrheniusPoints(TypedDict):
    """md_accuracy series `arrhenius`: one entry per run with a diffusive AIMD MSD, of systems
    with ≥ 2 temperatures (`system_label`), D and its block stderr in cm²/s."""

    system: list[str]
    temperature_k: list[float]
    d_ref_cm2_per_s: list[float]
    d_model_cm2_per_s: list[float]
    d_ref_stderr: list[float]
    d_model_stderr: list[float]


def record_arrhenius(rows: list[tuple[str, float, Any, Any]], metrics: dict[str, float],
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

