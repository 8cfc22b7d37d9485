"""CP2K (Quickstep, GPW) as a nepbench engine: DFT single points and ab initio MD.

CP2K runs as a subprocess (`mpirun -np RANKS cp2k.psmp -i in.inp -o out.out`) in a temporary
folder (or a kept `workdir`). Coordinates and cell go into the input itself (&COORD, &CELL A/B/C);
basis and pseudopotential files are looked up by name in CP2K's data directory (Debian:
/usr/share/cp2k, package `cp2k-data`).

Units returned follow `nepbench.engines.base`: energy eV, forces eV/Å, stress eV/Å³ (Voigt xx, yy,
zz, yz, xz, xy; ASE sign, positive = tensile). CP2K prints energy in Hartree, forces in
Hartree/Bohr and the stress tensor in GPa with the opposite sign (positive = compressive, i.e. a
pressure tensor); conversions use `ase.units`.

A failed run never yields a number: a missing program raises `EngineNotAvailable`, an SCF that
did not converge raises `SCFNotConverged` (even though CP2K itself carries on), and any other
failure raises `EngineCrashed` with CP2K's own abort message.

Resumable AIMD: `CP2KEngine.run_md_segment(run_dir, atoms, protocol, n_steps)` continues from the
restart file a previous segment left in `run_dir` (or starts fresh) and commits the new frames,
energies and restart file atomically; `read_md_run(run_dir)` reads what is there.
"""

from __future__ import annotations

import dataclasses
import io
import json
import lzma
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from ase import Atoms
from ase import units as ase_units
from ase.io import read as ase_read
from ase.io import write as ase_write

from ..errors import EngineCrashed, EngineNotAvailable, InputError, SCFNotConverged
from ..provenance import atomic_write_bytes, atomic_write_json, atomic_write_text
from .base import MAX_MD_SEED, Engine, Labels, MDProtocol, MDResult, Timing, Trajectory

HARTREE_EV: float = ase_units.Hartree
"""1 Hartree in eV."""
BOHR_A: float = ase_units.Bohr
"""1 Bohr in Å."""
HARTREE_PER_BOHR_EV_PER_A: float = ase_units.Hartree / ase_units.Bohr
"""1 Hartree/Bohr in eV/Å."""
GPA_EV_PER_A3: float = ase_units.GPa
"""1 GPa in eV/Å³."""

INSTALL_HINT = "install Debian's cp2k: apt-get install cp2k"
PROJECT = "nb"
"""CP2K project name used for every run (output files are named after it)."""

