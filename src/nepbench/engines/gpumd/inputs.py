"""GPUMD inputs: `model.xyz`, `run.in` (MD and single point) and the numbers they are written with.

Pure text functions, testable without a GPU. Temperatures given to GPUMD are converted to its 3N
degree-of-freedom count (`gpumd_temperature_k`; why: the package docstring of `nepbench.engines.gpumd`).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from ase import Atoms

from ...cell import cell_thicknesses_a
from ..base import MDProtocol

#: GPUMD release this engine was written against (FACTS.md).
PINNED_VERSION = "5.6"
PINNED_COMMIT = "5fad844f2940b3c5d5f8414ad9dbebad8d65740a"

#: Thermostats GPUMD offers for MDProtocol(ensemble="nvt"); nvt_bdp is CSVR (Bussi-Donadio-Parrinello).
Thermostat = Literal["nvt_bdp", "nvt_lan"]
DumpKeyword = Literal["dump_xyz", "dump_exyz"]

#: GPUMD v5.6 `compute_rdf` limits: bins in (20, 500], cutoff <= (volume / face area) / 2.5.
RDF_MIN_BINS, RDF_MAX_BINS = 21, 500
RDF_THICKNESS_FACTOR = 2.5


def _num(value: float) -> str:
    """A float as GPUMD's parser reads it (no locale, no trailing garbage)."""
    return f"{float(value):.10g}"


#: A non-periodic direction whose vacuum (cell width minus the atoms' extent) is at least this wide,
#: in Å, is written periodic for GPUMD. Images are then further apart than any NEP cutoff in use
#: (NEP89: 6 Å radial) plus GPUMD's 1 Å neighbour skin, so no force changes; but GPUMD bins
#: only periodic directions and searches a free one whole, so a particle in vacuum written
#: "F F F" costs O(N²) per neighbour-list rebuild (src/force/neighbor.cu at the pinned commit).
PERIODIC_VACUUM_A = 12.0


def vacuum_gaps_a(atoms: Atoms) -> np.ndarray:
    """Per cell direction: the cell's width minus the atoms' extent along it, in Å (the vacuum a
    periodic image would sit behind)."""
    cell = np.asarray(atoms.cell.array, dtype=float)
    frac = np.linalg.solve(cell.T, np.asarray(atoms.positions, dtype=float).T).T
    extent = frac.max(axis=0) - frac.min(axis=0)
    return cell_thicknesses_a(cell) * (1.0 - extent)


def gpumd_pbc(atoms: Atoms, vacuum_a: float = PERIODIC_VACUUM_A) -> tuple[bool, bool, bool]:
    """The pbc written for GPUMD: periodic where `atoms` is, and where a free direction has at
    least `vacuum_a` Å of vacuum (see PERIODIC_VACUUM_A)."""
    gaps = vacuum_gaps_a(atoms)
    return tuple(bool(p) or bool(g >= vacuum_a) for p, g in zip(atoms.pbc, gaps))  # type: ignore[return-value]


def write_model_xyz(atoms: Atoms, velocities_a_per_fs: np.ndarray | None = None) -> str:
    """GPUMD `model.xyz` text for `atoms`: species, positions (Å), masses (amu, from ASE).

    Masses are written explicitly so GPUMD integrates with the same masses as the other engines.
    `velocities_a_per_fs` (n_atoms, 3) in Å/fs adds a `vel` column; GPUMD then ignores the
    `velocity` keyword and starts from these velocities. pbc is `gpumd_pbc(atoms)`: a free
    direction with a wide vacuum is written periodic (same forces, no O(N²) neighbour search).
    GPUMD refuses fewer than 2 atoms.
    """
    n = len(atoms)
    if n < 2:
        raise ValueError(f"GPUMD needs at least 2 atoms, got {n}")
    cell = np.asarray(atoms.cell.array, dtype=float)
    if abs(np.linalg.det(cell)) < 1e-9:
        raise ValueError("GPUMD needs a cell with non-zero volume (lattice is mandatory in model.xyz)")
    positions = np.asarray(atoms.positions, dtype=float)
    masses = atoms.get_masses()
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(cell))):
        raise ValueError("non-finite positions or cell")
    pbc = " ".join("T" if p else "F" for p in gpumd_pbc(atoms))
    lattice = " ".join(_num(x) for x in cell.reshape(-1))
    props = "species:S:1:pos:R:3:mass:R:1"
    vel = None
    if velocities_a_per_fs is not None:
        vel = np.asarray(velocities_a_per_fs, dtype=float)
        if vel.shape != (n, 3) or not np.all(np.isfinite(vel)):
            raise ValueError(f"velocities must be a finite ({n}, 3) array, got {vel.shape}")
        props += ":vel:R:3"
    lines = [str(n), f'pbc="{pbc}" Lattice="{lattice}" Properties={props}']
    symbols = atoms.get_chemical_symbols()
    for i in range(n):
        x, y, z = positions[i]
        row = f"{symbols[i]} {x:.10f} {y:.10f} {z:.10f} {masses[i]:.8f}"
        if vel is not None:
            row += f" {vel[i, 0]:.10e} {vel[i, 1]:.10e} {vel[i, 2]:.10e}"
        lines.append(row)
    return "\n".join(lines) + "\n"


