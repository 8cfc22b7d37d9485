"""CP2K output parsing (pure: text in, numbers out): energy, forces, stress, SCF counts, .ener,
XYZ trajectories and force files, abort messages."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import EngineCrashed, SCFNotConverged
from ..base import Labels
from .settings import GPA_EV_PER_A3, HARTREE_EV, HARTREE_PER_BOHR_EV_PER_A, PROJECT

_ENERGY_RE = re.compile(r"ENERGY\| Total FORCE_EVAL \( QS \) energy \[a\.u\.\]:\s+(\S+)")


_SCF_FAILED_RE = re.compile(r"SCF run NOT converged")


_SCF_CONVERGED_RE = re.compile(r"\*\*\* SCF run converged in\s+(\d+) steps? \*\*\*")
_EXTRAPOLATION_RE = re.compile(r"^\s*Extrapolation method:\s*(\S+)", re.M)


_FLOAT = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[EeDd][-+]?\d+)?"


def parse_energy_ev(text: str) -> float:
    """Total energy in eV from the last `ENERGY| Total FORCE_EVAL ( QS ) energy [a.u.]:` line."""
    matches = _ENERGY_RE.findall(text)
    if not matches:
        raise EngineCrashed("cp2k output has no 'ENERGY| Total FORCE_EVAL' line")
    value = float(matches[-1]) * HARTREE_EV
    if not math.isfinite(value):
        raise EngineCrashed(f"cp2k energy is not finite ({matches[-1]})")
    return value


def parse_forces_ev_per_a(text: str, n_atoms: int) -> np.ndarray:
    """(n_atoms, 3) forces in eV/Å from the last `ATOMIC FORCES in [a.u.]` block."""
    start = text.rfind("ATOMIC FORCES in [a.u.]")
    if start < 0:
        raise EngineCrashed("cp2k output has no 'ATOMIC FORCES in [a.u.]' block")
    rows: list[list[float]] = []
    for line in text[start:].splitlines()[1:]:
        if "SUM OF ATOMIC FORCES" in line:
            break
        parts = line.split()
        if len(parts) == 6 and parts[0].isdigit():
            rows.append([float(v) for v in parts[3:6]])
    forces = np.array(rows, dtype=float).reshape(-1, 3) * HARTREE_PER_BOHR_EV_PER_A
    if forces.shape != (n_atoms, 3):
        raise EngineCrashed(f"cp2k force block has {len(forces)} rows, expected {n_atoms}")
    if not np.all(np.isfinite(forces)):
        raise EngineCrashed("cp2k forces are not finite")
    return forces


def parse_stress_ev_per_a3(text: str) -> np.ndarray:
    """Voigt stress (6,) in eV/Å³, ASE sign, from the last `STRESS| Analytical stress tensor [GPa]`.

    CP2K prints a pressure-like tensor (positive = compressed); ASE's stress is its negative.
    """
    start = text.rfind("STRESS| Analytical stress tensor [GPa]")
    if start < 0:
        raise EngineCrashed("cp2k output has no 'STRESS| Analytical stress tensor [GPa]' block")
    rows: dict[str, list[float]] = {}
    for line in text[start:].splitlines()[2:5]:
        match = re.match(rf"\s*STRESS\|\s+([xyz])\s+({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s*$", line)
        if match:
            rows[match.group(1)] = [float(match.group(i)) for i in (2, 3, 4)]
    if sorted(rows) != ["x", "y", "z"]:
        raise EngineCrashed("cp2k stress block is malformed")
    tensor_gpa = np.array([rows["x"], rows["y"], rows["z"]])
    if not np.all(np.isfinite(tensor_gpa)):
        raise EngineCrashed("cp2k stress is not finite")
    ase_tensor = -tensor_gpa * GPA_EV_PER_A3
    return ase_tensor[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def scf_failures(text: str) -> int:
    """How many SCF runs in the output did not converge."""
    return len(_SCF_FAILED_RE.findall(text))


def scf_iterations(text: str) -> list[int]:
    """SCF iterations of each converged SCF run in the output, in order (one per MD force evaluation)."""
    return [int(n) for n in _SCF_CONVERGED_RE.findall(text)]


def extrapolation_used(text: str) -> list[str]:
    """The initial-guess methods CP2K reports for the MD steps after the first, distinct and sorted.

    CP2K prints `Extrapolation method: <name>` before every SCF run: `initial_guess` for the first,
    then what it did for the rest (`ASPC`, `previous_p`, ...). That is what ran, which need not be
    what EXTRAPOLATION asked for: with &KPOINTS, CP2K 2023.1 reports `initial_guess` at every step
    (docs/cp2k_settings.md, "Wavefunction extrapolation with k-points"). Empty when the output has
    one SCF run or none.
    """
    return sorted(set(_EXTRAPOLATION_RE.findall(text)[1:]))


def abort_message(text: str) -> str | None:
    """The message of CP2K's `[ABORT]` box (one line), or None when there is none."""
    index = text.find("[ABORT]")
    if index < 0:
        return None
    first = text[index + len("[ABORT]"):].split("\n", 1)[0].strip().rstrip("*").strip()
    words: list[str] = [first] if first else []  # CP2K often starts the message on the [ABORT] line
    for line in text[index:].splitlines()[1:12]:
        body = line.strip()
        if body.startswith("****"):
            break
        body = body.strip("*").strip()
        body = re.sub(r"^[\\/|_O ]+", "", body).strip()  # the little figure on the left
        if body:
            words.append(body)
    return " ".join(words) or "CP2K aborted"