_DEFAULT_POTENTIALS: tuple[tuple[str, str], ...] = (
    ("Li", "GTH-PBE-q3"),
    ("Si", "GTH-PBE-q4"),
    ("C", "GTH-PBE-q4"),
    ("H", "GTH-PBE-q1"),
)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CP2KSettings:
    """Every DFT choice that shapes a CP2K number; written into the input and every result.

    Attributes:
        xc: exchange-correlation functional (&XC_FUNCTIONAL name).
        basis_set: Gaussian basis set name, same family for every element.
        potentials: (element, GTH pseudopotential name) pairs; valence charge read from "-qN".
        basis_file: basis set file name (CP2K data directory).
        potential_file: pseudopotential file name (CP2K data directory).
        cutoff_ry: plane-wave cutoff of the finest grid in Ry.
        rel_cutoff_ry: relative cutoff in Ry (which grid a Gaussian is mapped onto).
        eps_scf: SCF convergence threshold (CP2K's EPS_SCF, on the density matrix change).
        max_scf: maximum SCF iterations; exceeding it raises `SCFNotConverged`.
        electronic_temperature_k: Fermi-Dirac smearing temperature in K.
        added_mos: unoccupied orbitals added for smearing; None = max(20, 20% of occupied).
        mixing_alpha: density mixing parameter (ALPHA).
        nbroyden: mixing history length (NBROYDEN for Broyden, NBUFFER for Pulay; Kerker has none).
        eps_default: CP2K's EPS_DEFAULT (integral/screening tolerance).
        stress: compute the analytical stress tensor in single points (periodic cells only).
        extrapolation: wavefunction extrapolation between MD steps (CP2K EXTRAPOLATION).
        extrapolation_order: order of the extrapolation (ASPC order 3).
        outer_scf_max: OUTER_SCF iterations; 0 switches the outer SCF off.
        ranks: MPI ranks used by default.
        omp_threads: OpenMP threads per rank (OMP_NUM_THREADS).
        ngrids: number of multigrid levels (&MGRID NGRIDS); None = CP2K's default (4), not written.
        eps_pgf_orb: &QS EPS_PGF_ORB (Gaussian overlap screening); None = CP2K's default, derived
            from EPS_DEFAULT (its square root), not written.
        diag_library: &GLOBAL PREFERRED_DIAG_LIBRARY ("SL" ScaLAPACK, "ELPA"); None = CP2K's default.
        mixing_method: &MIXING METHOD ("BROYDEN_MIXING", "PULAY_MIXING", "KERKER_MIXING").

    The four optional levers (`OPTIONAL_LEVERS`) are left out of `to_dict` while they hold their
    default, so records written before they existed still compare equal.
    """

    xc: str = "PBE"
    basis_set: str = "DZVP-MOLOPT-SR-GTH"
    potentials: tuple[tuple[str, str], ...] = _DEFAULT_POTENTIALS
    basis_file: str = "BASIS_MOLOPT"
    potential_file: str = "GTH_POTENTIALS"
    cutoff_ry: float = 400.0
    rel_cutoff_ry: float = 50.0
    eps_scf: float = 1e-6
    max_scf: int = 80
    electronic_temperature_k: float = 500.0
    added_mos: int | None = None
    mixing_alpha: float = 0.3
    nbroyden: int = 8
    eps_default: float = 1e-12
    stress: bool = True
    extrapolation: str = "ASPC"
    extrapolation_order: int = 3
    outer_scf_max: int = 0
    ranks: int = 2
    omp_threads: int = 1
    ngrids: int | None = None
    eps_pgf_orb: float | None = None
    diag_library: str | None = None
    mixing_method: str = "BROYDEN_MIXING"

    def __post_init__(self) -> None:
        # accept a mapping or pairs; store sorted pairs so equal settings compare and hash equal
        pairs = self.potentials.items() if isinstance(self.potentials, dict) else self.potentials
        object.__setattr__(self, "potentials", tuple(sorted(tuple(p) for p in pairs)))
        if self.cutoff_ry <= 0 or self.rel_cutoff_ry <= 0:
            raise ValueError("cutoff_ry and rel_cutoff_ry must be > 0")
        if not (0 < self.eps_scf < 1) or not (0 < self.eps_default < 1):
            raise ValueError("eps_scf and eps_default must be in (0, 1)")
        if self.max_scf < 1 or self.ranks < 1 or self.omp_threads < 1:
            raise ValueError("max_scf, ranks and omp_threads must be >= 1")
        if self.electronic_temperature_k < 0:
            raise ValueError("electronic_temperature_k must be >= 0")
        if self.added_mos is not None and self.added_mos < 0:
            raise ValueError("added_mos must be >= 0 or None")
        if not (0 < self.mixing_alpha <= 1) or self.nbroyden < 1:
            raise ValueError("mixing_alpha must be in (0, 1] and nbroyden >= 1")
        for element, name in self.potentials:
            _valence_from_potential(element, name)
        if self.ngrids is not None and not 1 <= self.ngrids <= 10:
            raise ValueError("ngrids must be in [1, 10] or None")
        if self.eps_pgf_orb is not None and not 0 < self.eps_pgf_orb < 1:
            raise ValueError("eps_pgf_orb must be in (0, 1) or None")
        if self.diag_library not in (None, "SL", "ELPA"):
            raise ValueError(f"diag_library must be 'SL', 'ELPA' or None, got {self.diag_library!r}")
        if self.mixing_method not in MIXING_METHODS:
            raise ValueError(f"mixing_method must be one of {', '.join(MIXING_METHODS)}, got {self.mixing_method!r}")

    def potential_for(self, element: str) -> str:
        """GTH potential name for `element`; InputError when none is configured."""
        for el, name in self.potentials:
            if el == element:
                return name
        known = ", ".join(el for el, _ in self.potentials)
        raise InputError("<structure>", f"element {element} has no CP2K potential (have {known})")

    def valence_electrons(self, symbols: Sequence[str]) -> int:
        """Number of valence electrons of the structure with these potentials."""
        return sum(_valence_from_potential(s, self.potential_for(s)) for s in symbols)

    def added_mos_for(self, symbols: Sequence[str]) -> int:
        """ADDED_MOS for a structure: the setting, or max(20, ceil(20% of occupied orbitals))."""
        if self.added_mos is not None:
            return self.added_mos
        occupied = math.ceil(self.valence_electrons(symbols) / 2)
        return max(20, math.ceil(0.2 * occupied))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of every setting (potentials as an element -> name mapping)."""
        data = dataclasses.asdict(self)
        data["potentials"] = dict(self.potentials)
        for key, default in OPTIONAL_LEVERS.items():
            if data[key] == default:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CP2KSettings":
        return cls(**data)


#: Settings written to records only when they differ from these defaults (added after records existed).
OPTIONAL_LEVERS: dict[str, Any] = {"ngrids": None, "eps_pgf_orb": None, "diag_library": None,
                                   "mixing_method": "BROYDEN_MIXING"}
#: CP2K &MIXING methods the engine may write.
MIXING_METHODS = ("BROYDEN_MIXING", "PULAY_MIXING", "KERKER_MIXING")


def _valence_from_potential(element: str, name: str) -> int:
    match = re.search(r"-q(\d+)$", name)
    if not match:
        raise ValueError(f"potential {name!r} for {element} has no '-qN' valence suffix")
    return int(match.group(1))


LABEL_SETTINGS = CP2KSettings(
    cutoff_ry=400.0,
    rel_cutoff_ry=50.0,
    eps_scf=1e-6,
    max_scf=80,
    electronic_temperature_k=500.0,
    mixing_alpha=0.3,
    nbroyden=8,
    eps_default=1e-12,
    stress=True,
)
"""Single-point labels. 400 Ry: RMS force error 0.75 meV/Å vs 600 Ry on Li8Si16C8 (docs/cp2k_settings.md)."""

AIMD_V1_SETTINGS = CP2KSettings(
    cutoff_ry=400.0,
    rel_cutoff_ry=50.0,
    eps_scf=1e-5,
    max_scf=60,
    electronic_temperature_k=500.0,
    mixing_alpha=0.4,
    nbroyden=8,
    eps_default=1e-10,
    stress=False,
)
"""Ab initio MD: the labels' level of theory (400/50 Ry, 500 K smearing), looser SCF and EPS_DEFAULT,
no stress, ASPC order-3 extrapolation. A cheaper 250 Ry / 1000 K variant was 80–310 meV/Å RMS off
the labels' forces (scripts/aimd_settings_study.py, docs/cp2k_settings.md)."""

AIMD_SETTINGS = AIMD_V1_SETTINGS

#: The settings presets a reference spec (spec.toml `cp2k_preset`, aimd.toml `settings`) may name.
SETTINGS_PRESETS = {"label": LABEL_SETTINGS, "aimd": AIMD_SETTINGS, "aimd-v1": AIMD_V1_SETTINGS}


# --------------------------------------------------------------------------------------------
# Input writing (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MDInput:
    """The MD part of a CP2K input.

    Attributes:
        ensemble: "nvt" (CSVR thermostat) or "nve".
        steps: CP2K's STEPS: how many steps to run. CP2K counts them from STEP_START_VAL, which a
            restart with RESTART_COUNTERS sets to the restart's step, so a restarted run ends at
            restart step + steps (measured with CP2K 2023.1), not at `steps`.
        timestep_fs: time step in fs.
        temperature_k: initial velocity / thermostat temperature in K.
        thermostat_coupling_fs: CSVR time constant in fs.
        seed: CP2K &GLOBAL SEED (the initial velocities) and, for a fresh NVT run, the CSVR
            thermostat's noise stream, written as an explicit `&CSVR &RNG_INIT` record
            (`csvr_rng_record`): CP2K 2023.1 otherwise starts every CSVR stream from its default
            seed 12345 whatever SEED says (csvr_system_types.F), so every run would draw the same
            noise. A restart continues its stream (RESTART_RANDOMG and the thermostat restart).
        restart_file: CP2K restart file to continue from (EXT_RESTART), or None.
    """

    ensemble: Literal["nvt", "nve"]
    steps: int
    timestep_fs: float
    temperature_k: float
    thermostat_coupling_fs: float
    seed: int
    restart_file: str | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.seed, (int, np.integer)) and 0 <= self.seed < MAX_MD_SEED):
            raise ValueError(f"seed must be an integer in [0, {MAX_MD_SEED}), got {self.seed!r} "
                             "(CP2K's SEED is seed + 1, a positive 32-bit integer)")


