"""Core–shell expansion: does a carbon shell keep a lithiated Si@C particle from swelling?

The experiment ("inner expansion / outer locking"): for each carbon-shell thickness t and seed, build
a non-periodic Si@C particle in vacuum (`systems.core_shell_particle`, tags 1 core / 2 shell), relax
it, then lithiate its core stepwise and measure the particle's and the core's volume change. The
same protocol, set by the task's parameters, is applied to every t:

1. reference: the particle relaxed for `reference_steps` (`relax = "lbfgs"` (default) or "fire":
   an ASE optimiser on the CPU engine; "md": NVT MD at `temperature_k` on any engine, GPUMD included).
2. stages k = 1 … ceil(target_x/dx): insert Li up to x_k = min(k·dx, target_x) Li per core Si at
   the largest empty spheres inside the core (Delaunay circumcentres of the atoms, at least
   `core_margin_a` inside the core's equimolar radius, every new Li ≥ `min_distance_a` from every
   atom and from each other; near-equal voids are taken in seeded random order), then relax
   `relax_steps`. Where fewer sites exist than asked, what fits is inserted and the x reached is
   recorded.
3. control (`control = true`, default): a copy of the reference gets the same relaxation stages
   without Li. ΔV/V0 compares the lithiated particle with this unlithiated one relaxed exactly as
   long, so the slow relaxation of the packed amorphous-carbon shell cancels. With `control =
   false` V0 is the reference.

Volumes: `volume_method` ("radial" by default; see docs/metrics.md for why) for the particle and the
core (core Si + Li inside the shell's inner surface; the radial fit uses the core Si alone); the other
two methods are recorded as cross-checks in the series, with the shell's cavity volume change; where
one of them exceeds the chosen method by more than CROSS_CHECK_MARGIN_PERCENT the method line says so
(material outside the shell, e.g. Li that left it, which the radial sphere of the shell's carbon does
not see). A convergence check records how much ΔV/V0 still moved over the second half of the last
relaxation (the largest |change| over seeds). Radial Li fraction and strain profiles, shell hoop
strain and thickness change come from `metrics.expansion`.

The headline ΔV/V0 (`particle_dv_over_v0_percent_at_t{T}`, its stderr, its upper bound mean + 2
stderr, and its ratio to the bare particle's) is left unmeasured, with the reason in `metric_reasons`,
where it cannot speak for the claim (`headline_gate`): a seed reached less than `min_x_fraction` of
target_x, ΔV/V0 still moved by more than `max_last_half_change_percent` over the last half-relaxation,
it is significantly negative, a cross-check volume (hull, probe) exceeds the chosen one by more than
CROSS_CHECK_MARGIN_PERCENT at T (what the chosen volume does not see, e.g. Li outside the shell), or
the positive control failed: the headline's mean is below the claim's bound (`claim_limit_percent`,
1 %) while the bare particle (t = 0) swelled by less than `min_bare_dv_percent`, so a pass would not
say that the shell holds anything (a mean at or above the bound is judged: that fails the claim
whatever the bare particle does).

Cost is counted in atom·steps (one force evaluation of one atom) and predicted before running from
`predicted_atom_steps_per_s`; a plan over `max_atom_steps` is refused. `engine = "gpumd"` needs a GPU
and the gpumd binary (else EngineNotAvailable, "no GPU: ...": the runner records "skipped").
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from ..config import TaskSpec, finite_number, integer
from ..errors import ConfigError, EngineNotAvailable
from ..metrics import expansion as ex
from ..systems.core_shell import CORE_TAG, SHELL_TAG, core_si_count
from . import TaskContext, TaskOutcome, cpu_engine, gpumd_not_applicable

#: Tag of the inserted Li (the builder tags the core Si CORE_TAG = 1 and the shell C SHELL_TAG = 2).
LI_TAG = 3
#: Fewer shell atoms than this count as no shell (t = 0, or a shell too thin to fit two surfaces).
MIN_SHELL_ATOMS = 40
#: Radial bins with fewer atoms per seed than this are left out of the profiles (NaN): near r = 0 a
#: bin holds one or two atoms and its strain is noise.
MIN_ATOMS_PER_BIN = 5
RELAX_MODES = ("lbfgs", "fire", "md")
#: Atoms within this distance (Å) beyond the insertion region take part in the void search.
_VOID_SEARCH_PAD_A = 4.0
#: Empty-sphere radii are compared in steps of this size (Å); equal ones are taken in seeded random order.
_VOID_RADIUS_QUANTUM_A = 0.05
#: Vacuum (nm) that must remain between the particle's predicted radius at target_x and each box face:
#: half of engines.gpumd.PERIODIC_VACUUM_A (12 Å), so periodic images stay ≥ 12 Å apart (beyond the
#: NEP cutoff) and GPUMD keeps writing the box periodic (its fast neighbour search).
VACUUM_MARGIN_NM = 0.6
#: A cross-check volume (hull, probe) whose ΔV/V0 exceeds the chosen method's by more than this many
#: % points is flagged in the method line, and at the headline thickness withholds the headline
#: (`headline_gate`): on the shelled quick particles all three agreed within 0.7 points
#: (docs/metrics.md), and the probe's own bias under scaling is negative.
CROSS_CHECK_MARGIN_PERCENT = 2.0
#: MD relaxation: the `average_frames` frames averaged at the end of a run (and those just before its
#: half-way step, for the convergence check) span at most this fraction of the run
#: (`md_sample_interval`), so a volume still drifting is read near the end, not ~0.2 of the run
#: before it. The engine records frames over the whole run: (average_frames − 1)/0.1 + 1 of them.
MD_AVERAGE_WINDOW_FRACTION = 0.1
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


# --------------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExpansionParams:
    """The task's parameters (suite `[[task]]` keys of the same names). Defaults = the quick variant.

    Geometry: core_radius_nm, shell_thicknesses_nm, vacuum_nm, core ("crystalline"/"amorphous"),
    shell_density_g_cm3. Seeds: one particle and one insertion sequence per seed.
    Lithiation: target_x (Li per core Si), dx (per stage), min_distance_a, core_margin_a.
    Relaxation: relax ("lbfgs" | "fire" | "md"), reference_steps, relax_steps, fmax_ev_per_a (the
    optimisers stop early below it), maxstep_a (largest optimiser step); for "md": temperature_k,
    timestep_fs, average_frames (frames whose volumes are averaged: the last of each run, and those
    just before its half-way step, spanning at most MD_AVERAGE_WINDOW_FRACTION of it).
    control: relax an Li-free copy alongside.
    Measurement: volume_method, probe_radius_a (Å; larger than the probe volume's automatic voxel at
    the largest predicted particle), radial_bin_nm, headline_t_nm (None = largest t).
    Headline gate (`headline_gate`): min_x_fraction (every seed must reach this fraction of
    target_x), max_last_half_change_percent (largest |ΔV/V0 change| over the last half-relaxation,
    % points; 0.25 = a quarter of the claim's 1 % bound, see docs/metrics.md), min_bare_dv_percent
    (the positive control: the bare particle, t = 0, must swell by at least this much, %, as mean − 2
    stderr over seeds, before a headline below claim_limit_percent is judged; 0 turns the control
    off), claim_limit_percent (the claim's bound, %: the suites' criterion on the headline uses it as
    its good bound).
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
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"expansion task: {msg}")

        for f in fields(self):
            problem = _type_problem(f.name, getattr(self, f.name), str(f.type))
            if problem:
                raise bad(problem)
        if self.core not in ("crystalline", "amorphous"):
            raise bad(f"core must be 'crystalline' or 'amorphous', got {self.core!r}")
        if not self.shell_density_g_cm3 > 0:
            raise bad(f"shell_density_g_cm3 must be > 0, got {self.shell_density_g_cm3}")
        if any(s < 0 for s in self.seeds):
            raise bad(f"seeds must be integers >= 0, got {list(self.seeds)}")
        for key in ("temperature_k", "timestep_fs", "fmax_ev_per_a", "maxstep_a", "radial_bin_nm",
                    "max_last_half_change_percent"):
            if not getattr(self, key) > 0:
                raise bad(f"{key} must be > 0, got {getattr(self, key)}")
        if self.nep_threads is not None and self.nep_threads < 1:
            raise bad(f"nep_threads must be >= 1 (or unset), got {self.nep_threads}")
        if not self.min_bare_dv_percent >= 0:
            raise bad(f"min_bare_dv_percent must be >= 0 (0 = no positive control), got {self.min_bare_dv_percent}")
        if not self.claim_limit_percent > 0:
            raise bad(f"claim_limit_percent must be > 0, got {self.claim_limit_percent}")
        if not 0 < self.min_x_fraction <= 1:
            raise bad(f"min_x_fraction must be in (0, 1], got {self.min_x_fraction}")
        if not self.shell_thicknesses_nm or any(t < 0 for t in self.shell_thicknesses_nm):
            raise bad("shell_thicknesses_nm must be a non-empty list of values >= 0")
        if len(set(self.shell_thicknesses_nm)) != len(self.shell_thicknesses_nm):
            raise bad("shell_thicknesses_nm has duplicates")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise bad("seeds must be a non-empty list of distinct integers")
        if not (self.core_radius_nm > 0 and self.vacuum_nm > 0):
            raise bad("core_radius_nm and vacuum_nm must be > 0")
        if not (self.target_x > 0 and 0 < self.dx <= self.target_x):
            raise bad("need target_x > 0 and 0 < dx <= target_x")
        growth, t_worst = max((predicted_outer_radius_nm(self, t) - self.core_radius_nm - t, t)
                              for t in self.shell_thicknesses_nm)
        if not self.vacuum_nm > growth + VACUUM_MARGIN_NM:
            raise bad(f"vacuum_nm = {self.vacuum_nm:g} nm is too small: at target_x = {self.target_x:g} the "
                      f"particle's radius may grow by {growth:.2f} nm (t = {t_key(t_worst)} nm, "
                      f"`predicted_outer_radius_nm`) and {VACUUM_MARGIN_NM:g} nm must remain to the box face; "
                      f"use vacuum_nm > {growth + VACUUM_MARGIN_NM:.2f}")
        if not (self.min_distance_a > 0 and self.core_margin_a >= 0):
            raise bad("need min_distance_a > 0 and core_margin_a >= 0")
        for problem in (probe_problem(self), insertion_region_problem(self), core_fit_problem(self)):
            if problem:
                raise bad(problem)
        if self.relax not in RELAX_MODES:
            raise bad(f"relax must be one of {RELAX_MODES}, got {self.relax!r}")
        if self.engine not in ("nep_cpu", "gpumd", "auto"):
            raise bad(f"engine must be 'nep_cpu', 'gpumd' or 'auto', got {self.engine!r}")
        if self.engine == "gpumd" and self.relax != "md":
            raise bad(f"relax = '{self.relax}' runs an ASE optimiser on the CPU engine; use relax = 'md' with gpumd")
        if self.reference_steps < 1 or self.relax_steps < 1 or self.average_frames < 1:
            raise bad("reference_steps, relax_steps and average_frames must be >= 1")
        if self.volume_method not in ex.VOLUME_METHODS:
            raise bad(f"volume_method must be one of {ex.VOLUME_METHODS}, got {self.volume_method!r}")
        if self.headline_t_nm is not None and self.headline_t_nm not in self.shell_thicknesses_nm:
            raise bad(f"headline_t_nm {self.headline_t_nm} is not among shell_thicknesses_nm")
        if not (self.predicted_atom_steps_per_s > 0 and self.max_atom_steps > 0):
            raise bad("predicted_atom_steps_per_s and max_atom_steps must be > 0")

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


