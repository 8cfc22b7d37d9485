"""Summaries of a CP2K tuning record: per-variant costs, speed-ups and verdicts, the fastest
accepted variant, and the markdown tables for docs/cp2k_settings.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .agreement import Verdict, accept, speedup
from .variants import CASES, FRAMES_FROM, MD_ONLY, VARIANTS, TuningCase, TuningVariant


@dataclass(frozen=True)
class VariantSummary:
    """One variant's study results, summarised.

    Attributes:
        name: variant name.
        note: what it tests.
        sp_wall_s: mean single-point cost over the label frames (`sp_cost_s`, s), None without any.
        s_per_scf_iteration: mean single-point cost per SCF iteration (s).
        force_rmse_max_mev_per_a: largest per-frame RMS force difference from the labels (meV/Å).
        energy_max_mev_per_atom: largest per-frame |ΔE| from the labels (meV/atom).
        stress_max_gpa: largest |Δσ| component from the labels (GPa), None where not compared.
        md_s_per_step: steady-state MD cost per step on the AIMD cell (`md_cost_s`, s), None without it.
        md_scf_per_step: SCF iterations per timed MD step.
        drift_mev_per_atom_ps: conserved-quantity drift of the MD (meV/atom/ps).
        md_speedup: baseline MD s/step ÷ this variant's.
        sp_speedup: baseline mean single-point wall ÷ this variant's.
        verdict: `accept`'s verdict.
        cores: cores the variant occupies (ranks × threads).
    """

    name: str
    note: str
    sp_wall_s: float | None
    s_per_scf_iteration: float | None
    force_rmse_max_mev_per_a: float | None
    energy_max_mev_per_atom: float | None
    stress_max_gpa: float | None
    md_s_per_step: float | None
    md_scf_per_step: float | None
    drift_mev_per_atom_ps: float | None
    md_speedup: float | None
    sp_speedup: float | None
    verdict: Verdict
    cores: int = 1


def sp_cost_s(entry: dict[str, Any]) -> float:
    """A single point's cost: CP2K's CPU time (s), or its wall time in records without one."""
    return float(entry.get("cpu_s", entry["wall_s"]))


def md_cost_s(entry: dict[str, Any]) -> float:
    """An MD step's cost: the CPU-equivalent s/step (`cpu_equivalent`), or the wall s/step."""
    return float(entry.get("s_per_step_cpu_equivalent", entry["s_per_step"]))


def cores_of(variant: TuningVariant) -> int:
    """Cores a variant occupies: MPI ranks × OpenMP threads."""
    return variant.ranks * int(variant.overrides.get("omp_threads", 1))


def summarise(record: dict[str, Any], variants: Sequence[TuningVariant] = VARIANTS,
              cases: Sequence[TuningCase] = CASES, baseline: str = "baseline",
              baseline_2core: str = "baseline-2x1") -> list[VariantSummary]:
    """Per-variant summaries of a study record, in `variants` order (variants with no entry left out).

    Speed-ups compare like with like: single points over the frames both variants finished, against
    the variant's own `baseline` (its preset unchanged), MD against the baseline on as many cores
    (`baseline` on one, `baseline_2core` on two). An MD-only
    variant (`MD_ONLY`) is judged on the frames of the variant `FRAMES_FROM` names (same numbers)."""
    results = record["results"]
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for entry in results.values():
        by_variant.setdefault(entry["variant"], []).append(entry)

    md_cases = {c.name for c in cases if c.kind == "md"}

    def good_md(name: str) -> dict[str, Any] | None:
        return next((e for e in by_variant.get(name, [])
                     if e["kind"] == "md" and e["case"] in md_cases and not e.get("error")), None)

    def good_sp(name: str) -> dict[str, dict[str, Any]]:
        return {e["case"]: e for e in by_variant.get(name, []) if e["kind"] == "sp" and not e.get("error")}

    out = []
    for variant in variants:
        own = by_variant.get(variant.name)
        if not own:
            continue
        frames_source = FRAMES_FROM.get(variant.name, variant.name)
        frame_entries = [e for e in by_variant.get(frames_source, []) if e["kind"] == "sp"]
        entries = frame_entries + [e for e in own if e["kind"] == "md" and e["case"] in md_cases]
        sps = [e for e in frame_entries if not e.get("error")]
        md = good_md(variant.name)
        base_md = good_md(baseline_2core if cores_of(variant) == 2 else baseline)
        drift_base = good_md(baseline)
        base_sp = good_sp(variant.baseline if variant.sp_only else baseline)
        shared = [e for e in sps if e["case"] in base_sp]
        sp_speed = (speedup(sum(sp_cost_s(base_sp[e["case"]]) for e in shared), sum(sp_cost_s(e) for e in shared))
                    if shared and variant.name not in MD_ONLY else None)
        out.append(VariantSummary(
            name=variant.name, note=variant.note,
            sp_wall_s=float(np.mean([sp_cost_s(e) for e in sps])) if sps and variant.name not in MD_ONLY else None,
            s_per_scf_iteration=(float(np.mean([sp_cost_s(e) / max(e["scf_iterations"], 1) for e in sps]))
                                 if sps and variant.name not in MD_ONLY else None),
            force_rmse_max_mev_per_a=max((e["force_rmse_mev_per_a"] for e in sps), default=None),
            energy_max_mev_per_atom=max((abs(e["energy_diff_mev_per_atom"]) for e in sps), default=None),
            stress_max_gpa=max((e["stress_diff_max_gpa"] for e in sps if "stress_diff_max_gpa" in e), default=None),
            md_s_per_step=md_cost_s(md) if md else None,
            md_scf_per_step=md["scf_iterations_per_step"] if md else None,
            drift_mev_per_atom_ps=md["drift_mev_per_atom_ps"] if md else None,
            md_speedup=speedup(md_cost_s(base_md), md_cost_s(md)) if md and base_md else None,
            sp_speedup=sp_speed,
            verdict=accept(entries, drift_base if variant.name not in (baseline, baseline_2core) else None,
                           sum(c.kind == "sp" for c in cases) if variant.sp_only else len(cases)),
            cores=cores_of(variant),
        ))
    return out


