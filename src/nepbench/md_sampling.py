"""Candidate pools from NEP MD: the structures MD at the study's conditions visits.

A family of the v2 reference spec names a builder (`nepbench.systems`) and an `MDSampling`
protocol. Each of its `runs` MD runs (an *origin*) starts from the builder's structure with its own
seed and goes through:

1. positions relaxed with the sampler model (FIRE, `relax_fmax_ev_per_a`);
2. melt–quench where `melt_k` is set: NVT at `melt_k` for `melt_ps`, then `quench_ps` of NVT at
   stepwise lower temperatures down to the run's temperature;
3. the cell relaxed with the sampler model (`cell_relax`: FIRE on ASE's FrechetCellFilter), so the
   density is the model's own at 0 K (recorded per origin as density_g_cm3);
4. a homogeneous strain (`strain`, cycled over runs) and/or `vacuum_a` of vacuum along z (a free
   surface slab), applied to the relaxed structure;
5. NVT (CSVR) at the run's temperature: `equil_ps` discarded, then `sample_ps` with a snapshot
   every `snapshot_fs` (≥ 50 fs, so snapshots are not near-copies).

A run that blows up (NaN, temperature far above target, atoms closer than `MIN_DISTANCE_A`) or
whose mean production temperature is off its target by more than `MAX_T_DEVIATION` is reported by
origin and contributes no candidate (`OriginFailure`). Snapshots carry `origin` (family key and
run), `run`, `temperature_k` and `time_ps` in `info`; positions are wrapped into the cell.

Units: K, ps, fs, Å, eV/Å.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from ase import Atoms

from .engines.base import MDProtocol
from .errors import ConfigError, EngineError, InputError

MIN_DISTANCE_A = 0.7
"""Closest pair distance (Å) below which a snapshot counts as a collapsed (blown-up) structure."""
MAX_T_DEVIATION = 0.5
"""Largest relative deviation of the mean production temperature from the target."""
MIN_SNAPSHOT_FS = 50.0
"""Smallest spacing between snapshots (fs)."""


@dataclass(frozen=True)
class MDSampling:
    """How one family's candidates come from NEP MD (see the module docstring for the stages).

    Attributes:
        runs: MD runs (origins), each from its own builder seed.
        temperature_k: sampling temperatures, cycled over runs (K).
        sample_ps: production length sampled per run (ps).
        snapshot_fs: time between snapshots (fs, ≥ 50).
        equil_ps: NVT at the run's temperature discarded before sampling (ps).
        timestep_fs: MD time step (fs).
        melt_k: melting temperature for a melt–quench, or None for none (K).
        melt_ps: time at `melt_k` (ps).
        quench_ps: time of the stepwise quench from `melt_k` to the run's temperature (ps).
        cell_relax: relax the cell with the sampler model before sampling.
        strain: homogeneous isotropic strains applied before sampling, cycled over runs.
        vacuum_a: vacuum added along z before sampling (Å; 0 = bulk).
        relax_fmax_ev_per_a: FIRE force tolerance for the relaxations (eV/Å).
    """

    runs: int
    temperature_k: tuple[float, ...]
    sample_ps: float
    snapshot_fs: float = 100.0
    equil_ps: float = 1.0
    timestep_fs: float = 1.0
    melt_k: float | None = None
    melt_ps: float = 0.0
    quench_ps: float = 0.0
    cell_relax: bool = True
    strain: tuple[float, ...] = (0.0,)
    vacuum_a: float = 0.0
    relax_fmax_ev_per_a: float = 0.05

    KEYS = frozenset({"runs", "temperature_k", "sample_ps", "snapshot_fs", "equil_ps", "timestep_fs", "melt_k",
                      "melt_ps", "quench_ps", "cell_relax", "strain", "vacuum_a", "relax_fmax_ev_per_a"})

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """What is wrong with these values, or None."""
        if self.runs < 1:
            return "runs must be >= 1"
        if not self.temperature_k or any(not (0 < t < 10_000) for t in self.temperature_k):
            return "temperature_k must list temperatures in (0, 10000) K"
        if self.snapshot_fs < MIN_SNAPSHOT_FS:
            return f"snapshot_fs must be >= {MIN_SNAPSHOT_FS:g} fs (snapshots closer are near-copies)"
        if not (0 < self.timestep_fs <= 5) or self.snapshot_fs % self.timestep_fs:
            return "timestep_fs must be in (0, 5] and divide snapshot_fs"
        if self.sample_ps * 1000 < self.snapshot_fs or self.equil_ps < 0:
            return "sample_ps must hold at least one snapshot_fs and equil_ps must be >= 0"
        if self.melt_k is not None and (self.melt_k <= max(self.temperature_k) or self.melt_ps <= 0):
            return "melt_k must exceed every temperature_k and melt_ps must be > 0"
        if any(abs(e) > 0.2 for e in self.strain) or self.vacuum_a < 0:
            return "strain must be within ±0.2 and vacuum_a >= 0"
        return None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str) -> "MDSampling":
        """From a spec's `md` table; ConfigError naming `where` for an unknown key or a bad value."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: md must be a table")
        unknown = sorted(set(raw) - cls.KEYS)
        if unknown:
            raise ConfigError(f"{where}: md has unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(cls.KEYS))})")
        if "runs" not in raw or "temperature_k" not in raw or "sample_ps" not in raw:
            raise ConfigError(f"{where}: md needs runs, temperature_k and sample_ps")
        values = dict(raw)
        try:
            for key in ("temperature_k", "strain"):
                if key in values:
                    values[key] = tuple(float(v) for v in np.atleast_1d(values[key]).tolist())
            for key in ("sample_ps", "snapshot_fs", "equil_ps", "timestep_fs", "melt_ps", "quench_ps", "vacuum_a",
                        "relax_fmax_ev_per_a"):
                if key in values:
                    values[key] = float(values[key])
            if values.get("melt_k") is not None:
                values["melt_k"] = float(values["melt_k"])
            values["runs"] = int(values["runs"])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: md: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the protocol."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def temperature_for(self, run: int) -> float:
        return self.temperature_k[run % len(self.temperature_k)]

    def strain_for(self, run: int) -> float:
        return self.strain[run % len(self.strain)]

    @property
    def snapshots_per_run(self) -> int:
        return int(round(self.sample_ps * 1000 / self.snapshot_fs))


