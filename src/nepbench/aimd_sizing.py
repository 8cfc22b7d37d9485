"""Cell size and production length of the AIMD reference runs, measured with NEP MD (issue 26).

An AIMD run is worth its CP2K hours only if (a) every pair's g(r) from its production is converged:
the g(r) of its first and second half agree within the RDF pass bound (`rdf_l1_aimd_halves`, the
floor md_accuracy reports beside the model's error), and (b) its Li MSD has a diffusive window, so
that a Li diffusivity with a usable block standard error comes out of it. Both depend on the cell
size N and the production length L, and DFT is far too dear to find them by trial. This module
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
"""

from __future__ import annotations

import dataclasses
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from ase import Atoms, units

from .engines.base import MDProtocol, Trajectory
from .metrics.diffusion import msd_multiple_origins
from .metrics.rdf import rdf_frame, rdf_l1_error

#: CP2K per-step cost grows as N^p: 2–3 is the range usually quoted for these sizes; 1 is the
#: grid-dominated limit the CP2K timing reports point to (docs/aimd_sizing.md says why, and how to
#: measure it).
COST_EXPONENTS = (1.0, 2.0, 3.0)


# --------------------------------------------------------------------------- what is studied

@dataclass(frozen=True)
class SizingCase:
    """One candidate AIMD run, studied at several cell sizes with NEP MD.

    Attributes:
        id: the run's name, as it would appear in reference_data/aimd.toml ("a-Li3Si-1200K").
        builder: a `nepbench.systems` builder name; `params` its composition parameters.
        size_param: the builder parameter that sets the cell size ("n_atoms", "n_c").
        sizes: values of `size_param` studied, smallest first.
        temperature_k: the run's thermostat temperature (K).
        timestep_fs: MD time step (fs), the AIMD's own.
        sample_interval: steps between recorded frames, the AIMD's own (frame spacing in fs is
            timestep_fs × sample_interval).
        thermostat_coupling_fs: CSVR time constant of the production (fs), the AIMD's own.
        melt_k, melt_ps: NVT melt of the packing before the quench (K, ps).
        quench_ps, quench_stages: linear quench from melt_k to temperature_k in equal NVT stages.
        equilibration_ps: total NEP equilibration (melt + quench + NVT at temperature_k), ps.
        npt_ps: NEP NPT (isotropic MTK, P = 0) at temperature_k on the largest cell, after the same
            melt–quench; the mean volume of its second half sets every size's density.
        production_ps: NEP NVT production analysed (ps), cut into windows of candidate lengths.
        seed: base seed of builders and velocities.
    """

    id: str
    builder: str
    params: Mapping[str, Any]
    size_param: str
    sizes: tuple[int, ...]
    temperature_k: float
    timestep_fs: float
    sample_interval: int
    thermostat_coupling_fs: float
    melt_k: float
    melt_ps: float
    quench_ps: float
    quench_stages: int = 4
    equilibration_ps: float = 20.0
    npt_ps: float = 10.0
    production_ps: float = 24.0
    seed: int = 26

    def __post_init__(self) -> None:
        if not self.sizes or list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError(f"{self.id}: sizes must be distinct and ascending, got {self.sizes}")
        if self.equilibration_ps < self.melt_ps + self.quench_ps:
            raise ValueError(f"{self.id}: equilibration_ps must cover melt_ps + quench_ps")
        for name in ("temperature_k", "timestep_fs", "melt_k", "production_ps", "npt_ps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{self.id}: {name} must be > 0")
        if self.sample_interval < 1 or self.quench_stages < 1:
            raise ValueError(f"{self.id}: sample_interval and quench_stages must be >= 1")

    @property
    def frame_ps(self) -> float:
        """Spacing of recorded frames (ps)."""
        return self.timestep_fs * self.sample_interval / 1000.0

    @property
    def nvt_ps(self) -> float:
        """NVT at temperature_k after the melt–quench (ps)."""
        return self.equilibration_ps - self.melt_ps - self.quench_ps

    def build_params(self, size: int) -> dict[str, Any]:
        return {**dict(self.params), self.size_param: int(size)}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["params"] = dict(self.params)
        out["sizes"] = list(self.sizes)
        return out


#: The runs issue 26 expects: Li-rich LixSi at two temperatures where it is liquid and Li mobile,
#: and Li in a-C at 1200 K. Time steps, frame spacing and coupling are the committed AIMD runs'
#: (reference_data/aimd.toml): x = 3 keeps the committed a-Li3Si runs' composition (one Arrhenius
#: series with 900 K), and a-LiC keeps the builder's LiC6 composition.
DEFAULT_CASES: tuple[SizingCase, ...] = (
    SizingCase("a-Li3Si-1200K", "a-LixSi", {"x": 3.0}, "n_atoms", (32, 64, 96, 128), 1200.0, 2.0, 5, 50.0,
               melt_k=2000.0, melt_ps=2.0, quench_ps=2.0),
    SizingCase("a-Li3Si-1500K", "a-LixSi", {"x": 3.0}, "n_atoms", (32, 64, 96, 128), 1500.0, 2.0, 5, 50.0,
               melt_k=2000.0, melt_ps=2.0, quench_ps=2.0),
    SizingCase("a-LiC-1200K", "a-LiC", {}, "n_c", (24, 48, 72, 96), 1200.0, 1.0, 5, 50.0,
               melt_k=5000.0, melt_ps=3.0, quench_ps=3.0),
)


