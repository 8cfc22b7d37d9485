"""CP2K tuning study: which CP2K settings reproduce the committed labels fastest.

Each *variant* is the untuned AIMD preset (`engines.cp2k.AIMD_V1_SETTINGS`) with a few levers
changed that keep the level of theory (PBE, GTH pseudopotentials, the MOLOPT basis family, 500 K
Fermi smearing). Each *case* is either a committed DFT label frame computed as a single point
(forces and energy compared with the label) or the AIMD cell run as NVT MD (wall time per step
after the ASPC extrapolation has warmed up, SCF iterations per step, conserved-quantity drift).

The record (`reference_data/studies/cp2k_tuning.json`) holds one entry per (variant, case): the
settings, wall times, SCF iterations, CP2K's own timing report (top routines by self time), how
busy the machine's other cores were, and the agreement with the label. Finished entries are kept,
so an interrupted study resumes; a variant CP2K rejects is recorded with its error and the study
goes on. `accept` turns the entries of one variant into a verdict (pure).

Package layout (one job per module): `agreement` (pure metrics, limits and `accept`), `variants`
(the variants and cases), `record` (the study record and `cached_md_timing`), `running`
(`run_study`, one CP2K run per pair), `summary` (per-variant summaries and markdown tables).
Everything is importable from `nepbench.cp2k_tuning`.

Units: forces meV/Å, energies meV/atom, times s, drift meV/atom/ps.
"""

from __future__ import annotations

from ..engines.cp2k import AIMD_V1_SETTINGS  # noqa: F401  (the study's base settings)
from .agreement import (  # noqa: F401
    FORCE_RMSE_LIMIT_MEV_PER_A,
    ENERGY_LIMIT_MEV_PER_ATOM,
    STRESS_LIMIT_GPA,
    EV_PER_A3_GPA,
    Verdict,
    stress_difference_gpa,
    force_agreement,
    energy_difference_mev_per_atom,
    drift_mev_per_atom_ps,
    accept,
    speedup,
    timing_report,
)
from .variants import (  # noqa: F401
    TuningVariant,
    TuningCase,
    SP_CASES,
    MD_CASE,
    CASES,
    scaling_case,
    SCALING_CASES,
    E9R40,
    VARIANTS,
    MD_ONLY,
    FRAMES_FROM,
    variant_by_name,
)
from .record import (  # noqa: F401
    DEFAULT_RECORD,
    DEFAULT_RECORD_ABS,
    load_record,
    cached_md_timing,
    recorded_cpu,
    cell_key,
)
from .running import (  # noqa: F401
    label_frame,
    md_start,
    children_cpu_s,
    cpu_equivalent,
    run_sp,
    run_md,
    run_study,
    summary_line,
)
from .summary import (  # noqa: F401
    VariantSummary,
    sp_cost_s,
    md_cost_s,
    cores_of,
    summarise,
    fastest_accepted,
    fastest_accepted_sp,
    scaling_table,
    markdown_table,
)

__all__ = [
    "AIMD_V1_SETTINGS",
    "CASES",
    "DEFAULT_RECORD",
    "DEFAULT_RECORD_ABS",
    "E9R40",
    "ENERGY_LIMIT_MEV_PER_ATOM",
    "STRESS_LIMIT_GPA",
    "EV_PER_A3_GPA",
    "stress_difference_gpa",
    "FORCE_RMSE_LIMIT_MEV_PER_A",
    "FRAMES_FROM",
    "MD_CASE",
    "MD_ONLY",
    "SCALING_CASES",
    "SP_CASES",
    "TuningCase",
    "TuningVariant",
    "VARIANTS",
    "VariantSummary",
    "Verdict",
    "accept",
    "cached_md_timing",
    "recorded_cpu",
    "cell_key",
    "children_cpu_s",
    "cores_of",
    "cpu_equivalent",
    "drift_mev_per_atom_ps",
    "energy_difference_mev_per_atom",
    "fastest_accepted",
    "fastest_accepted_sp",
    "force_agreement",
    "label_frame",
    "load_record",
    "markdown_table",
    "md_cost_s",
    "md_start",
    "run_md",
    "run_sp",
    "run_study",
    "scaling_case",
    "scaling_table",
    "sp_cost_s",
    "speedup",
    "summarise",
    "summary_line",
    "timing_report",
    "variant_by_name",
]