def predicted_outer_radius_nm(p: ExpansionParams, shell_thickness_nm: float) -> float:
    """Outer radius (nm) the particle may reach at `p.target_x` if nothing holds the core back.

    The core's volume grows by (1 + x), i.e. each Li takes a Si's volume (20.0 Å³; the project's
    LixSi rule gives 15.0 Å³ per Li, so this over-estimates, as a bound should), and the shell keeps
    its volume and is pushed outwards: b'³ = b³ + x·R³ (nm³). For t = 0 this is R·(1 + x)^(1/3).
    It sets the vacuum check (`validate`), the probe's voxel check (`probe_problem`) and the radial
    bins (`radial_edges_for`).
    """
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
    """Why `core_margin_a` leaves no room to insert Li, or None: Li goes within the core's equimolar
    radius (≈ 10·core_radius_nm Å) minus core_margin_a, which must leave at least
    MIN_INSERTION_REGION_A (the equimolar radius of a built core scatters by ~0.5 Å about 10·R, so
    less could leave nothing once measured, and `lithiate` would raise after the reference run)."""
    region_a = 10.0 * p.core_radius_nm - p.core_margin_a
    if region_a >= MIN_INSERTION_REGION_A:
        return None
    return (f"core_margin_a = {p.core_margin_a:g} Å leaves an insertion region of radius {region_a:.3g} Å "
            f"in a {10.0 * p.core_radius_nm:g} Å core (core radius − core_margin_a), less than "
            f"{MIN_INSERTION_REGION_A:g} Å; use core_margin_a <= {10.0 * p.core_radius_nm - MIN_INSERTION_REGION_A:.3g}")


def core_fit_problem(p: ExpansionParams) -> str | None:
    """Why the core is too small for the equimolar fit of its surface (the core's radius sets the
    insertion region and its radial volume), or None: every seed's core must hold
    `ex.min_atoms_for_window(OUTER_SURFACE_WINDOW)` Si (38), counted as the builder builds it."""
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


# --------------------------------------------------------------------------------------------------
# building and planning
# --------------------------------------------------------------------------------------------------

def build_particle(p: ExpansionParams, shell_thickness_nm: float, seed: int) -> Atoms:
    """The non-periodic Si@C particle of one (t, seed): `core_shell_particle` with the task's geometry."""
    from ..systems.core_shell import core_shell_particle

    return core_shell_particle(p.core_radius_nm, shell_thickness_nm, p.vacuum_nm, seed, core=p.core,
                               shell_density_g_cm3=p.shell_density_g_cm3, periodic=False)


