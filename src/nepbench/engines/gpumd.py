"""GPUMD (GPU NEP molecular dynamics), pinned to release v5.6.

`GpumdEngine` turns one `MDProtocol` into a GPUMD run directory (`model.xyz`, `run.in`, `nep.txt`),
runs the `gpumd` executable there (it reads `run.in` from its working directory), and parses what it
writes. Everything that touches text is a pure function so it can be tested without a GPU:

    write_model_xyz, write_run_in, write_single_point_run_in       (inputs)
    parse_thermo, parse_msd, parse_rdf, parse_exyz_frames,
    parse_dump_exyz, parse_speed, parse_run_wall_s, parse_version  (outputs)

Formats were read from GPUMD v5.6's sources (commit 5fad844f…, see docs/gpumd.md for the files):

* Positions in `dump_exyz` (and the `pos` column of `dump_xyz`) are WRAPPED into the box: GPUMD
  applies periodic boundaries to the positions in every force call. Trajectories need unwrapped
  positions, so MD dumps with `dump_xyz -1 0 <interval> dump.xyz unwrapped_position` (exact
  unwrapped coordinates, accumulated from the start of the production run). `parse_dump_exyz` uses
  the `unwrapped_position` column when present and otherwise unwraps by the minimum image between
  consecutive frames (exact only while no atom moves more than half a cell between frames).
* `Time=` in dumped frames is GPUMD's global time in fs, counted from the first `run` (warm-up
  included); we shift it so trajectories start their clock at the end of the warm-up.
* `velocity T seed S` seeds the initial velocities (uniform random, zero momentum, rescaled to T:
  not Maxwell-Boltzmann). The `nvt_bdp` thermostat's noise is seeded from the wall clock unless
  GPUMD was compiled with -DDEBUG, so NVT trajectories are not bit-reproducible run to run.
* `ensemble nvt_bdp T1 T2 T_coup`: T_coup is the coupling time in units of the time step (>= 1).
* GPUMD counts 3N degrees of freedom where the protocol (and CP2K) count the 3N − 3 that carry
  kinetic energy at zero total momentum: `velocity` rescales to 2 E_kin / (3N k_B) (Velocity::scale),
  `nvt_bdp` targets E_kin = 3N k_B T / 2 (Ensemble_BDP, ndeg = 3N) and thermo.out's T divides by
  3N (Ensemble::find_thermo, DIM * N). Left alone, a 32-atom cell would run 3.2 % hotter than the
  same protocol in CP2K. So GPUMD is given T·(N − 1)/N and its T is reported × N/(N − 1)
  (`gpumd_temperature_k`, `protocol_temperature_k`); `nvt_lan` thermalises every atom, the centre
  of mass too, so its target is given as is.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ase import Atoms

from ..cell import cell_thicknesses_a
from ..errors import EngineCrashed, EngineError, EngineNotAvailable, InputError
from ..models import read_nep_header
from ..provenance import gpu_models
from ..structures import check_structure
from .base import (Engine, Labels, MDProtocol, MDResult, Timing, Trajectory, md_frame_instability,
                   unstable_temperature_limit_k)

#: GPUMD release this engine was written against (FACTS.md).
PINNED_VERSION = "5.6"
PINNED_COMMIT = "5fad844f2940b3c5d5f8414ad9dbebad8d65740a"

#: Thermostats GPUMD offers for MDProtocol(ensemble="nvt"); nvt_bdp is CSVR (Bussi-Donadio-Parrinello).
Thermostat = Literal["nvt_bdp", "nvt_lan"]
DumpKeyword = Literal["dump_xyz", "dump_exyz"]

#: GPUMD v5.6 `compute_rdf` limits: bins in (20, 500], cutoff <= (volume / face area) / 2.5.
RDF_MIN_BINS, RDF_MAX_BINS = 21, 500
RDF_THICKNESS_FACTOR = 2.5

_FLOAT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)"
_SPEED_RE = re.compile(rf"Speed of this run\s*=\s*({_FLOAT})\s*atom\*step/second", re.IGNORECASE)
_TIME_RE = re.compile(rf"Time used for this run\s*=\s*({_FLOAT})\s*second", re.IGNORECASE)
_VERSION_RE = re.compile(r"^\s*\*?\s*version\s+(\d+(?:\.\d+)*)\s*\*?\s*$", re.IGNORECASE | re.MULTILINE)

THERMO_COLUMNS = ("T", "K", "U", "Pxx", "Pyy", "Pzz", "Pyz", "Pxz", "Pxy",
                  "ax", "ay", "az", "bx", "by", "bz", "cx", "cy", "cz")


# --------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------

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


def protocol_temperature_k(gpumd_t_k: np.ndarray, n_atoms: int) -> np.ndarray:
    """thermo.out's T (K, 2 E_kin / 3N k_B) as the protocol counts it, 2 E_kin / ((3N − 3) k_B)."""
    if n_atoms < 2:
        raise ValueError(f"a temperature needs at least 2 atoms, got {n_atoms}")
    return np.asarray(gpumd_t_k, dtype=float) * n_atoms / (n_atoms - 1)


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


