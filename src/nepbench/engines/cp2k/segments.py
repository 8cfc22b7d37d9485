"""Resumable AIMD segments: each continues from the restart file the previous one committed, and
commits its frames (with DFT forces and energy), energies and restart atomically."""

from __future__ import annotations

import io
import json
import lzma
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from ase import Atoms
from ase.io import read as ase_read
from ase.io import write as ase_write

from ...errors import EngineCrashed, InputError
from ...files import atomic_write_bytes, atomic_write_json, atomic_write_text
from ...structures import labels_of
from ..base import MDProtocol, Trajectory
from .inputs import build_input, md_input_from_protocol
from .outputs import (
    ENER_COLUMNS,
    XYZFrame,
    read_md_outputs,
    thermo_rows,
    parse_ener,
    read_md_forces,
    scf_iterations,
    extrapolation_used,
)
from .settings import HARTREE_EV, PROJECT, CP2KSettings

if TYPE_CHECKING:  # the engine imports this module when it runs a segment
    from .engine import CP2KEngine

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
    frames: Sequence[XYZFrame], cell: np.ndarray, pbc: Sequence[bool], timestep_fs: float,
    forces: dict[int, np.ndarray] | None = None, potential_ev: dict[int, float] | None = None,
) -> list[Atoms]:
    """Atoms of CP2K trajectory frames; a frame whose step has DFT forces (eV/Å) and potential
    energy (eV) carries them as `forces` and info `energy`, so it reads as a labelled frame."""
    out = []
    for f in frames:
        a = Atoms(symbols=list(f.symbols), positions=f.positions_a, cell=cell, pbc=list(pbc))
        a.info["step"] = int(f.step)
        a.info["time_fs"] = float(f.step * timestep_fs)
        if forces and potential_ev and f.step in forces and f.step in potential_ev:
            a.arrays["forces"] = np.asarray(forces[f.step], dtype=float)
            a.info["energy"] = float(potential_ev[f.step])
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


def read_labelled_frames(run_dir: str | os.PathLike[str]) -> list[Atoms]:
    """The committed frames of a segmented AIMD run that carry CP2K's forces (eV/Å) and potential
    energy (eV) (`structures.labels_of`), in step order; info keeps `step` and `time_fs`.
    Frames of runs grown before forces were kept have neither and are left out. InputError when
    `run_dir` holds no run state."""
    run_dir = Path(run_dir)
    state = _read_state(run_dir)
    if state is None:
        raise InputError(run_dir / STATE_FILE, "no MD run state (no segment finished here)")
    frames, _ = _committed(run_dir, int(state["total_steps"]))
    return [f for f in frames if all(x is not None for x in labels_of(f)[:2])]  # extxyz: on a calculator


def run_segment(
    engine: CP2KEngine, run_dir: Path, atoms: Atoms, protocol: MDProtocol, n_steps: int
) -> SegmentResult:
    """Run `n_steps` more AIMD steps of `protocol` with `engine` in `run_dir` and commit them: the
    body of `CP2KEngine.run_md_segment`, whose docstring states the contract (resume from the
    committed restart file or start fresh from `atoms`; frames every `protocol.sample_interval`
    steps; commit only on success). Raises ValueError when `n_steps` < 1, InputError naming
    `run_dir`/state.json when the committed run is unreadable or does not match `atoms`, the
    settings or the protocol's dynamics, and the engine's errors when CP2K is missing or fails
    (EngineNotAvailable, EngineCrashed, SCFNotConverged; see `nepbench.engines.cp2k`)."""
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
    # CP2K counts STEPS from the restart's step; forces at every kept frame make AIMD frames labels
    md_input = md_input_from_protocol(protocol, n_steps, restart_file, forces_every=protocol.sample_interval)
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
    ener, frames = read_md_outputs(work, len(atoms))
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
    forces = read_md_forces(work, len(atoms))
    potential = {int(step): float(e) * HARTREE_EV for step, e in zip(new_ener["step"], new_ener["potential_ha"])}
    all_frames = old_frames + _frames_to_atoms(new_frames, atoms.cell.array, atoms.pbc, protocol.timestep_fs,
                                               forces, potential)
    all_ener = {k: np.concatenate([old_ener[k], new_ener[k]]) for k in ENER_COLUMNS}
    buffer = io.StringIO()
    ase_write(buffer, all_frames, format="extxyz")
    atomic_write_bytes(run_dir / FRAMES_FILE, lzma.compress(buffer.getvalue().encode(), preset=9))
    atomic_write_text(run_dir / ENER_FILE, _ener_text(all_ener))
    segments = list(state["segments"]) if state else []
    segments.append({"start_step": done, "end_step": target, "wall_s": wall_s, "s_per_step": s_per_step,
                     "scf_iterations_mean": scf_mean, "extrapolation_used": extrapolation_used(text),
                     "ranks": engine.ranks, "cp2k_version": engine.version()})
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
    thermo = {"time_ps": times_ps, **thermo_rows(ener, steps)}
    return trajectory, thermo, total, float(state["total_wall_s"])
