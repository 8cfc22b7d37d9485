"""GPUMD v5.6 outputs: parsers of `thermo.out`, `msd.out`, `rdf.out`, `dump_exyz`/`dump_xyz` frames
and the stdout figures (speed, run wall time, version), and the conversions of what they hold
(protocol temperature, ASE stress from the virial).

Pure text functions, testable without a GPU; a malformed file raises `InputError` naming it.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ...errors import InputError
from ..base import Trajectory

_FLOAT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)"
_SPEED_RE = re.compile(rf"Speed of this run\s*=\s*({_FLOAT})\s*atom\*step/second", re.IGNORECASE)
_TIME_RE = re.compile(rf"Time used for this run\s*=\s*({_FLOAT})\s*second", re.IGNORECASE)
_VERSION_RE = re.compile(r"^\s*\*?\s*version\s+(\d+(?:\.\d+)*)\s*\*?\s*$", re.IGNORECASE | re.MULTILINE)

THERMO_COLUMNS = ("T", "K", "U", "Pxx", "Pyy", "Pzz", "Pyz", "Pxz", "Pxy",
                  "ax", "ay", "az", "bx", "by", "bz", "cx", "cy", "cz")


def protocol_temperature_k(gpumd_t_k: np.ndarray, n_atoms: int) -> np.ndarray:
    """thermo.out's T (K, 2 E_kin / 3N k_B) as the protocol counts it, 2 E_kin / ((3N − 3) k_B)."""
    if n_atoms < 2:
        raise ValueError(f"a temperature needs at least 2 atoms, got {n_atoms}")
    return np.asarray(gpumd_t_k, dtype=float) * n_atoms / (n_atoms - 1)


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
