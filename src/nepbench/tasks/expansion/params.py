"""The expansion task's parameters: the typed `ExpansionParams`, its checks, and what a parameter set
predicts before anything runs (built sizes, the largest particle radius, radial bins, cost).

Why each check and bound: docs/metrics.md, "Core–shell expansion" (Sizes and cost, Vacuum, Refused
when the suite loads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ...checks import finite_number, integer
from ...errors import ConfigError
from ...metrics import expansion as ex
from ...systems.amorphous import A_SI_DENSITY_G_CM3
from ...systems.core_shell import SI_DIAMOND_ATOMS_PER_A3, core_si_count, number_density_per_a3

RELAX_MODES = ("lbfgs", "fire", "md")
#: Vacuum (nm) that must remain between the particle's predicted radius at target_x and each box face:
#: half of engines.gpumd.PERIODIC_VACUUM_A (12 Å), so periodic images stay ≥ 12 Å apart (beyond the
#: NEP cutoff) and GPUMD keeps writing the box periodic (its fast neighbour search).
VACUUM_MARGIN_NM = 0.6
#: Smallest radius (Å) of the insertion region (core radius − core_margin_a) `validate` accepts.
MIN_INSERTION_REGION_A = 1.0
#: Radial profile bins reach this far (nm) beyond the largest predicted particle radius.
RADIAL_BINS_PAD_NM = 0.5

#: Annotation → (check, what one value must be, what a list's values must be), for `ExpansionParams.validate`.
_TYPE_CHECKS = {"float": (lambda v: finite_number(v) is not None, "a finite number", "finite numbers"),
                "int": (lambda v: integer(v) is not None, "an integer", "integers"),
                "str": (lambda v: isinstance(v, str), "a string", "strings"),
                "bool": (lambda v: isinstance(v, bool), "true or false", "true or false")}


def _type_problem(name: str, value: Any, annotation: str) -> str | None:
    """Why `value` does not fit the field annotation ("float", "int | None", "tuple[int, ...]", …), or None."""
    base = annotation.removesuffix(" | None")
    if base != annotation and value is None:
        return None
    if base.startswith("tuple["):
        check, _, what = _TYPE_CHECKS[base[len("tuple["):-len(", ...]")]]
        if isinstance(value, (list, tuple)) and all(check(v) for v in value):
            return None
        return f"{name} must be a list of {what}, got {list(value) if isinstance(value, tuple) else value!r}"
    check, what, _ = _TYPE_CHECKS[base]
    if check(value):
        return None
    return f"{name} must be {what}{' or unset' if base != annotation else ''}, got {value!r}"


@dataclass(frozen=True)
class ExpansionParams:
    """The task's parameters (suite `[[task]]` keys of the same names). Defaults = the quick variant.

    Geometry: core_radius_nm, shell_thicknesses_nm, vacuum_nm, core ("crystalline"/"amorphous"),
    shell_density_g_cm3. Seeds: one particle and one insertion sequence per seed.
    Lithiation: target_x (Li per core Si), dx (per stage), min_distance_a, core_margin_a.
    Relaxation: relax ("lbfgs" | "fire" | "md"), reference_steps, relax_steps, fmax_ev_per_a (the
    optimisers stop early below it), maxstep_a (largest optimiser step); for "md": temperature_k,
    timestep_fs, average_frames (frames whose volumes are averaged, `relax.md_sample_interval`).
    control: relax an Li-free copy alongside.
    Measurement: volume_method, probe_radius_a (Å; larger than the probe volume's automatic voxel at
    the largest predicted particle), radial_bin_nm, headline_t_nm (None = largest t).
    Headline gate (`headline.headline_gate`): min_x_fraction (of target_x, every seed),
    max_last_half_change_percent (% points), min_bare_dv_percent (the positive control, %; 0 turns it
    off), claim_limit_percent (the claim's bound, %: the suites' criterion uses it as its good bound).
    Engine and cost: engine ("nep_cpu" | "gpumd" | "auto"), nep_threads, predicted_atom_steps_per_s,
    max_atom_steps.
    """

    core_radius_nm: float = 1.0
    shell_thicknesses_nm: tuple[float, ...] = (0.0, 0.4, 0.8)
    vacuum_nm: float = 1.0
    core: str = "crystalline"
    shell_density_g_cm3: float = 2.1
    seeds: tuple[int, ...] = (1, 2)
    target_x: float = 0.5
    dx: float = 0.25
    min_distance_a: float = 2.0
    core_margin_a: float = 1.0
    relax: str = "lbfgs"
    reference_steps: int = 80
    relax_steps: int = 80
    fmax_ev_per_a: float = 0.05
    maxstep_a: float = 0.2
    temperature_k: float = 600.0
    timestep_fs: float = 1.0
    average_frames: int = 5
    control: bool = True
    volume_method: str = "radial"
    probe_radius_a: float = ex.DEFAULT_PROBE_RADIUS_A
    radial_bin_nm: float = 0.1
    headline_t_nm: float | None = None
    min_x_fraction: float = 0.95
    max_last_half_change_percent: float = 0.25
    min_bare_dv_percent: float = 5.0
    claim_limit_percent: float = 1.0
    engine: str = "nep_cpu"
    nep_threads: int | None = None
    predicted_atom_steps_per_s: float = 12_000.0
    max_atom_steps: float = 4.0e6

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "ExpansionParams":
        known = {f.name for f in fields(cls)}
        ignored = {"model"}
        unknown = sorted(set(params) - known - ignored)
        if unknown:
            raise ConfigError(f"expansion task: unknown parameter(s) {', '.join(unknown)}")
        kw = {k: v for k, v in params.items() if k in known}
        for key in ("shell_thicknesses_nm", "seeds"):
            if isinstance(kw.get(key), list):  # anything else is refused by validate, naming the key
                kw[key] = tuple(kw[key])
        p = cls(**kw)
        p.validate()
        return p

    def validate(self) -> None:
        """Raise ConfigError ("expansion task: ...", naming the key) on the first bad value."""
        problem = _field_problem(self) or _geometry_problem(self) or _protocol_problem(self)
        if problem:
            raise ConfigError(f"expansion task: {problem}")

    @property
    def x_schedule(self) -> list[float]:
        """Li per core Si after each insertion stage."""
        n = math.ceil(self.target_x / self.dx - 1e-9)
        return [min((k + 1) * self.dx, self.target_x) for k in range(n)]

    @property
    def headline_t(self) -> float:
        return max(self.shell_thicknesses_nm) if self.headline_t_nm is None else float(self.headline_t_nm)


#: Parameters an expansion task reads (suite files are checked against them when loaded).
TASK_PARAMS = frozenset(f.name for f in fields(ExpansionParams))


def check_params(params: dict[str, Any]) -> str | None:
    """What is wrong with an expansion task's parameter values (`ExpansionParams.validate`), or None."""
    try:
        ExpansionParams.from_params(params)
    except ConfigError as exc:
        return str(exc).removeprefix("expansion task: ")
    return None


