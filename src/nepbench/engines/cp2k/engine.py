"""The CP2K engine: runs cp2k.psmp as a subprocess for single points and MD, and turns a failed
run into EngineNotAvailable, SCFNotConverged or EngineCrashed, never into a number."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from ...errors import EngineCrashed, EngineNotAvailable, SCFNotConverged
from ..base import Engine, Labels, MDProtocol, MDResult, Timing, Trajectory
from .inputs import build_input, md_input_from_protocol
from .outputs import (
    XYZFrame,
    read_md_outputs,
    thermo_rows,
    abort_message,
    labels_from_output,
    parse_version,
    scf_failures,
    scf_iterations,
    extrapolation_used,
)
from .settings import INSTALL_HINT, LABEL_SETTINGS, CP2KSettings

if TYPE_CHECKING:
    from .segments import SegmentResult


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
        # capped at the cores this process may use (cpu_load.usable_cores)
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
        md_input = md_input_from_protocol(protocol, total_steps)
        input_text = build_input(atoms, self.settings, md=md_input)
        directory, temporary = self._new_run_dir("md")
        try:
            run = self._execute(directory, input_text)
            ener, frames = read_md_outputs(directory, len(atoms))
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
        from .segments import run_segment

        return run_segment(self, Path(run_dir), atoms, protocol, int(n_steps))


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
    thermo = {"time_ps": times_ps, **thermo_rows(ener, steps)}
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
               "scf_iterations_per_timed_step": float(np.mean(timed_scf)) if timed_scf else None,
               "extrapolation_used": extrapolation_used(text)},
    )