def expected_sizes(p: ExpansionParams, shell_thickness_nm: float) -> tuple[int, int]:
    """(core Si, shell C) counts `core_shell_particle` builds, from its densities (no packing)."""
    from ..systems.amorphous import A_SI_DENSITY_G_CM3
    from ..systems.core_shell import SI_DIAMOND_ATOMS_PER_A3, number_density_per_a3

    r_core, r_out = 10.0 * p.core_radius_nm, 10.0 * (p.core_radius_nm + shell_thickness_nm)
    n_si_per_a3 = (SI_DIAMOND_ATOMS_PER_A3 if p.core == "crystalline"
                   else number_density_per_a3("Si", A_SI_DENSITY_G_CM3))
    n_si = int(round(n_si_per_a3 * 4 / 3 * np.pi * r_core**3))
    n_c = int(round(number_density_per_a3("C", p.shell_density_g_cm3) * 4 / 3 * np.pi * (r_out**3 - r_core**3)))
    return n_si, n_c


def planned_cost(p: ExpansionParams, sizes: dict[float, tuple[int, int]] | None = None) -> dict[str, Any]:
    """Atom counts and atom·steps the protocol will take, and the predicted wall time.

    `sizes` maps t → (n_core_si, n_shell); None takes them from the builder's densities (the shell
    count is the builder's own formula; a crystalline core's count varies by a few atoms with the
    seed's lattice shift). Li at x is counted as x·n_core_si (the most the protocol inserts);
    optimisers may stop early, so the atom·steps are an upper bound up to that seed variation.
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


# --------------------------------------------------------------------------------------------------
# insertion
# --------------------------------------------------------------------------------------------------

def circumcentres_a(points_a: np.ndarray, simplices: np.ndarray) -> np.ndarray:
    """Circumcentres (Å) of tetrahedra `simplices` (m, 4) of `points_a`; degenerate (flat) ones are dropped."""
    p = points_a[simplices]
    a = 2.0 * (p[:, 1:] - p[:, :1])
    b = np.sum(p[:, 1:] ** 2, axis=2) - np.sum(p[:, :1] ** 2, axis=2)
    det = np.linalg.det(a)
    scale = np.max(np.abs(a), axis=(1, 2)) ** 3
    ok = np.abs(det) > 1e-8 * np.maximum(scale, 1e-300)
    return np.linalg.solve(a[ok], b[ok][..., None])[..., 0]


def insertion_sites(positions_a: np.ndarray, centre_a: np.ndarray, region_radius_a: float, n_sites: int,
                    min_distance_a: float, rng: np.random.Generator) -> np.ndarray:
    """Up to `n_sites` Li positions (Å) at the largest empty spheres within `region_radius_a` of `centre_a`.

    Candidates are the circumcentres of the Delaunay tetrahedra of the atoms within region_radius_a +
    4 Å (the Voronoi vertices, i.e. the local maxima of the distance to the nearest atom). They are
    taken largest empty sphere first (radii compared in 0.05 Å steps, equal ones in `rng` order) and
    kept when ≥ `min_distance_a` from every atom and every site already kept. Fewer than `n_sites`
    come back when the region holds no more such voids.
    """
    from scipy.spatial import Delaunay, QhullError, cKDTree

    pos = np.asarray(positions_a, dtype=float)
    c = np.asarray(centre_a, dtype=float)
    if n_sites < 0 or not (region_radius_a > 0 and min_distance_a > 0):
        raise ValueError("need n_sites >= 0, region_radius_a > 0 and min_distance_a > 0")
    if n_sites == 0:
        return np.empty((0, 3))
    near = pos[np.linalg.norm(pos - c, axis=1) <= region_radius_a + _VOID_SEARCH_PAD_A]
    if len(near) < 5:
        raise ValueError(f"only {len(near)} atoms near the insertion region; no voids to search")
    try:
        tri = Delaunay(near)
    except QhullError as exc:
        raise ValueError(f"Delaunay triangulation failed: {str(exc).splitlines()[0]}") from None
    cand = circumcentres_a(near, tri.simplices)
    cand = cand[np.all(np.isfinite(cand), axis=1)]
    cand = cand[np.linalg.norm(cand - c, axis=1) <= region_radius_a]
    if len(cand) == 0:
        return np.empty((0, 3))
    cand = np.unique(np.round(cand, 6), axis=0)  # cospherical lattices give one vertex many times
    radius = cKDTree(pos).query(cand, k=1)[0]
    keep = radius >= min_distance_a
    cand, radius = cand[keep], radius[keep]
    order = np.lexsort((rng.random(len(cand)), -np.floor(radius / _VOID_RADIUS_QUANTUM_A)))
    chosen: list[np.ndarray] = []
    cells: dict[tuple[int, int, int], list[int]] = {}
    d2 = min_distance_a**2
    for i in order:
        x = cand[i]
        key = tuple(np.floor(x / min_distance_a).astype(int))
        clash = False
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dz in (-1, 0, 1):
                    for j in cells.get((key[0] + dx, key[1] + dy, key[2] + dz), ()):
                        if np.sum((chosen[j] - x) ** 2) < d2:
                            clash = True
                            break
                    if clash:
                        break
                if clash:
                    break
            if clash:
                break
        if clash:
            continue
        cells.setdefault(key, []).append(len(chosen))
        chosen.append(x)
        if len(chosen) == n_sites:
            break
    return np.array(chosen).reshape(-1, 3)


def host_centre_a(atoms: Atoms, n_host: int) -> np.ndarray:
    """Centre of mass (Å) of the first `n_host` atoms (the Si and C the particle was built with)."""
    return ex.centre_of_mass_a(atoms.positions[:n_host], atoms.get_masses()[:n_host])


def core_radius_a(atoms: Atoms, centre_a: np.ndarray) -> float:
    """Equimolar outer radius (Å) of the core: core Si plus Li inside the shell's inner surface (the
    insertion region's radius before `core_margin_a`; the radial core volume fits the core Si alone)."""
    mask = core_atoms(atoms, centre_a)
    return ex.equimolar_radii_a(ex.radii_a(atoms.positions[mask], centre_a)).outer_a


def shell_fit_a(atoms: Atoms, centre_a: np.ndarray) -> ex.ShellRadii | None:
    """Equimolar inner and outer radii (Å) of the carbon shell about `centre_a`, or None without a
    shell (fewer than MIN_SHELL_ATOMS shell-tagged atoms: t = 0, or a shell too thin to fit).

    The one place the task decides whether there is a shell and where its surfaces are (the insertion
    region, the core mask, the radial particle volume and the shell strain all read it). The tags say
    the atoms are a shell, so `shell_radii_a(known_shell=True)` measures it however thick; where that
    fit finds no inner surface, the core/shell interface seen from the core (the core Si's equimolar
    outer radius) stands in for inner_a, and outer_a is still the shell's outer-half fit.
    """
    tags = atoms.get_tags()
    shell = tags == SHELL_TAG
    if shell.sum() < MIN_SHELL_ATOMS:
        return None
    r = ex.radii_a(atoms.positions[shell], centre_a)
    try:
        return ex.shell_radii_a(r, known_shell=True)
    except ex.NoInnerSurfaceError:
        interface_a = ex.equimolar_radii_a(ex.radii_a(atoms.positions[tags == CORE_TAG], centre_a)).outer_a
        return ex.ShellRadii(interface_a, ex.equimolar_radii_a(r, ex.SHELL_OUTER_WINDOW).outer_a)


