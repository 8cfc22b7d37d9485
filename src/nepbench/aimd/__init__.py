"""CP2K AIMD reference trajectories, grown segment by segment (resumable across sessions).

`reference_data/aimd.toml` defines the runs; each lives in `reference_data/aimd/<id>/` (CP2K restart
file, frames, energies, state) and `reference_data/aimd/manifest.json` records every run's system,
protocol, CP2K settings and version, committed length, cost and file hashes.

Package layout (one job per module): `spec` (aimd.toml: runs, protocols, loader), `runs` (run
folders, committed state against the spec, `load_aimd`), `thermo` (md.ener: temperature, drift,
trends, equilibration), `manifest` (aimd/manifest.json: write, read, verify), `growth` (`grow`:
segment by segment, several processes side by side). Everything is importable from
`nepbench.aimd`.
"""

from __future__ import annotations

from .spec import (  # noqa: F401
    REPO_ROOT,
    DEFAULT_SPEC,
    AimdRun,
    AimdSpec,
    SPEC_KEYS,
    RUN_KEYS,
    load_aimd_spec,
    reload_aimd_spec,
)
from .runs import (  # noqa: F401
    run_dir_of,
    start_atoms,
    committed_steps,
    committed_run_problem,
    AimdReference,
    load_aimd,
    require_committed_run,
)
from .thermo import (  # noqa: F401
    EQUILIBRATION_MIN_STEPS,
    EQUILIBRATION_MIN_EFFECTIVE_SAMPLES,
    read_ener,
    thermo_history,
    TREND_MIN_STEPS,
    STATIONARITY_SIGMAS,
    thermo_summary,
    warmup_stationarity,
)
from .manifest import (  # noqa: F401
    write_manifest,
    growth_plan,
    load_aimd_manifest,
    verify_aimd,
)
from .growth import (  # noqa: F401
    grow,
)

__all__ = [
    "AimdReference",
    "AimdRun",
    "AimdSpec",
    "DEFAULT_SPEC",
    "EQUILIBRATION_MIN_EFFECTIVE_SAMPLES",
    "EQUILIBRATION_MIN_STEPS",
    "REPO_ROOT",
    "RUN_KEYS",
    "SPEC_KEYS",
    "STATIONARITY_SIGMAS",
    "TREND_MIN_STEPS",
    "committed_run_problem",
    "committed_steps",
    "grow",
    "load_aimd",
    "load_aimd_manifest",
    "load_aimd_spec",
    "read_ener",
    "reload_aimd_spec",
    "require_committed_run",
    "run_dir_of",
    "start_atoms",
    "thermo_history",
    "thermo_summary",
    "verify_aimd",
    "warmup_stationarity",
    "write_manifest",
    "growth_plan",
]