def _field_problem(p: ExpansionParams) -> str | None:
    """Types, then the ranges of single values and lists (the first step of `validate`)."""
    for f in fields(p):
        problem = _type_problem(f.name, getattr(p, f.name), str(f.type))
        if problem:
            return problem
    if p.core not in ("crystalline", "amorphous"):
        return f"core must be 'crystalline' or 'amorphous', got {p.core!r}"
    if not p.shell_density_g_cm3 > 0:
        return f"shell_density_g_cm3 must be > 0, got {p.shell_density_g_cm3}"
    if any(s < 0 for s in p.seeds):
        return f"seeds must be integers >= 0, got {list(p.seeds)}"
    for key in ("temperature_k", "timestep_fs", "fmax_ev_per_a", "maxstep_a", "radial_bin_nm",
                "max_last_half_change_percent"):
        if not getattr(p, key) > 0:
            return f"{key} must be > 0, got {getattr(p, key)}"
    if p.nep_threads is not None and p.nep_threads < 1:
        return f"nep_threads must be >= 1 (or unset), got {p.nep_threads}"
    if not p.min_bare_dv_percent >= 0:
        return f"min_bare_dv_percent must be >= 0 (0 = no positive control), got {p.min_bare_dv_percent}"
    if not p.claim_limit_percent > 0:
        return f"claim_limit_percent must be > 0, got {p.claim_limit_percent}"
    if not 0 < p.min_x_fraction <= 1:
        return f"min_x_fraction must be in (0, 1], got {p.min_x_fraction}"
    if not p.shell_thicknesses_nm or any(t < 0 for t in p.shell_thicknesses_nm):
        return "shell_thicknesses_nm must be a non-empty list of values >= 0"
    if len(set(p.shell_thicknesses_nm)) != len(p.shell_thicknesses_nm):
        return "shell_thicknesses_nm has duplicates"
    if not p.seeds or len(set(p.seeds)) != len(p.seeds):
        return "seeds must be a non-empty list of distinct integers"
    return None


