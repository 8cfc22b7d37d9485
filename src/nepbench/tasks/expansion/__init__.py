"""Core–shell expansion (task type `expansion`): does a carbon shell keep a lithiated Si@C particle
from swelling?

For each carbon-shell thickness t (nm) and seed, a non-periodic Si@C particle is built, relaxed, and
its core lithiated stage by stage up to `target_x` Li per core Si beside an Li-free control relaxed
as long; the particle's and the core's ΔV/V0 (%, mean ± stderr over seeds), shell strain and radial
profiles are reported per t, and the headline ΔV/V0 at the headline thickness is withheld, with the
reason, where `headline_gate` says it cannot speak for the claim. `engine = "gpumd"` without a GPU
raises EngineNotAvailable ("no GPU: ..."), which the runner records as skipped.

The protocol, the volume methods, the gate's reasons and the sizes and costs measured are in
docs/metrics.md, "Core–shell expansion".

Package layout (one job per module): `params` (ExpansionParams, its checks, predicted sizes and
cost), `measure` (centre, core and shell surfaces, volumes, comparison of two states), `insertion`
(Li at the largest empty spheres of the core), `relax` (optimiser or MD relaxation), `particle` (the
protocol for one t and seed), `headline` (the headline gate), `summary` (metrics and series over
seeds), `run` (`run_expansion`). The names below are importable from `nepbench.tasks.expansion`.
"""

from __future__ import annotations

from ...systems.core_shell import CORE_TAG, SHELL_TAG
from .headline import (
    CROSS_CHECK_MARGIN_PERCENT,
    beside_limit,
    cross_check_excess,
    headline_gate,
    largest_change,
)
from .insertion import LI_TAG, circumcentres_a, insertion_sites, lithiate
from .measure import (
    MIN_SHELL_ATOMS,
    compare_states,
    core_atoms,
    core_radius_a,
    host_centre_a,
    shape_anisotropy,
    shell_fit_a,
    shell_inner_radius_a,
    volumes_a3,
)
from .params import (
    RADIAL_BINS_PAD_NM,
    TASK_PARAMS,
    VACUUM_MARGIN_NM,
    ExpansionParams,
    check_params,
    expected_sizes,
    planned_cost,
    predicted_outer_radius_nm,
    radial_edges_for,
    t_key,
)
from .particle import build_particle, run_particle
from .relax import MD_AVERAGE_WINDOW_FRACTION, Relaxed, Relaxer, md_sample_interval, md_window_text
from .run import make_engine, run_expansion
from .summary import MIN_ATOMS_PER_BIN, built_sizes_text, summarise

__all__ = [
    "CORE_TAG", "CROSS_CHECK_MARGIN_PERCENT", "LI_TAG", "MD_AVERAGE_WINDOW_FRACTION", "MIN_ATOMS_PER_BIN",
    "MIN_SHELL_ATOMS", "RADIAL_BINS_PAD_NM", "SHELL_TAG", "TASK_PARAMS", "VACUUM_MARGIN_NM",
    "ExpansionParams", "Relaxed", "Relaxer",
    "beside_limit", "build_particle", "built_sizes_text", "check_params", "circumcentres_a", "compare_states",
    "core_atoms", "core_radius_a", "cross_check_excess", "expected_sizes", "headline_gate", "host_centre_a",
    "insertion_sites", "largest_change", "lithiate", "make_engine", "md_sample_interval", "md_window_text",
    "planned_cost", "predicted_outer_radius_nm", "radial_edges_for", "run_expansion", "run_particle",
    "shape_anisotropy", "shell_fit_a", "shell_inner_radius_a", "summarise", "t_key", "volumes_a3",
]
