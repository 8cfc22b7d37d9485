"""The summary over seeds: per-thickness metrics (percent, mean ± stderr over seeds), the report's
series, and the headline metrics, withheld with the reason where `headline_gate` refuses them.

What each number means: docs/metrics.md, "Core–shell expansion".
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ...metrics import expansion as ex
from .headline import cross_check_excess, headline_gate, largest_change, last_half_change, mean_se
from .params import ExpansionParams, t_key

#: Radial bins with fewer atoms per seed than this are left out of the profiles (NaN): near r = 0 a
#: bin holds one or two atoms and its strain is noise.
MIN_ATOMS_PER_BIN = 5

Rows = list[dict[str, Any]]


def built_sizes_text(results: Rows) -> str:
    """Li-free particle sizes as built, per shell thickness: "t=0.8 nm: 1990–2003 atoms (202–209 Si +
    1788–1794 C)", the range over seeds (one number where every seed built the same)."""
    def span(values: list[int]) -> str:
        return f"{min(values)}" if min(values) == max(values) else f"{min(values)}–{max(values)}"

    parts = []
    for t in sorted({r["t_nm"] for r in results}):
        rows = [r for r in results if r["t_nm"] == t]
        parts.append(f"t={t_key(t)} nm: {span([r['n_atoms'] for r in rows])} atoms "
                     f"({span([r['n_core_si'] for r in rows])} Si + {span([r['n_shell_c'] for r in rows])} C)")
    return ", ".join(parts)


def summarise(p: ExpansionParams, results: Rows, edges_nm: np.ndarray) -> tuple[
        dict[str, float], dict[str, str], dict[str, Any], dict[str, str], tuple[str, ...]]:
    """Metrics (percent, mean over seeds ± stderr), their units, the report's series, the reasons
    of headline metrics left unmeasured (`headline_gate`, or one seed: no stderr) and, of those,
    the ones `headline_gate` held back (the run could not resolve them; one seed is a choice).
    `results` are `run_particle`'s rows; `edges_nm` the radial bins (nm)."""
    metrics: dict[str, float] = {}
    units: dict[str, str] = {}
    series: dict[str, Any] = {"shell_thickness_nm": [], "particle_dv_over_v0": [], "particle_dv_stderr": [],
                              "core_dv_over_v0": [], "core_dv_stderr": [], "radial": {},
                              "volume_method": p.volume_method, "cross_check": {}, "stages": {},
                              "per_seed": []}
    other = [m for m in ex.VOLUME_METHODS if m != p.volume_method]
    for m in other:
        series["cross_check"][m] = {"particle_dv_over_v0": [], "core_dv_over_v0": []}
    for t in p.shell_thicknesses_nm:
        rows = [r for r in results if r["t_nm"] == t]
        _volume_changes(p, t, rows, other, metrics, units, series)
        _counts_and_shell(t_key(t), rows, metrics, units)
        series["radial"][t_key(t)] = _radial_profiles(rows, edges_nm)
        series["stages"][t_key(t)] = {
            "x": np.mean([[s["x"] for s in r["stages"]] for r in rows], axis=0).tolist(),
            "particle_dv_over_v0": np.mean([[s["particle_dv_over_v0"] for s in r["stages"]] for r in rows],
                                           axis=0).tolist()}
    series["per_seed"] = [_per_seed(r) for r in results]
    gate = _gate_reason(p, results, other)
    reasons = _headline_metrics(p, gate, metrics, units)
    return metrics, units, series, reasons, tuple(name for name, why in reasons.items() if gate and why == gate)