def shell_inner_radius_a(atoms: Atoms, centre_a: np.ndarray) -> float | None:
    """Inner radius (Å) of the carbon shell (`shell_fit_a`), or None without a shell."""
    fit = shell_fit_a(atoms, centre_a)
    return None if fit is None else fit.inner_a


def core_atoms(atoms: Atoms, centre_a: np.ndarray) -> np.ndarray:
    """Mask of the core: core-tagged Si plus Li inside the shell's inner surface."""
    r = ex.radii_a(atoms.positions, centre_a)
    return ex.core_mask(atoms.get_tags(), np.array(atoms.get_chemical_symbols()), r,
                        shell_inner_radius_a(atoms, centre_a), core_tag=CORE_TAG)


def lithiate(atoms: Atoms, n_new: int, p: ExpansionParams, rng: np.random.Generator,
             n_host: int) -> tuple[Atoms, int]:
    """`atoms` with up to `n_new` Li appended (tag 3) at `insertion_sites` inside the core; returns
    (new atoms, number inserted)."""
    c = host_centre_a(atoms, n_host)
    region = core_radius_a(atoms, c) - p.core_margin_a
    if region <= 0:
        raise ValueError(f"core radius minus core_margin_a ({p.core_margin_a} Å) leaves no region")
    sites = insertion_sites(atoms.positions, c, region, n_new, p.min_distance_a, rng)
    out = atoms.copy()
    if len(sites):
        li = Atoms(["Li"] * len(sites), positions=sites, tags=[LI_TAG] * len(sites))
        out.extend(li)
    return out, len(sites)


# --------------------------------------------------------------------------------------------------
# relaxation
# --------------------------------------------------------------------------------------------------

def md_sample_interval(steps: int, average_frames: int) -> int:
    """Steps between the frames an MD relaxation records: `average_frames` frames this far apart span
    at most MD_AVERAGE_WINDOW_FRACTION of the `steps`-step run (≥ 1 step, so a run shorter than
    average_frames / MD_AVERAGE_WINDOW_FRACTION steps averages over a longer part of it).

    2000 steps, 5 frames: every 50 steps; the end average reads frames 1800–2000 (its mean sits at
    0.95 of the run: under a linear drift it reads 95 % of the end value, the old every-200-steps
    sampling read 80 %) and the half-way one 800–1000.
    """
    if steps < 1 or average_frames < 1:
        raise ValueError(f"need steps >= 1 and average_frames >= 1, got {steps}, {average_frames}")
    return max(1, int(MD_AVERAGE_WINDOW_FRACTION * steps / max(average_frames - 1, 1)))


def averaged_frame_indices(times_ps: np.ndarray, half_ps: float, average_frames: int) -> tuple[list[int], list[int]]:
    """Indices of the frames whose volumes are averaged: the last `average_frames` frames of the run,
    and the last `average_frames` frames at or before `half_ps` (the half-way time, ps; empty where
    no frame is that early). `times_ps` are the frames' times (ps, increasing; an engine may or may
    not record the starting frame)."""
    t = np.asarray(times_ps, dtype=float)
    end = list(range(max(0, len(t) - average_frames), len(t)))
    half = [int(i) for i in np.flatnonzero(t <= half_ps + 1e-9)][-average_frames:]
    return end, half


@dataclass
class Relaxed:
    """One relaxation's result: the final atoms, the frames whose volumes are averaged (positions, Å),
    the frames at half the run (for the convergence check) and a few numbers (steps, fmax, energy)."""

    atoms: Atoms
    frames: list[np.ndarray]
    half_frames: list[np.ndarray]
    info: dict[str, float]


@dataclass
class Relaxer:
    """Relaxes a particle by `p.relax` on `engine`; counts atom·steps and throughput."""

    p: ExpansionParams
    engine: Any
    atom_steps: float = 0.0
    measured_rates: list[float] = field(default_factory=list)

    def __call__(self, atoms: Atoms, steps: int, seed: int) -> Relaxed:
        start = time.perf_counter()
        res = self._optimise(atoms, steps) if self.p.relax != "md" else self._md(atoms, steps, seed)
        wall = time.perf_counter() - start
        done = res.info["steps"] * len(atoms)
        self.atom_steps += done
        if self.p.relax != "md" and wall > 0:
            self.measured_rates.append(done / wall)
        return res

    def _optimise(self, atoms: Atoms, steps: int) -> Relaxed:
        """ASE LBFGS or FIRE in two halves on one optimiser object (its state carries over), so the
        structure at half the steps is kept without changing the path. The CPU engine's structure
        check (`NepCpuEngine.check_structure`: the open boundaries' vacuum beyond the model's cutoff)
        runs on the particle before and after, as the optimiser drives its calculator directly."""
        from ase.optimize import FIRE, LBFGS

        self.engine.check_structure(atoms, "Si@C particle before relaxation")
        work = atoms.copy()
        work.calc = self.engine.calculator()
        cls = LBFGS if self.p.relax == "lbfgs" else FIRE
        opt = cls(work, logfile=None, maxstep=self.p.maxstep_a)
        first = steps // 2
        converged = opt.run(fmax=self.p.fmax_ev_per_a, steps=first) if first else False
        half = work.positions.copy()
        if not converged:
            opt.run(fmax=self.p.fmax_ev_per_a, steps=steps - first)
        calls = opt.nsteps + 1  # nsteps counts across both runs; the calculator caches the restart point
        forces = work.get_forces()
        energy = float(work.get_potential_energy())
        out = atoms.copy()
        out.positions = work.positions
        if not np.all(np.isfinite(out.positions)) or not np.isfinite(energy):
            raise ValueError("relaxation produced non-finite positions or energy")
        self.engine.check_structure(out, "Si@C particle after relaxation")
        return Relaxed(out, [out.positions.copy()], [half],
                       {"steps": float(calls), "fmax_ev_per_a": float(np.sqrt((forces**2).sum(axis=1)).max()),
                        "energy_ev_per_atom": energy / len(out)})

    def _md(self, atoms: Atoms, steps: int, seed: int) -> Relaxed:
        """NVT MD for `steps`; the frames averaged are the last `average_frames` ones and those at or
        just before the half-way step, `md_sample_interval` steps apart (`averaged_frame_indices`)."""
        from ..engines.base import MDProtocol

        k = md_sample_interval(steps, self.p.average_frames)
        prot = MDProtocol(ensemble="nvt", temperature_k=self.p.temperature_k, timestep_fs=self.p.timestep_fs,
                          steps=steps, sample_interval=k, seed=seed % (2**31), thermostat_coupling_fs=100.0)
        res = self.engine.md(atoms, prot)
        pos = res.trajectory.positions_a
        if not np.all(np.isfinite(pos[-1])):
            raise ValueError("MD produced non-finite positions")
        half_ps = 0.5 * steps * self.p.timestep_fs / 1000.0
        end_idx, half_idx = averaged_frame_indices(res.trajectory.times_ps, half_ps, self.p.average_frames)
        last = [pos[i].copy() for i in end_idx]
        out = atoms.copy()
        out.positions = pos[-1]
        rate = res.timing.engine_reported_atom_steps_per_s or res.timing.atom_steps_per_s
        self.measured_rates.append(float(rate))
        return Relaxed(out, last, [pos[i].copy() for i in half_idx] or last[:1],
                       {"steps": float(steps), "temperature_k": float(np.mean(res.thermo["temperature_k"])),
                        "energy_ev_per_atom": float(res.thermo["potential_energy_ev"][-1]) / len(out)})