def parse_version(text: str) -> str:
    """'CP2K version 2023.1' from `cp2k.psmp --version` output."""
    match = re.search(r"CP2K version\s+(\S+)", text)
    if not match:
        raise EngineCrashed("could not read the CP2K version from 'cp2k --version'")
    return f"CP2K version {match.group(1)}"


ENER_COLUMNS = ("step", "time_fs", "kinetic_ha", "temperature_k", "potential_ha", "conserved_ha", "used_time_s")


def parse_ener(text: str) -> dict[str, np.ndarray]:
    """Columns of a CP2K `.ener` file (units: fs, Hartree, K, s), keyed by `ENER_COLUMNS`."""
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        try:
            if len(parts) < 7:
                raise ValueError("fewer than 7 columns")
            rows.append([float(v) for v in parts[:7]])
        except ValueError:
            raise EngineCrashed(f"malformed cp2k .ener line: {line.strip()[:80]}") from None
    table = np.array(rows, dtype=float).reshape(-1, 7)
    out = {name: table[:, i] for i, name in enumerate(ENER_COLUMNS)}
    out["step"] = out["step"].astype(int)
    return out


@dataclass(frozen=True)
class XYZFrame:
    """One frame of a CP2K XYZ trajectory: step, time in fs, symbols, positions in Å."""

    step: int
    time_fs: float
    symbols: tuple[str, ...]
    positions_a: np.ndarray


def parse_xyz_trajectory(text: str) -> list[XYZFrame]:
    """Frames of a CP2K `-pos-1.xyz` file (comment line `i = N, time = T, E = E`)."""
    lines = text.splitlines()
    frames: list[XYZFrame] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        n = int(lines[i].split()[0])
        comment = lines[i + 1]
        step_m = re.search(r"i =\s*(\d+)", comment)
        time_m = re.search(rf"time =\s*({_FLOAT})", comment)
        if not step_m or not time_m or i + 2 + n > len(lines):
            raise EngineCrashed(f"malformed cp2k trajectory frame header: {comment.strip()[:80]}")
        body = [ln.split() for ln in lines[i + 2 : i + 2 + n]]
        frames.append(
            XYZFrame(
                step=int(step_m.group(1)),
                time_fs=float(time_m.group(1)),
                symbols=tuple(p[0] for p in body),
                positions_a=np.array([[float(v) for v in p[1:4]] for p in body]),
            )
        )
        i += 2 + n
    return frames


def labels_from_output(text: str, n_atoms: int, want_stress: bool, wall_s: float = 0.0) -> Labels:
    """Labels from the text of a finished single-point run (raises on any failure marker)."""
    if scf_failures(text):
        raise SCFNotConverged("cp2k SCF not converged")
    stress = parse_stress_ev_per_a3(text) if want_stress else None
    return Labels(
        energy_ev=parse_energy_ev(text),
        forces_ev_per_a=parse_forces_ev_per_a(text, n_atoms),
        stress_ev_per_a3=stress,
        wall_s=wall_s,
    )


def read_md_forces(directory: Path, n_atoms: int) -> dict[int, np.ndarray]:
    """{step: (n_atoms, 3) forces in eV/Å} from a run's `-frc-1.xyz` (empty when CP2K wrote none)."""
    path = directory / f"{PROJECT}-frc-1.xyz"
    if not path.is_file():
        return {}
    out = {}
    for frame in parse_xyz_trajectory(path.read_text()):
        if len(frame.symbols) != n_atoms:
            raise EngineCrashed(f"cp2k force frame {frame.step} has {len(frame.symbols)} atoms")
        out[frame.step] = frame.positions_a * HARTREE_PER_BOHR_EV_PER_A
    return out


def read_md_outputs(directory: Path, n_atoms: int) -> tuple[dict[str, np.ndarray], list[XYZFrame]]:
    """The .ener columns and the position frames (Å) a CP2K MD run wrote in `directory`.

    Raises EngineCrashed when either file is missing, a frame has other than `n_atoms` atoms, or a
    potential energy is not finite."""
    ener_path = directory / f"{PROJECT}-1.ener"
    xyz_path = directory / f"{PROJECT}-pos-1.xyz"
    if not ener_path.is_file() or not xyz_path.is_file():
        raise EngineCrashed(f"cp2k MD wrote no .ener or trajectory file in {directory}")
    ener = parse_ener(ener_path.read_text())
    frames = parse_xyz_trajectory(xyz_path.read_text())
    for frame in frames:
        if len(frame.symbols) != n_atoms:
            raise EngineCrashed(f"cp2k trajectory frame {frame.step} has {len(frame.symbols)} atoms")
    if not np.all(np.isfinite(ener["potential_ha"])):
        raise EngineCrashed("cp2k MD potential energy is not finite")
    return ener, frames


def thermo_rows(ener: dict[str, np.ndarray], steps: np.ndarray) -> dict[str, np.ndarray]:
    """Temperature (K) and potential, kinetic and conserved energies (eV) of the .ener rows at
    `steps`, in that order; EngineCrashed naming the steps the file lacks."""
    index = {int(s): i for i, s in enumerate(ener["step"])}
    missing = [int(s) for s in steps if int(s) not in index]
    if missing:
        raise EngineCrashed(f"cp2k .ener lacks steps {missing[:5]}")
    rows = np.array([index[int(s)] for s in steps], dtype=int)
    return {
        "temperature_k": ener["temperature_k"][rows],
        "potential_energy_ev": ener["potential_ha"][rows] * HARTREE_EV,
        "kinetic_energy_ev": ener["kinetic_ha"][rows] * HARTREE_EV,
        "conserved_energy_ev": ener["conserved_ha"][rows] * HARTREE_EV,
    }
