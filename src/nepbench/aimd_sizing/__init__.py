"""Cell size and production length of the AIMD reference runs, measured with NEP MD (issue 26).

An AIMD run is worth its CP2K hours only if (a) every pair's g(r) from its production is converged:
the g(r) of its first and second half agree within the RDF pass bound (`rdf_l1_aimd_halves`, the
floor md_accuracy reports beside the model's error), and (b) its Li MSD has a diffusive window, so
that a Li diffusivity with a usable block standard error comes out of it. Both depend on the cell
size N and the production length L, and DFT is far too dear to find them by trial. This package
finds them with the default NEP model on the same cells, temperatures, time steps and frame spacing
as the proposed AIMD runs, then prices the cheapest AIMD that meets both with a CP2K cost model.

Two stages:
- `run_case_size` (the only expensive part): builder packing → density from an NEP NPT run →
  melt–quench and NVT equilibration at the run's temperature → NVT production; the production
  trajectory is cached on disk (npz) by content hash, so analyses rerun without MD.
- Pure analysis (`rdf_halves_by_length`, `diffusion_by_length`, `required_length_ps`,
  `recommend`): the production is cut into disjoint windows of each candidate length L, each
  window analysed exactly as md_accuracy would analyse an AIMD run of that length, and a length
  counts as met when at least `SizingTargets.min_pass_fraction` of its windows pass.

The reasoning, the measured table and the recommendation: docs/aimd_sizing.md.
Units: lengths Å, times ps (time steps fs), temperatures K, D cm²/s, CPU and CP2K times s / h.

Package layout (one job per module): `cases` (SizingCase, SizingTargets), `production` (the NEP
MD and its cache), `analysis` (pure window analysis), `cost` (the CP2K cost model and options),
`study` (`run_study`, `recommend`, `recompute_choices`). Everything is importable from
`nepbench.aimd_sizing`.
"""

from __future__ import annotations

from .cases import (  # noqa: F401
    SizingCase,
    DEFAULT_CASES,
    SizingTargets,
    targets_from_suite,
)
from .production import (  # noqa: F401
    ProductionRun,
    md_steps,
    melt_quench_equilibrate,
    DensityResult,
    npt_density,
    scaled_to_density,
    run_case_size,
    timestep_check,
    save_production,
    load_production,
)
from .analysis import (  # noqa: F401
    window_slices,
    frames_for_length,
    per_frame_partials,
    halves_l1,
    rdf_halves_by_length,
    per_frame_adf_counts,
    adf_vdos_halves_by_length,
    loglog_slope,
    WindowDiffusion,
    window_diffusion,
    diffusion_by_length,
    pass_fraction,
    required_length_ps,
)
from .cost import (  # noqa: F401
    COST_EXPONENTS,
    Cp2kCost,
    cp2k_hours,
    tuning_evidence,
    cost_from_manifest,
    Option,
    options,
)
from .study import (  # noqa: F401
    analyse_production,
    recommend,
    CACHE_VERSION,
    planned_atom_steps,
    aimd_halves_check,
    recompute_choices,
    run_study,
)

__all__ = [
    "CACHE_VERSION",
    "COST_EXPONENTS",
    "Cp2kCost",
    "DEFAULT_CASES",
    "DensityResult",
    "Option",
    "ProductionRun",
    "SizingCase",
    "SizingTargets",
    "WindowDiffusion",
    "adf_vdos_halves_by_length",
    "aimd_halves_check",
    "analyse_production",
    "cost_from_manifest",
    "cp2k_hours",
    "diffusion_by_length",
    "frames_for_length",
    "halves_l1",
    "load_production",
    "loglog_slope",
    "md_steps",
    "melt_quench_equilibrate",
    "npt_density",
    "options",
    "pass_fraction",
    "per_frame_adf_counts",
    "per_frame_partials",
    "planned_atom_steps",
    "rdf_halves_by_length",
    "recommend",
    "recompute_choices",
    "required_length_ps",
    "run_case_size",
    "run_study",
    "save_production",
    "scaled_to_density",
    "targets_from_suite",
    "timestep_check",
    "tuning_evidence",
    "window_diffusion",
    "window_slices",
]