# --------------------------------------------------------------------------------------------------
# measuring one state
# --------------------------------------------------------------------------------------------------

def volumes_a3(atoms: Atoms, positions_frames: Sequence[np.ndarray], n_host: int, p: ExpansionParams,
               methods: Sequence[str]) -> dict[str, float]:
    """Particle and core volumes (Å³) by each method, averaged over `positions_frames`.

    "probe" and "hull" enclose all atoms (particle) or the core atoms (core Si + Li inside the
    shell's inner surface). "radial" is a sphere of the equimolar radius of the outermost host
    material: the shell's outer surface (`shell_fit_a`, fitted on the shell C's outer half,
    `ex.SHELL_OUTER_WINDOW`) when there is a shell, else the core Si's; for the core, the core Si's
    outer surface, fitted on the 75–95 % window of its sorted radii (`ex.OUTER_SURFACE_WINDOW`).
    Li is left out of the radial fits on purpose: inserted Li changes the number density inside the
    fit window, which an equimolar radius would read as a change of radius.
    """
    out: dict[str, list[float]] = {}
    work = atoms.copy()
    core_si = atoms.get_tags() == CORE_TAG
    for pos in positions_frames:
        work.positions = pos
        c_host = host_centre_a(work, n_host)
        core = core_atoms(work, c_host)
        r = ex.radii_a(pos, c_host)
        for m in methods:
            if m == "radial":
                shell = shell_fit_a(work, c_host)
                v_core = ex.sphere_volume_a3(ex.equimolar_radii_a(r[core_si]).outer_a)
                v_particle = ex.sphere_volume_a3(shell.outer_a) if shell is not None else v_core
            else:
                v_particle = ex.particle_volume_a3(pos, m, c_host, p.probe_radius_a)
                v_core = ex.particle_volume_a3(pos[core], m, c_host, p.probe_radius_a)
            out.setdefault(f"particle_{m}", []).append(v_particle)
            out.setdefault(f"core_{m}", []).append(v_core)
    return {k: float(np.mean(v)) for k, v in out.items()}


def shape_anisotropy(positions_a: np.ndarray) -> float:
    """Relative shape anisotropy κ² of the gyration tensor (0 sphere, 1 rod)."""
    x = positions_a - positions_a.mean(axis=0)
    lam = np.linalg.eigvalsh(x.T @ x / len(x))
    return float(1.0 - 3.0 * (lam[0] * lam[1] + lam[1] * lam[2] + lam[0] * lam[2]) / lam.sum() ** 2)


def compare_states(lith: Atoms, lith_frames: Sequence[np.ndarray], ref: Atoms, ref_frames: Sequence[np.ndarray],
                   n_host: int, p: ExpansionParams, edges_nm: np.ndarray) -> dict[str, Any]:
    """ΔV/V0 (particle, core; every method), shell strain and radial profiles of `lith` against `ref`."""
    methods = [p.volume_method] + [m for m in ex.VOLUME_METHODS if m != p.volume_method]
    v = volumes_a3(lith, lith_frames, n_host, p, methods)
    v0 = volumes_a3(ref, ref_frames, n_host, p, methods)
    out: dict[str, Any] = {
        "particle_dv_over_v0": {m: ex.dv_over_v0(v[f"particle_{m}"], v0[f"particle_{m}"]) for m in methods},
        "core_dv_over_v0": {m: ex.dv_over_v0(v[f"core_{m}"], v0[f"core_{m}"]) for m in methods},
        "particle_volume_nm3": v[f"particle_{p.volume_method}"] / 1000.0,
        "particle_volume0_nm3": v0[f"particle_{p.volume_method}"] / 1000.0,
        "core_volume_nm3": v[f"core_{p.volume_method}"] / 1000.0,
        "core_volume0_nm3": v0[f"core_{p.volume_method}"] / 1000.0,
        "shape_anisotropy": shape_anisotropy(lith.positions),
        "shape_anisotropy0": shape_anisotropy(ref.positions),
    }
    c_lith, c_ref = host_centre_a(lith, n_host), host_centre_a(ref, n_host)
    fit0, fit = shell_fit_a(ref, c_ref), shell_fit_a(lith, c_lith)
    if fit0 is not None and fit is not None:
        shell = lith.get_tags()[:n_host] == SHELL_TAG
        s = ex.shell_strain_from_fits(ex.radii_a(ref.positions[:n_host][shell], c_ref),
                                      ex.radii_a(lith.positions[:n_host][shell], c_lith), fit0, fit)
        out["shell"] = asdict(s)
    li = np.array(lith.get_chemical_symbols()) == "Li"
    c_all = ex.centre_of_mass_a(lith.positions, lith.get_masses())
    prof = ex.radial_li_profile(lith.positions, li, c_all, edges_nm)
    strain = ex.radial_strain_profile(ref.positions[:n_host], lith.positions[:n_host],
                                      np.ones(n_host, dtype=bool), c_ref, c_lith, edges_nm)
    out["radial"] = {"n_atoms": prof.n_atoms, "n_li": prof.n_li, "n_host": strain.n_atoms,
                     "radial_strain": strain.radial_strain}
    return out


# --------------------------------------------------------------------------------------------------
# one particle
# --------------------------------------------------------------------------------------------------

def run_particle(p: ExpansionParams, t_nm: float, seed: int, relaxer: Relaxer,
                 edges_nm: np.ndarray, save_dir: Path | None = None) -> dict[str, Any]:
    """The whole protocol for one (shell thickness, seed); returns measurements and bookkeeping.

    With `save_dir`, the final reference, lithiated and control structures are written there as
    extxyz (tags kept: 1 core Si, 2 shell C, 3 inserted Li) for inspection.
    """
    start = time.perf_counter()
    atoms = build_particle(p, t_nm, seed)
    n_host = len(atoms)
    n_si = int(atoms.info["n_core"])
    rng = np.random.default_rng([seed, 7919])
    steps_before = relaxer.atom_steps
    reference = relaxer(atoms, p.reference_steps, seed * 1000)
    ref = reference.atoms
    lith_r = blank_r = reference
    m = p.volume_method

    def dv(a: Relaxed, b: Relaxed, half: bool) -> float:
        # half-way through the run: the control at its own half-way point; without a control, the
        # reference (fixed) at its end
        va = volumes_a3(a.atoms, a.half_frames if half else a.frames, n_host, p, [m])[f"particle_{m}"]
        vb = volumes_a3(b.atoms, b.half_frames if half and p.control else b.frames, n_host, p, [m])[f"particle_{m}"]
        return ex.dv_over_v0(va, vb)

    stages = []
    for k, x in enumerate(p.x_schedule, start=1):
        n_li = int(np.sum(np.array(lith_r.atoms.get_chemical_symbols()) == "Li"))
        want = int(round(x * n_si)) - n_li
        inserted, got = lithiate(lith_r.atoms, want, p, rng, n_host)
        lith_r = relaxer(inserted, p.relax_steps, seed * 1000 + 2 * k)
        if p.control:
            blank_r = relaxer(blank_r.atoms, p.relax_steps, seed * 1000 + 2 * k + 1)
        stages.append({"x": (n_li + got) / n_si, "inserted": got, "asked": want,
                       "particle_dv_over_v0": dv(lith_r, blank_r, False),
                       "particle_dv_over_v0_half_relaxed": dv(lith_r, blank_r, True),
                       **{f"relax_{k2}": v2 for k2, v2 in lith_r.info.items()},
                       **({f"control_{k2}": v2 for k2, v2 in blank_r.info.items()} if p.control else {})})
    lith, blank = lith_r.atoms, blank_r.atoms
    n_li = int(np.sum(np.array(lith.get_chemical_symbols()) == "Li"))
    if save_dir is not None:
        from ase.io import write

        save_dir.mkdir(parents=True, exist_ok=True)
        for name, state in (("reference", ref), ("lithiated", lith), ("control", blank)):
            write(save_dir / f"t{t_key(t_nm)}_seed{seed}_{name}.extxyz", state, format="extxyz")
    result = compare_states(lith, lith_r.frames, blank, blank_r.frames, n_host, p, edges_nm)
    result.update({
        "t_nm": t_nm, "seed": seed, "n_atoms": n_host, "n_core_si": n_si, "n_shell_c": n_host - n_si,
        "n_li": n_li, "x_reached": n_li / n_si, "stages": stages,
        "reference": reference.info, "atom_steps": relaxer.atom_steps - steps_before,
        "wall_s": time.perf_counter() - start,
    })
    return result


