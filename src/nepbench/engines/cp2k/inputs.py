"""CP2K input writing (pure): single points and MD, coordinates and cell written into the input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from ase import Atoms

from ...errors import InputError
from ..base import MAX_MD_SEED, MDProtocol
from .settings import PROJECT, CP2KSettings


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
        forces_every: print the atomic forces every this many steps (CP2K's step count), 0 = never;
            `-frc-1.xyz` in Hartree/Bohr, so sampled AIMD frames carry their DFT forces.
    """

    ensemble: Literal["nvt", "nve"]
    steps: int
    timestep_fs: float
    temperature_k: float
    thermostat_coupling_fs: float
    seed: int
    restart_file: str | None = None
    forces_every: int = 0

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
    mesh = settings.mesh_for(atoms.cell.array) if periodic == "XYZ" else settings.kpoints  # a rule needs a cell
    lines += _dft_section(settings, symbols, periodic, wfn_restart_file, mesh)
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
    ]
    if md.forces_every > 0:
        lines += [
            "    &FORCES",
            "      FORMAT XYZ",
            "      &EACH",
            f"        MD {int(md.forces_every)}",
            "      &END EACH",
            "    &END FORCES",
        ]
    lines += [
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
    settings: CP2KSettings, symbols: Sequence[str], periodic: str, wfn_restart_file: str | None,
    mesh: tuple[int, int, int] | None = None,
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
    if mesh is not None:
        if periodic != "XYZ":
            raise InputError("<structure>", f"k-points {mesh} need a cell periodic in x, y and z")
        lines += ["    &KPOINTS", "      SCHEME MONKHORST-PACK " + " ".join(str(n) for n in mesh),
                  "    &END KPOINTS"]
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


def md_input_from_protocol(protocol: MDProtocol, steps: int, restart_file: str | None = None,
                           forces_every: int = 0) -> MDInput:
    """The `MDInput` that runs `steps` CP2K MD steps of `protocol` (its ensemble, time step in fs,
    temperature in K, CSVR coupling in fs and seed; `protocol.steps` is not used), continuing from
    `restart_file` when given and printing forces every `forces_every` steps (0 = never)."""
    return MDInput(
        ensemble=protocol.ensemble,
        steps=steps,
        timestep_fs=protocol.timestep_fs,
        temperature_k=protocol.temperature_k,
        thermostat_coupling_fs=protocol.thermostat_coupling_fs,
        seed=protocol.seed,
        restart_file=restart_file,
        forces_every=forces_every,
    )