# --------------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------------

def _data_rows(text: str, source: str, ncols: int | None = None) -> np.ndarray:
    """Numeric rows of a GPUMD table, skipping blank and `#` lines."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            values = [float(x) for x in stripped.split()]
        except ValueError as exc:
            raise InputError(source, f"line {lineno}: non-numeric value ({exc})") from None
        if ncols is not None and len(values) != ncols:
            raise InputError(source, f"line {lineno}: {len(values)} columns, expected {ncols}")
        rows.append(values)
    if not rows:
        raise InputError(source, "no data rows")
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise InputError(source, "rows have different numbers of columns")
    return np.asarray(rows, dtype=float)


def parse_thermo(text: str, source: str = "thermo.out") -> dict[str, np.ndarray]:
    """Parse GPUMD v5.6 `thermo.out` (18 columns; `#` header lines skipped).

    Returns per row: "temperature_k", "kinetic_energy_ev", "potential_energy_ev",
    "pressure_gpa" (n, 6) in Voigt order xx yy zz yz xz xy (GPUMD's pressure: positive =
    compressive, kinetic part included), and "cell_a" (n, 3, 3) with rows a, b, c in Å.
    """
    data = _data_rows(text, source, ncols=len(THERMO_COLUMNS))
    return {
        "temperature_k": data[:, 0],
        "kinetic_energy_ev": data[:, 1],
        "potential_energy_ev": data[:, 2],
        "pressure_gpa": data[:, 3:9],
        "cell_a": data[:, 9:18].reshape(-1, 3, 3),
    }


def _last_block(text: str, marker: str) -> str:
    """The part of an appended GPUMD file from the last line starting with `marker`."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.lstrip().startswith(marker)]
    return "\n".join(lines[starts[-1]:]) if starts else text


def parse_msd(text: str, source: str = "msd.out") -> dict[str, np.ndarray]:
    """Parse GPUMD v5.6 `msd.out` (whole-system form: time_ps msdx msdy msdz sdcx sdcy sdcz).

    Returns "time_ps" (n,), "msd_a2" (n, 3) in Å², "sdc_a2_per_ps" (n, 3) in Å²/ps.
    The file is appended per run; the last `# compute_msd` block is returned.
    """
    data = _data_rows(_last_block(text, "# compute_msd"), source)
    if data.shape[1] != 7:
        raise InputError(source, f"{data.shape[1]} columns; only the 7-column whole-system form is supported")
    return {"time_ps": data[:, 0], "msd_a2": data[:, 1:4], "sdc_a2_per_ps": data[:, 4:7]}


def parse_rdf(text: str, source: str = "rdf.out") -> dict[str, Any]:
    """Parse GPUMD v5.6 `rdf.out`: `#radius total A-A A-B ...` then one row per bin.

    Returns "r_a" (bin centres in Å), "total" g(r) and "pairs" {"A-B": g_AB(r)} in header order.
    The file is appended per run; the last block is returned.
    """
    block = _last_block(text, "#radius")
    header = block.splitlines()[0].lstrip("#").split() if block.strip().startswith("#") else []
    if len(header) < 2 or header[0] != "radius" or header[1] != "total":
        raise InputError(source, "missing '#radius total ...' header line")
    data = _data_rows(block, source, ncols=len(header))
    return {
        "r_a": data[:, 0],
        "total": data[:, 1],
        "pairs": {name: data[:, k] for k, name in enumerate(header[2:], start=2)},
    }


_KV_RE = re.compile(r'(\w+)\s*=\s*("([^"]*)"|\S+)')