#: MRG32k3a's moduli: a stream's first three seeds lie in [0, M1), the last three in [0, M2), and
#: neither triple may be all zero (CP2K's parallel_rng_types checks the same).
MRG32K3A_M1, MRG32K3A_M2 = 4294967087, 4294944443


def csvr_rng_seeds(seed: int) -> tuple[int, ...]:
    """Six MRG32k3a seeds for the CSVR thermostat's noise, drawn from `seed` (numpy PCG64, with a
    constant that keeps them apart from other uses of the same seed), each in [1, M1) or [1, M2)."""
    rng = np.random.default_rng([int(seed) % 2**63, 0x43535652])  # 0x43535652: "CSVR"
    return (tuple(int(v) for v in rng.integers(1, MRG32K3A_M1, 3))
            + tuple(int(v) for v in rng.integers(1, MRG32K3A_M2, 3)))


def csvr_rng_record(seed: int) -> str:
    """CP2K's `&CSVR &RNG_INIT` record of a fresh Gaussian stream seeded by `csvr_rng_seeds(seed)`:
    the layout CP2K 2023.1 writes into its restart files (name A40, distribution I2, three flags L2,
    buffer ES25.16, then the current, substream-start and initial states as 18 × F20.1), so a
    restart shows the same record with the state advanced."""
    states = csvr_rng_seeds(seed) * 3  # current = substream start = initial state
    return (f"{'Wiener process for Thermostat # 1':<40}{1:2d} F F F{0.0:25.16E}"
            + "".join(f"{float(v):20.1f}" for v in states))


def _periodic_keyword(atoms: Atoms) -> str:
    pbc = tuple(bool(p) for p in atoms.pbc)
    if all(pbc):
        return "XYZ"
    if not any(pbc):
        return "NONE"
    raise InputError("<structure>", f"CP2K engine needs pbc all True or all False, got {pbc}")


def _check_atoms(atoms: Atoms, settings: CP2KSettings) -> None:
    if len(atoms) == 0:
        raise InputError("<structure>", "structure has no atoms")
    if not np.all(np.isfinite(atoms.positions)):
        raise InputError("<structure>", "non-finite (NaN/inf) coordinates")
    if abs(atoms.cell.volume) < 1e-6 or not np.all(np.isfinite(atoms.cell.array)):
        raise InputError("<structure>", "CP2K needs a finite cell with non-zero volume")
    for element in sorted(set(atoms.get_chemical_symbols())):
        settings.potential_for(element)


def build_input(
    atoms: Atoms,
    settings: CP2KSettings,
    *,
    md: MDInput | None = None,
    wfn_restart_file: str | None = None,
    project: str = PROJECT,
) -> str:
    """CP2K input text for a single point (md=None) or an MD run of `atoms`.

    Positions and cell vectors are written in Å; the settings are also written as a comment
    line so the input file alone says how it was made.
    """
    _check_atoms(atoms, settings)
    periodic = _periodic_keyword(atoms)
    symbols = atoms.get_chemical_symbols()
    want_stress = md is None and settings.stress and periodic == "XYZ"
    lines: list[str] = [
        "# nepbench CP2KSettings " + json.dumps(settings.to_dict(), sort_keys=True),
        "&GLOBAL",
        f"  PROJECT {project}",
        f"  RUN_TYPE {'MD' if md else 'ENERGY_FORCE'}",
        "  PRINT_LEVEL LOW",
    ]
    if settings.diag_library is not None:
        lines.append(f"  PREFERRED_DIAG_LIBRARY {settings.diag_library}")
    if md is not None:
        lines.append(f"  SEED {int(md.seed) + 1}")  # CP2K wants a positive 32-bit seed (MDProtocol checks)
    lines.append("&END GLOBAL")
    if md is not None:
        lines += _motion_section(md)
    lines += [
        "&FORCE_EVAL",
        "  METHOD QS",
    ]
    if want_stress:
        lines.append("  STRESS_TENSOR ANALYTICAL")
    lines += _dft_section(settings, symbols, periodic, wfn_restart_file)
    lines += _subsys_section(atoms, settings, periodic)
    if md is None:
        lines += ["  &PRINT", "    &FORCES ON", "    &END FORCES"]
        if want_stress:
            lines += ["    &STRESS_TENSOR ON", "    &END STRESS_TENSOR"]
        lines.append("  &END PRINT")
    lines.append("&END FORCE_EVAL")
    return "\n".join(lines) + "\n"


def _motion_section(md: MDInput) -> list[str]:
    lines = []
    if md.restart_file is not None:
        lines += [
            "&EXT_RESTART",
            f"  RESTART_FILE_NAME {md.restart_file}",
            "  RESTART_DEFAULT F",
            "  RESTART_POS T",
            "  RESTART_VEL T",
            "  RESTART_COUNTERS T",
            "  RESTART_THERMOSTAT T",
            "  RESTART_RANDOMG T",
            "&END EXT_RESTART",
        ]
    lines += [
        "&MOTION",
        "  &MD",
        f"    ENSEMBLE {md.ensemble.upper()}",
        f"    STEPS {int(md.steps)}",
        f"    TIMESTEP {md.timestep_fs!r}",
        f"    TEMPERATURE {md.temperature_k!r}",
    ]
    if md.ensemble == "nvt":
        lines += [
            "    &THERMOSTAT",
            "      TYPE CSVR",
            "      &CSVR",
            f"        TIMECON {md.thermostat_coupling_fs!r}",
        ]
        if md.restart_file is None:  # a restart carries its stream on (RESTART_THERMOSTAT)
            lines += ["        &RNG_INIT", csvr_rng_record(md.seed), "        &END RNG_INIT"]
        lines += [
            "      &END CSVR",
            "    &END THERMOSTAT",
        ]
    lines += [
        "  &END MD",
        "  &PRINT",
        "    &TRAJECTORY",
        "      FORMAT XYZ",
        "      &EACH",
        "        MD 1",
        "      &END EACH",
        "    &END TRAJECTORY",
        "    &VELOCITIES OFF",
        "    &END VELOCITIES",
        "    &RESTART",
        "      BACKUP_COPIES 0",
        "      &EACH",
        "        MD 1",
        "      &END EACH",
        "    &END RESTART",
        "    &RESTART_HISTORY OFF",
        "    &END RESTART_HISTORY",
        "  &END PRINT",
        "&END MOTION",
    ]
    return lines