def _volume_changes(p: ExpansionParams, t: float, rows: Rows, other: list[str], metrics: dict[str, float],
                    units: dict[str, str], series: dict[str, Any]) -> None:
    """ΔV/V0 of particle and core (series, metrics in %), the cross-checks' excess and the convergence
    check at thickness `t`."""
    key, m0 = t_key(t), p.volume_method
    dv, dv_se = mean_se([r["particle_dv_over_v0"][m0] for r in rows])
    core, core_se = mean_se([r["core_dv_over_v0"][m0] for r in rows])
    series["shell_thickness_nm"].append(float(t))
    series["particle_dv_over_v0"].append(dv)
    series["particle_dv_stderr"].append(dv_se)
    series["core_dv_over_v0"].append(core)
    series["core_dv_stderr"].append(core_se)
    for m in other:
        for quantity in ("particle_dv_over_v0", "core_dv_over_v0"):
            series["cross_check"][m][quantity].append(mean_se([r[quantity][m] for r in rows])[0])
    # material the chosen volume does not see (Li outside the shell's carbon) shows up here
    excess = max(cross_check_excess([r["particle_dv_over_v0"][m0] for r in rows],
                                    {m: [r["particle_dv_over_v0"][m] for r in rows] for m in other}).values())
    metrics[f"particle_dv_cross_check_excess_percent.t{key}"] = 100.0 * excess
    units[f"particle_dv_cross_check_excess_percent.t{key}"] = (
        f"% points (largest of {'/'.join(other)} ΔV/V0 minus {m0}'s)")
    for name, value, se in (("particle_dv_over_v0_percent", dv, dv_se),
                            ("core_dv_over_v0_percent", core, core_se)):
        metrics[f"{name}.t{key}"] = 100.0 * value
        metrics[f"{name}_stderr.t{key}"] = 100.0 * se
        units[f"{name}.t{key}"] = units[f"{name}_stderr.t{key}"] = "%"
    # the largest |change| over seeds (what the gate reads: a mean would let +0.6 and −0.6 read 0)
    late = largest_change([last_half_change(r) for r in rows])
    metrics[f"particle_dv_change_last_half_max_abs_percent.t{key}"] = 100.0 * abs(late)
    units[f"particle_dv_change_last_half_max_abs_percent.t{key}"] = (
        "% points (largest |ΔV/V0 end − half-way| over seeds, last stage)")


def _counts_and_shell(key: str, rows: Rows, metrics: dict[str, float], units: dict[str, str]) -> None:
    """Li reached and atom counts (means over seeds), and the shell's cavity, hoop strain and thickness
    change where there is a shell."""
    metrics[f"x_reached.t{key}"] = float(np.mean([r["x_reached"] for r in rows]))
    units[f"x_reached.t{key}"] = "Li/Si"
    metrics[f"n_atoms.t{key}"] = float(np.mean([r["n_atoms"] for r in rows]))
    units[f"n_atoms.t{key}"] = "atoms (before Li)"
    metrics[f"n_li.t{key}"] = float(np.mean([r["n_li"] for r in rows]))
    units[f"n_li.t{key}"] = "Li atoms"
    shells = [r["shell"] for r in rows if "shell" in r]
    if not shells:
        return
    hoop, hoop_se = mean_se([s["hoop_strain"] for s in shells])
    dthick, dthick_se = mean_se([s["thickness_change_nm"] for s in shells])
    cavity, cavity_se = mean_se([s["cavity_dv_over_v0"] for s in shells])
    metrics[f"shell_cavity_dv_over_v0_percent.t{key}"] = 100.0 * cavity
    metrics[f"shell_cavity_dv_over_v0_percent_stderr.t{key}"] = 100.0 * cavity_se
    units[f"shell_cavity_dv_over_v0_percent.t{key}"] = "%"
    units[f"shell_cavity_dv_over_v0_percent_stderr.t{key}"] = "%"
    metrics[f"shell_hoop_strain_percent.t{key}"] = 100.0 * hoop
    metrics[f"shell_hoop_strain_percent_stderr.t{key}"] = 100.0 * hoop_se
    metrics[f"shell_thickness_change_nm.t{key}"] = dthick
    metrics[f"shell_thickness_change_nm_stderr.t{key}"] = dthick_se
    units[f"shell_hoop_strain_percent.t{key}"] = units[f"shell_hoop_strain_percent_stderr.t{key}"] = "%"
    units[f"shell_thickness_change_nm.t{key}"] = units[f"shell_thickness_change_nm_stderr.t{key}"] = "nm"