def _parse_comment(line: str) -> dict[str, str]:
    return {m.group(1).lower(): (m.group(3) if m.group(3) is not None else m.group(2))
            for m in _KV_RE.finditer(line)}


def _properties(spec: str, source: str) -> list[tuple[str, str, int]]:
    parts = spec.split(":")
    if len(parts) % 3:
        raise InputError(source, f"malformed Properties={spec!r}")
    return [(parts[i], parts[i + 1], int(parts[i + 2])) for i in range(0, len(parts), 3)]


def parse_exyz_frames(text: str, source: str = "dump.xyz") -> list[dict[str, Any]]:
    """Frames of a GPUMD `dump_exyz`/`dump_xyz` file.

    Each frame: "n_atoms", "time_fs" (GPUMD's global time), "pbc" (3 bools), "cell_a" (3, 3),
    "energy_ev" (total potential energy) and "virial_ev" (3, 3, potential part only) when present,
    "pressure_ev_per_a3" (3, 3; GPUMD's `stress=`, i.e. the pressure tensor with kinetic part,
    positive = compressive), "symbols" (tuple) and "arrays" {property name: (n_atoms, k) floats},
    e.g. "pos", "forces", "vel", "unwrapped_position".
    """
    lines = text.splitlines()
    frames: list[dict[str, Any]] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].strip())
        except ValueError:
            raise InputError(source, f"line {i + 1}: expected an atom count, got {lines[i][:40]!r}") from None
        if i + 2 + n > len(lines):
            raise InputError(source, f"frame {len(frames)} truncated: {n} atoms announced at line {i + 1}")
        info = _parse_comment(lines[i + 1])
        if "lattice" not in info or "properties" not in info:
            raise InputError(source, f"line {i + 2}: missing Lattice= or Properties=")
        props = _properties(info["properties"], source)
        table = [lines[j].split() for j in range(i + 2, i + 2 + n)]
        width = sum(k for _, _, k in props)
        if any(len(row) != width for row in table):
            raise InputError(source, f"frame {len(frames)}: rows do not have {width} columns")
        frame: dict[str, Any] = {
            "n_atoms": n,
            "time_fs": float(info["time"]) if "time" in info else None,
            "pbc": tuple(tok.upper().startswith("T") for tok in info.get("pbc", "T T T").split()),
            "cell_a": np.asarray(info["lattice"].split(), dtype=float).reshape(3, 3),
            "energy_ev": float(info["energy"]) if "energy" in info else None,
            "virial_ev": np.asarray(info["virial"].split(), dtype=float).reshape(3, 3) if "virial" in info else None,
            "pressure_ev_per_a3": (np.asarray(info["stress"].split(), dtype=float).reshape(3, 3)
                                   if "stress" in info else None),
            "arrays": {},
        }
        col = 0
        for name, kind, k in props:
            if kind.upper() == "S":
                if name == "species":
                    frame["symbols"] = tuple(row[col] for row in table)
            else:
                try:
                    values = np.asarray([row[col:col + k] for row in table], dtype=float)
                except ValueError:
                    raise InputError(source, f"frame {len(frames)}: non-numeric '{name}' values") from None
                frame["arrays"][name] = values
            col += k
        if "symbols" not in frame or "pos" not in frame["arrays"]:
            raise InputError(source, f"frame {len(frames)}: no species or pos column")
        frames.append(frame)
        i += 2 + n
    return frames


def unwrap_minimum_image(positions_a: np.ndarray, cells_a: np.ndarray) -> np.ndarray:
    """Unwrap wrapped positions (n_frames, n_atoms, 3) by the minimum image between frames, in Å.

    The first frame is kept as is; each later frame adds the minimum-image displacement from the
    previous one, in fractional coordinates of the later frame's cell. Exact while no atom moves
    more than half a cell width between consecutive frames.
    """
    pos = np.asarray(positions_a, dtype=float)
    cells = np.asarray(cells_a, dtype=float)
    if pos.ndim != 3 or cells.shape != (pos.shape[0], 3, 3):
        raise ValueError(f"shapes {pos.shape} and {cells.shape} do not match")
    out = np.empty_like(pos)
    if len(pos) == 0:
        return out
    out[0] = pos[0]
    for f in range(1, len(pos)):
        inv = np.linalg.inv(cells[f])
        dfrac = (pos[f] - pos[f - 1]) @ inv
        dfrac -= np.round(dfrac)
        out[f] = out[f - 1] + dfrac @ cells[f]
    return out