# --------------------------------------------------------------------------------------------------
# the task
# --------------------------------------------------------------------------------------------------

def make_engine(p: ExpansionParams, ctx: TaskContext) -> tuple[Any, str]:
    """The engine the protocol runs on, and its version.

    "gpumd" without a GPU raises EngineNotAvailable ("no GPU: ..."); "auto" takes GPUMD when it is
    available and the relaxation is MD (the optimisers run through ASE), else the CPU engine: nep_cpu
    for a NEP, ase_calc for an ASE-calculator comparator (which GPUMD cannot run: `run_expansion`
    reports "gpumd" with one as not applicable, and "auto" takes the CPU engine).
    """
    if ctx.model_kind != "ase" and (p.engine == "gpumd" or (p.engine == "auto" and p.relax == "md")):
        from ..engines.gpumd import GpumdEngine

        # temporary run folders: a kept dump of ~5e5 atoms × 41 frames (`md_sample_interval`) is ~1.2 GB,
        # × 31 runs per particle
        gpumd = GpumdEngine(ctx.model_path)
        ok, reason = gpumd.available()
        if ok:
            return gpumd, gpumd.version()
        if p.engine == "gpumd":
            raise EngineNotAvailable(f"no GPU: {reason} (the full-size expansion experiment runs on GPUMD)")
    engine = cpu_engine(ctx, threads=p.nep_threads)
    return engine, engine.version()


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    return ex.mean_and_stderr(np.asarray(values, dtype=float))


def _last_half_change(row: dict[str, Any]) -> float:
    """ΔV/V0 at the end minus half-way through the last relaxation of one (t, seed) (a fraction)."""
    last = row["stages"][-1]
    return float(last["particle_dv_over_v0"] - last["particle_dv_over_v0_half_relaxed"])


def largest_change(changes: Sequence[float]) -> float:
    """The value of largest magnitude (sign kept) among per-seed changes; NaN if any is NaN (a change
    not measured counts as the worst)."""
    v = np.asarray(changes, dtype=float)
    if v.size == 0:
        raise ValueError("no changes given")
    if np.any(np.isnan(v)):
        return float("nan")
    return float(v[np.argmax(np.abs(v))])


def cross_check_excess(dv: Sequence[float], cross_check_dv: dict[str, Sequence[float]]) -> dict[str, float]:
    """Per cross-check method: its mean ΔV/V0 over seeds minus the chosen method's (`dv`), fractions
    (the `particle_dv_cross_check_excess_percent` of each method, ÷ 100)."""
    base = float(np.mean(np.asarray(dv, dtype=float)))
    return {m: float(np.mean(np.asarray(v, dtype=float))) - base for m, v in cross_check_dv.items()}


def beside_limit(value: float, limit: float, digits: int, sign: str = "") -> str:
    """`value` to `digits` significant digits, more (up to 12) while |value| would read as `limit`,
    which it does not equal: a change of 0.2504 beside "limit 0.25" must not print as 0.25."""
    for d in range(digits, 13):
        text = f"{value:{sign}.{d}g}"
        if abs(float(text)) != limit or abs(value) == limit:
            return text
    return text


def headline_gate(p: ExpansionParams, x_reached: Sequence[float], last_half_change: Sequence[float],
                  dv: Sequence[float], bare_dv: Sequence[float] | None = None,
                  cross_check_dv: dict[str, Sequence[float]] | None = None) -> str | None:
    """Why the headline ΔV/V0 cannot speak for the claim ("; "-joined reasons), or None when it can.

    Args (one value per seed, at the headline thickness):
        x_reached: Li per core Si reached.
        last_half_change: ΔV/V0 at the end minus half-way through the last relaxation (a fraction).
        dv: ΔV/V0 by `volume_method` (a fraction).
        bare_dv: ΔV/V0 of the bare particle (t = 0, a fraction) per seed, or None when the task ran
            no bare particle.
        cross_check_dv: the other volume methods' ΔV/V0 (method → per-seed fractions), or None.

    Reasons: a seed below `min_x_fraction` × target_x (less Li than the claim is about); a
    |last_half_change| above `max_last_half_change_percent` or not measured (not relaxed: still moving,
    a lower bound while it rises); mean + 2 stderr below 0 (the lithiated particle smaller than its
    Li-free control: an unrelaxed shell or a broken measurement); a cross-check whose mean ΔV/V0
    exceeds the chosen method's by more than CROSS_CHECK_MARGIN_PERCENT points (material the chosen
    volume does not see, e.g. Li that left the shell, which the hull counts and the radial sphere of
    the shell's carbon does not; or a non-spherical swelling); the positive control: with
    `min_bare_dv_percent` > 0, a shelled headline and a headline mean below `claim_limit_percent`
    (a result that would pass), the bare particle's ΔV/V0 (mean − 2 stderr; one seed: its value)
    must reach it, else the small headline ΔV/V0 may only mean that nothing swells (a model or a
    relaxation under which the lithiated core hardly grows), not that the shell holds it. A mean at
    or above the bound is left to the criterion: it fails the claim whatever the bare particle does.
    """
    reasons = []
    need = p.min_x_fraction * p.target_x
    if min(x_reached) < need:
        reasons.append(f"x_reached = {beside_limit(min(x_reached), need, 3)} Li/Si (lowest seed) is below "
                       f"min_x_fraction × target_x = {need:.3g}: the particle holds less Li than the claim is about")
    worst = 100.0 * largest_change(last_half_change)
    if not abs(worst) <= p.max_last_half_change_percent:
        reasons.append(f"ΔV/V0 still moved by {beside_limit(worst, p.max_last_half_change_percent, 2, '+')} % "
                       f"points over the second half of the last relaxation "
                       f"(largest over seeds; limit max_last_half_change_percent = "
                       f"{p.max_last_half_change_percent:g}): not converged")
    mean, se = _mean_se(dv)
    shrunk = ("a lithiated particle smaller than its Li-free control points to an unrelaxed shell or a "
              "broken measurement")
    if np.isfinite(se) and mean + 2.0 * se < 0:
        reasons.append(f"ΔV/V0 = {100 * mean:+.3g} % is below 0 by more than 2 standard errors: {shrunk}")
    elif not np.isfinite(se) and mean < 0:
        reasons.append(f"ΔV/V0 = {100 * mean:+.3g} % is below 0 (one seed: no standard error): {shrunk}")
    excess = cross_check_excess(dv, cross_check_dv or {})
    over = [m for m, e in excess.items() if not 100.0 * e <= CROSS_CHECK_MARGIN_PERCENT]
    if over:
        seen = ", ".join(f"{m} {100 * (mean + excess[m]):+.3g} % (+{100 * excess[m]:.3g} points)" for m in over)
        reasons.append(f"cross-check ΔV/V0 above '{p.volume_method}' ({100 * mean:+.3g} %) by more than "
                       f"CROSS_CHECK_MARGIN_PERCENT = {CROSS_CHECK_MARGIN_PERCENT:g} points: {seen} (means "
                       f"over seeds): material outside the measured surface (e.g. Li that left the shell) or a "
                       f"non-spherical swelling, which '{p.volume_method}' does not see")
    if p.min_bare_dv_percent > 0 and p.headline_t > 0 and 100.0 * mean < p.claim_limit_percent:
        if not bare_dv:
            reasons.append(f"no bare particle (t = 0 is not among shell_thicknesses_nm): nothing shows that the "
                           f"unshelled core swells (positive control min_bare_dv_percent = "
                           f"{p.min_bare_dv_percent:g}; set it to 0 to judge without it)")
        else:
            b_mean, b_se = _mean_se(bare_dv)
            low = b_mean - 2.0 * b_se if np.isfinite(b_se) else b_mean
            if not 100.0 * low >= p.min_bare_dv_percent:
                how = (f"{100 * b_mean:+.3g} ± {100 * b_se:.2g} %, mean − 2 stderr {100 * low:+.3g} %"
                       if np.isfinite(b_se) else f"{100 * b_mean:+.3g} % (one seed)")
                reasons.append(f"the bare particle (t = 0) swelled by only {how}, below the positive control "
                               f"min_bare_dv_percent = {p.min_bare_dv_percent:g} %: where the unshelled core "
                               f"hardly grows, a small ΔV/V0 with a shell says nothing about the shell")
    return "; ".join(reasons) or None


