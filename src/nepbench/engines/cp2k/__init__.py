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

Package layout (one job per module): `settings` (CP2KSettings, the presets, unit conversions),
`inputs` (input writing), `outputs` (output parsing), `engine` (the subprocess and CP2KEngine),
`segments` (resumable AIMD segments). Everything is importable from `nepbench.engines.cp2k`.
"""

from __future__ import annotations

from .settings import (  # noqa: F401
    HARTREE_EV,
    BOHR_A,
    HARTREE_PER_BOHR_EV_PER_A,
    GPA_EV_PER_A3,
    INSTALL_HINT,
    PROJECT,
    _DEFAULT_POTENTIALS,
    CP2KSettings,
    OPTIONAL_LEVERS,
    MIXING_METHODS,
    kpoint_mesh,
    _valence_from_potential,
    LABEL_SETTINGS,
    LABEL_TUNED_SETTINGS,
    LABEL_KP_SETTINGS,
    KPOINT_LENGTH_A,
    AIMD_V1_SETTINGS,
    AIMD_SETTINGS,
    AIMD_KP_SETTINGS,
    SETTINGS_PRESETS,
)
from .inputs import (  # noqa: F401
    MDInput,
    MRG32K3A_M1,
    MRG32K3A_M2,
    csvr_rng_seeds,
    csvr_rng_record,
    _periodic_keyword,
    _check_atoms,
    build_input,
    _motion_section,
    _dft_section,
    _subsys_section,
    md_input_from_protocol,
)
from .outputs import (  # noqa: F401
    _ENERGY_RE,
    _SCF_FAILED_RE,
    _SCF_CONVERGED_RE,
    _FLOAT,
    parse_energy_ev,
    parse_forces_ev_per_a,
    parse_stress_ev_per_a3,
    scf_failures,
    scf_iterations,
    extrapolation_used,
    abort_message,
    parse_version,
    ENER_COLUMNS,
    parse_ener,
    XYZFrame,
    parse_xyz_trajectory,
    labels_from_output,
    read_md_forces,
    read_md_outputs,
    thermo_rows,
)
from .engine import (  # noqa: F401
    RunOutput,
    _version_of,
    _tail,
    CP2KEngine,
    _kill_group,
    _raise_for_failure,
    _wants_stress,
    _md_result,
)
from .segments import (  # noqa: F401
    STATE_FILE,
    FRAMES_FILE,
    ENER_FILE,
    RESTART_DIR,
    SegmentResult,
    _read_state,
    DYNAMICS_KEYS,
    protocol_mismatch,
    _check_resume,
    named_restart_files,
    _remove_unnamed_restarts,
    _frames_to_atoms,
    _ener_text,
    _committed,
    run_segment,
    commit_segment,
    read_md_run,
    read_labelled_frames,
)

__all__ = [
    "AIMD_KP_SETTINGS",
    "AIMD_SETTINGS",
    "AIMD_V1_SETTINGS",
    "CP2KEngine",
    "CP2KSettings",
    "KPOINT_LENGTH_A",
    "LABEL_KP_SETTINGS",
    "LABEL_SETTINGS",
    "LABEL_TUNED_SETTINGS",
    "MDInput",
    "SETTINGS_PRESETS",
    "SegmentResult",
    "build_input",
    "kpoint_mesh",
    "parse_energy_ev",
    "parse_forces_ev_per_a",
    "parse_stress_ev_per_a3",
    "read_md_forces",
    "read_md_run",
    "read_labelled_frames",
]