def parse_dump_exyz(text: str, time_offset_ps: float = 0.0, source: str = "dump.xyz") -> Trajectory:
    """Trajectory from a GPUMD dump with unwrapped positions in Å.

    Uses the `unwrapped_position` column (written by `dump_xyz ... unwrapped_position`) when
    present, otherwise unwraps the wrapped `pos` column with `unwrap_minimum_image`.
    `times_ps` = GPUMD's `Time=` (fs) / 1000 - `time_offset_ps` (pass the warm-up length).
    """
    frames = parse_exyz_frames(text, source)
    if not frames:
        raise InputError(source, "no frames")
    symbols = frames[0]["symbols"]
    if any(f["symbols"] != symbols for f in frames):
        raise InputError(source, "species change between frames")
    cells = np.stack([f["cell_a"] for f in frames])
    if all("unwrapped_position" in f["arrays"] for f in frames):
        positions = np.stack([f["arrays"]["unwrapped_position"] for f in frames])
    else:
        positions = unwrap_minimum_image(np.stack([f["arrays"]["pos"] for f in frames]), cells)
    if any(f["time_fs"] is None for f in frames):
        raise InputError(source, "a frame has no Time= field")
    times_ps = np.array([f["time_fs"] for f in frames]) / 1000.0 - time_offset_ps
    return Trajectory(symbols=tuple(symbols), times_ps=times_ps, positions_a=positions,
                      cells_a=cells, pbc=tuple(frames[0]["pbc"]))


def parse_speed(stdout: str) -> list[float]:
    """GPUMD's `Speed of this run = X atom*step/second.` figures, one per `run`, in order."""
    return [float(m.group(1)) for m in _SPEED_RE.finditer(stdout)]


def parse_run_wall_s(stdout: str) -> list[float]:
    """GPUMD's `Time used for this run = X second.` figures (time-step loop only), one per `run`."""
    return [float(m.group(1)) for m in _TIME_RE.finditer(stdout)]


def parse_version(stdout: str) -> str | None:
    """Version from GPUMD's welcome banner (`*   version 5.6   *`), or None."""
    m = _VERSION_RE.search(stdout)
    return m.group(1) if m else None


def stress_from_virial(virial_ev: np.ndarray, volume_a3: float) -> np.ndarray:
    """ASE Voigt stress (xx yy zz yz xz xy) in eV/Å³ from GPUMD's total virial (3, 3) in eV.

    GPUMD's virial enters its pressure with a plus sign (compressive positive); ASE's stress is
    tensile positive, so stress = -virial / volume.
    """
    w = np.asarray(virial_ev, dtype=float)
    if w.shape != (3, 3) or volume_a3 <= 0:
        raise ValueError("virial must be (3, 3) and volume > 0")
    s = -w / volume_a3
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


# --------------------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------------------

def _tail(text: str, n: int = 8) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])