def built_sizes_text(results: list[dict[str, Any]]) -> str:
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


def summarise(p: ExpansionParams, results: list[dict[str, Any]], edges_nm: np.ndarray) -> tuple[
        dict[str, float], dict[str, str], dict[str, Any], dict[str, str], tuple[str, ...]]:
    """Metrics (percent, mean over seeds ± stderr), their units, the report's series, the reasons
    of headline metrics left unmeasured (`headline_gate`, or one seed: no stderr) and, of those,
    the ones `headline_gate` held back (the run could not resolve them; one seed is a choice)."""
    metrics: dict[str, float] = {}
    reasons: dict[str, str] = {}
    units: dict[str, str] = {}
    series: dict[str, Any] = {"shell_thickness_nm": [], "particle_dv_over_v0": [], "particle_dv_stderr": [],
                              "core_dv_over_v0": [], "core_dv_stderr": [], "radial": {},
                              "volume_method": p.volume_method, "cross_check": {}, "stages": {},
                              "per_seed": []}
    other = [m for m in ex.VOLUME_METHODS if m != p.volume_method]
    for m in other:
        series["cross_check"][m] = {"particle_dv_over_v0": [], "core_dv_over_v0": []}
    m0 = p.volume_method
    for t in p.shell_thicknesses_nm:
        rows = [r for r in results if r["t_nm"] == t]
        key = t_key(t)
        dv, dv_se = _mean_se([r["particle_dv_over_v0"][m0] for r in rows])
        core, core_se = _mean_se([r["core_dv_over_v0"][m0] for r in rows])
        series["shell_thickness_nm"].append(float(t))
        series["particle_dv_over_v0"].append(dv)
        series["particle_dv_stderr"].append(dv_se)
        series["core_dv_over_v0"].append(core)
        series["core_dv_stderr"].append(core_se)
        for m in other:
            series["cross_check"][m]["particle_dv_over_v0"].append(
                _mean_se([r["particle_dv_over_v0"][m] for r in rows])[0])
            series["cross_check"][m]["core_dv_over_v0"].append(
                _mean_se([r["core_dv_over_v0"][m] for r in rows])[0])
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
        # convergence: how much ΔV/V0 still moved over the second half of the last relaxation, the
        # largest |change| over seeds (what the gate reads: a mean would let +0.6 and −0.6 read 0)
        late = largest_change([_last_half_change(r) for r in rows])
        metrics[f"particle_dv_change_last_half_max_abs_percent.t{key}"] = 100.0 * abs(late)
        units[f"particle_dv_change_last_half_max_abs_percent.t{key}"] = (
            "% points (largest |ΔV/V0 end − half-way| over seeds, last stage)")
        metrics[f"x_reached.t{key}"] = float(np.mean([r["x_reached"] for r in rows]))
        units[f"x_reached.t{key}"] = "Li/Si"
        metrics[f"n_atoms.t{key}"] = float(np.mean([r["n_atoms"] for r in rows]))
        units[f"n_atoms.t{key}"] = "atoms (before Li)"
        metrics[f"n_li.t{key}"] = float(np.mean([r["n_li"] for r in rows]))
        units[f"n_li.t{key}"] = "Li atoms"
        shells = [r["shell"] for r in rows if "shell" in r]
        if shells:
            hoop, hoop_se = _mean_se([s["hoop_strain"] for s in shells])
            dthick, dthick_se = _mean_se([s["thickness_change_nm"] for s in shells])
            cavity, cavity_se = _mean_se([s["cavity_dv_over_v0"] for s in shells])
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
        # radial profiles: Li fraction pooled over seeds (counts), strain averaged over seeds
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
        series["radial"][key] = {"r_nm": r_nm[:last].tolist(), "li_fraction": frac[:last].tolist(),
                                 "strain": ((1.0 + lin_mean[:last]) ** 3 - 1.0).tolist(),
                                 "radial_strain": lin_mean[:last].tolist(),
                                 "n_atoms": (n_all[:last] / len(rows)).tolist()}
        series["stages"][key] = {
            "x": np.mean([[s["x"] for s in r["stages"]] for r in rows], axis=0).tolist(),
            "particle_dv_over_v0": np.mean([[s["particle_dv_over_v0"] for s in r["stages"]] for r in rows],
                                           axis=0).tolist()}
    for r in results:
        series["per_seed"].append({
            "t_nm": r["t_nm"], "seed": r["seed"], "n_atoms": r["n_atoms"], "n_core_si": r["n_core_si"],
            "n_shell_c": r["n_shell_c"], "n_li": r["n_li"],
            "x_reached": r["x_reached"], "particle_dv_over_v0": r["particle_dv_over_v0"],
            "core_dv_over_v0": r["core_dv_over_v0"], "shell": r.get("shell"),
            "particle_volume0_nm3": r["particle_volume0_nm3"], "core_volume0_nm3": r["core_volume0_nm3"],
            "shape_anisotropy": r["shape_anisotropy"], "reference": r["reference"],
            "stages": r["stages"], "atom_steps": r["atom_steps"], "wall_s": r["wall_s"]})
    head = t_key(p.headline_t)
    rows = [r for r in results if r["t_nm"] == p.headline_t]
    bare_rows = [r for r in results if r["t_nm"] == 0.0]
    gate = headline_gate(p, [r["x_reached"] for r in rows], [_last_half_change(r) for r in rows],
                         [r["particle_dv_over_v0"][m0] for r in rows],
                         [r["particle_dv_over_v0"][m0] for r in bare_rows] or None,
                         {m: [r["particle_dv_over_v0"][m] for r in rows] for m in other})
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
    return metrics, units, series, reasons, tuple(name for name, why in reasons.items() if gate and why == gate)