@dataclass(frozen=True)
class SizingTargets:
    """What an AIMD run must reach, and how the windows are judged.

    Attributes:
        rdf_l1_bound: largest g(r) halves L1 allowed for every pair (the suites' RDF `good`).
        n_bins, r_max_a: g(r) grid as md_accuracy compares it (r_max cut to the cell,
            `tasks.md_accuracy.rdf_r_max_a`).
        min_loglog_slope: least log-log slope of the Li MSD over the diffusive window.
        diffusive_window_ps, window_start_min_ps: the window is lags [start, start + width] (ps):
            past the ballistic and cage-rattling times, and as early as that allows, where the
            MSD averages the most independent displacements (a late window of a short run is
            noise: 24 Li at 3–4 ps lag gave slopes 0.63 and 1.25 in two 8 ps windows). It must
            end by half the run (each lag then averages ≥ L/2 of time origins), so it exists only
            for L ≥ 2 (start + width).
        max_d_rel_stderr: largest block standard error of D over D (md_accuracy's 3 blocks).
        min_pass_fraction: a length is met when at least this fraction of its disjoint windows
            pass (≈ the chance one AIMD run of that length passes).
        lengths_ps: candidate production lengths (ps).
        min_production_ps: the issue's floor on every run's production (ps).
        aimd_warmup_ps: AIMD warm-up before production (ps), priced with it.
    """

    rdf_l1_bound: float
    n_bins: int
    r_max_a: float = 6.0
    min_loglog_slope: float = 0.9
    diffusive_window_ps: float = 1.0
    window_start_min_ps: float = 0.2
    max_d_rel_stderr: float = 0.30
    min_pass_fraction: float = 0.8
    lengths_ps: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
    min_production_ps: float = 2.0
    aimd_warmup_ps: float = 0.3


def targets_from_suite(path: str | Path, **overrides: Any) -> SizingTargets:
    """`SizingTargets` whose RDF bound is the suite's `rdf` criterion `good` and whose g(r) bins
    are its md_accuracy task's `n_bins` (default 80), so the study judges by the suite's numbers."""
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    bound = next((c["good"] for c in data.get("criterion", []) if c.get("id") == "rdf"), None)
    if bound is None:
        raise ValueError(f"{path}: no [[criterion]] with id 'rdf'")
    n_bins = next((t.get("n_bins", 80) for t in data.get("task", []) if t.get("type") == "md_accuracy"), 80)
    return SizingTargets(rdf_l1_bound=float(bound), n_bins=int(n_bins), **overrides)


# --------------------------------------------------------------------------- NEP MD (the expensive part)

@dataclass
class ProductionRun:
    """One case at one size after NEP equilibration: its production and how it was made.

    Attributes:
        trajectory: production frames (unwrapped positions, fixed cell), every `sample_interval`.
        temperature_k, potential_energy_ev: thermo per frame (K, eV).
        n_atoms, formula: the cell.
        density_g_cm3: the density the cell was scaled to.
        stages: the NEP protocol, one record per MD call (ensemble, T, ps, steps, CPU s).
        cpu_s: CPU seconds of this size's MD (process time; the engine runs 1 thread).
    """

    trajectory: Trajectory
    temperature_k: np.ndarray
    potential_energy_ev: np.ndarray
    n_atoms: int
    formula: str
    density_g_cm3: float
    stages: list[dict[str, Any]]
    cpu_s: float


def _steps(ps: float, timestep_fs: float) -> int:
    return max(1, int(round(ps * 1000.0 / timestep_fs)))


def _wrapped_last(traj: Trajectory) -> Atoms:
    atoms = traj.frame(-1)
    atoms.wrap()
    return atoms


def _nvt(engine: Any, atoms: Atoms, temperature_k: float, ps: float, timestep_fs: float, seed: int,
         coupling_fs: float, stages: list[dict[str, Any]], label: str) -> Atoms:
    """NVT (CSVR) for `ps` from fresh velocities; the last frame, wrapped. Appends its record."""
    steps = _steps(ps, timestep_fs)
    cpu0 = time.process_time()
    result = engine.md(atoms, MDProtocol("nvt", temperature_k, timestep_fs, steps, sample_interval=steps,
                                         seed=seed, thermostat_coupling_fs=coupling_fs))
    stages.append({"stage": label, "ensemble": "nvt", "temperature_k": temperature_k, "ps": steps * timestep_fs / 1000,
                   "steps": steps, "timestep_fs": timestep_fs, "coupling_fs": coupling_fs,
                   "cpu_s": time.process_time() - cpu0})
    return _wrapped_last(result.trajectory)


def melt_quench_equilibrate(atoms: Atoms, case: SizingCase, engine: Any, seed: int,
                            stages: list[dict[str, Any]], nvt_ps: float | None = None) -> Atoms:
    """NVT melt at case.melt_k, a linear quench to case.temperature_k in case.quench_stages
    stages, then `nvt_ps` (default case.nvt_ps) of NVT at temperature (100 fs coupling)."""
    atoms = _nvt(engine, atoms, case.melt_k, case.melt_ps, case.timestep_fs, seed, 100.0, stages, "melt")
    temps = np.linspace(case.melt_k, case.temperature_k, case.quench_stages + 1)[1:]
    for k, temp in enumerate(temps):
        atoms = _nvt(engine, atoms, float(temp), case.quench_ps / case.quench_stages, case.timestep_fs,
                     seed + 1 + k, 100.0, stages, "quench")
    ps = case.nvt_ps if nvt_ps is None else nvt_ps
    if ps > 0:
        atoms = _nvt(engine, atoms, case.temperature_k, ps, case.timestep_fs, seed + 100, 100.0, stages, "equilibrate")
    return atoms


@dataclass(frozen=True)
class DensityResult:
    """NEP NPT density of a case at its temperature (g/cm³): mean over the second half of the NPT
    run, stderr from 5 contiguous blocks of it; `builder_density_g_cm3` is the packing's."""

    density_g_cm3: float
    stderr_g_cm3: float
    builder_density_g_cm3: float
    n_atoms: int
    protocol: dict[str, Any]
    cpu_s: float