class GpumdEngine(Engine):
    """GPUMD v5.6 on an NVIDIA GPU, driving a NEP model.

    Args:
        model_path: NEP model file (nep.txt format).
        gpumd_binary: name on PATH or path of the `gpumd` executable.
        workdir: where run directories are kept (one fresh sub-folder per call); None = temporary
            folders removed after parsing.
        thermostat: GPUMD ensemble for NVT protocols ("nvt_bdp" = CSVR, as MDProtocol specifies).
        rdf_cutoff_a, rdf_bins: requested `compute_rdf` settings (cutoff reduced to what the cell allows).
        timeout_s: wall-clock limit of one gpumd process in s (None = none).
        record_frames: False for timing runs: the production run writes `dump_thermo` only (no
            trajectory, `compute_msd` or `compute_rdf`, which GPUMD times inside its run loop),
            and `md` returns a trajectory without frames.
    """

    name = "gpumd"

    def __init__(
        self,
        model_path: str | Path,
        gpumd_binary: str = "gpumd",
        workdir: str | Path | None = None,
        thermostat: Thermostat = "nvt_bdp",
        rdf_cutoff_a: float = 6.0,
        rdf_bins: int = 200,
        timeout_s: float | None = None,
        record_frames: bool = True,
    ) -> None:
        self.model_path = Path(model_path)
        self.gpumd_binary = gpumd_binary
        self.workdir = Path(workdir) if workdir is not None else None
        self.thermostat = thermostat
        self.rdf_cutoff_a = rdf_cutoff_a
        self.rdf_bins = rdf_bins
        self.timeout_s = timeout_s
        self.record_frames = record_frames
        self._version: str | None = None

    # -- availability and version --------------------------------------------------------------

    def _binary_path(self) -> str | None:
        return shutil.which(self.gpumd_binary)

    def available(self) -> tuple[bool, str]:
        """(True, description) when the gpumd binary is found and nvidia-smi lists a GPU."""
        binary = self._binary_path()
        if binary is None:
            return False, f"no '{self.gpumd_binary}' executable on PATH"
        gpus = gpu_models()
        if not gpus:
            return False, "nvidia-smi is missing or lists no NVIDIA GPU"
        return True, f"{binary} on {gpus[0]}"

    def _require_available(self) -> str:
        ok, reason = self.available()
        if not ok:
            raise EngineNotAvailable(f"gpumd not found / no NVIDIA GPU: {reason}")
        binary = self._binary_path()
        assert binary is not None
        return binary

    def version(self) -> str:
        """`GPUMD <version>` from the binary's banner (run in an empty folder; it stops at model.xyz)."""
        if self._version is not None:
            return self._version
        binary = self._binary_path()
        if binary is None:
            raise EngineNotAvailable(f"gpumd not found / no NVIDIA GPU: no '{self.gpumd_binary}' on PATH")
        with tempfile.TemporaryDirectory(prefix="nepbench-gpumd-version-") as tmp:
            try:
                proc = subprocess.run([binary], cwd=tmp, capture_output=True, text=True, timeout=120)
                out = proc.stdout
            except subprocess.TimeoutExpired as exc:
                out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        found = parse_version(out)
        self._version = f"GPUMD {found}" if found else f"GPUMD unknown (banner not found; pinned {PINNED_VERSION})"
        return self._version

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "version": self.version(), "pinned_commit": PINNED_COMMIT,
                "thermostat": self.thermostat, "binary": self._binary_path(),
                "model": str(self.model_path)}

    # -- running ------------------------------------------------------------------------------

    def _model_species(self) -> tuple[str, ...]:
        """Species of the NEP model (ModelError naming the file when it is missing or malformed)."""
        return read_nep_header(self.model_path)[1]

    def _run_dir(self, kind: str) -> tuple[Path, tempfile.TemporaryDirectory | None]:
        if self.workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix=f"nepbench-gpumd-{kind}-")
            return Path(tmp.name), tmp
        self.workdir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.workdir)), None

    def _execute(self, binary: str, run_dir: Path, expected_runs: int) -> tuple[str, float]:
        start = time.perf_counter()
        try:
            proc = subprocess.run([binary], cwd=run_dir, capture_output=True, text=True,
                                  timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise EngineCrashed(f"gpumd in {run_dir} exceeded {self.timeout_s} s") from None
        wall_s = time.perf_counter() - start
        (run_dir / "gpumd.log").write_text(proc.stdout + ("\n# stderr\n" + proc.stderr if proc.stderr else ""))
        if proc.returncode != 0:
            raise EngineCrashed(
                f"gpumd exited with code {proc.returncode} in {run_dir}: "
                f"{_tail(proc.stderr or proc.stdout)}"
            )
        n_runs = len(parse_speed(proc.stdout))
        if n_runs != expected_runs:
            raise EngineCrashed(f"gpumd in {run_dir} finished {n_runs} of {expected_runs} runs: "
                                f"{_tail(proc.stdout)}")
        return proc.stdout, wall_s

    def _prepare(self, atoms: Atoms, run_dir: Path, run_in: str,
                 velocities_a_per_fs: np.ndarray | None) -> None:
        (run_dir / "model.xyz").write_text(write_model_xyz(atoms, velocities_a_per_fs))
        (run_dir / "run.in").write_text(run_in)
        shutil.copyfile(self.model_path, run_dir / "nep.txt")

    def md(self, atoms: Atoms, protocol: MDProtocol) -> MDResult:
        """Run `protocol` on `atoms` with GPUMD (warm-up first, excluded from timing and frames)."""
        binary = self._require_available()
        check_structure(atoms, "input structure", allowed_species=self._model_species())
        try:  # GPUMD's g(r) divides by the box volume: meaningless for a particle in vacuum
            cutoff = rdf_cutoff_a(atoms.cell.array, self.rdf_cutoff_a) if all(atoms.pbc) else None
        except ValueError as exc:
            raise InputError("input structure", str(exc)) from None
        record = self.record_frames
        run_in = write_run_in(protocol, n_atoms=len(atoms), thermostat=self.thermostat,
                              rdf_cutoff=cutoff if record else None,
                              rdf_bins=self.rdf_bins, msd=record, dump_keyword="dump_xyz" if record else None)
        zero_v = np.zeros((len(atoms), 3)) if protocol.temperature_k <= 0 else None
        run_dir, tmp = self._run_dir("md")
        try:
            self._prepare(atoms, run_dir, run_in, zero_v)
            expected = 2 if protocol.warmup_steps > 0 else 1
            stdout, total_wall_s = self._execute(binary, run_dir, expected)
            return self._collect_md(atoms, protocol, run_dir, run_in, stdout, total_wall_s)
        finally:
            if tmp is not None:
                tmp.cleanup()

    def _read(self, run_dir: Path, name: str) -> str:
        path = run_dir / name
        if not path.is_file():
            raise EngineCrashed(f"gpumd finished but wrote no {path}")
        return path.read_text()

    def _collect_md(self, atoms: Atoms, protocol: MDProtocol, run_dir: Path, run_in: str,
                    stdout: str, total_wall_s: float) -> MDResult:
        warmup_ps = protocol.warmup_steps * protocol.timestep_fs / 1000.0
        try:
            thermo = parse_thermo(self._read(run_dir, "thermo.out"), str(run_dir / "thermo.out"))
            pbc = tuple(bool(p) for p in atoms.pbc)  # the input's, not gpumd_pbc's
            if self.record_frames:
                traj = parse_dump_exyz(self._read(run_dir, "dump.xyz"), warmup_ps, str(run_dir / "dump.xyz"))
                traj = dataclasses.replace(traj, pbc=pbc)
            else:
                n = len(atoms)
                traj = Trajectory(tuple(atoms.get_chemical_symbols()), np.zeros(0), np.zeros((0, n, 3)),
                                  np.zeros((0, 3, 3)), pbc)
            extra: dict[str, Any] = {}
            if (run_dir / "msd.out").is_file():
                extra["msd"] = parse_msd((run_dir / "msd.out").read_text(), str(run_dir / "msd.out"))
            if (run_dir / "rdf.out").is_file():
                extra["rdf"] = parse_rdf((run_dir / "rdf.out").read_text(), str(run_dir / "rdf.out"))
        except InputError as exc:
            raise EngineCrashed(f"unreadable gpumd output: {exc}") from None
        n_expected = protocol.steps // protocol.sample_interval
        n_rows = len(thermo["temperature_k"])
        if n_rows != n_expected or (self.record_frames and traj.n_frames != n_expected):
            raise EngineCrashed(f"gpumd in {run_dir} wrote {n_rows} thermo rows and {traj.n_frames} "
                                f"frames, expected {n_expected}")
        speeds = parse_speed(stdout)
        run_wall = parse_run_wall_s(stdout)
        if len(run_wall) != len(speeds) or not run_wall or run_wall[-1] <= 0:
            raise EngineCrashed(f"gpumd in {run_dir}: no usable 'Time used for this run' line")
        times_ps = (np.arange(1, n_rows + 1) * protocol.sample_interval * protocol.timestep_fs) / 1000.0
        temperature_k = thermo["temperature_k"]  # nvt_lan's COM is thermal too: 3N is its count
        if protocol.ensemble == "nve" or self.thermostat == "nvt_bdp":
            temperature_k = protocol_temperature_k(temperature_k, len(atoms))
        self._check_stable(run_dir, protocol, temperature_k, thermo, traj)
        reported = parse_version(stdout)
        extra.update({
            "run_in": run_in,
            "gpumd_version_reported": reported,
            "speeds_atom_steps_per_s": speeds,
            "run_wall_s": run_wall,
            "thermo_pressure_gpa": thermo["pressure_gpa"],
            "thermo_cell_a": thermo["cell_a"],
            "thermostat": self.thermostat if protocol.ensemble == "nvt" else "nve",
            "note": "velocity seed fixes initial velocities only; nvt_bdp noise is clock-seeded "
                    "unless GPUMD was built with -DDEBUG",
        })
        if reported is not None and reported != PINNED_VERSION:
            extra["version_warning"] = f"gpumd reports {reported}, nepbench pins {PINNED_VERSION}"
        if self.workdir is not None:
            extra["run_dir"] = str(run_dir)
        timing = Timing(
            n_atoms=len(atoms),
            timed_steps=protocol.steps,
            timed_wall_s=run_wall[-1],
            warmup_steps=protocol.warmup_steps,
            total_wall_s=total_wall_s,
            engine_reported_atom_steps_per_s=speeds[-1],
        )
        return MDResult(
            engine=self.name,
            protocol=protocol,
            trajectory=traj,
            thermo={
                "time_ps": times_ps,
                "temperature_k": temperature_k,
                "potential_energy_ev": thermo["potential_energy_ev"],
                "kinetic_energy_ev": thermo["kinetic_energy_ev"],
            },
            timing=timing,
            extra=extra,
        )

    @staticmethod
    def _check_stable(run_dir: Path, protocol: MDProtocol, temperature_k: np.ndarray,
                      thermo: dict[str, np.ndarray], traj: Trajectory) -> None:
        """EngineError at the first thermo row (and frame, where recorded) of a blown-up run
        (`md_frame_instability`), as the CPU engine raises: such a run is no trajectory to score."""
        limit_k = unstable_temperature_limit_k(protocol.temperature_k)
        for i, t_k in enumerate(temperature_k):
            positions_finite = i >= traj.n_frames or bool(np.all(np.isfinite(traj.positions_a[i])))
            problem = md_frame_instability(float(t_k), float(thermo["potential_energy_ev"][i]),
                                           float(thermo["kinetic_energy_ev"][i]), positions_finite, limit_k)
            if problem:
                step = protocol.warmup_steps + (i + 1) * protocol.sample_interval
                raise EngineError(f"gpumd in {run_dir}: MD unstable at step {step}: {problem}")

    def single_point(self, atoms: Atoms) -> Labels:
        """Energy, forces and (for fully periodic cells) stress of `atoms` from one GPUMD evaluation.

        One NVE step with zero velocities and `time_step 0` (positions stay put), `dump_exyz 1 0 1`.
        Stress = -virial / volume (ASE sign); None unless all three directions are periodic.
        """
        binary = self._require_available()
        check_structure(atoms, "input structure", allowed_species=self._model_species())
        run_dir, tmp = self._run_dir("sp")
        start = time.perf_counter()
        try:
            self._prepare(atoms, run_dir, write_single_point_run_in(), np.zeros((len(atoms), 3)))
            self._execute(binary, run_dir, expected_runs=1)
            try:
                frames = parse_exyz_frames(self._read(run_dir, "dump.xyz"), str(run_dir / "dump.xyz"))
            except InputError as exc:
                raise EngineCrashed(f"unreadable gpumd output: {exc}") from None
        finally:
            if tmp is not None:
                tmp.cleanup()
        wall_s = time.perf_counter() - start
        if len(frames) != 1 or "forces" not in frames[0]["arrays"] or frames[0]["energy_ev"] is None:
            raise EngineCrashed(f"gpumd single point wrote {len(frames)} frames without forces/energy")
        frame = frames[0]
        if frame["n_atoms"] != len(atoms):
            raise EngineError(f"gpumd returned {frame['n_atoms']} atoms for a {len(atoms)}-atom input")
        stress = None
        if all(atoms.pbc) and frame["virial_ev"] is not None:
            stress = stress_from_virial(frame["virial_ev"], abs(atoms.cell.volume))
        return Labels(energy_ev=float(frame["energy_ev"]), forces_ev_per_a=frame["arrays"]["forces"],
                      stress_ev_per_a3=stress, wall_s=wall_s)


__all__ = [
    "GpumdEngine", "PERIODIC_VACUUM_A", "PINNED_COMMIT", "PINNED_VERSION", "THERMO_COLUMNS", "cell_thicknesses_a",
    "gpumd_pbc", "vacuum_gaps_a",
    "coupling_steps", "msd_correlation_steps", "parse_dump_exyz", "parse_exyz_frames",
    "parse_msd", "parse_rdf", "parse_run_wall_s", "parse_speed", "parse_thermo", "parse_version",
    "gpumd_temperature_k", "protocol_temperature_k", "rdf_cutoff_a", "stress_from_virial",
    "unwrap_minimum_image", "write_model_xyz", "write_run_in",
    "write_single_point_run_in",
]
