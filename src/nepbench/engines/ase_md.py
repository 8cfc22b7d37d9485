"""MD through ASE under an `MDProtocol`: the one driver of every engine that hands forces to ASE.

The CPU NEP engine (engines/nep_cpu.py) and the ASE-calculator engine (engines/ase_calc.py, the
universal-MLIP comparators) both run their MD here, so a protocol means the same integrator,
thermostat, initial velocities, degrees of freedom, sampling and timing window on each: VelocityVerlet
for NVE, Bussi CSVR (or Langevin) for NVT, velocities Maxwell–Boltzmann from the protocol's seed with
the total momentum zeroed and held at zero (ASE's FixCom, so T counts 3N − 3 degrees of freedom as
CP2K does), frames copied into preallocated arrays every `sample_interval` steps, positions unwrapped.

Units: ASE's (eV, Å, fs inputs; ps in the returned trajectory and thermo).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator

from ..errors import EngineError, InputError
from .base import MDProtocol, MDResult, Timing, Trajectory, md_frame_instability, unstable_temperature_limit_k

Thermostat = Literal["bussi", "langevin"]


def integrator(atoms: Atoms, protocol: MDProtocol, rng: np.random.Generator, thermostat: Thermostat) -> Any:
    """The ASE dynamics object for `protocol` on `atoms`: VelocityVerlet (NVE), Bussi CSVR with time
    constant thermostat_coupling_fs, or Langevin with friction 1/thermostat_coupling_fs (NVT)."""
    dt = protocol.timestep_fs * units.fs
    if protocol.ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if thermostat == "bussi":
        from ase.md.bussi import Bussi

        return Bussi(atoms, timestep=dt, temperature_K=protocol.temperature_k,
                     taut=protocol.thermostat_coupling_fs * units.fs, rng=rng)
    from ase.md.langevin import Langevin

    return Langevin(atoms, timestep=dt, temperature_K=protocol.temperature_k,
                    friction=1.0 / (protocol.thermostat_coupling_fs * units.fs), fixcm=False, rng=rng)


def run_ase_md(atoms: Atoms, calculator: Calculator, protocol: MDProtocol, engine_name: str,
               thermostat: Thermostat = "bussi", source: str = "<structure>",
               extra: dict[str, Any] | None = None) -> MDResult:
    """Run `protocol` from `atoms` (not modified) with `calculator`; warm-up excluded from timing
    and frames.

    Velocities: Maxwell–Boltzmann at protocol.temperature_k from protocol.seed, total momentum
    zeroed and held at zero (ASE's FixCom). So the thermostat's target and the thermo temperature
    count the 3N − 3 degrees of freedom that carry kinetic energy, as CP2K does for a periodic cell
    (see MDProtocol); without FixCom, ASE's Bussi would count 3N and run a 32-atom cell 3.2 % hot.
    Frames at steps 0, k, 2k, … ≤ steps after the warm-up (k = sample_interval). The first force
    call runs before the clock starts, so `steps` steps are timed.

    Raises:
        InputError (naming `source`): NVT at 0 K, or NVT with no kinetic energy to rescale.
        EngineError: a recorded frame with a non-finite energy or position, or a temperature
            above `unstable_temperature_limit_k` (engines.base): a blown-up run (time step too
            large, atoms the model lets collapse) is no trajectory to score.
    """
    from ase.constraints import FixCom
    from ase.md import velocitydistribution as vd

    t_total = time.perf_counter()
    if protocol.ensemble == "nvt" and protocol.temperature_k <= 0:
        raise InputError(source, "NVT at 0 K has no thermal velocities to rescale; use NVE or T > 0")
    work = atoms.copy()
    work.calc = calculator
    rng = np.random.default_rng(protocol.seed)
    work.constraints = list(work.constraints) + [FixCom()]  # before the thermostat counts its dof
    if protocol.temperature_k > 0:
        thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution
        thermalize(work, temperature_K=protocol.temperature_k, rng=rng)
        vd.Stationary(work)
        if len(work) > 1:  # start at T exactly, over the 3N - 3 dof FixCom leaves, as CP2K and GPUMD do
            t_now = 2 * work.get_kinetic_energy() / (work.get_number_of_degrees_of_freedom() * units.kB)
            work.set_momenta(work.get_momenta() * np.sqrt(protocol.temperature_k / t_now))
    else:
        work.set_momenta(np.zeros((len(work), 3)))
    if protocol.ensemble == "nvt" and work.get_kinetic_energy() <= 0:
        raise InputError(source, "NVT needs more than one atom (zero kinetic energy after "
                                 "removing the total momentum)")
    dyn = integrator(work, protocol, rng, thermostat)

    for _ in range(protocol.warmup_steps):
        dyn.step()

    k = protocol.sample_interval
    n_frames = protocol.steps // k + 1
    n_atoms = len(work)
    positions = np.empty((n_frames, n_atoms, 3))
    epot = np.empty(n_frames)
    ekin = np.empty(n_frames)
    temperature_k = np.empty(n_frames)

    ndof = work.get_number_of_degrees_of_freedom()
    t_limit_k = unstable_temperature_limit_k(protocol.temperature_k)

    def record(i: int) -> None:
        positions[i] = work.positions
        epot[i] = work.get_potential_energy()
        ekin[i] = work.get_kinetic_energy()
        temperature_k[i] = 2.0 * ekin[i] / (ndof * units.kB)
        problem = md_frame_instability(temperature_k[i], epot[i], ekin[i], bool(np.all(np.isfinite(positions[i]))),
                                       t_limit_k)
        if problem:
            step = protocol.warmup_steps + min(i * k, protocol.steps)
            raise EngineError(f"{source}: MD unstable at step {step}: {problem}")

    work.get_potential_energy()  # the first force call, before the clock: steps, not steps + 1, are timed
    start = time.perf_counter()
    record(0)
    for frame in range(1, n_frames):
        for _ in range(k):
            dyn.step()
        record(frame)
    for _ in range(protocol.steps - (n_frames - 1) * k):
        dyn.step()
    timed = time.perf_counter() - start

    times_ps = np.arange(n_frames) * k * protocol.timestep_fs / 1000.0
    thermo = {"time_ps": times_ps, "temperature_k": temperature_k,
              "potential_energy_ev": epot, "kinetic_energy_ev": ekin}
    trajectory = Trajectory(symbols=tuple(work.get_chemical_symbols()), times_ps=times_ps,
                            positions_a=positions,
                            cells_a=np.repeat(work.cell.array[None], n_frames, axis=0),
                            pbc=tuple(bool(p) for p in work.pbc))
    timing = Timing(n_atoms=n_atoms, timed_steps=protocol.steps, timed_wall_s=timed,
                    warmup_steps=protocol.warmup_steps,
                    total_wall_s=time.perf_counter() - t_total)
    return MDResult(engine=engine_name, protocol=protocol, trajectory=trajectory, thermo=thermo,
                    timing=timing, extra=dict(extra or {}))