def npt_density(case: SizingCase, engine: Any, size: int | None = None, pressure_gpa: float = 0.0) -> DensityResult:
    """Density of `case` at its temperature from NEP: melt–quench at the builder's density, 2 ps
    of NVT at temperature, then case.npt_ps of isotropic MTK NPT (ASE `IsotropicMTKNPT`, tdamp
    100 fs, pdamp 1000 fs) at `pressure_gpa`; the second half is averaged. On the largest size
    unless `size` is given."""
    from ase.md.nose_hoover_chain import IsotropicMTKNPT
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    from . import systems

    size = case.sizes[-1] if size is None else size
    atoms = systems.build(case.builder, seed=case.seed, **case.build_params(size))
    rho_builder = systems.density_g_cm3(atoms)
    stages: list[dict[str, Any]] = []
    cpu0 = time.process_time()
    atoms = melt_quench_equilibrate(atoms, case, engine, case.seed + 7, stages, nvt_ps=2.0)
    atoms.calc = engine.calculator()
    MaxwellBoltzmannDistribution(atoms, temperature_K=case.temperature_k, rng=np.random.default_rng(case.seed))
    Stationary(atoms)
    steps = _steps(case.npt_ps, case.timestep_fs)
    dyn = IsotropicMTKNPT(atoms, timestep=case.timestep_fs * units.fs, temperature_K=case.temperature_k,
                          pressure_au=pressure_gpa * units.GPa, tdamp=100 * units.fs, pdamp=1000 * units.fs)
    every = case.sample_interval
    rho = []
    for _ in range(steps // every):
        dyn.run(every)
        rho.append(systems.density_g_cm3(atoms))
    second = np.asarray(rho[len(rho) // 2:])
    blocks = np.array([b.mean() for b in np.array_split(second, 5)])
    stages.append({"stage": "npt", "ensemble": "npt (IsotropicMTKNPT)", "temperature_k": case.temperature_k,
                   "pressure_gpa": pressure_gpa, "ps": steps * case.timestep_fs / 1000, "steps": steps,
                   "tdamp_fs": 100.0, "pdamp_fs": 1000.0, "averaged": "second half"})
    return DensityResult(float(second.mean()), float(blocks.std(ddof=1) / np.sqrt(len(blocks))), rho_builder,
                         len(atoms), {"stages": stages}, time.process_time() - cpu0)


def scaled_to_density(atoms: Atoms, density_g_cm3: float) -> Atoms:
    """A copy of `atoms` with cell and positions scaled isotropically to `density_g_cm3`."""
    from . import systems

    out = atoms.copy()
    factor = (systems.density_g_cm3(atoms) / density_g_cm3) ** (1.0 / 3.0)
    out.set_cell(out.cell.array * factor, scale_atoms=True)
    return out


def run_case_size(case: SizingCase, size: int, engine: Any, density_g_cm3: float) -> ProductionRun:
    """Build `case` at `size`, scale it to `density_g_cm3`, melt–quench and equilibrate for
    case.equilibration_ps in total, then case.production_ps of NVT (CSVR at the AIMD's coupling,
    fresh velocities, 0.1 ps warm-up excluded) recorded every case.sample_interval steps."""
    from . import systems

    atoms = scaled_to_density(systems.build(case.builder, seed=case.seed + size, **case.build_params(size)),
                              density_g_cm3)
    stages: list[dict[str, Any]] = []
    cpu0 = time.process_time()
    atoms = melt_quench_equilibrate(atoms, case, engine, case.seed + 1000 + size, stages)
    steps = _steps(case.production_ps, case.timestep_fs)
    warmup = _steps(0.1, case.timestep_fs)
    t0 = time.process_time()
    result = engine.md(atoms, MDProtocol("nvt", case.temperature_k, case.timestep_fs, steps, case.sample_interval,
                                         seed=case.seed + 2000 + size,
                                         thermostat_coupling_fs=case.thermostat_coupling_fs, warmup_steps=warmup))
    stages.append({"stage": "production", "ensemble": "nvt", "temperature_k": case.temperature_k,
                   "ps": steps * case.timestep_fs / 1000, "steps": steps, "warmup_steps": warmup,
                   "timestep_fs": case.timestep_fs, "coupling_fs": case.thermostat_coupling_fs,
                   "sample_interval": case.sample_interval, "cpu_s": time.process_time() - t0})
    return ProductionRun(result.trajectory, np.asarray(result.thermo["temperature_k"]),
                         np.asarray(result.thermo["potential_energy_ev"]), len(atoms), atoms.get_chemical_formula(),
                         density_g_cm3, stages, time.process_time() - cpu0)


def timestep_check(atoms: Atoms, case: SizingCase, engine: Any, ps: float = 2.0) -> dict[str, Any]:
    """NVE energy drift (meV/atom/ps) and residual RMS (meV/atom) of NEP MD from `atoms` (an
    equilibrated frame) at case.timestep_fs and at half of it: 0.5 ps of NVT at the case's
    temperature, then `ps` of NVE from fresh velocities. A drift far above the half step's says
    the AIMD's time step is too long for this cell and temperature."""
    from .metrics.stability import nve_energy_drift_ev_per_atom_per_ps

    out: dict[str, Any] = {"ps": ps}
    start = _nvt(engine, atoms, case.temperature_k, 0.5, case.timestep_fs / 2, case.seed + 3, 100.0, [], "nvt")
    for dt in (case.timestep_fs, case.timestep_fs / 2):
        steps = _steps(ps, dt)
        res = engine.md(start, MDProtocol("nve", case.temperature_k, dt, steps, sample_interval=max(1, steps // 200),
                                          seed=case.seed + 4))
        total = res.thermo["potential_energy_ev"] + res.thermo["kinetic_energy_ev"]
        drift = nve_energy_drift_ev_per_atom_per_ps(res.thermo["time_ps"], total, len(start))
        out[f"{dt:g} fs"] = {"drift_mev_per_atom_per_ps": 1000 * drift.drift_ev_per_atom_per_ps,
                             "drift_stderr_mev_per_atom_per_ps": 1000 * drift.stderr_ev_per_atom_per_ps,
                             "residual_rms_mev_per_atom": 1000 * drift.residual_rms_ev_per_atom,
                             "temperature_mean_k": float(np.mean(res.thermo["temperature_k"]))}
    return out


def save_production(path: Path, run: ProductionRun) -> None:
    """The production and its record as one npz (written to a temporary name, then replaced)."""
    import json
    import os

    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, positions_a=run.trajectory.positions_a, times_ps=run.trajectory.times_ps,
                        cells_a=run.trajectory.cells_a, temperature_k=run.temperature_k,
                        potential_energy_ev=run.potential_energy_ev,
                        record=json.dumps({"symbols": list(run.trajectory.symbols), "n_atoms": run.n_atoms,
                                           "formula": run.formula, "density_g_cm3": run.density_g_cm3,
                                           "stages": run.stages, "cpu_s": run.cpu_s}))
    os.replace(tmp, path)


def load_production(path: Path) -> ProductionRun:
    import json

    with np.load(path) as z:
        rec = json.loads(str(z["record"]))
        traj = Trajectory(tuple(rec["symbols"]), z["times_ps"], z["positions_a"], z["cells_a"])
        return ProductionRun(traj, z["temperature_k"], z["potential_energy_ev"], rec["n_atoms"], rec["formula"],
                             rec["density_g_cm3"], rec["stages"], rec["cpu_s"])


# --------------------------------------------------------------------------- pure analysis

def window_slices(n_frames: int, frames_per_window: int) -> list[slice]:
    """Disjoint consecutive windows of `frames_per_window` frames from frame 0 (a remainder is
    dropped). Raises ValueError for a window of < 2 frames."""
    if frames_per_window < 2:
        raise ValueError(f"a window needs >= 2 frames, got {frames_per_window}")
    return [slice(k * frames_per_window, (k + 1) * frames_per_window)
            for k in range(n_frames // frames_per_window)]


def frames_for_length(length_ps: float, frame_ps: float) -> int:
    """Frames an AIMD production of `length_ps` records at `frame_ps` spacing (both ends included,
    as the AIMD frames are)."""
    if not (length_ps > 0 and frame_ps > 0):
        raise ValueError("length_ps and frame_ps must be > 0")
    return int(round(length_ps / frame_ps)) + 1


def per_frame_partials(traj: Trajectory, r_max_a: float, n_bins: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(r_a, {"A-B": (n_frames, n_bins) g_AB(r) of each frame}) with `metrics.rdf.rdf_frame`; the
    mean over any set of frames is that set's `rdf_trajectory` g(r)."""
    rows: dict[str, list[np.ndarray]] = {}
    r_a = np.empty(0)
    for k in range(traj.n_frames):
        res = rdf_frame(traj.positions_a[k], traj.cells_a[k], traj.symbols, r_max_a, n_bins)
        r_a = res.r_a
        for pair, g in res.partials.items():
            rows.setdefault("-".join(pair), []).append(g)
    return r_a, {pair: np.asarray(v) for pair, v in rows.items()}


def halves_l1(r_a: np.ndarray, partials: Mapping[str, np.ndarray], frames: slice) -> dict[str, float]:
    """Per pair, `rdf_l1_error` between the g(r) of the first and the second half of `frames`
    (first half = the first n//2 frames, as `tasks.md_accuracy.trajectory_halves`), the first as
    reference: md_accuracy's `rdf_l1_aimd_halves` per pair for a run made of those frames."""
    out = {}
    for pair, g in partials.items():
        sel = g[frames]
        if len(sel) < 2:
            raise ValueError(f"need >= 2 frames to split in halves, got {len(sel)}")
        half = len(sel) // 2
        out[pair] = rdf_l1_error(r_a, sel[:half].mean(axis=0), sel[half:].mean(axis=0))
    return out


def rdf_halves_by_length(traj: Trajectory, frame_ps: float, lengths_ps: Sequence[float], r_max_a: float,
                         n_bins: int) -> dict[float, dict[str, list[float]]]:
    """For each length L, per pair, the halves L1 of every disjoint L-long window of `traj`
    (lengths with fewer than 1 window are left out)."""
    r_a, partials = per_frame_partials(traj, r_max_a, n_bins)
    out: dict[float, dict[str, list[float]]] = {}
    for length in lengths_ps:
        slices = window_slices(traj.n_frames, frames_for_length(length, frame_ps)) \
            if frames_for_length(length, frame_ps) <= traj.n_frames else []
        if not slices:
            continue
        per_window = [halves_l1(r_a, partials, s) for s in slices]
        out[float(length)] = {pair: [w[pair] for w in per_window] for pair in per_window[0]}
    return out


def per_frame_adf_counts(traj: Trajectory, cutoffs_a: Mapping[tuple[str, str], float], n_bins: int
                         ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(edges_deg, {central species: (n_frames, n_bins) angle counts per frame}) with
    `metrics.adf.adf_frames`; summing any set of frames gives that set's ADF."""
    from .metrics.adf import adf_frames

    species = sorted(set(traj.symbols))
    counts = {s: np.zeros((traj.n_frames, n_bins)) for s in species}
    edges = np.linspace(0.0, 180.0, n_bins + 1)
    for k in range(traj.n_frames):
        try:
            res = adf_frames([(traj.positions_a[k], traj.cells_a[k], traj.symbols)], cutoffs_a, n_bins)
        except ValueError:  # no angle in this frame
            continue
        for s, p in res.distributions.items():
            counts[s][k] = p * res.n_angles[s] * np.diff(res.edges_deg)
    return edges, {s: c for s, c in counts.items() if c.sum() > 0}


def adf_vdos_halves_by_length(traj: Trajectory, frame_ps: float, lengths_ps: Sequence[float],
                              cutoff_factor: float | None = None, n_bins: int = 90,
                              segment_ps: float | None = None) -> dict[float, dict[str, list[float]]]:
    """Per length, per window: the largest ADF halves L1 over central species ("adf") and the
    largest vDOS halves distance over species ("vdos"), as md_accuracy's `adf_l1_aimd_halves` and
    `vdos_l1_aimd_halves` would give for an AIMD run made of that window (cutoffs, bins and
    segment: the task's defaults unless given)."""
    from .metrics.adf import COVALENT_CUTOFF_FACTOR, adf_l1_error, covalent_cutoffs_a
    from .metrics.vdos import SEGMENT_PS
    from .tasks.md_adf_vdos import compare_vdos
    from .tasks.md_accuracy import trajectory_halves

    cutoffs = covalent_cutoffs_a(set(traj.symbols), COVALENT_CUTOFF_FACTOR if cutoff_factor is None else cutoff_factor)
    edges, counts = per_frame_adf_counts(traj, cutoffs, n_bins)
    width = np.diff(edges)
    out: dict[float, dict[str, list[float]]] = {}
    for length in lengths_ps:
        n = frames_for_length(length, frame_ps)
        if n > traj.n_frames:
            continue
        adf_rows, vdos_rows = [], []
        for sl in window_slices(traj.n_frames, n):
            half = (sl.stop - sl.start) // 2
            l1s = []
            for c in counts.values():
                a, b = c[sl.start:sl.start + half].sum(axis=0), c[sl.start + half:sl.stop].sum(axis=0)
                if a.sum() > 0 and b.sum() > 0:
                    l1s.append(adf_l1_error(edges, a / (a.sum() * width), b / (b.sum() * width)))
            adf_rows.append(max(l1s) if l1s else float("nan"))
            part = dataclasses.replace(traj, times_ps=traj.times_ps[sl], positions_a=traj.positions_a[sl],
                                       cells_a=traj.cells_a[sl])
            first, second = trajectory_halves(part)
            try:
                vd = compare_vdos(first, second, SEGMENT_PS if segment_ps is None else segment_ps)
                vdos_rows.append(max(v["l1"] for v in vd["species"].values()))
            except ValueError:
                vdos_rows.append(float("nan"))
        out[float(length)] = {"adf": adf_rows, "vdos": vdos_rows}
    return out


def loglog_slope(lag_ps: np.ndarray, msd_a2: np.ndarray, t_start_ps: float, t_end_ps: float) -> float:
    """Least-squares slope of ln MSD against ln t over lags in [t_start, t_end] (ps); NaN where the
    MSD is not positive there. Raises ValueError for fewer than 3 lags in the window."""
    eps = 1e-9 * max(t_end_ps, 1e-12)
    inside = (lag_ps >= t_start_ps - eps) & (lag_ps <= t_end_ps + eps) & (lag_ps > 0)
    if inside.sum() < 3:
        raise ValueError(f"window {t_start_ps:g}-{t_end_ps:g} ps holds {inside.sum()} lags; need >= 3")
    y = msd_a2[inside]
    if np.any(y <= 0):
        return float("nan")
    return float(np.polyfit(np.log(lag_ps[inside]), np.log(y), 1)[0])


@dataclass(frozen=True)
class WindowDiffusion:
    """Li diffusion in one window of length L (one would-be AIMD production).

    Attributes:
        d_cm2_per_s, rel_stderr: md_accuracy's D (3 blocks, window [0.1, 0.5] × block span) and
            its block standard error over |D| (inf for D = 0).
        task_slope: log-log MSD slope over that fit window; `task_accepts`: md_accuracy would
            call it diffusive (`is_diffusive`).
        window_slope: log-log slope of the window's all-origins MSD over the diffusive window
            (`SizingTargets`; NaN where L is too short for it).
        passes: window_slope ≥ min slope, rel_stderr ≤ max, and task_accepts.
    """

    d_cm2_per_s: float
    rel_stderr: float
    task_slope: float
    task_accepts: bool
    window_slope: float
    passes: bool


def window_diffusion(traj: Trajectory, targets: SizingTargets, species: str = "Li") -> WindowDiffusion:
    """`WindowDiffusion` of one window-trajectory (`traj`'s span is the window's length)."""
    from .tasks.md_accuracy import is_diffusive, li_diffusivity, species_mask

    d = li_diffusivity(traj, species)
    rel = abs(d.stderr_cm2_per_s / d.d_cm2_per_s) if d.d_cm2_per_s != 0 else float("inf")
    span = float(traj.times_ps[-1] - traj.times_ps[0])
    t_start = targets.window_start_min_ps
    t_end = t_start + targets.diffusive_window_ps
    slope = float("nan")
    if t_end <= span / 2 + 1e-9:
        lag, msd = msd_multiple_origins(traj.positions_a, traj.times_ps, mask=species_mask(traj, species))
        slope = loglog_slope(lag, msd, t_start, t_end)
    accepts = is_diffusive(d)
    ok = bool(np.isfinite(slope) and slope >= targets.min_loglog_slope and rel <= targets.max_d_rel_stderr and accepts)
    return WindowDiffusion(d.d_cm2_per_s, float(rel), d.loglog_slope, accepts, slope, ok)


def diffusion_by_length(traj: Trajectory, frame_ps: float, lengths_ps: Sequence[float],
                        targets: SizingTargets) -> dict[float, list[WindowDiffusion]]:
    """`window_diffusion` of every disjoint window of each length (lengths without a window, or too
    short for md_accuracy's 3-block fit, are left out)."""
    out: dict[float, list[WindowDiffusion]] = {}
    for length in lengths_ps:
        n = frames_for_length(length, frame_ps)
        if n > traj.n_frames:
            continue
        rows = []
        for s in window_slices(traj.n_frames, n):
            part = dataclasses.replace(traj, times_ps=traj.times_ps[s], positions_a=traj.positions_a[s],
                                       cells_a=traj.cells_a[s])
            try:
                rows.append(window_diffusion(part, targets))
            except ValueError:  # too few frames for the block fit at this length
                break
        if rows:
            out[float(length)] = rows
    return out


def pass_fraction(flags: Sequence[bool]) -> float:
    """Fraction of True (ValueError for none)."""
    if not len(flags):
        raise ValueError("no windows")
    return float(np.mean(np.asarray(flags, dtype=bool)))


def required_length_ps(fractions: Mapping[float, float], min_fraction: float) -> float | None:
    """The shortest length whose pass fraction is ≥ `min_fraction` and stays so at every longer
    length measured (a lucky short length before failing longer ones does not count); None if none."""
    lengths = sorted(fractions)
    for k, length in enumerate(lengths):
        if all(fractions[m] >= min_fraction for m in lengths[k:]):
            return length
    return None


# --------------------------------------------------------------------------- CP2K cost

@dataclass(frozen=True)
class Cp2kCost:
    """Measured CP2K cost per MD step at one size: `s_per_step` (s) for `n_atoms` atoms on
    `ranks` MPI ranks, and where the number comes from."""

    n_atoms: int
    s_per_step: float
    ranks: int
    source: str

    def per_step_s(self, n_atoms: int, exponent: float, speedup: float = 1.0) -> float:
        """Seconds per step at `n_atoms`: s_per_step × (n_atoms / self.n_atoms)^exponent / speedup."""
        if n_atoms < 1 or not speedup > 0:
            raise ValueError("n_atoms must be >= 1 and speedup > 0")
        return self.s_per_step * (n_atoms / self.n_atoms) ** exponent / speedup


def cp2k_hours(cost: Cp2kCost, n_atoms: int, production_ps: float, warmup_ps: float, timestep_fs: float,
               exponent: float, speedup: float = 1.0) -> float:
    """CP2K wall hours of an AIMD run: (warm-up + production) / time step steps at
    `Cp2kCost.per_step_s`."""
    steps = _steps(production_ps + warmup_ps, timestep_fs)
    return steps * cost.per_step_s(n_atoms, exponent, speedup) / 3600.0


def tuning_evidence(tuning: Mapping[str, Any], small: str, large: str, reference_case: str) -> dict[str, Any]:
    """What a CP2K tuning record (reference_data/studies/cp2k_tuning.json's "results": "variant|case"
    → {"s_per_step", "n_atoms", ...}) says about the cost model: the size exponent
    p = ln(s_large / s_small) / ln(N_large / N_small) of every variant that ran both MD cases
    `small` and `large`, and the speed-up of each variant's MD step on `reference_case` over the
    "baseline" variant's. Raises KeyError when the record lacks the cases."""
    results = tuning["results"]
    exponents = {}
    for key, small_rec in results.items():
        variant, case = key.split("|", 1)
        if case == small and f"{variant}|{large}" in results:
            big = results[f"{variant}|{large}"]
            exponents[variant] = float(np.log(big["s_per_step"] / small_rec["s_per_step"])
                                       / np.log(big["n_atoms"] / small_rec["n_atoms"]))
    base = results[f"baseline|{reference_case}"]["s_per_step"]
    speedups = {key.split("|", 1)[0]: base / rec["s_per_step"] for key, rec in results.items()
                if key.endswith(f"|{reference_case}") and not key.startswith("baseline|")}
    if not exponents:
        raise KeyError(f"no variant ran both {small} and {large}")
    return {"size_exponents": exponents, "small_case": small, "large_case": large,
            "reference_case": reference_case, "baseline_s_per_step": base, "speedups": speedups}


def cost_from_manifest(manifest: Mapping[str, Any], run_id: str) -> Cp2kCost:
    """The committed run's median s/step (on its current rank count) as a `Cp2kCost`."""
    runs = manifest["runs"]
    run = runs[run_id] if isinstance(runs, Mapping) else next(r for r in runs if r.get("id") == run_id)
    return Cp2kCost(int(run["n_atoms"]), float(run["s_per_step_median"]), int(run["ranks"]),
                    f"reference_data/aimd/manifest.json {run_id}: s_per_step_median, {run['ranks']} rank(s)")


@dataclass(frozen=True)
class Option:
    """One way to run a case in AIMD: a cell size, the production (ps) g(r) and D each need (None:
    not met within the lengths measured), the production both need and D alone needs (each at
    least the minimum production), and their CP2K hours per cost exponent ("N^2": hours); also
    the hours of g(r) alone (a run kept for structure where D is out of reach)."""

    size: int
    n_atoms: int
    rdf_length_ps: float | None
    d_length_ps: float | None
    production_ps: float | None
    d_production_ps: float | None = None
    rdf_production_ps: float | None = None
    hours: dict[str, float | None] = field(default_factory=dict)
    d_only_hours: dict[str, float | None] = field(default_factory=dict)
    rdf_only_hours: dict[str, float | None] = field(default_factory=dict)


def options(case: SizingCase, per_size: Mapping[int, Mapping[str, Any]], targets: SizingTargets, cost: Cp2kCost,
            speedup: float, exponents: Sequence[float] = COST_EXPONENTS) -> list[Option]:
    """Per size, the production both targets need (≥ targets.min_production_ps) and its CP2K hours;
    `d_only_hours` prices the D target alone (the run that gives a measured D first)."""
    out = []
    for size, res in sorted(per_size.items()):
        l_rdf = required_length_ps({float(k): v for k, v in res["rdf_pass_fraction"].items()},
                                   targets.min_pass_fraction)
        l_d = required_length_ps({float(k): v for k, v in res["d_pass_fraction"].items()},
                                 targets.min_pass_fraction) if res.get("d_pass_fraction") else None
        need = None if l_rdf is None or l_d is None else max(l_rdf, l_d, targets.min_production_ps)
        n = int(res["n_atoms"])

        def price(length: float | None) -> dict[str, float | None]:
            return {f"N^{p:g}": (None if length is None else
                                 cp2k_hours(cost, n, length, targets.aimd_warmup_ps, case.timestep_fs, p, speedup))
                    for p in exponents}

        d_need = None if l_d is None else max(l_d, targets.min_production_ps)
        rdf_need = None if l_rdf is None else max(l_rdf, targets.min_production_ps)
        out.append(Option(size, n, l_rdf, l_d, need, d_need, rdf_need, price(need), price(d_need), price(rdf_need)))
    return out


# --------------------------------------------------------------------------- the study

def analyse_production(case: SizingCase, run: ProductionRun, targets: SizingTargets) -> dict[str, Any]:
    """Everything the study records for one case at one size (JSON-ready)."""
    from .metrics.equilibration import linear_trend, thermostat_offset
    from .tasks.md_accuracy import li_diffusivity, rdf_r_max_a

    traj = run.trajectory
    r_max = rdf_r_max_a(SimpleNamespace(trajectory=traj), targets.r_max_a)
    lengths = [length for length in targets.lengths_ps if length <= case.production_ps / 2 + 1e-9]
    halves = rdf_halves_by_length(traj, case.frame_ps, lengths, r_max, targets.n_bins)
    rdf_frac, rdf_worst_pair, rdf_median = {}, {}, {}
    for length, pairs in halves.items():
        worst = np.max(np.array(list(pairs.values())), axis=0)  # per window, the largest over pairs
        rdf_frac[length] = pass_fraction(worst <= targets.rdf_l1_bound)
        rdf_median[length] = float(np.median(worst))
        rdf_worst_pair[length] = max(pairs, key=lambda p: float(np.median(pairs[p])))
    diff = diffusion_by_length(traj, case.frame_ps, lengths, targets)
    angles_vib = adf_vdos_halves_by_length(traj, case.frame_ps, lengths)
    trend = linear_trend(traj.times_ps, run.potential_energy_ev / run.n_atoms * 1000.0)
    temp = thermostat_offset(run.temperature_k, case.temperature_k)
    whole = li_diffusivity(traj)
    lag, msd = msd_multiple_origins(traj.positions_a, traj.times_ps,
                                    mask=np.array([x == "Li" for x in traj.symbols]))
    half_run = float(traj.times_ps[-1] - traj.times_ps[0]) / 2
    slopes = {f"{a:g}-{a + 1:g}": loglog_slope(lag, msd, a, a + 1.0)
              for a in (0.2, 1.0, 2.0, 4.0, 8.0) if a + 1.0 <= half_run}
    n_li = int(sum(s == "Li" for s in traj.symbols))
    return {
        "n_atoms": run.n_atoms, "formula": run.formula, "n_li": n_li,
        "cell_a": float(traj.cells_a[0][0, 0]), "density_g_cm3": run.density_g_cm3, "rdf_r_max_a": r_max,
        "production_ps": float(traj.times_ps[-1]), "n_frames": traj.n_frames, "cpu_s": run.cpu_s,
        "stages": run.stages,
        "production_potential_trend_mev_per_atom_per_ps": [trend.slope, trend.stderr],
        "production_temperature_k": [temp.mean_k, temp.stderr_k],
        "li_d_whole_production_cm2_per_s": [whole.d_cm2_per_s, whole.stderr_cm2_per_s],
        "li_d_whole_production_loglog_slope": whole.loglog_slope,
        "li_msd_loglog_slope_whole_production": slopes,
        "rdf_halves_l1": {str(k): v for k, v in halves.items()},
        "rdf_pass_fraction": {str(k): v for k, v in rdf_frac.items()},
        "rdf_halves_max_median": {str(k): v for k, v in rdf_median.items()},
        "rdf_limiting_pair": {str(k): v for k, v in rdf_worst_pair.items()},
        "d_windows": {str(k): [dataclasses.asdict(w) for w in v] for k, v in diff.items()},
        "d_pass_fraction": {str(k): pass_fraction([w.passes for w in v]) for k, v in diff.items()},
        "adf_vdos_halves": {str(k): v for k, v in angles_vib.items()},
    }


def recommend(case: SizingCase, opts: Sequence[Option], exponent_key: str) -> dict[str, Any]:
    """The cheapest option meeting both targets, the cheapest meeting D alone and the cheapest
    meeting g(r) alone, at one cost exponent (None where no size meets them within the lengths
    measured)."""
    rdf_only = [o for o in opts if o.rdf_only_hours.get(exponent_key) is not None]
    best_rdf = min(rdf_only, key=lambda o: o.rdf_only_hours[exponent_key]) if rdf_only else None  # type: ignore[arg-type,return-value]
    both = [o for o in opts if o.hours.get(exponent_key) is not None]
    d_only = [o for o in opts if o.d_only_hours.get(exponent_key) is not None]
    best = min(both, key=lambda o: o.hours[exponent_key]) if both else None  # type: ignore[arg-type,return-value]
    first_d = min(d_only, key=lambda o: o.d_only_hours[exponent_key]) if d_only else None  # type: ignore[arg-type,return-value]
    return {"case": case.id,
            "both": None if best is None else {"size": best.size, "n_atoms": best.n_atoms,
                                               "production_ps": best.production_ps,
                                               "hours": best.hours[exponent_key]},
            "d_first": None if first_d is None else {
                "size": first_d.size, "n_atoms": first_d.n_atoms,
                "production_ps": first_d.d_production_ps, "hours": first_d.d_only_hours[exponent_key]},
            "rdf_only": None if best_rdf is None else {
                "size": best_rdf.size, "n_atoms": best_rdf.n_atoms,
                "production_ps": best_rdf.rdf_production_ps,
                "hours": best_rdf.rdf_only_hours[exponent_key]}}


# --------------------------------------------------------------------------- runner

#: Bump when the MD protocol code changes, so cached productions are not reused across it.
CACHE_VERSION = 1


def _density_path(cache_dir: Path, case: SizingCase, model_sha256: str) -> Path:
    from .provenance import content_hash

    key = content_hash({"case": case.to_dict(), "model": model_sha256, "version": CACHE_VERSION})
    return cache_dir / f"{case.id}-density-{key[:16]}.json"


def _cache_path(cache_dir: Path, case: SizingCase, size: int, density: float, model_sha256: str) -> Path:
    from .provenance import content_hash

    key = content_hash({"case": case.to_dict(), "size": size, "density": round(density, 6),
                        "model": model_sha256, "version": CACHE_VERSION})
    return cache_dir / f"{case.id}-{size}-{key[:16]}.npz"


def planned_atom_steps(case: SizingCase) -> int:
    """NEP atom·steps the study runs for `case` (NPT stage and every size), to budget it."""
    from . import systems

    def steps(ps: float) -> int:
        return _steps(ps, case.timestep_fs)

    sizes_atoms = [len(systems.build(case.builder, seed=case.seed, relax_steps=0, **case.build_params(s)))
                   for s in case.sizes]
    per_size = steps(case.equilibration_ps) + steps(case.production_ps) + steps(0.1)
    npt = steps(case.melt_ps + case.quench_ps + 2.0) + steps(case.npt_ps)
    return int(sum(n * per_size for n in sizes_atoms) + sizes_atoms[-1] * npt)


def aimd_halves_check(reference_dir: Path, targets: SizingTargets) -> dict[str, Any]:
    """Per pair, the halves L1 of each committed AIMD run's production (as md_accuracy computes it),
    to set beside the NEP estimate at the same size and length."""
    from .aimd import load_aimd, load_aimd_spec
    from .errors import InputError
    from .tasks.md_accuracy import compare_rdf, rdf_r_max_a, trajectory_halves

    spec = load_aimd_spec(reference_dir / "aimd.toml")
    out: dict[str, Any] = {}
    for run in spec.runs:
        try:
            ref = load_aimd(spec, run.id)
        except InputError as exc:
            out[run.id] = {"error": str(exc)}
            continue
        r_max = rdf_r_max_a(ref, targets.r_max_a)
        first, second = trajectory_halves(ref.trajectory)
        pairs = compare_rdf(first, second, r_max, targets.n_bins)["pairs"]
        out[run.id] = {"n_atoms": len(ref.first_frame), "production_ps": ref.production_ps,
                       "rdf_r_max_a": r_max, "halves_l1": {k: v["l1"] for k, v in pairs.items()}}
    return out


def recompute_choices(result: dict[str, Any], speedup: float = 1.0,
                      exponents: Sequence[float] = COST_EXPONENTS) -> dict[str, Any]:
    """`result` (a `run_study` record) with each case's options and recommendation recomputed from
    its stored per-size pass fractions, targets and CP2K cost: a change to the pricing or the
    choice needs no MD and no trajectory analysis."""
    targets = SizingTargets(**{k: tuple(v) if isinstance(v, list) else v for k, v in result["targets"].items()})
    for c in result["cases"].values():
        raw = dict(c["case"])
        case = SizingCase(**{**raw, "sizes": tuple(raw["sizes"])})
        cost = Cp2kCost(**c["cp2k_cost"])
        per_size = {int(k): v for k, v in c["sizes"].items()}
        opts = options(case, per_size, targets, cost, speedup, exponents)
        c["options"] = [dataclasses.asdict(o) for o in opts]
        c["recommendation"] = {f"N^{p:g}": recommend(case, opts, f"N^{p:g}") for p in exponents}
    result["cost_exponents"] = list(exponents)
    return result


def run_study(cases: Sequence[SizingCase], model: str, targets: SizingTargets, cache_dir: Path,
              costs: Mapping[str, Cp2kCost], speedup: float, reference_dir: Path | None = None,
              log: Any = print) -> dict[str, Any]:
    """The whole study: per case the NEP NPT density, then per size the cached (or new) production
    and its analysis, the CP2K options and the recommendation (JSON-ready). `costs` maps case id to
    its `Cp2kCost`; `speedup` divides every CP2K cost (the expected gain of the CP2K tuning)."""
    from .engines.nep_cpu import NepCpuEngine
    from .provenance import hardware_info

    engine = NepCpuEngine(model, threads=1)
    cache_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"model": {"name": engine.model.name, "sha256": engine.model.sha256},
                           "engine": engine.describe(), "hardware": hardware_info(),
                           "targets": dataclasses.asdict(targets), "cp2k_speedup_assumed": speedup,
                           "cost_exponents": list(COST_EXPONENTS), "cases": {}}
    cpu_total = 0.0
    for case in cases:
        log(f"{case.id}: density")
        dens_path = _density_path(cache_dir, case, engine.model.sha256)
        if dens_path.exists():
            import json

            dens = DensityResult(**json.loads(dens_path.read_text()))
        else:
            dens = npt_density(case, engine)
            from .provenance import atomic_write_json

            atomic_write_json(dens_path, dataclasses.asdict(dens))
        cpu_total += dens.cpu_s
        per_size: dict[int, dict[str, Any]] = {}
        for size in case.sizes:
            path = _cache_path(cache_dir, case, size, dens.density_g_cm3, engine.model.sha256)
            if path.exists():
                run = load_production(path)
                log(f"{case.id} {size}: cached production ({run.cpu_s:.0f} CPU s when made)")
            else:
                log(f"{case.id} {size}: equilibrating and producing")
                run = run_case_size(case, size, engine, dens.density_g_cm3)
                save_production(path, run)
                log(f"{case.id} {size}: {run.n_atoms} atoms, {run.cpu_s:.0f} CPU s")
            cpu_total += run.cpu_s
            per_size[size] = analyse_production(case, run, targets)
        smallest = load_production(_cache_path(cache_dir, case, case.sizes[0], dens.density_g_cm3, engine.model.sha256))
        cpu0 = time.process_time()
        step_check = timestep_check(_wrapped_last(smallest.trajectory), case, engine)
        cpu_total += time.process_time() - cpu0
        cost = costs[case.id]
        opts = options(case, per_size, targets, cost, speedup)
        out["cases"][case.id] = {
            "case": case.to_dict(), "density": dataclasses.asdict(dens), "sizes": {str(k): v for k, v in per_size.items()},
            "nve_timestep_check": step_check,
            "cp2k_cost": dataclasses.asdict(cost), "options": [dataclasses.asdict(o) for o in opts],
            "recommendation": {f"N^{p:g}": recommend(case, opts, f"N^{p:g}") for p in COST_EXPONENTS}}
    out["nep_md_cpu_s"] = cpu_total
    if reference_dir is not None:
        out["aimd_committed_halves"] = aimd_halves_check(reference_dir, targets)
    return out