def _dft_section(
    settings: CP2KSettings, symbols: Sequence[str], periodic: str, wfn_restart_file: str | None
) -> list[str]:
    lines = [
        "  &DFT",
        f"    BASIS_SET_FILE_NAME {settings.basis_file}",
        f"    POTENTIAL_FILE_NAME {settings.potential_file}",
    ]
    if wfn_restart_file is not None:
        lines.append(f"    WFN_RESTART_FILE_NAME {wfn_restart_file}")
    lines += [
        "    &MGRID",
        f"      CUTOFF {settings.cutoff_ry!r}",
        f"      REL_CUTOFF {settings.rel_cutoff_ry!r}",
    ]
    if settings.ngrids is not None:
        lines.append(f"      NGRIDS {settings.ngrids}")
    lines += [
        "    &END MGRID",
        "    &QS",
        f"      EPS_DEFAULT {settings.eps_default:.3E}",
    ]
    if settings.eps_pgf_orb is not None:
        lines.append(f"      EPS_PGF_ORB {settings.eps_pgf_orb:.3E}")
    lines += [
        f"      EXTRAPOLATION {settings.extrapolation}",
        f"      EXTRAPOLATION_ORDER {settings.extrapolation_order}",
        "    &END QS",
    ]
    if periodic == "NONE":
        lines += ["    &POISSON", "      PERIODIC NONE", "      POISSON_SOLVER MT", "    &END POISSON"]
    lines += [
        "    &SCF",
        f"      SCF_GUESS {'RESTART' if wfn_restart_file else 'ATOMIC'}",
        f"      EPS_SCF {settings.eps_scf:.3E}",
        f"      MAX_SCF {settings.max_scf}",
        f"      ADDED_MOS {settings.added_mos_for(symbols)}",
        "      &SMEAR ON",
        "        METHOD FERMI_DIRAC",
        f"        ELECTRONIC_TEMPERATURE {settings.electronic_temperature_k!r}",
        "      &END SMEAR",
        "      &MIXING",
        f"        METHOD {settings.mixing_method}",
        f"        ALPHA {settings.mixing_alpha!r}",
    ]
    history = {"BROYDEN_MIXING": "NBROYDEN", "PULAY_MIXING": "NBUFFER"}.get(settings.mixing_method)
    if history is not None:  # Kerker mixing keeps no history
        lines.append(f"        {history} {settings.nbroyden}")
    lines += [
        "      &END MIXING",
    ]
    if settings.outer_scf_max > 0:
        lines += [
            "      &OUTER_SCF ON",
            f"        MAX_SCF {settings.outer_scf_max}",
            f"        EPS_SCF {settings.eps_scf:.3E}",
            "      &END OUTER_SCF",
        ]
    lines += [
        "    &END SCF",
        "    &XC",
        f"      &XC_FUNCTIONAL {settings.xc}",
        "      &END XC_FUNCTIONAL",
        "    &END XC",
        "  &END DFT",
    ]
    return lines


def _subsys_section(atoms: Atoms, settings: CP2KSettings, periodic: str) -> list[str]:
    cell = atoms.cell.array
    lines = ["  &SUBSYS", "    &CELL"]
    for name, vec in zip("ABC", cell):
        lines.append(f"      {name} {vec[0]:.10f} {vec[1]:.10f} {vec[2]:.10f}")
    lines += [f"      PERIODIC {periodic}", "    &END CELL", "    &COORD"]
    for symbol, pos in zip(atoms.get_chemical_symbols(), atoms.positions):
        lines.append(f"      {symbol} {pos[0]:.10f} {pos[1]:.10f} {pos[2]:.10f}")
    lines.append("    &END COORD")
    for element in sorted(set(atoms.get_chemical_symbols())):
        lines += [
            f"    &KIND {element}",
            f"      BASIS_SET {settings.basis_set}",
            f"      POTENTIAL {settings.potential_for(element)}",
            "    &END KIND",
        ]
    lines.append("  &END SUBSYS")
    return lines


# --------------------------------------------------------------------------------------------
# Output parsing (pure: text in, numbers out)
# --------------------------------------------------------------------------------------------

_ENERGY_RE = re.compile(r"ENERGY\| Total FORCE_EVAL \( QS \) energy \[a\.u\.\]:\s+(\S+)")
_SCF_FAILED_RE = re.compile(r"SCF run NOT converged")
_SCF_CONVERGED_RE = re.compile(r"\*\*\* SCF run converged in\s+(\d+) steps? \*\*\*")
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


# --------------------------------------------------------------------------------------------
# Running the program
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOutput:
    """What one CP2K subprocess left behind: its folder, output text and wall time in s."""

    directory: Path
    text: str
    wall_s: float


@lru_cache(maxsize=8)
def _version_of(binary_path: str) -> str:
    try:
        out = subprocess.run(
            [binary_path, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineCrashed(f"'{binary_path} --version' failed: {exc}") from None
    return parse_version(out.stdout + out.stderr)


def _tail(path: Path, n_lines: int = 5) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n_lines:])


