"""Committed AIMD runs: where each lives, how far it has grown, whether aimd.toml still describes
it, and its production loaded for comparison (`load_aimd`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ase import Atoms

from ..errors import InputError
from ..prerelax import start_structure
from .spec import AimdRun, AimdSpec


def run_dir_of(spec: AimdSpec, run: AimdRun) -> Path:
    return Path(spec.path).parent / "aimd" / run.id


def start_atoms(spec: AimdSpec, run: AimdRun) -> Atoms:
    """The structure the run starts from: the builder's, or its pre-relaxed form (`prerelax.py`)."""
    built = run.atoms()
    if run.prerelax is None:
        return built
    return start_structure(run_dir_of(spec, run), built, run.prerelax, committed_steps(spec, run) > 0,
                           run.protocol.temperature_k, run.seed)


def committed_steps(spec: AimdSpec, run: AimdRun) -> int:
    """MD steps committed so far for `run` (0 when it has not started)."""
    import json

    state = run_dir_of(spec, run) / "state.json"
    return int(json.loads(state.read_text())["total_steps"]) if state.is_file() else 0


def committed_run_problem(run: AimdRun, state: dict[str, Any]) -> str | None:
    """Why the spec's `run` does not describe the run committed with `state`, or None.

    The dynamics (`engines.cp2k.protocol_mismatch`: time step, temperature, sampling, seed,
    coupling) and the system (the builder's species in order, and its cell) must be the ones the
    data were made with: a reader takes the warm-up cut and the time axis from the spec, and the
    system's label from its builder parameters.
    """
    import numpy as np

    from ..engines.cp2k import protocol_mismatch

    mismatch = protocol_mismatch(state, run.protocol)
    if mismatch:
        return mismatch
    built = run.atoms()
    if built.get_chemical_symbols() != list(state["symbols"]):
        return (f"builder {run.builder} {run.params} makes {built.get_chemical_formula()}, the committed run "
                f"holds {Atoms(state['symbols']).get_chemical_formula()}")
    if not np.allclose(built.cell.array, np.asarray(state["cell_a"], dtype=float), atol=1e-6):
        return f"builder {run.builder} {run.params} makes another cell than the committed run's"
    return None


def require_committed_run(spec: AimdSpec, run: AimdRun, state: dict[str, Any], folder: Path) -> None:
    """InputError naming aimd.toml when `committed_run_problem` finds one: a reader would take the
    warm-up cut, the time axis and the system from the spec, not from the data."""
    mismatch = committed_run_problem(run, state)
    if mismatch:
        raise InputError(spec.path, f"run {run.id}: {mismatch} (committed in {folder / 'state.json'})")


@dataclass
class AimdReference:
    """A committed AIMD run ready for comparison (warm-up frames already removed)."""

    run: AimdRun
    trajectory: Any
    thermo: dict[str, Any]
    total_steps: int
    total_wall_s: float
    first_frame: Atoms = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def production_ps(self) -> float:
        times = self.trajectory.times_ps
        return float(times[-1] - times[0]) if len(times) > 1 else 0.0


def load_aimd(spec: AimdSpec, run_id: str) -> AimdReference:
    """The committed AIMD run `run_id` with frames before the warm-up's end removed (InputError when
    aimd.toml no longer describes the committed run's system or dynamics)."""
    import json

    import numpy as np

    from ..engines.base import Trajectory
    from ..engines.cp2k import read_md_run

    run = spec.run(run_id)
    folder = run_dir_of(spec, run)
    if not (folder / "state.json").is_file():
        raise InputError(folder / "state.json", f"AIMD run {run_id} has not started "
                         "(run `nepbench reference aimd`)")
    require_committed_run(spec, run, json.loads((folder / "state.json").read_text()), folder)
    traj, thermo, total, wall = read_md_run(folder)
    keep = traj.times_ps >= run.warmup_ps - 1e-9
    if keep.sum() < 2:
        raise InputError(folder, f"AIMD run {run_id} has {total} steps, not past its "
                         f"{run.protocol.warmup_steps}-step warm-up yet")
    production = Trajectory(traj.symbols, traj.times_ps[keep] - traj.times_ps[keep][0],
                            traj.positions_a[keep], traj.cells_a[keep], traj.pbc)
    thermo_kept = {k: np.asarray(v)[keep] for k, v in thermo.items()}
    return AimdReference(run, production, thermo_kept, total, wall, production.frame(0))
