"""The study's NEP MD (its only expensive part): NPT density, melt–quench and equilibration, the
NVT production of one case at one size, a time-step check, and the production's npz cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units

from ..engines.base import MDProtocol, Trajectory
from .cases import SizingCase


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


def md_steps(ps: float, timestep_fs: float) -> int:
    """MD steps that cover `ps` picoseconds at a time step of `timestep_fs` femtoseconds: rounded to
    the nearest integer, at least 1."""
    return max(1, int(round(ps * 1000.0 / timestep_fs)))


def wrapped_last(traj: Trajectory) -> Atoms:
    """The trajectory's last frame with every atom wrapped into the cell (a copy; positions in Å)."""
    atoms = traj.frame(-1)
    atoms.wrap()
    return atoms


def _nvt(engine: Any, atoms: Atoms, temperature_k: float, ps: float, timestep_fs: float, seed: int,
         coupling_fs: float, stages: list[dict[str, Any]], label: str) -> Atoms:
    """NVT (CSVR) for `ps` from fresh velocities; the last frame, wrapped. Appends its record."""
    steps = md_steps(ps, timestep_fs)
    cpu0 = time.process_time()
    result = engine.md(atoms, MDProtocol("nvt", temperature_k, timestep_fs, steps, sample_interval=steps,
                                         seed=seed, thermostat_coupling_fs=coupling_fs))
    stages.append({"stage": label, "ensemble": "nvt", "temperature_k": temperature_k, "ps": steps * timestep_fs / 1000,
                   "steps": steps, "timestep_fs": timestep_fs, "coupling_fs": coupling_fs,
                   "cpu_s": time.process_time() - cpu0})
    return wrapped_last(result.trajectory)


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

    from .. import systems

    size = case.sizes[-1] if size is None else size
    atoms = systems.build(case.builder, seed=case.seed, **case.build_params(size))
    rho_builder = systems.density_g_cm3(atoms)
    stages: list[dict[str, Any]] = []
    cpu0 = time.process_time()
    atoms = melt_quench_equilibrate(atoms, case, engine, case.seed + 7, stages, nvt_ps=2.0)
    atoms.calc = engine.calculator()
    MaxwellBoltzmannDistribution(atoms, temperature_K=case.temperature_k, rng=np.random.default_rng(case.seed))
    Stationary(atoms)
    steps = md_steps(case.npt_ps, case.timestep_fs)
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
    from .. import systems

    out = atoms.copy()
    factor = (systems.density_g_cm3(atoms) / density_g_cm3) ** (1.0 / 3.0)
    out.set_cell(out.cell.array * factor, scale_atoms=True)
    return out


def run_case_size(case: SizingCase, size: int, engine: Any, density_g_cm3: float) -> ProductionRun:
    """Build `case` at `size`, scale it to `density_g_cm3`, melt–quench and equilibrate for
    case.equilibration_ps in total, then case.production_ps of NVT (CSVR at the AIMD's coupling,
    fresh velocities, 0.1 ps warm-up excluded) recorded every case.sample_interval steps."""
    from .. import systems

    atoms = scaled_to_density(systems.build(case.builder, seed=case.seed + size, **case.build_params(size)),
                              density_g_cm3)
    stages: list[dict[str, Any]] = []
    cpu0 = time.process_time()
    atoms = melt_quench_equilibrate(atoms, case, engine, case.seed + 1000 + size, stages)
    steps = md_steps(case.production_ps, case.timestep_fs)
    warmup = md_steps(0.1, case.timestep_fs)
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
    from ..metrics.stability import nve_energy_drift_ev_per_atom_per_ps

    out: dict[str, Any] = {"ps": ps}
    start = _nvt(engine, atoms, case.temperature_k, 0.5, case.timestep_fs / 2, case.seed + 3, 100.0, [], "nvt")
    for dt in (case.timestep_fs, case.timestep_fs / 2):
        steps = md_steps(ps, dt)
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