def fastest_accepted(summaries: Sequence[VariantSummary], cores: int = 1) -> VariantSummary | None:
    """The accepted variant on `cores` cores with an MD measurement and the lowest MD s/step
    (None when none)."""
    timed = [s for s in summaries if s.verdict.accepted and s.md_s_per_step is not None and s.cores == cores]
    return min(timed, key=lambda s: s.md_s_per_step) if timed else None


def fastest_accepted_sp(summaries: Sequence[VariantSummary], preset: str = "label",
                        variants: Sequence[TuningVariant] = VARIANTS) -> VariantSummary | None:
    """The accepted, complete variant of `preset` with the highest single-point speed-up over its
    baseline (None when none, or when none beats the baseline)."""
    names = {v.name for v in variants if v.preset == preset}
    timed = [s for s in summaries if s.name in names and s.verdict.accepted and s.verdict.complete
             and s.sp_speedup is not None and s.sp_speedup > 1.0]
    return max(timed, key=lambda s: s.sp_speedup) if timed else None


def scaling_table(record: dict[str, Any], variants: Sequence[str]) -> str:
    """CP2K's MD cost against N (the `SCALING_CASES`) for `variants`, with the fitted exponent of
    s/step ∝ N^b per variant (markdown)."""
    from ..metrics.throughput import fit_scaling_exponent

    lines = ["| variant | N | CPU-equiv. s/step | SCF/step |", "|---|---|---|---|"]
    fits = []
    for name in variants:
        rows = sorted((e for e in record["results"].values() if e["variant"] == name and not e.get("error")
                       and e["case"].startswith("md:a-Li2Si-")), key=lambda e: e["n_atoms"])
        for e in rows:
            lines.append(f"| {name} | {e['n_atoms']} | {md_cost_s(e):.2f} | {e['scf_iterations_per_step']} |")
        if len(rows) >= 2:
            b, _, err = fit_scaling_exponent([e["n_atoms"] for e in rows], [md_cost_s(e) for e in rows])
            fits.append(f"{name}: s/step ∝ N^{b:.2f}" + (f" ± {err:.2f}" if np.isfinite(err) else ""))
    return "\n".join(lines + ([""] + fits if fits else []))


def markdown_table(summaries: Sequence[VariantSummary]) -> str:
    """The study's table for docs/cp2k_settings.md."""
    def fmt(value: float | None, spec: str) -> str:
        return "–" if value is None or not np.isfinite(value) else format(value, spec)

    lines = ["| variant | what changes | SP CPU (s) | CPU s/SCF it. | max ΔF RMS (meV/Å) | max \\|ΔE\\| (meV/atom) "
             "| max \\|Δσ\\| (GPa) | MD s/step (CPU-equiv.) | SCF/step | drift (meV/atom/ps) | MD speed-up | SP speed-up | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        verdict = "accepted" if s.verdict.accepted else ("rejected: " + "; ".join(s.verdict.reasons) if s.verdict.reasons else "–")
        if not s.verdict.complete:
            verdict += " (incomplete)"
        lines.append(f"| {s.name} | {s.note} | {fmt(s.sp_wall_s, '.1f')} | {fmt(s.s_per_scf_iteration, '.2f')} "
                     f"| {fmt(s.force_rmse_max_mev_per_a, '.2f')} | {fmt(s.energy_max_mev_per_atom, '.3f')} "
                     f"| {fmt(s.stress_max_gpa, '.3f')} "
                     f"| {fmt(s.md_s_per_step, '.2f')} | {fmt(s.md_scf_per_step, '.1f')} "
                     f"| {fmt(s.drift_mev_per_atom_ps, '+.2f')} | {fmt(s.md_speedup, '.2f')}× "
                     f"| {fmt(s.sp_speedup, '.2f')}× | {verdict} |")
    return "\n".join(lines)
