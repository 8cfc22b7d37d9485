"""Two CP2K presets on the frames of one reference set: every selected frame that the label cache
holds under both presets (one record per structure, settings and CP2K version), compared force by
force, by energy and by stress, and judged with the tuning study's limits (`agreement.accept`).

This is how a faster label preset is checked on the very frames it will label (the v2 set's
near-equilibrium MD frames), beyond the study's four motif frames: the frames labelled before the
switch are relabelled with the new preset, and the old records stay in the cache as the check.

Units: forces meV/Å, energies meV/atom, stress GPa, times s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from ..reference.labelling import cached_label, item_hash
from ..structures import labels_of
from .agreement import Verdict, accept, energy_difference_mev_per_atom, force_agreement, stress_difference_gpa


@dataclass(frozen=True)
class FramePair:
    """One frame labelled under both presets.

    Attributes:
        frame: the first 12 hex digits of the frame's cache key under preset B.
        formula: chemical formula.
        motif: the frame's motif family ("" when the item has none).
        n_atoms: atoms in the cell.
        force_rmse_mev_per_a: RMS of F_B − F_A over all components (meV/Å).
        force_max_abs_mev_per_a: max |F_B − F_A| (meV/Å).
        energy_diff_mev_per_atom: (E_B − E_A) / N (meV/atom).
        stress_diff_max_gpa: max |σ_B − σ_A| over the Voigt components (GPa); None without stress.
        wall_s_a: wall time of the label under preset A (s, as recorded; the machine may have been shared).
        wall_s_b: the same under preset B (s).
    """

    frame: str
    formula: str
    motif: str
    n_atoms: int
    force_rmse_mev_per_a: float
    force_max_abs_mev_per_a: float
    energy_diff_mev_per_atom: float
    stress_diff_max_gpa: float | None
    wall_s_a: float
    wall_s_b: float


def labelled_under_both(items: Sequence[Atoms], cache_dir: Path, settings_a: dict[str, Any],
                        settings_b: dict[str, Any], cp2k_version: str) -> Iterator[tuple[Atoms, Atoms, Atoms]]:
    """(item, its label under A, its label under B) for every item of `items` whose label cache under
    `cache_dir` holds a record for both settings (CP2KSettings.to_dict() of preset A and B, CP2K
    `cp2k_version`), in item order."""
    for atoms in items:
        a = cached_label(cache_dir, atoms, settings_a, cp2k_version)
        b = cached_label(cache_dir, atoms, settings_b, cp2k_version)
        if a is not None and b is not None:
            yield atoms, a, b


def pair_frames(items: Sequence[Atoms], cache_dir: Path, settings_a: dict[str, Any], settings_b: dict[str, Any],
                cp2k_version: str) -> list[FramePair]:
    """A FramePair for every item `labelled_under_both` presets, in item order."""
    pairs = []
    for atoms, a, b in labelled_under_both(items, cache_dir, settings_a, settings_b, cp2k_version):
        key_b = item_hash(atoms, settings_b, cp2k_version)
        (e_a, f_a, s_a), (e_b, f_b, s_b) = labels_of(a), labels_of(b)
        rmse, fmax = force_agreement(f_b, f_a)
        pairs.append(FramePair(
            frame=key_b[:12], formula=atoms.get_chemical_formula(), motif=str(atoms.info.get("motif", "")),
            n_atoms=len(atoms), force_rmse_mev_per_a=rmse, force_max_abs_mev_per_a=fmax,
            energy_diff_mev_per_atom=energy_difference_mev_per_atom(e_b, e_a, len(atoms)),
            stress_diff_max_gpa=None if s_a is None or s_b is None else stress_difference_gpa(s_b, s_a),
            wall_s_a=float(a.info["wall_s"]), wall_s_b=float(b.info["wall_s"])))
    return pairs


def judge(pairs: Sequence[FramePair]) -> Verdict:
    """The tuning study's verdict (`accept`) over the pairs: each frame within the force, energy and
    stress limits; not accepted when there is no pair."""
    entries = [{"case": f"frame:{p.frame}", "kind": "sp", "force_rmse_mev_per_a": p.force_rmse_mev_per_a,
                "energy_diff_mev_per_atom": p.energy_diff_mev_per_atom,
                **({} if p.stress_diff_max_gpa is None else {"stress_diff_max_gpa": p.stress_diff_max_gpa})}
               for p in pairs]
    return accept(entries, None, n_cases=len(entries))


def summary(pairs: Sequence[FramePair]) -> dict[str, Any]:
    """JSON-ready summary: the pairs, the largest differences, the median wall-time ratio A ÷ B
    (recorded wall times: a ratio of labels made at different times on a possibly shared machine)
    and the verdict."""
    verdict = judge(pairs)
    stresses = [p.stress_diff_max_gpa for p in pairs if p.stress_diff_max_gpa is not None]
    return {
        "n_frames": len(pairs),
        "force_rmse_max_mev_per_a": max((p.force_rmse_mev_per_a for p in pairs), default=None),
        "energy_diff_max_abs_mev_per_atom": max((abs(p.energy_diff_mev_per_atom) for p in pairs), default=None),
        "stress_diff_max_gpa": max(stresses, default=None),
        "median_wall_ratio_a_over_b": (float(np.median([p.wall_s_a / p.wall_s_b for p in pairs if p.wall_s_b > 0]))
                                       if pairs else None),
        "accepted": verdict.accepted, "reasons": list(verdict.reasons),
        "frames": [asdict(p) for p in pairs],
    }


def markdown_table(pairs: Sequence[FramePair]) -> str:
    """One row per frame (markdown)."""
    lines = ["| frame | formula | motif | ΔF RMS (meV/Å) | max \\|ΔF\\| (meV/Å) | ΔE (meV/atom) | max \\|Δσ\\| (GPa) "
             "| wall A (s) | wall B (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        stress = "–" if p.stress_diff_max_gpa is None else f"{p.stress_diff_max_gpa:.3f}"
        lines.append(f"| {p.frame} | {p.formula} | {p.motif} | {p.force_rmse_mev_per_a:.2f} "
                     f"| {p.force_max_abs_mev_per_a:.2f} | {p.energy_diff_mev_per_atom:+.3f} | {stress} "
                     f"| {p.wall_s_a:.0f} | {p.wall_s_b:.0f} |")
    return "\n".join(lines)