def md_window_text(steps: int, average_frames: int) -> str:
    """The method line's words for the frames an MD relaxation of `steps` steps averages."""
    k = md_sample_interval(steps, average_frames)
    span = (average_frames - 1) * k
    return (f"volumes averaged over {average_frames} frames {k} steps apart at the end of each run (for a "
            f"stage: its last {span} of {steps} steps) and, for the convergence check, over as many frames "
            f"ending at its half-way step")


def run_expansion(spec: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    """Core–shell expansion on lithiation vs carbon-shell thickness (see the module docstring)."""
    from .accuracy import model_species

    start = time.perf_counter()
    p = ExpansionParams.from_params(dict(spec.params))
    species = set(model_species(ctx))
    if not {"Li", "Si", "C"} <= species:
        return TaskOutcome("not_applicable", reason=f"model {ctx.model_name} lacks "
                           f"{', '.join(sorted({'Li', 'Si', 'C'} - species))} (needs Li, Si and C)")
    not_applicable = gpumd_not_applicable(ctx) if p.engine == "gpumd" else None
    if not_applicable:  # the full-size experiment's engine; an ASE comparator runs it with engine = "nep_cpu"
        return TaskOutcome("not_applicable", reason=f"{not_applicable}; this task asks for engine = \"gpumd\"")
    engine, version = make_engine(p, ctx)
    plan = planned_cost(p)
    if plan["atom_steps"] > p.max_atom_steps:
        raise ConfigError(f"expansion task: the plan takes {plan['atom_steps']:.3g} atom·steps, over max_atom_steps "
                          f"= {p.max_atom_steps:.3g} (predicted {plan['predicted_wall_s'] / 3600:.2g} h)")
    edges = radial_edges_for(p)
    relaxer = Relaxer(p, engine)
    results = [run_particle(p, t, seed, relaxer, edges, ctx.work_dir / "structures")
               for t in p.shell_thicknesses_nm for seed in p.seeds]
    metrics, units, series, reasons, unresolved = summarise(p, results, edges)
    wall = time.perf_counter() - start
    rate = float(np.median(relaxer.measured_rates)) if relaxer.measured_rates else float("nan")
    metrics.update({"atom_steps": relaxer.atom_steps, "atom_steps_planned": plan["atom_steps"],
                    "wall_s": wall, "predicted_wall_s": plan["predicted_wall_s"],
                    "atom_steps_per_s": rate, "x_target": p.target_x,
                    "x_reached_min": min(r["x_reached"] for r in results)})
    units.update({"atom_steps": "atom·step", "atom_steps_planned": "atom·step (upper bound)", "wall_s": "s",
                  "predicted_wall_s": "s", "atom_steps_per_s": "atom·step/s (median over relaxations)",
                  "x_target": "Li/Si", "x_reached_min": "Li/Si"})
    series["plan"] = plan
    series["params"] = asdict(p)
    sizes = built_sizes_text(results)
    relax = (f"{p.relax.upper()} (ASE, maxstep {p.maxstep_a:g} Å) ≤{p.reference_steps} steps (reference) and "
             f"≤{p.relax_steps} per stage, fmax {p.fmax_ev_per_a:g} eV/Å"
             if p.relax != "md" else
             f"NVT MD (CSVR) at {p.temperature_k:g} K, dt {p.timestep_fs:g} fs, {p.reference_steps} steps "
             f"(reference) and {p.relax_steps} per stage, {md_window_text(p.relax_steps, p.average_frames)}")
    head = f"particle_dv_change_last_half_max_abs_percent.t{t_key(p.headline_t)}"
    converged = (f"Not converged where ΔV/V0 still moves: at t = {t_key(p.headline_t)} nm it changed by up to "
                 f"{metrics[head]:.2g} % points (largest |change| over seeds) over the second half of the last "
                 f"relaxation (then a lower bound where it rises). " if head in metrics else "")
    gate = reasons.get(f"particle_dv_over_v0_percent_at_t{t_key(p.headline_t)}")
    if gate:
        converged += f"Headline ΔV/V0 at t = {t_key(p.headline_t)} nm not judged: {gate}. "
    flagged = [t_key(t) for t in p.shell_thicknesses_nm
               if metrics[f"particle_dv_cross_check_excess_percent.t{t_key(t)}"] > CROSS_CHECK_MARGIN_PERCENT]
    if flagged:
        converged += (f"Cross-check: at t = {', '.join(flagged)} nm a hull or probe ΔV/V0 exceeds the "
                      f"'{p.volume_method}' one by more than {CROSS_CHECK_MARGIN_PERCENT:g} % points "
                      f"(particle_dv_cross_check_excess_percent): material outside the measured surface "
                      f"(e.g. Li that left the shell) or a non-spherical swelling. ")
    method = (f"Si@C particle, {p.core} Si core R = {p.core_radius_nm:g} nm, a-C shell "
              f"{p.shell_density_g_cm3:g} g/cm³, t = {', '.join(t_key(t) for t in p.shell_thicknesses_nm)} nm "
              f"({sizes}), seeds {list(p.seeds)}, in vacuum (non-periodic). Lithiation: Li inserted at the "
              f"largest empty spheres inside the core (Delaunay circumcentres, ≥{p.min_distance_a:g} Å from "
              f"every atom, ≥{p.core_margin_a:g} Å inside the core surface) in steps of Δx = {p.dx:g} up to "
              f"x = {p.target_x:g} Li/Si (reached: {metrics['x_reached_min']:.3g} min), each step relaxed by "
              f"{relax} on {engine.name} ({version}). ΔV/V0 against "
              f"{'an Li-free copy relaxed identically (control)' if p.control else 'the relaxed unlithiated particle'}"
              f"; volumes by '{p.volume_method}' (docs/metrics.md), mean ± stderr over seeds. {converged}"
              f"Cost {relaxer.atom_steps:.3g} atom·steps in {wall:.0f} s "
              f"(planned ≤{plan['atom_steps']:.3g}, predicted {plan['predicted_wall_s']:.0f} s at "
              f"{p.predicted_atom_steps_per_s:.3g} atom·step/s).")
    return TaskOutcome("done", metrics=metrics, metric_units=units, series=series, method=method,
                       engines={engine.name: version}, seed=int(p.seeds[0]), metric_reasons=reasons,
                       unresolved_metrics=unresolved)