def _geometry_problem(p: ExpansionParams) -> str | None:
    """Sizes, the vacuum around the grown particle, the probe, the insertion region and the core fit."""
    if not (p.core_radius_nm > 0 and p.vacuum_nm > 0):
        return "core_radius_nm and vacuum_nm must be > 0"
    if not (p.target_x > 0 and 0 < p.dx <= p.target_x):
        return "need target_x > 0 and 0 < dx <= target_x"
    growth, t_worst = max((predicted_outer_radius_nm(p, t) - p.core_radius_nm - t, t)
                          for t in p.shell_thicknesses_nm)
    if not p.vacuum_nm > growth + VACUUM_MARGIN_NM:
        return (f"vacuum_nm = {p.vacuum_nm:g} nm is too small: at target_x = {p.target_x:g} the "
                f"particle's radius may grow by {growth:.2f} nm (t = {t_key(t_worst)} nm, "
                f"`predicted_outer_radius_nm`) and {VACUUM_MARGIN_NM:g} nm must remain to the box face; "
                f"use vacuum_nm > {growth + VACUUM_MARGIN_NM:.2f}")
    if not (p.min_distance_a > 0 and p.core_margin_a >= 0):
        return "need min_distance_a > 0 and core_margin_a >= 0"
    return probe_problem(p) or insertion_region_problem(p) or core_fit_problem(p)


def _protocol_problem(p: ExpansionParams) -> str | None:
    """Relaxation, engine, measurement and cost settings."""
    if p.relax not in RELAX_MODES:
        return f"relax must be one of {RELAX_MODES}, got {p.relax!r}"
    if p.engine not in ("nep_cpu", "gpumd", "auto"):
        return f"engine must be 'nep_cpu', 'gpumd' or 'auto', got {p.engine!r}"
    if p.engine == "gpumd" and p.relax != "md":
        return f"relax = '{p.relax}' runs an ASE optimiser on the CPU engine; use relax = 'md' with gpumd"
    if p.reference_steps < 1 or p.relax_steps < 1 or p.average_frames < 1:
        return "reference_steps, relax_steps and average_frames must be >= 1"
    if p.volume_method not in ex.VOLUME_METHODS:
        return f"volume_method must be one of {ex.VOLUME_METHODS}, got {p.volume_method!r}"
    if p.headline_t_nm is not None and p.headline_t_nm not in p.shell_thicknesses_nm:
        return f"headline_t_nm {p.headline_t_nm} is not among shell_thicknesses_nm"
    if not (p.predicted_atom_steps_per_s > 0 and p.max_atom_steps > 0):
        return "predicted_atom_steps_per_s and max_atom_steps must be > 0"
    return None


def predicted_outer_radius_nm(p: ExpansionParams, shell_thickness_nm: float) -> float:
    """Outer radius (nm) the particle may reach at `p.target_x` if nothing holds the core back: an upper
    bound, b'³ = b³ + x·R³ (nm³; each Li takes a Si's volume, the shell keeps its own). It sets the
    vacuum check, the probe's voxel check and the radial bins."""
    r, b = p.core_radius_nm, p.core_radius_nm + shell_thickness_nm
    return float(np.cbrt(b**3 + p.target_x * r**3))


def largest_predicted_radius_nm(p: ExpansionParams) -> tuple[float, float]:
    """(radius in nm, t in nm) of the largest particle `predicted_outer_radius_nm` expects over the
    task's shell thicknesses."""
    return max((predicted_outer_radius_nm(p, t), t) for t in p.shell_thicknesses_nm)


def radial_edges_for(p: ExpansionParams) -> np.ndarray:
    """Radial profile bin edges (nm): `radial_bin_nm` wide, from 0 to the largest predicted particle
    radius + RADIAL_BINS_PAD_NM (atoms beyond, e.g. Li that left the particle, are not binned)."""
    return ex.radial_edges_nm(largest_predicted_radius_nm(p)[0] + RADIAL_BINS_PAD_NM, p.radial_bin_nm)


def probe_problem(p: ExpansionParams) -> str | None:
    """Why `probe_radius_a` would fail the probe volume (a cross-check computed whatever
    `volume_method`), or None: it must exceed the voxel `ex.auto_voxel_a` picks for the largest
    predicted particle (a ball of `largest_predicted_radius_nm`), which coarsens with the particle."""
    radius_nm, t = largest_predicted_radius_nm(p)
    voxel_a = ex.auto_voxel_for_span_a(np.full(3, 20.0 * radius_nm), p.probe_radius_a)
    if p.probe_radius_a > voxel_a:
        return None
    return (f"probe_radius_a = {p.probe_radius_a:g} Å must exceed the probe volume's voxel, "
            f"{voxel_a:.2f} Å for the largest predicted particle (radius {radius_nm:.2f} nm at t = {t_key(t)} nm, "
            f"target_x = {p.target_x:g}; `predicted_outer_radius_nm`); use probe_radius_a > {voxel_a:.2f} "
            f"(default {ex.DEFAULT_PROBE_RADIUS_A:g})")


