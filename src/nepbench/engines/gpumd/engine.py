"""`GpumdEngine`: finds the `gpumd` binary and a GPU, writes a run directory, runs GPUMD there and
turns its outputs into `MDResult` / `Labels` (inputs.py writes, outputs.py parses).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from ...errors import EngineCrashed, EngineError, EngineNotAvailable, InputError
from ...models import read_nep_header
from ...provenance import gpu_models
from ...structures import check_structure
from ..base import (Engine, Labels, MDProtocol, MDResult, Timing, Trajectory, md_frame_instability,
                    unstable_temperature_limit_k)
from .inputs import (PINNED_COMMIT, PINNED_VERSION, Thermostat, rdf_cutoff_a, write_model_xyz, write_run_in,
                     write_single_point_run_in)
from .outputs import (parse_dump_exyz, parse_exyz_frames, parse_msd, parse_rdf, parse_run_wall_s, parse_speed,
                      parse_thermo, parse_version, protocol_temperature_k, stress_from_virial)


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

    def _read_md_outputs(self, atoms: Atoms, protocol: MDProtocol, run_dir: Path
                         ) -> tuple[dict[str, np.ndarray], Trajectory, dict[str, Any]]:
        """(thermo, trajectory, extra with "msd"/"rdf" where written) of a finished MD run directory;
        EngineCrashed when a file is missing or unreadable. Without `record_frames` the trajectory
        has no frames."""
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
        return thermo, traj, extra

    def _collect_md(self, atoms: Atoms, protocol: MDProtocol, run_dir: Path, run_in: str,
                    stdout: str, total_wall_s: float) -> MDResult:
        thermo, traj, extra = self._read_md_outputs(atoms, protocol, run_dir)
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