def coupling_steps(protocol: MDProtocol) -> float:
    """GPUMD's T_coup for `protocol`: thermostat time constant in units of the time step (>= 1)."""
    steps = protocol.thermostat_coupling_fs / protocol.timestep_fs
    if steps < 1.0:
        raise ValueError(
            f"GPUMD needs thermostat_coupling_fs >= timestep_fs (T_coup >= 1), got "
            f"{protocol.thermostat_coupling_fs} fs / {protocol.timestep_fs} fs"
        )
    return steps


def msd_correlation_steps(protocol: MDProtocol) -> int | None:
    """`Nc` for `compute_msd`: half of the recorded samples (GPUMD needs Nc <= steps/interval).

    Returns None when fewer than 2 correlation steps fit (then no `compute_msd` is written).
    """
    nc = protocol.steps // protocol.sample_interval // 2
    return nc if nc >= 2 else None


def rdf_cutoff_a(cell_a: np.ndarray, requested_a: float = 6.0) -> float | None:
    """Largest RDF cutoff <= `requested_a` that GPUMD v5.6 accepts for this cell, in Å.

    GPUMD stops with an input error when the cutoff exceeds (thickness / 2.5) in any direction.
    Returns None when the allowed cutoff is below 1 Å (no useful RDF; skip `compute_rdf`).
    """
    limit = float(cell_thicknesses_a(cell_a).min()) / RDF_THICKNESS_FACTOR
    cutoff = min(float(requested_a), 0.999 * limit)
    return cutoff if cutoff >= 1.0 else None


def gpumd_temperature_k(temperature_k: float, n_atoms: int) -> float:
    """The temperature (K) to give GPUMD's `velocity` and `nvt_bdp` so that the 3N − 3 degrees of
    freedom left at zero total momentum sit at `temperature_k`: GPUMD divides by 3N, so T·(N − 1)/N."""
    if n_atoms < 2:
        raise ValueError(f"a temperature needs at least 2 atoms, got {n_atoms}")
    return temperature_k * (n_atoms - 1) / n_atoms


def _velocity_lines(protocol: MDProtocol, n_atoms: int) -> list[str]:
    if not 0 <= protocol.seed < 2**31:
        raise ValueError(f"GPUMD's velocity seed must be in [0, 2**31), got {protocol.seed}")
    if protocol.temperature_k <= 0:
        return ["# T = 0 K: zero velocities are given in model.xyz"]
    return [f"velocity {_num(gpumd_temperature_k(protocol.temperature_k, n_atoms))} seed {protocol.seed}"]


def _ensemble_line(protocol: MDProtocol, thermostat: Thermostat, n_atoms: int) -> str:
    if protocol.ensemble == "nve":
        return "ensemble nve"
    if thermostat not in ("nvt_bdp", "nvt_lan"):
        raise ValueError(f"thermostat must be 'nvt_bdp' or 'nvt_lan', got {thermostat!r}")
    if protocol.temperature_k <= 0:
        raise ValueError("GPUMD's NVT ensembles need temperature_k > 0")
    target = protocol.temperature_k
    if thermostat == "nvt_bdp":
        target = gpumd_temperature_k(target, n_atoms)
    t = _num(target)
    return f"ensemble {thermostat} {t} {t} {_num(coupling_steps(protocol))}"