class CP2KEngine(Engine):
    """CP2K (GPW DFT) single points and AIMD through a subprocess.

    Args:
        settings: DFT settings (`LABEL_SETTINGS` for labels, `AIMD_SETTINGS` for MD).
        workdir: folder to keep every run in (one numbered subfolder per run) for inspection;
            None runs in temporary folders that are deleted afterwards.
        ranks: MPI ranks; None uses `settings.ranks`. 1 runs cp2k without mpirun.
        cp2k_binary: CP2K executable name or path.
        timeout_s: wall-clock limit per CP2K run in s (None = no limit).
        launcher: MPI launcher other than mpirun, e.g. "srun" on Slurm; it is run as
            `<launcher> -n <ranks> cp2k.psmp ...` (split on spaces, so "srun --mpi=pmix" works).
    """

    name = "cp2k"

    def __init__(
        self,
        settings: CP2KSettings = LABEL_SETTINGS,
        workdir: str | os.PathLike[str] | None = None,
        ranks: int | None = None,
        cp2k_binary: str = "cp2k.psmp",
        timeout_s: float | None = None,
        launcher: str | None = None,
    ) -> None:
        self.settings = settings
        self.launcher = launcher.split() if launcher else None
        self.workdir = Path(workdir) if workdir is not None else None
        self.ranks = int(ranks if ranks is not None else settings.ranks)
        if self.ranks < 1:
            raise ValueError("ranks must be >= 1")
        self.cp2k_binary = cp2k_binary
        self.timeout_s = timeout_s

    # ---- availability and provenance ---------------------------------------------------

    def _binary_path(self) -> str:
        path = shutil.which(self.cp2k_binary)
        if path is None:
            raise EngineNotAvailable(f"{self.cp2k_binary} not found; {INSTALL_HINT}")
        return path

    def _mpirun_path(self) -> str | None:
        if self.ranks == 1 or self.launcher:
            return None
        path = shutil.which("mpirun")
        if path is None:
            raise EngineNotAvailable(f"mpirun not found (needed for {self.ranks} ranks); {INSTALL_HINT}")
        return path

    def available(self) -> bool:
        """True when the CP2K binary (and mpirun, for several ranks) can be found."""
        try:
            self._binary_path()
            self._mpirun_path()
        except EngineNotAvailable:
            return False
        return True

    def version(self) -> str:
        """E.g. 'CP2K version 2023.1' (from `cp2k.psmp --version`)."""
        return _version_of(self._binary_path())

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "version": self.version(),
            "settings": self.settings.to_dict(),
            "ranks": self.ranks,
            "omp_threads": self.settings.omp_threads,
        }

    # ---- subprocess ----------------------------------------------------------------------

    def _command(self) -> list[str]:
        binary = self._binary_path()
        mpirun = self._mpirun_path()
        cmd = [binary, "-i", "in.inp", "-o", "out.out"]
        if self.launcher:
            if shutil.which(self.launcher[0]) is None:
                raise EngineNotAvailable(f"MPI launcher {self.launcher[0]} not found")
            return self.launcher + ["-n", str(self.ranks)] + cmd
        if mpirun is None:
            return cmd
        prefix = [mpirun]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            prefix.append("--allow-run-as-root")
        # --oversubscribe: inside a Slurm job of one task with many CPUs (--cpus-per-task=16, the
        # array script's), Open MPI counts one slot and refuses -np 16; the rank count is already
        # capped at the cores this process may use (tasks/throughput.usable_cores)
        return prefix + ["--oversubscribe", "--bind-to", "none", "-np", str(self.ranks)] + cmd

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            OMP_NUM_THREADS=str(self.settings.omp_threads),
            OMPI_ALLOW_RUN_AS_ROOT="1",
            OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
            OMPI_MCA_btl_vader_single_copy_mechanism="none",
        )
        return env

    def _new_run_dir(self, kind: str) -> tuple[Path, bool]:
        """A fresh folder for one run and whether it is temporary (to be deleted)."""
        if self.workdir is None:
            return Path(tempfile.mkdtemp(prefix=f"nepbench-cp2k-{kind}-")), True
        self.workdir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.workdir)), False

    def _execute(self, directory: Path, input_text: str) -> RunOutput:
        """Run CP2K on `input_text` in `directory`; raise on any failure, else return its output."""
        command = self._command()
        (directory / "in.inp").write_text(input_text)
        start = time.perf_counter()
        with open(directory / "mpi.log", "wb") as log:
            proc = subprocess.Popen(
                command, cwd=directory, env=self._environment(), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
            try:
                returncode = proc.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise EngineCrashed(f"cp2k exceeded its {self.timeout_s} s time limit in {directory}") from None
            except BaseException:
                _kill_group(proc)
                raise
        wall_s = time.perf_counter() - start
        out_path = directory / "out.out"
        text = out_path.read_text(errors="replace") if out_path.is_file() else ""
        _raise_for_failure(text, returncode, directory)
        return RunOutput(directory=directory, text=text, wall_s=wall_s)

    # ---- single point --------------------------------------------------------------------

    def single_point(self, atoms: Atoms) -> Labels:
        """Energy (eV), forces (eV/Å) and, for periodic cells with `settings.stress`, stress (eV/Å³)."""
        input_text = build_input(atoms, self.settings)
        directory, temporary = self._new_run_dir("sp")
        try:
            run = self._execute(directory, input_text)
            return labels_from_output(run.text, len(atoms), _wants_stress(atoms, self.settings), run.wall_s)
        finally:
            if temporary:
                shutil.rmtree(directory, ignore_errors=True)

    # ---- MD ------------------------------------------------------------------------------

    def md(self, atoms: Atoms, protocol: MDProtocol) -> MDResult:
        """Run `protocol` (NVT CSVR or NVE) from `atoms`; frames every `sample_interval` steps.

        Timing sums CP2K's per-step `UsedTime` over the steps after the warm-up. CP2K books the
        initial SCF from scratch (step 0) into step 1, so step 1 is never timed: with
        `warmup_steps=0` the timed window holds `steps - 1` steps.
        """
        total_steps = protocol.warmup_steps + protocol.steps
        md_input = _md_input(protocol, total_steps)
        input_text = build_input(atoms, self.settings, md=md_input)
        directory, temporary = self._new_run_dir("md")
        try:
            run = self._execute(directory, input_text)
            ener, frames = _read_md_outputs(directory, len(atoms))
        finally:
            if temporary:
                shutil.rmtree(directory, ignore_errors=True)
        if ener["step"].size == 0 or int(ener["step"][-1]) < total_steps:
            raise EngineCrashed(f"cp2k MD stopped before step {total_steps} in {directory}")
        return _md_result(atoms, protocol, ener, frames, run.wall_s, self, run.text)

    # ---- resumable AIMD segments -----------------------------------------------------------

    def run_md_segment(
        self, run_dir: str | os.PathLike[str], atoms: Atoms, protocol: MDProtocol, n_steps: int
    ) -> "SegmentResult":
        """Run `n_steps` more MD steps in `run_dir`, continuing from its restart file if any.

        The first segment starts from `atoms` with seeded velocities; later segments restart
        positions, velocities, thermostat, random-number state and step counter from the
        restart file the previous segment committed (`atoms` then has to match the run's species
        in order and its cell, and `settings` and the protocol's dynamics the run's; InputError
        otherwise). Frames are kept every `protocol.sample_interval` steps (global step count),
        energies every step. New outputs are produced in a temporary subfolder and committed
        to `run_dir` only when the segment succeeded, so a killed segment leaves the earlier
        ones intact. `protocol.steps` and `warmup_steps` are not used here.
        """
        return _run_segment(self, Path(run_dir), atoms, protocol, int(n_steps))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _raise_for_failure(text: str, returncode: int, directory: Path) -> None:
    """Turn CP2K's output and exit status into SCFNotConverged / EngineCrashed, or return."""
    if scf_failures(text):
        raise SCFNotConverged(
            f"cp2k SCF not converged ({scf_failures(text)} time(s)) in {directory / 'out.out'}"
        )
    message = abort_message(text)
    if message is not None:
        raise EngineCrashed(f"cp2k aborted: {message} ({directory / 'out.out'})")
    if not text:
        raise EngineCrashed(
            f"cp2k wrote no output (exit code {returncode}) in {directory}: {_tail(directory / 'mpi.log')}"
        )
    if returncode != 0:
        raise EngineCrashed(
            f"cp2k exited with code {returncode} in {directory}: {_tail(directory / 'mpi.log')}"
        )
    if "PROGRAM ENDED AT" not in text:
        raise EngineCrashed(f"cp2k output is truncated (no 'PROGRAM ENDED') in {directory}")


def _wants_stress(atoms: Atoms, settings: CP2KSettings) -> bool:
    return settings.stress and all(atoms.pbc)


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


def _md_input(protocol: MDProtocol, steps: int, restart_file: str | None = None) -> MDInput:
    return MDInput(
        ensemble=protocol.ensemble,
        steps=steps,
        timestep_fs=protocol.timestep_fs,
        temperature_k=protocol.temperature_k,
        thermostat_coupling_fs=protocol.thermostat_coupling_fs,
        seed=protocol.seed,
        restart_file=restart_file,
    )


def _read_md_outputs(directory: Path, n_atoms: int) -> tuple[dict[str, np.ndarray], list[XYZFrame]]:
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


def _thermo_rows(ener: dict[str, np.ndarray], steps: np.ndarray) -> dict[str, np.ndarray]:
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


def _md_result(
    atoms: Atoms,
    protocol: MDProtocol,
    ener: dict[str, np.ndarray],
    frames: list[XYZFrame],
    wall_s: float,
    engine: CP2KEngine,
    text: str = "",
) -> MDResult:
    """MDResult of a finished CP2K MD run; `text` is CP2K's output, for the SCF iteration counts."""
    warm = protocol.warmup_steps
    kept = [f for f in frames if f.step >= warm and (f.step - warm) % protocol.sample_interval == 0]
    steps = np.array([f.step for f in kept], dtype=int)
    times_ps = (steps - warm) * protocol.timestep_fs / 1000.0
    trajectory = Trajectory(
        symbols=tuple(atoms.get_chemical_symbols()),
        times_ps=times_ps,
        positions_a=np.array([f.positions_a for f in kept]).reshape(len(kept), len(atoms), 3),
        cells_a=np.repeat(atoms.cell.array[None], len(kept), axis=0),
        pbc=tuple(bool(p) for p in atoms.pbc),
    )
    thermo = {"time_ps": times_ps, **_thermo_rows(ener, steps)}
    # CP2K books the step-0 SCF from scratch into step 1's UsedTime: step 1 is never timed.
    timed = (ener["step"] > max(warm, 1)) & (ener["step"] <= warm + protocol.steps)
    timing = Timing(
        n_atoms=len(atoms),
        timed_steps=int(timed.sum()),
        timed_wall_s=float(ener["used_time_s"][timed].sum()),
        warmup_steps=warm,
        total_wall_s=wall_s,
    )
    scf = scf_iterations(text)  # one SCF run per force evaluation: step 0, 1, 2, ...
    timed_scf = [scf[int(step)] for step in ener["step"][timed] if int(step) < len(scf)]
    return MDResult(
        engine=engine.name,
        protocol=protocol,
        trajectory=trajectory,
        thermo=thermo,
        timing=timing,
        extra={"settings": engine.settings.to_dict(), "version": engine.version(), "ranks": engine.ranks,
               "scf_iterations_per_timed_step": float(np.mean(timed_scf)) if timed_scf else None},
    )


# --------------------------------------------------------------------------------------------
# Resumable AIMD segments
# --------------------------------------------------------------------------------------------

STATE_FILE = "state.json"
FRAMES_FILE = "frames.extxyz.xz"  # xz-compressed extxyz, rewritten whole at each commit
ENER_FILE = "md.ener"
RESTART_DIR = "restart"


@dataclass(frozen=True)
class SegmentResult:
    """Outcome of one AIMD segment.

    Attributes:
        run_dir: the run's folder.
        total_steps: MD steps committed in `run_dir` after this segment.
        new_steps: steps this segment added.
        wall_s: wall time of this segment's CP2K run in s (set-up included).
        s_per_step: mean CP2K `UsedTime` per new step in s.
        restarted: True when the segment continued from an earlier one.
        scf_iterations_mean: mean SCF iterations over the same steps as `s_per_step` (None when
            the output shows none).
    """

    run_dir: Path
    total_steps: int
    new_steps: int
    wall_s: float
    s_per_step: float
    restarted: bool
    scf_iterations_mean: float | None = None


def _read_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(path, f"unreadable MD run state ({exc})") from None


#: MDProtocol fields that fix a run's dynamics: a segmented run cannot change them midway.
DYNAMICS_KEYS = ("ensemble", "temperature_k", "timestep_fs", "sample_interval", "seed", "thermostat_coupling_fs")


def protocol_mismatch(state: dict[str, Any], protocol: MDProtocol) -> str | None:
    """The first dynamics field in which `protocol` differs from a run's committed state, as
    "key=new differs from the run's old", or None when they agree."""
    stored = state["protocol"]
    for key in DYNAMICS_KEYS:
        if stored.get(key) != getattr(protocol, key):
            return f"protocol {key}={getattr(protocol, key)!r} differs from the run's {stored.get(key)!r}"
    return None


def _check_resume(state: dict[str, Any], atoms: Atoms, protocol: MDProtocol, run_dir: Path,
                  settings: CP2KSettings | None = None) -> None:
    mismatch = protocol_mismatch(state, protocol)
    if mismatch:
        raise InputError(run_dir / STATE_FILE, mismatch)
    if list(state["symbols"]) != atoms.get_chemical_symbols():
        raise InputError(run_dir / STATE_FILE, "atoms differ in species/order from the run being resumed")
    wanted = None if settings is None else json.loads(json.dumps(settings.to_dict()))
    if wanted is not None and state.get("settings") not in (None, wanted):
        changed = sorted(k for k, v in wanted.items() if state["settings"].get(k) != v)
        raise InputError(run_dir / STATE_FILE, "CP2K settings differ from the run being resumed "
                         f"({', '.join(changed)}); start a new run for new settings")
    if not np.allclose(np.array(state["cell_a"], dtype=float), atoms.cell.array, atol=1e-6):
        raise InputError(run_dir / STATE_FILE, "atoms have another cell than the run being resumed")


def named_restart_files(state: dict[str, Any]) -> set[str]:
    """The restart and wavefunction files (paths relative to the run folder) a run's state names:
    the only ones under `RESTART_DIR` that belong to its committed data."""
    return {state.get("restart_file"), state.get("wfn_file")} - {None}


def _remove_unnamed_restarts(run_dir: Path, state: dict[str, Any]) -> None:
    """Delete the files in `run_dir`/restart that `state` does not name: the previous segment's
    restart and wavefunction, and any a killed commit left behind (partial copies among them)."""
    named = named_restart_files(state)
    for path in sorted((run_dir / RESTART_DIR).glob("*")):
        if path.is_file() and f"{RESTART_DIR}/{path.name}" not in named:
            path.unlink(missing_ok=True)


def _frames_to_atoms(
    frames: Sequence[XYZFrame], cell: np.ndarray, pbc: Sequence[bool], timestep_fs: float
) -> list[Atoms]:
    out = []
    for f in frames:
        a = Atoms(symbols=list(f.symbols), positions=f.positions_a, cell=cell, pbc=list(pbc))
        a.info["step"] = int(f.step)
        a.info["time_fs"] = float(f.step * timestep_fs)
        out.append(a)
    return out


def _ener_text(ener: dict[str, np.ndarray]) -> str:
    header = "# step time_fs kinetic_ha temperature_k potential_ha conserved_ha used_time_s\n"
    rows = [
        f"{int(s):10d} {t:14.6f} {k:20.12f} {T:14.6f} {p:22.12f} {c:22.12f} {u:12.6f}"
        for s, t, k, T, p, c, u in zip(*(ener[name] for name in ENER_COLUMNS))
    ]
    return header + "\n".join(rows) + ("\n" if rows else "")


def _committed(run_dir: Path, total_steps: int) -> tuple[list[Atoms], dict[str, np.ndarray]]:
    """Committed frames and .ener rows, cut at `total_steps` (drops leftovers of a killed commit)."""
    frames: list[Atoms] = []
    if (run_dir / FRAMES_FILE).is_file():
        text = lzma.decompress((run_dir / FRAMES_FILE).read_bytes()).decode()
        frames = ase_read(io.StringIO(text), index=":", format="extxyz")
        frames = [f for f in frames if int(f.info["step"]) <= total_steps]
    ener = parse_ener((run_dir / ENER_FILE).read_text()) if (run_dir / ENER_FILE).is_file() else parse_ener("")
    keep = ener["step"] <= total_steps
    return frames, {k: v[keep] for k, v in ener.items()}


def _run_segment(
    engine: CP2KEngine, run_dir: Path, atoms: Atoms, protocol: MDProtocol, n_steps: int
) -> SegmentResult:
    if n_steps < 1:
        raise ValueError("n_steps must be >= 1")
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob(".segment-*"):
        shutil.rmtree(stale, ignore_errors=True)
    state = _read_state(run_dir)
    restart_file = wfn_file = None
    if state is not None:
        _check_resume(state, atoms, protocol, run_dir, engine.settings)
        restart_file = str((run_dir / state["restart_file"]).resolve())
        if state.get("wfn_file") and (run_dir / state["wfn_file"]).is_file():
            wfn_file = str((run_dir / state["wfn_file"]).resolve())
    md_input = _md_input(protocol, n_steps, restart_file)  # CP2K counts STEPS from the restart's step
    input_text = build_input(atoms, engine.settings, md=md_input, wfn_restart_file=wfn_file)
    work = Path(tempfile.mkdtemp(prefix=".segment-", dir=run_dir))
    succeeded = False
    try:
        run = engine._execute(work, input_text)
        result = commit_segment(engine, run_dir, work, atoms, protocol, n_steps, run.wall_s, run.text)
        succeeded = True
    finally:
        if succeeded or engine.workdir is None:  # a failed segment is kept only with a workdir
            shutil.rmtree(work, ignore_errors=True)
    return result


def commit_segment(
    engine: CP2KEngine, run_dir: Path, work: Path, atoms: Atoms, protocol: MDProtocol, n_steps: int,
    wall_s: float, text: str,
) -> SegmentResult:
    """Commit the finished CP2K MD run in `work` as the next `n_steps` steps of the run in `run_dir`.

    Checks that CP2K ended exactly `n_steps` after the run's committed step, then writes the new
    restart, frames, energies and state (the state last: it is the commit point). `wall_s` is the
    CP2K run's wall time in s and `text` its output (for SCF iteration counts).
    """
    state = _read_state(run_dir)
    restarted = state is not None
    done = int(state["total_steps"]) if state is not None else 0
    target = done + n_steps
    ener, frames = _read_md_outputs(work, len(atoms))
    new_rows = (ener["step"] > done) & (ener["step"] <= target)
    if not restarted:
        new_rows |= ener["step"] == 0
    last_step = int(ener["step"].max(initial=-1))
    if last_step < target:
        raise EngineCrashed(f"cp2k MD segment stopped before step {target} in {work}")
    if last_step > target:
        raise EngineCrashed(f"cp2k MD segment ran to step {last_step}, past its target {target}, in {work}: "
                            "its restart file would not match the committed frames")
    new_ener = {k: v[new_rows] for k, v in ener.items()}
    new_frames = [
        f for f in frames
        if (f.step > done or (not restarted and f.step == 0)) and f.step <= target
        and f.step % protocol.sample_interval == 0
    ]
    restart_src = work / f"{PROJECT}-1.restart"
    if not restart_src.is_file():
        raise EngineCrashed(f"cp2k MD segment wrote no restart file in {work}")
    timed = new_ener["step"] > (done + 1)  # the first step carries the initial SCF
    s_per_step = float(new_ener["used_time_s"][timed].mean()) if timed.any() else float("nan")
    # SCF runs in order: the start geometry, the first new step, then the timed steps
    timed_scf = scf_iterations(text)[2:]
    scf_mean = float(np.mean(timed_scf)) if timed_scf else None
    # --- commit: new restart under a new name, then data files, then the state (commit point)
    (run_dir / RESTART_DIR).mkdir(exist_ok=True)
    restart_rel = f"{RESTART_DIR}/step-{target:09d}.restart"
    wfn_rel = f"{RESTART_DIR}/step-{target:09d}.wfn"
    shutil.copyfile(restart_src, run_dir / restart_rel)
    wfn_src = work / f"{PROJECT}-RESTART.wfn"
    if wfn_src.is_file():
        shutil.copyfile(wfn_src, run_dir / wfn_rel)
    # a first segment starts from nothing: frames or rows on disk without a state.json are what a
    # killed first commit left (step 0 among them), not committed data
    old_frames, old_ener = _committed(run_dir, done) if restarted else ([], parse_ener(""))
    all_frames = old_frames + _frames_to_atoms(new_frames, atoms.cell.array, atoms.pbc, protocol.timestep_fs)
    all_ener = {k: np.concatenate([old_ener[k], new_ener[k]]) for k in ENER_COLUMNS}
    buffer = io.StringIO()
    ase_write(buffer, all_frames, format="extxyz")
    atomic_write_bytes(run_dir / FRAMES_FILE, lzma.compress(buffer.getvalue().encode(), preset=9))
    atomic_write_text(run_dir / ENER_FILE, _ener_text(all_ener))
    segments = list(state["segments"]) if state else []
    segments.append({"start_step": done, "end_step": target, "wall_s": wall_s, "s_per_step": s_per_step,
                     "scf_iterations_mean": scf_mean, "ranks": engine.ranks, "cp2k_version": engine.version()})
    new_state = {
        "total_steps": target,
        "total_wall_s": float(sum(s["wall_s"] for s in segments)),
        "restart_file": restart_rel,
        "wfn_file": wfn_rel if wfn_src.is_file() else None,
        "protocol": protocol.to_dict(),
        "settings": engine.settings.to_dict(),
        "ranks": engine.ranks,
        "version": engine.version(),
        "symbols": atoms.get_chemical_symbols(),
        "cell_a": atoms.cell.array.tolist(),
        "pbc": [bool(p) for p in atoms.pbc],
        "segments": segments,
    }
    atomic_write_json(run_dir / STATE_FILE, new_state)
    _remove_unnamed_restarts(run_dir, new_state)
    return SegmentResult(
        run_dir=run_dir, total_steps=target, new_steps=n_steps, wall_s=wall_s,
        s_per_step=s_per_step, restarted=restarted, scf_iterations_mean=scf_mean,
    )


def read_md_run(
    run_dir: str | os.PathLike[str],
) -> tuple[Trajectory, dict[str, np.ndarray], int, float]:
    """(trajectory, thermo, total_steps, total_wall_s) of a segmented AIMD run in `run_dir`.

    Frames are the committed ones (every `sample_interval` steps from step 0), times in ps from
    step 0; thermo holds per-frame "time_ps", "temperature_k", "potential_energy_ev",
    "kinetic_energy_ev", "conserved_energy_ev" (eV, K).
    """
    run_dir = Path(run_dir)
    state = _read_state(run_dir)
    if state is None:
        raise InputError(run_dir / STATE_FILE, "no MD run state (no segment finished here)")
    total = int(state["total_steps"])
    frames, ener = _committed(run_dir, total)
    dt_fs = float(state["protocol"]["timestep_fs"])
    steps = np.array([int(f.info["step"]) for f in frames], dtype=int)
    times_ps = steps * dt_fs / 1000.0
    n_atoms = len(state["symbols"])
    trajectory = Trajectory(
        symbols=tuple(state["symbols"]),
        times_ps=times_ps,
        positions_a=np.array([f.positions for f in frames]).reshape(len(frames), n_atoms, 3),
        cells_a=np.repeat(np.array(state["cell_a"], dtype=float)[None], len(frames), axis=0),
        pbc=tuple(bool(p) for p in state["pbc"]),
    )
    thermo = {"time_ps": times_ps, **_thermo_rows(ener, steps)}
    return trajectory, thermo, total, float(state["total_wall_s"])


__all__ = [
    "AIMD_SETTINGS",
    "CP2KEngine",
    "CP2KSettings",
    "LABEL_SETTINGS",
    "MDInput",
    "SegmentResult",
    "build_input",
    "parse_energy_ev",
    "parse_forces_ev_per_a",
    "parse_stress_ev_per_a3",
    "read_md_run",
]