def _radial_profiles(rows: Rows, edges_nm: np.ndarray) -> dict[str, list[float]]:
    """Radial profiles of one thickness: Li fraction pooled over seeds (counts), strain averaged over
    seeds; bins with fewer than MIN_ATOMS_PER_BIN atoms per seed are NaN; cut after the last atom."""
    n_all = np.sum([r["radial"]["n_atoms"] for r in rows], axis=0)
    n_li = np.sum([r["radial"]["n_li"] for r in rows], axis=0)
    n_host = np.sum([r["radial"]["n_host"] for r in rows], axis=0)
    lin = np.array([r["radial"]["radial_strain"] for r in rows], dtype=float)
    few = MIN_ATOMS_PER_BIN * len(rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n_all >= few, n_li / np.maximum(n_all, 1), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins stay NaN
        lin_mean = np.where(n_host >= few, np.nanmean(lin, axis=0), np.nan)
    last = int(np.max(np.nonzero(n_all)[0])) + 1 if np.any(n_all) else 0
    r_nm = 0.5 * (edges_nm[1:] + edges_nm[:-1])
    return {"r_nm": r_nm[:last].tolist(), "li_fraction": frac[:last].tolist(),
            "strain": ((1.0 + lin_mean[:last]) ** 3 - 1.0).tolist(),
            "radial_strain": lin_mean[:last].tolist(),
            "n_atoms": (n_all[:last] / len(rows)).tolist()}


def _per_seed(r: dict[str, Any]) -> dict[str, Any]:
    """The series entry of one (t, seed) row."""
    return {"t_nm": r["t_nm"], "seed": r["seed"], "n_atoms": r["n_atoms"], "n_core_si": r["n_core_si"],
            "n_shell_c": r["n_shell_c"], "n_li": r["n_li"],
            "x_reached": r["x_reached"], "particle_dv_over_v0": r["particle_dv_over_v0"],
            "core_dv_over_v0": r["core_dv_over_v0"], "shell": r.get("shell"),
            "particle_volume0_nm3": r["particle_volume0_nm3"], "core_volume0_nm3": r["core_volume0_nm3"],
            "shape_anisotropy": r["shape_anisotropy"], "reference": r["reference"],
            "stages": r["stages"], "atom_steps": r["atom_steps"], "wall_s": r["wall_s"]}


def _gate_reason(p: ExpansionParams, results: Rows, other: list[str]) -> str | None:
    """`headline_gate` on the rows at the headline thickness (and the bare particle's)."""
    m0 = p.volume_method
    rows = [r for r in results if r["t_nm"] == p.headline_t]
    bare_rows = [r for r in results if r["t_nm"] == 0.0]
    return headline_gate(p, [r["x_reached"] for r in rows], [last_half_change(r) for r in rows],
                         [r["particle_dv_over_v0"][m0] for r in rows],
                         [r["particle_dv_over_v0"][m0] for r in bare_rows] or None,
                         {m: [r["particle_dv_over_v0"][m] for r in rows] for m in other})


def _headline_metrics(p: ExpansionParams, gate: str | None, metrics: dict[str, float],
                      units: dict[str, str]) -> dict[str, str]:
    """Adds the headline metrics (at t = headline_t) and the ratio to the bare particle to `metrics`,
    or their reasons to the returned dict where the `gate` refuses them or one seed leaves no stderr."""
    reasons: dict[str, str] = {}
    head = t_key(p.headline_t)
    dv_h, se_h = metrics[f"particle_dv_over_v0_percent.t{head}"], metrics[f"particle_dv_over_v0_percent_stderr.t{head}"]
    for name, value, unit in ((f"particle_dv_over_v0_percent_at_t{head}", dv_h, "%"),
                              (f"particle_dv_over_v0_percent_stderr_at_t{head}", se_h, "%"),
                              (f"particle_dv_over_v0_percent_upper_at_t{head}", dv_h + 2.0 * se_h,
                               "% (mean + 2 standard errors over seeds)")):
        units[name] = unit
        if gate:
            reasons[name] = gate
        elif not np.isfinite(value):
            reasons[name] = "one seed: no standard error over seeds"
        else:
            metrics[name] = value
    bare = t_key(min(p.shell_thicknesses_nm))
    if min(p.shell_thicknesses_nm) == 0.0 and p.headline_t > 0:
        b = metrics[f"particle_dv_over_v0_percent.t{bare}"]
        ratio = f"particle_dv_ratio_to_bare_at_t{head}"
        units[ratio] = "× (headline ΔV/V0 over the bare particle's)"
        if gate:
            reasons[ratio] = gate
        elif b != 0:
            metrics[ratio] = metrics[f"particle_dv_over_v0_percent.t{head}"] / b
        else:
            reasons[ratio] = "the bare particle's ΔV/V0 is 0: no ratio"
    return reasons
