"""The engine interface shared by every code nepbench drives.

Units follow ASE: energies in eV, lengths in Å, forces in eV/Å, stress in eV/Å³ (Voigt order
xx, yy, zz, yz, xz, xy; ASE sign convention, positive = tensile), time in fs for inputs and ps for
trajectories.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from ase import Atoms

Ensemble = Literal["nvt", "nve"]


#: A recorded MD frame hotter than max(this × the protocol's T, UNSTABLE_TEMPERATURE_FLOOR_K) is a
#: blown-up run, not dynamics (every NEP engine raises EngineError on it). An NVE run from a random
#: packing heats 4× as it relaxes (900 → 3,600 K, measured); a 10 fs step blows up past 1e9 K
#: within 30 steps.
UNSTABLE_TEMPERATURE_FACTOR = 10.0
UNSTABLE_TEMPERATURE_FLOOR_K = 20_000.0


def unstable_temperature_limit_k(protocol_temperature_k: float) -> float:
    """The temperature (K) above which a recorded frame of a run at `protocol_temperature_k` counts
    as blown up: max(UNSTABLE_TEMPERATURE_FACTOR × T, UNSTABLE_TEMPERATURE_FLOOR_K)."""
    return max(UNSTABLE_TEMPERATURE_FACTOR * protocol_temperature_k, UNSTABLE_TEMPERATURE_FLOOR_K)


def md_frame_instability(temperature_k: float, potential_energy_ev: float, kinetic_energy_ev: float,
                         positions_finite: bool, limit_k: float) -> str | None:
    """Why one recorded MD frame shows a blown-up run, or None: a non-finite energy or position, or
    a temperature (K) above `limit_k` (`unstable_temperature_limit_k`). Energies in eV."""
    finite = bool(np.isfinite(potential_energy_ev) and np.isfinite(kinetic_energy_ev) and np.isfinite(temperature_k))
    if finite and positions_finite and temperature_k <= limit_k:
        return None
    return (f"T {temperature_k:.3g} K (limit {limit_k:.0f} K), E_pot {potential_energy_ev:.6g} eV, positions "
            f"{'finite' if positions_finite else 'non-finite'}; a smaller time step, or a model that holds "
            "these atoms together")


#: Seeds an MDProtocol takes: CP2K's SEED (seed + 1) must be a positive 32-bit integer.
MAX_MD_SEED = 2**31 - 1


@dataclass(frozen=True)
class MDProtocol:
    """One description of an MD run that every engine accepts.

    Attributes:
        ensemble: "nvt" (stochastic velocity rescaling, CSVR/Bussi) or "nve".
        temperature_k: initial (Maxwell-Boltzmann, seeded) and thermostat temperature in K, of the
            3N − 3 degrees of freedom that carry kinetic energy once the total momentum is zero:
            ⟨E_kin⟩ = (3N − 3) k_B T / 2. This is CP2K's count for a periodic cell (its CSVR target
            and its printed T); every engine's thermostat targets it and its thermo reports it, so a
            32-atom cell runs at the same T on each (engines that count 3N are corrected).
        timestep_fs: integration time step in fs.
        steps: number of MD steps after the warm-up.
        sample_interval: steps between recorded frames and thermo rows.
        seed: seed for initial velocities and the thermostat's noise (CP2K: an explicit CSVR
            RNG_INIT record for a fresh run, engines/cp2k/; GPUMD's nvt_bdp noise is
            clock-seeded unless built with -DDEBUG, engines/gpumd/).
        thermostat_coupling_fs: thermostat time constant in fs (ignored for NVE).
        warmup_steps: steps run first and excluded from timing and trajectories.
    """

    ensemble: Ensemble
    temperature_k: float
    timestep_fs: float
    steps: int
    sample_interval: int = 10
    seed: int = 0
    thermostat_coupling_fs: float = 100.0
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.ensemble not in ("nvt", "nve"):
            raise ValueError(f"ensemble must be 'nvt' or 'nve', got {self.ensemble!r}")
        if not (self.temperature_k >= 0 and np.isfinite(self.temperature_k)):
            raise ValueError(f"temperature_k must be finite and >= 0, got {self.temperature_k}")
        if not (0 < self.timestep_fs <= 10):
            raise ValueError(f"timestep_fs must be in (0, 10], got {self.timestep_fs}")
        if self.steps < 1 or self.sample_interval < 1 or self.warmup_steps < 0:
            raise ValueError("steps and sample_interval must be >= 1, warmup_steps >= 0")
        if self.thermostat_coupling_fs <= 0:
            raise ValueError("thermostat_coupling_fs must be > 0")
        if not (isinstance(self.seed, (int, np.integer)) and 0 <= self.seed < MAX_MD_SEED):
            raise ValueError(f"seed must be an integer in [0, {MAX_MD_SEED}), got {self.seed!r} (CP2K takes "
                             "seed + 1 as a positive 32-bit integer)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MDProtocol":
        return cls(**data)

    @property
    def duration_ps(self) -> float:
        """Simulated time after the warm-up, in ps."""
        return self.steps * self.timestep_fs / 1000.0


@dataclass(frozen=True)
class Labels:
    """Energy, forces and stress of one structure.

    Attributes:
        energy_ev: total potential energy in eV.
        forces_ev_per_a: (n_atoms, 3) forces in eV/Å.
        stress_ev_per_a3: Voigt stress (6,) in eV/Å³ (ASE convention), or None if not computed.
        wall_s: wall time of the calculation in s.
    """

    energy_ev: float
    forces_ev_per_a: np.ndarray
    stress_ev_per_a3: np.ndarray | None = None
    wall_s: float = 0.0


@dataclass(frozen=True)
class Timing:
    """Wall-clock timing of an MD run with the warm-up excluded.

    Attributes:
        n_atoms: number of atoms simulated.
        timed_steps: MD steps inside the timed window.
        timed_wall_s: wall time of the timed window in s.
        warmup_steps: steps run before the timed window (not counted).
        total_wall_s: wall time of the whole run including warm-up and set-up, in s.
        engine_reported_atom_steps_per_s: the engine's own figure where it prints one (GPUMD).
    """

    n_atoms: int
    timed_steps: int
    timed_wall_s: float
    warmup_steps: int = 0
    total_wall_s: float = 0.0
    engine_reported_atom_steps_per_s: float | None = None

    @property
    def atom_steps_per_s(self) -> float:
        """Throughput in atom·step/s over the timed window."""
        if self.timed_wall_s <= 0:
            raise ValueError("timed_wall_s must be > 0")
        return self.n_atoms * self.timed_steps / self.timed_wall_s

    @property
    def s_per_step(self) -> float:
        """Mean wall time per MD step in s over the timed window."""
        return self.timed_wall_s / self.timed_steps


@dataclass
class Trajectory:
    """Recorded MD frames.

    Attributes:
        symbols: chemical symbols, one per atom.
        times_ps: (n_frames,) time of each frame in ps, measured from the end of the warm-up.
        positions_a: (n_frames, n_atoms, 3) unwrapped Cartesian positions in Å.
        cells_a: (n_frames, 3, 3) cell vectors in Å (rows).
        pbc: periodicity along each cell vector.
    """

    symbols: tuple[str, ...]
    times_ps: np.ndarray
    positions_a: np.ndarray
    cells_a: np.ndarray
    pbc: tuple[bool, bool, bool] = (True, True, True)

    def __post_init__(self) -> None:
        n_frames = len(self.times_ps)
        if self.positions_a.shape != (n_frames, len(self.symbols), 3):
            raise ValueError(
                f"positions_a shape {self.positions_a.shape} != ({n_frames}, {len(self.symbols)}, 3)"
            )
        if self.cells_a.shape != (n_frames, 3, 3):
            raise ValueError(f"cells_a shape {self.cells_a.shape} != ({n_frames}, 3, 3)")

    @property
    def n_frames(self) -> int:
        return len(self.times_ps)

    def frame(self, index: int) -> Atoms:
        """Frame `index` as ASE Atoms (positions as stored, unwrapped)."""
        return Atoms(
            symbols=list(self.symbols),
            positions=self.positions_a[index],
            cell=self.cells_a[index],
            pbc=self.pbc,
        )


@dataclass
class MDResult:
    """What an MD run returns, for any engine.

    Attributes:
        engine: engine name.
        protocol: the protocol that was run.
        trajectory: recorded frames (every `sample_interval` steps after warm-up).
        thermo: per recorded frame: "time_ps", "temperature_k", "potential_energy_ev",
            "kinetic_energy_ev" (arrays of equal length).
        timing: wall-clock timing with warm-up excluded.
        extra: engine-specific outputs already parsed (e.g. GPUMD's msd/rdf tables).
    """

    engine: str
    protocol: MDProtocol
    trajectory: Trajectory
    thermo: dict[str, np.ndarray]
    timing: Timing
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):
    """A code that labels structures and runs MD under an `MDProtocol`."""

    name: str = "engine"

    @abstractmethod
    def single_point(self, atoms: Atoms) -> Labels:
        """Energy, forces and stress of `atoms`."""

    @abstractmethod
    def md(self, atoms: Atoms, protocol: MDProtocol) -> MDResult:
        """Run `protocol` starting from `atoms`; the input is not modified."""

    @abstractmethod
    def version(self) -> str:
        """Version string of the underlying program, recorded in every result."""

    def describe(self) -> dict[str, Any]:
        """Settings recorded beside every number this engine produces."""
        return {"engine": self.name, "version": self.version()}