def insertion_region_problem(p: ExpansionParams) -> str | None:
    """Why `core_margin_a` leaves no room to insert Li, or None: the core's radius (≈ 10·core_radius_nm
    Å) minus core_margin_a must leave at least MIN_INSERTION_REGION_A."""
    region_a = 10.0 * p.core_radius_nm - p.core_margin_a
    if region_a >= MIN_INSERTION_REGION_A:
        return None
    return (f"core_margin_a = {p.core_margin_a:g} Å leaves an insertion region of radius {region_a:.3g} Å "
            f"in a {10.0 * p.core_radius_nm:g} Å core (core radius − core_margin_a), less than "
            f"{MIN_INSERTION_REGION_A:g} Å; use core_margin_a <= {10.0 * p.core_radius_nm - MIN_INSERTION_REGION_A:.3g}")


def core_fit_problem(p: ExpansionParams) -> str | None:
    """Why the core is too small for the equimolar fit of its surface, or None: every seed's core
    must hold `ex.min_atoms_for_window(OUTER_SURFACE_WINDOW)` Si (38), counted as the builder builds it."""
    need = ex.min_atoms_for_window(ex.OUTER_SURFACE_WINDOW)
    if expected_sizes(p, 0.0)[0] >= 2 * need:  # far from the limit: no need to count each seed's lattice
        return None
    counts = {seed: core_si_count(p.core_radius_nm, seed, p.core) for seed in p.seeds}
    seed, fewest = min(counts.items(), key=lambda kv: kv[1])
    if fewest >= need:
        return None
    return (f"core_radius_nm = {p.core_radius_nm:g} gives {fewest} core Si (seed {seed}), fewer than the {need} "
            f"the equimolar fit of the core's surface needs ({ex.MIN_WINDOW_ATOMS} atoms in its "
            f"{ex.OUTER_SURFACE_WINDOW} window of sorted radii); use a larger core (at 0.6 nm seeds 0–49 hold 40–49)")


def t_key(t_nm: float) -> str:
    """Shell thickness as used in metric names and series keys: 1 → "1.0", 0.25 → "0.25"."""
    s = f"{float(t_nm):g}"
    return s if ("." in s or "e" in s) else s + ".0"


def expected_sizes(p: ExpansionParams, shell_thickness_nm: float) -> tuple[int, int]:
    """(core Si, shell C) counts `core_shell_particle` builds, from its densities (no packing)."""
    r_core, r_out = 10.0 * p.core_radius_nm, 10.0 * (p.core_radius_nm + shell_thickness_nm)
    n_si_per_a3 = (SI_DIAMOND_ATOMS_PER_A3 if p.core == "crystalline"
                   else number_density_per_a3("Si", A_SI_DENSITY_G_CM3))
    n_si = int(round(n_si_per_a3 * 4 / 3 * np.pi * r_core**3))
    n_c = int(round(number_density_per_a3("C", p.shell_density_g_cm3) * 4 / 3 * np.pi * (r_out**3 - r_core**3)))
    return n_si, n_c


def planned_cost(p: ExpansionParams, sizes: dict[float, tuple[int, int]] | None = None) -> dict[str, Any]:
    """Atom counts and atom·steps the protocol will take, and the predicted wall time (s).

    `sizes` maps t → (n_core_si, n_shell); None takes them from the builder's densities. Li at x is
    counted as x·n_core_si and optimisers may stop early, so the atom·steps are an upper bound (up to
    a crystalline core's few atoms of seed variation).
    """
    if sizes is None:
        sizes = {t: expected_sizes(p, t) for t in p.shell_thicknesses_nm}
    per_t: dict[str, dict[str, float]] = {}
    total = 0.0
    branches = 2 if p.control else 1
    for t, (n_si, n_shell) in sizes.items():
        n0 = n_si + n_shell
        # an optimiser evaluates forces steps + 1 times; MD takes exactly `steps` (the +1 is a bound)
        steps = (p.reference_steps + 1) * n0
        for x in p.x_schedule:
            steps += (p.relax_steps + 1) * ((n0 + x * n_si) + (branches - 1) * n0)
        per_t[t_key(t)] = {"n_atoms": n0, "n_core_si": n_si, "n_shell_c": n_shell,
                           "n_li_target": round(p.target_x * n_si), "atom_steps_per_seed": steps}
        total += steps * len(p.seeds)
    return {"per_t": per_t, "atom_steps": total, "predicted_wall_s": total / p.predicted_atom_steps_per_s,
            "predicted_atom_steps_per_s": p.predicted_atom_steps_per_s}