def write_run_in(
    protocol: MDProtocol,
    *,
    n_atoms: int,
    potential_file: str = "nep.txt",
    thermostat: Thermostat = "nvt_bdp",
    rdf_cutoff: float | None = 6.0,
    rdf_bins: int = 200,
    msd: bool = True,
    dump_keyword: DumpKeyword | None = "dump_xyz",
) -> str:
    """GPUMD `run.in` text for `protocol`.

    Layout: potential, initial velocities (seeded), time step; then an optional warm-up `run`
    with the same ensemble and no outputs; then the production `run` with `dump_thermo`, a
    trajectory dump, `compute_msd` and `compute_rdf`, all every `sample_interval` steps.
    GPUMD wants one `ensemble` per `run`, and dump/compute keywords apply to the next `run` only.

    Args:
        protocol: the run to describe.
        n_atoms: atoms in the cell; GPUMD's temperatures are converted to its 3N count with it
            (`gpumd_temperature_k`).
        potential_file: NEP model file name relative to the run directory (no spaces).
        thermostat: GPUMD ensemble used for protocol.ensemble == "nvt".
        rdf_cutoff: RDF cutoff in Å (None: no `compute_rdf`); see `rdf_cutoff_a`.
        rdf_bins: number of RDF bins, GPUMD accepts 21..500.
        msd: write `compute_msd` when enough samples fit (`msd_correlation_steps`).
        dump_keyword: "dump_xyz" (with exact unwrapped positions), "dump_exyz" (wrapped only) or
            None (no trajectory: a timing run, since GPUMD times its dumps inside the run loop).
    """
    if any(c.isspace() for c in potential_file) or not potential_file:
        raise ValueError(f"potential_file must be a non-empty name without spaces: {potential_file!r}")
    if n_atoms < 2:
        raise ValueError(f"GPUMD MD needs at least 2 atoms, got n_atoms={n_atoms}")
    if not RDF_MIN_BINS <= rdf_bins <= RDF_MAX_BINS:
        raise ValueError(f"rdf_bins must be in [{RDF_MIN_BINS}, {RDF_MAX_BINS}] for GPUMD, got {rdf_bins}")
    if rdf_cutoff is not None and not (rdf_cutoff > 0 and math.isfinite(rdf_cutoff)):
        raise ValueError(f"rdf_cutoff must be > 0 Å, got {rdf_cutoff}")
    if dump_keyword not in ("dump_xyz", "dump_exyz", None):
        raise ValueError(f"dump_keyword must be 'dump_xyz', 'dump_exyz' or None, got {dump_keyword!r}")
    every = protocol.sample_interval
    ensemble = _ensemble_line(protocol, thermostat, n_atoms)
    lines = [
        f"# written by nepbench for GPUMD {PINNED_VERSION}: {protocol.ensemble} "
        f"{_num(protocol.temperature_k)} K, dt {_num(protocol.timestep_fs)} fs, "
        f"{protocol.warmup_steps} warm-up + {protocol.steps} steps",
        f"# {n_atoms} atoms: GPUMD counts 3N degrees of freedom, the protocol 3N - 3, hence the "
        f"temperatures below x {n_atoms - 1}/{n_atoms}",
        f"potential {potential_file}",
        *_velocity_lines(protocol, n_atoms),
        f"time_step {_num(protocol.timestep_fs)}",
    ]
    if protocol.warmup_steps > 0:
        lines += ["", "# warm-up: excluded from timing, thermo and trajectory", ensemble,
                  f"run {protocol.warmup_steps}"]
    lines += ["", "# production", ensemble, f"dump_thermo {every}"]
    if dump_keyword == "dump_xyz":
        lines.append(f"dump_xyz -1 0 {every} dump.xyz unwrapped_position")
    elif dump_keyword == "dump_exyz":
        lines.append(f"dump_exyz {every} 0 0")
    nc = msd_correlation_steps(protocol) if msd else None
    if nc is not None:
        lines.append(f"compute_msd {every} {nc}")
    if rdf_cutoff is not None:
        lines.append(f"compute_rdf {rdf_cutoff:.4f} {rdf_bins} {every}")
    lines.append(f"run {protocol.steps}")
    return "\n".join(lines) + "\n"


def write_single_point_run_in(potential_file: str = "nep.txt") -> str:
    """`run.in` for one energy/force/virial evaluation at the input positions.

    One NVE step with `time_step 0` starting from zero velocities (given in model.xyz) leaves every
    atom where it is; `dump_exyz 1 0 1` then writes energy, virial and forces of the input structure.
    """
    return (
        "# nepbench single point: zero velocities (model.xyz) and a zero time step keep positions fixed\n"
        f"potential {potential_file}\n"
        "time_step 0\n"
        "ensemble nve\n"
        "dump_exyz 1 0 1\n"
        "run 1\n"
    )