@dataclass(frozen=True)
class OriginFailure:
    """An MD run left out of the pool: its origin and why (one line)."""

    origin: str
    reason: str


def min_pair_distance_a(atoms: Atoms) -> float:
    """Closest distance between two atoms (Å), periodic images included; inf for one atom."""
    if len(atoms) < 2:
        return float("inf")
    distances = atoms.get_all_distances(mic=True)
    np.fill_diagonal(distances, np.inf)
    return float(distances.min())


def temperature_problem(mean_t_k: float, target_k: float, max_deviation: float = MAX_T_DEVIATION) -> str | None:
    """Why a run's mean production temperature is off its target, or None (relative deviation)."""
    if not np.isfinite(mean_t_k) or abs(mean_t_k - target_k) > max_deviation * target_k:
        return f"mean T {mean_t_k:.0f} K is more than {100 * max_deviation:.0f} % off its target {target_k:.0f} K"
    return None


def quench_temperatures(melt_k: float, target_k: float, n_stages: int = 4) -> list[float]:
    """Stage temperatures of a stepwise quench from `melt_k` down to `target_k` (both excluded
    from the list's first entry, included as its last): evenly spaced, descending."""
    return [float(t) for t in np.linspace(melt_k, target_k, n_stages + 1)[1:]]


def _wrapped(atoms: Atoms, positions: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.positions = positions
    out.wrap()
    return out


def _nvt(engine: Any, atoms: Atoms, temperature_k: float, ps: float, timestep_fs: float, seed: int,
         sample_fs: float | None = None, source: str = "") -> tuple[Atoms, list[Atoms], np.ndarray]:
    """NVT for `ps`; (last structure, snapshots every `sample_fs` (none if None), their temperatures)."""
    steps = max(1, int(round(ps * 1000 / timestep_fs)))
    interval = steps if sample_fs is None else max(1, int(round(sample_fs / timestep_fs)))
    protocol = MDProtocol(ensemble="nvt", temperature_k=temperature_k, timestep_fs=timestep_fs, steps=steps,
                          sample_interval=interval, seed=seed % (2**31 - 1), thermostat_coupling_fs=100.0)
    result = engine.md(atoms, protocol, source=source)
    positions = result.trajectory.positions_a
    last = _wrapped(atoms, positions[-1])
    if sample_fs is None:
        return last, [], np.array([])
    snaps = [_wrapped(atoms, p) for p in positions[1:]]  # frame 0 is the start of production
    return last, snaps, np.asarray(result.thermo["temperature_k"])[1:]


def relax(atoms: Atoms, calculator: Any, fmax_ev_per_a: float, cell: bool, max_steps: int = 400) -> Atoms:
    """FIRE relaxation of positions (and the cell, through FrechetCellFilter, when `cell`)."""
    import warnings

    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    work = atoms.copy()
    work.calc = calculator
    target = FrechetCellFilter(work) if cell else work
    with warnings.catch_warnings():  # scipy's logm accuracy note (~1e-12) on every cell step
        warnings.simplefilter("ignore", RuntimeWarning)
        FIRE(target, logfile=None).run(fmax=fmax_ev_per_a, steps=max_steps)
    out = work.copy()
    out.calc = None
    out.wrap()
    return out


def sample_origin(built: Atoms, sampling: MDSampling, engine: Any, run: int, seed: int, origin: str) -> list[Atoms]:
    """Snapshots of one MD run from the builder's structure `built` (see the module docstring).

    Raises:
        EngineError naming `origin`: the run blew up, collapsed or missed its temperature.
    """
    from .systems.amorphous import density_g_cm3

    t_k = sampling.temperature_for(run)
    dt = sampling.timestep_fs
    calc = engine.calculator()
    atoms = relax(built, calc, sampling.relax_fmax_ev_per_a, cell=False)
    if sampling.melt_k is not None:
        atoms, _, _ = _nvt(engine, atoms, sampling.melt_k, sampling.melt_ps, dt, seed + 1, source=origin)
        stages = quench_temperatures(sampling.melt_k, t_k)
        for i, stage_t in enumerate(stages):
            atoms, _, _ = _nvt(engine, atoms, stage_t, sampling.quench_ps / len(stages), dt, seed + 2 + i, source=origin)
    if sampling.cell_relax:
        atoms = relax(atoms, calc, sampling.relax_fmax_ev_per_a, cell=True)
    eps = sampling.strain_for(run)
    if eps:
        atoms.set_cell(atoms.cell.array * (1 + eps), scale_atoms=True)
    density = density_g_cm3(atoms)
    if sampling.vacuum_a > 0:
        atoms.center(vacuum=sampling.vacuum_a / 2, axis=2)
    if sampling.equil_ps > 0:
        atoms, _, _ = _nvt(engine, atoms, t_k, sampling.equil_ps, dt, seed + 10, source=origin)
    _, snaps, temps = _nvt(engine, atoms, t_k, sampling.sample_ps, dt, seed + 11,
                           sample_fs=sampling.snapshot_fs, source=origin)
    problem = temperature_problem(float(np.mean(temps)), t_k)
    if problem:
        raise EngineError(f"{origin}: {problem}")
    for index, snap in enumerate(snaps):
        closest = min_pair_distance_a(snap)
        if closest < MIN_DISTANCE_A:
            raise EngineError(f"{origin}: atoms {closest:.2f} Å apart in snapshot {index} (collapsed)")
        snap.info.update({"origin": origin, "run": run, "temperature_k": t_k, "strain": eps,
                          "time_ps": (index + 1) * sampling.snapshot_fs / 1000.0,
                          "density_g_cm3": round(float(density), 4)})
    return snaps


def family_pool(builds: Sequence[tuple[int, Atoms]], sampling: MDSampling, engine: Any,
                family_key: str) -> tuple[list[Atoms], list[OriginFailure]]:
    """Snapshots of every run of a family: `builds` pairs each run's seed with its built structure.
    A run that fails (`sample_origin` raises EngineError or InputError) is left out and reported."""
    pool: list[Atoms] = []
    failures: list[OriginFailure] = []
    for run, (seed, built) in enumerate(builds):
        origin = f"{family_key}#run{run}"
        try:
            pool.extend(sample_origin(built, sampling, engine, run, seed, origin))
        except (EngineError, InputError) as exc:
            failures.append(OriginFailure(origin, str(exc).splitlines()[0]))
    return pool, failures
