"""Pure metrics of the CP2K tuning study: agreement with the committed labels, MD drift, the
verdict on a variant (`accept`), speed-ups and CP2K's own timing report.

Units: forces meV/Å, energies meV/atom, times s, drift meV/atom/ps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

FORCE_RMSE_LIMIT_MEV_PER_A = 5.0
"""Largest accepted RMS force difference from the committed labels, per frame (meV/Å)."""
ENERGY_LIMIT_MEV_PER_ATOM = 0.5
"""Largest accepted |energy difference| from the committed labels, per frame (meV/atom)."""
STRESS_LIMIT_GPA = 0.1
"""Largest accepted |stress component difference| from the committed labels, per frame (GPa);
judged where both carry stress (the label preset's variants)."""
EV_PER_A3_GPA = 160.21766208
"""1 eV/Å³ in GPa."""


@dataclass(frozen=True)
class Verdict:
    """Whether a variant is accepted, and why not when it is not.

    Attributes:
        accepted: every label frame agrees within the limits and the MD drift is no worse than
            the baseline's.
        reasons: one line per failed condition (empty when accepted).
        complete: every case of the study has an entry for this variant.
    """

    accepted: bool
    reasons: tuple[str, ...]
    complete: bool


def force_agreement(forces: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(RMS, max |component|) of forces − reference, both (N, 3) in eV/Å; returned in meV/Å."""
    diff = np.asarray(forces, dtype=float) - np.asarray(reference, dtype=float)
    if diff.shape != np.shape(reference) or diff.ndim != 2 or diff.shape[1] != 3:
        raise ValueError(f"forces of shape {np.shape(forces)} do not match reference {np.shape(reference)}")
    return float(np.sqrt(np.mean(diff ** 2)) * 1000.0), float(np.abs(diff).max() * 1000.0)


def energy_difference_mev_per_atom(energy_ev: float, reference_ev: float, n_atoms: int) -> float:
    """(energy − reference) / n_atoms in meV/atom."""
    if n_atoms < 1:
        raise ValueError("n_atoms must be >= 1")
    return (energy_ev - reference_ev) / n_atoms * 1000.0


def stress_difference_gpa(stress: np.ndarray, reference: np.ndarray) -> float:
    """max |stress − reference| over the components, both Voigt (6,) or (3, 3) in eV/Å³; in GPa."""
    a, b = (np.asarray(x, dtype=float) for x in (stress, reference))
    if a.shape != b.shape or a.shape not in ((6,), (3, 3)):
        raise ValueError(f"stress of shape {a.shape} does not match reference {b.shape}")
    return float(np.abs(a - b).max() * EV_PER_A3_GPA)


def drift_mev_per_atom_ps(time_ps: np.ndarray, conserved_ev: np.ndarray, n_atoms: int) -> tuple[float, float]:
    """(slope, standard error) of a least-squares line through the conserved quantity, meV/atom/ps."""
    t = np.asarray(time_ps, dtype=float)
    e = np.asarray(conserved_ev, dtype=float) / n_atoms * 1000.0
    if t.size < 3:
        raise ValueError("a drift needs at least 3 points")
    design = np.vstack([t, np.ones_like(t)]).T
    coef, residual, *_ = np.linalg.lstsq(design, e, rcond=None)
    dof = t.size - 2
    sigma2 = float(residual[0]) / dof if residual.size and dof > 0 else 0.0
    se = float(np.sqrt(sigma2 / np.sum((t - t.mean()) ** 2)))
    return float(coef[0]), se


def accept(entries: Sequence[dict[str, Any]], baseline_md: dict[str, Any] | None, n_cases: int,
           force_limit: float = FORCE_RMSE_LIMIT_MEV_PER_A,
           energy_limit: float = ENERGY_LIMIT_MEV_PER_ATOM,
           stress_limit: float = STRESS_LIMIT_GPA) -> Verdict:
    """Verdict on one variant from its study entries.

    A label frame passes with RMS ΔF ≤ `force_limit` (meV/Å), |ΔE| ≤ `energy_limit` (meV/atom) and,
    where the entry compared stress, max |Δσ| ≤ `stress_limit` (GPa).
    The MD passes when |drift| ≤ |baseline drift| + 2·sqrt(se² + se_baseline²): no worse than the
    untuned preset's within the two fits' noise. An entry with an error fails; a variant with no
    MD entry is judged on its frames and marked incomplete.
    """
    reasons: list[str] = []
    for entry in entries:
        case = entry["case"]
        if entry.get("error"):
            reasons.append(f"{case}: CP2K failed ({entry['error']})")
        elif entry["kind"] == "sp":
            if entry["force_rmse_mev_per_a"] > force_limit:
                reasons.append(f"{case}: force RMSE {entry['force_rmse_mev_per_a']:.2f} meV/Å > {force_limit:g}")
            if abs(entry["energy_diff_mev_per_atom"]) > energy_limit:
                reasons.append(f"{case}: |ΔE| {abs(entry['energy_diff_mev_per_atom']):.3f} meV/atom > {energy_limit:g}")
            if entry.get("stress_diff_max_gpa", 0.0) > stress_limit:
                reasons.append(f"{case}: max |Δσ| {entry['stress_diff_max_gpa']:.3f} GPa > {stress_limit:g}")
        elif entry["kind"] == "md" and baseline_md is not None and not baseline_md.get("error"):
            slope, se = entry["drift_mev_per_atom_ps"], entry["drift_se_mev_per_atom_ps"]
            b_slope, b_se = baseline_md["drift_mev_per_atom_ps"], baseline_md["drift_se_mev_per_atom_ps"]
            bound = abs(b_slope) + 2.0 * float(np.hypot(se, b_se))
            if abs(slope) > bound:
                reasons.append(f"{case}: drift {slope:+.2f} meV/atom/ps beyond the baseline's bound {bound:.2f}")
    return Verdict(accepted=not reasons and bool(entries), reasons=tuple(reasons), complete=len(entries) >= n_cases)


def speedup(baseline_s: float, variant_s: float) -> float:
    """baseline_s / variant_s (how many times faster the variant is); nan for a non-positive time."""
    return float(baseline_s / variant_s) if baseline_s > 0 and variant_s > 0 else float("nan")


_TIMING_ROW = re.compile(r"^\s(\S+)\s+(\d+)\s+(\d+\.\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


def timing_report(text: str, top: int = 8) -> list[dict[str, Any]]:
    """The `top` routines of CP2K's timing report by maximum self time: name, calls, self and
    total time in s. Empty when the output has no timing report."""
    start = text.rfind("T I M I N G")
    if start < 0:
        return []
    rows = []
    for line in text[start:].splitlines()[1:]:
        match = _TIMING_ROW.match(line)
        if match:
            name, calls, _asd, _self_avg, self_max, _tot_avg, tot_max = match.groups()
            rows.append({"routine": name, "calls": int(calls), "self_s": float(self_max), "total_s": float(tot_max)})
        elif rows and line.strip().startswith("---"):
            break
    rows.sort(key=lambda r: -r["self_s"])
    return rows[:top]
