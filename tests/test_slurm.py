"""The Slurm examples (examples/slurm/) submitted, through `sbatch`, to a real one-node Slurm.

`cluster` starts Debian's munged, slurmctld and slurmd (slurm-wlm 22.05, munge; `make slurm` or
scripts/ensure_slurm.sh installs them) in a temporary folder with a generated slurm.conf for this
machine (its cores and memory as `slurmd -C` reports them, ports that are free now) and stops them
at the end whatever happened: queued jobs cancelled, daemons signalled by process group, then any
process whose environment carries this cluster's marker killed by its pid. SIGTERM to the test
process (a CI time-out) counts as Ctrl-C, so that teardown still runs; were it killed outright, the
kernel stops the daemons (PR_SET_PDEATHSIG) and only running job steps go on, to their time limit.
Where we are not root or the programs are missing the tests skip with that reason, except under
CI=true, where they fail (a skip there would pass a run that never submitted anything). A daemon
that dies or a job that does not end in time is one failed line naming it and its log, never a
hang: every wait is bounded.

The scripts run as users would submit them, without the Apptainer image (IMAGE=none, NEPBENCH
naming a host nepbench), from the repository root; only what a 2-core test node cannot give is
overridden on the command line (GPU, 16 cores, 64 GB, 32 ranks) and `--chdir` puts each job's
working folder in the test's temporary folder. NEPBENCH is the .venv's Python on a copy of
src/nepbench and reference_data taken when the module starts (`nepbench_cli`): a task's cache key
holds the sha256 of nepbench's code and data, so an edit to the checkout while the tests run would
otherwise make a resubmission recompute. The suite is a three-task CPU suite (two parity tasks,
one NVE run) written below; its criteria bounds are loose on purpose: the pipeline is under test
here, not the model. `-m slurm` selects these tests; `-m "slurm and not cp2k"` leaves out the CP2K one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "slurm"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
SBIN = "/usr/sbin:/sbin"
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scancel", "scontrol", "sinfo")
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE"}
#: What the array script asks for that a 2-core, GPU-less node cannot give (#SBATCH lines in
#: run_suite_array.sbatch); the command line overrides them, as a user of a small partition would.
SMALL_NODE = ["--gres=none", "--cpus-per-task=1", "--mem=2G", "--time=30"]

#: Deadline of any one wait (a job, a build), in seconds: some ten times what it takes on an idle
#: 2-core machine, so a loaded one passes and a hung job still ends the test.
WAIT_S = 900

pytestmark = pytest.mark.slurm

TINY_SUITE = """\
# Three small CPU tasks for the Slurm tests (tests/test_slurm.py). Loose bounds: the scripts, the
# array mapping and the merge are under test, not the model.
[suite]
name = "slurm-tiny"
description = "Slurm test suite: parity on two motifs and a short NVE run"
models = ["nep89-lisic"]

[[task]]
id = "parity-crystalline-{model}"
type = "parity"
title = "Parity on held-out crystalline frames"
split = "test"
motifs = ["crystalline"]

[[task]]
id = "parity-amorphous-{model}"
type = "parity"
title = "Parity on held-out amorphous frames"
split = "test"
motifs = ["amorphous"]

[[task]]
id = "md-{model}"
type = "md_accuracy"
title = "NVE stability"
runs = []
length_factors = [1]
nve = { builder = "a-LixSi", params = { x = 2.0 }, temperature_k = 900.0, timestep_fs = 1.0, steps = 3000, seed = 3, nvt_steps = 1000 }

[[criterion]]
id = "force_crystalline"
claim = "Forces on crystalline frames"
task = "parity-crystalline-{model}"
metric = "force_rmse_mev_per_a"
good = 1000.0
bad = 2000.0
unit = "meV/Å"
source = "test bound (tests/test_slurm.py)"

[[criterion]]
id = "force_amorphous"
claim = "Forces on amorphous frames"
task = "parity-amorphous-{model}"
metric = "force_rmse_mev_per_a"
good = 1000.0
bad = 2000.0
unit = "meV/Å"
source = "test bound (tests/test_slurm.py)"

[[criterion]]
id = "nve_stability"
claim = "Energy conserved in NVE"
task = "md-{model}"
metric = "nve_drift_abs_ev_per_atom_per_ps"
good = 0.001
bad = 0.01
unit = "eV/atom/ps"
source = "test bound (tests/test_slurm.py)"
"""
TASKS = ["parity-crystalline-nep89-lisic", "parity-amorphous-nep89-lisic", "md-nep89-lisic"]
MD_INDEX = 2

#: Two rattled 8-atom silicon cells at the label preset: the smallest spec whose build takes
#: seconds of CP2K per frame on 2 ranks.
CP2K_SPEC = """\
name = "slurm-test"
seed = 11
test_fraction = 0.5
cp2k_preset = "label"
selection_version = 2

[[family]]
builder = "c-Si"
motif = "crystalline"
pool = 2
select = 2
params = { repeat = [[1, 1, 1]] }
rattle_a = 0.05
"""


def _skip_or_fail(reason: str) -> None:
    """Skip with `reason`; under CI=true fail instead (CI installs Slurm: a skip would hide it)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so not skipped: {reason}", pytrace=False)
    pytest.skip(reason)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _when(text: str) -> _dt.datetime | None:
    """scontrol's StartTime/EndTime ("2026-12-07T10:52:58", "Unknown", "None") as a datetime or None."""
    try:
        return _dt.datetime.fromisoformat(text)
    except ValueError:
        return None


@dataclass
class Job:
    """One job or array element as `scontrol -o show job` reports it."""

    job_id: str
    array_task: str | None
    state: str
    exit_code: str
    reason: str
    start: _dt.datetime | None
    end: _dt.datetime | None
    dependency: str

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED" and self.exit_code == "0:0"


@dataclass
class SlurmCluster:
    """A one-node Slurm (munged, slurmctld, slurmd) living in `folder`.

    `env` is the environment every client command and job gets (SLURM_CONF, and MARKER, by which
    `stop` finds whatever the cluster started). Methods raise AssertionError, with one line naming
    the daemon or job and its log, where Slurm misbehaves; every wait has a deadline.
    """

    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    daemons: dict[str, subprocess.Popen] = field(default_factory=dict)
    node: str = ""

    MARKER = "NEPBENCH_SLURM_TEST"

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    def log(self, name: str) -> Path:
        return self.folder / "log" / f"{name}.log"

    # ----------------------------------------------------------------------------------- start

    def start(self) -> None:
        """Write the key and slurm.conf, start the three daemons and wait until the node is idle.

        Raises:
            AssertionError: a daemon exited or the node did not come up within 60 s (one line
                with the daemon's last log lines).
        """
        folder = self.folder
        for sub in ("munge", "log", "state", "spool", "tmp"):
            (folder / sub).mkdir(mode=0o755)
        key = folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), self.MARKER: str(folder),
                    "PATH": f"{os.environ.get('PATH', '/usr/bin:/bin')}:{SBIN}"}
        for name in ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_ARRAY_JOB_ID", "SLURM_MPI_TYPE"):
            self.env.pop(name, None)  # a test run inside someone's Slurm job must not talk to that job
        self.node, hardware = self._hardware()
        self.conf.write_text(self._config(hardware))
        (folder / "plugstack.conf").write_text("")
        socket_path = folder / "munge" / "munge.socket"
        self._daemon("munged", ["munged", "--foreground", f"--socket={socket_path}", f"--key-file={key}",
                                f"--log-file={self.log('munged')}", f"--pid-file={folder / 'munge' / 'munged.pid'}",
                                f"--seed-file={folder / 'munge' / 'munged.seed'}"])
        self._until(lambda: socket_path.exists(), 20, "munged made no socket")
        self._daemon("slurmctld", ["slurmctld", "-D", "-i"])
        self._daemon("slurmd", ["slurmd", "-D", "-N", self.node])
        self._until(lambda: self._node_state() == "idle", 60, f"node {self.node} did not come up idle")

    def _hardware(self) -> tuple[str, str]:
        """(node name, the NodeName line's hardware fields) from `slurmd -C` (this machine as slurmd sees it)."""
        out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30, env=self.env)
        line = out.stdout.splitlines()[0] if out.stdout.strip() else ""
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        assert out.returncode == 0 and "NodeName" in fields and "CPUs" in fields, \
            f"slurmd -C did not describe this machine: {out.stdout.strip()} {out.stderr.strip()}"
        hardware = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("NodeName", "UpTime"))
        return fields["NodeName"], hardware

    def _config(self, hardware: str) -> str:
        f = self.folder
        return "\n".join([
            "ClusterName=nepbenchtest",
            # job ids unique to this cluster: files named by job and step id (PMIx's per-step
            # folders, Open MPI's session files) left by an earlier run never meet a new job
            f"FirstJobId={random.randrange(10_000, 60_000_000)}",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={f / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log('slurmctld')}",
            f"SlurmdLogFile={self.log('slurmd')}",
            f"PlugStackConfig={f / 'plugstack.conf'}",
            f"TmpFS={f / 'tmp'}",  # where the mpi/pmix plugin makes its per-step folders
            "MailProg=/bin/true",
            # no cgroups: they may be missing or read-only in a container; linuxproc tracks a job's
            # processes by parentage, which is all scancel needs here
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MpiDefault=none",
            "ReturnToService=2",
            "KillWait=5",
            "MinJobAge=3600",  # finished jobs stay visible to scontrol (no accounting database here)
            "SlurmdTimeout=120",
            f"NodeName={self.node} NodeAddr=127.0.0.1 {hardware} State=UNKNOWN",
            "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    def _daemon(self, name: str, argv: list[str]) -> None:
        """Start daemon `name` in the foreground, in a session of its own, its output in log/<name>.out."""
        out = open(self.folder / "log" / f"{name}.out", "wb")
        try:
            self.daemons[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                                  env=self.env, cwd=self.folder, start_new_session=True,
                                                  preexec_fn=_die_with_parent)
        finally:
            out.close()

    def check_daemons(self) -> None:
        """AssertionError naming the first daemon that has exited, with its last log lines."""
        for name, proc in self.daemons.items():
            if proc.poll() is not None:
                log = self.log(name) if self.log(name).exists() else self.folder / "log" / f"{name}.out"
                raise AssertionError(f"Slurm test cluster: {name} exited ({proc.returncode}): {_tail(log)}")

    def _until(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_daemons()
            if ready():
                return
            time.sleep(0.3)
        raise AssertionError(f"Slurm test cluster: {what} within {timeout_s:.0f} s "
                             f"(logs: {self.folder / 'log'}; slurmctld: {_tail(self.log('slurmctld'), 2)})")

    def _node_state(self) -> str:
        out = self.command(["sinfo", "-h", "-N", "-o", "%T"], check=False)
        return out.stdout.strip().rstrip("*")

    # --------------------------------------------------------------------------------- clients

    def command(self, argv: list[str], check: bool = True, timeout_s: float = 30,
                **kwargs) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster; AssertionError (one line) when it fails and `check`."""
        out = subprocess.run(argv, capture_output=True, text=True, env=kwargs.pop("env", self.env),
                             timeout=timeout_s, **kwargs)
        if check and out.returncode != 0:
            self.check_daemons()
            raise AssertionError(f"`{' '.join(argv)}` exited {out.returncode}: {out.stderr.strip()}")
        return out

    def sbatch(self, script: Path, *args: str, options: list[str], env: dict[str, str] | None = None) -> str:
        """Submit `script` (from the repository root, as its README says) with sbatch `options`
        and script `args`, the environment `env` added to the cluster's; returns the job id."""
        out = self.command(["sbatch", "--parsable", *options, str(script), *args], cwd=ROOT,
                           env={**self.env, **(env or {})})
        return out.stdout.strip().split(";")[0]

    def jobs(self, job_id: str) -> list[Job]:
        """The job, or every element of an array job, as scontrol reports it now."""
        out = self.command(["scontrol", "-o", "show", "job", job_id])
        jobs = []
        for line in out.stdout.splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            jobs.append(Job(fields["JobId"], fields.get("ArrayTaskId"), fields["JobState"], fields["ExitCode"],
                            fields.get("Reason", ""), _when(fields.get("StartTime", "")),
                            _when(fields.get("EndTime", "")), fields.get("Dependency", "")))
        return jobs

    def wait(self, job_id: str, timeout_s: float, count: int = 1) -> list[Job]:
        """Wait until the job (or all `count` elements of an array job) has ended; returns them.

        Raises:
            AssertionError: not ended within `timeout_s` (with the queue as it stands), or a daemon exited.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_daemons()
            jobs = self.jobs(job_id)
            if len(jobs) >= count and all(j.state in FINAL_STATES for j in jobs):
                return jobs
            if time.monotonic() > deadline:
                queue = self.command(["squeue", "-o", "%i %T %r %M"], check=False).stdout.strip()
                raise AssertionError(f"Slurm job {job_id} did not end within {timeout_s:.0f} s: "
                                     f"{' | '.join(queue.splitlines())}")
            time.sleep(0.5)

    # ------------------------------------------------------------------------------------ stop

    def marked_pids(self) -> list[int]:
        """Pids of the processes whose environment carries this cluster's marker (daemons, job
        scripts, srun steps, the MPI ranks they started, anything the tests started beside them)."""
        marker = f"{self.MARKER}={self.folder}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                found.append(int(entry.name))
        return found

    def stop(self) -> list[str]:
        """Cancel every job, stop the daemons and kill what is left of the cluster's processes;
        returns what could not be stopped (empty when nothing is left)."""
        if "slurmctld" in self.daemons and self.daemons["slurmctld"].poll() is None:
            try:
                ids = self.command(["squeue", "-h", "-o", "%A"], check=False, timeout_s=15).stdout.split()
                if ids:
                    self.command(["scancel", *sorted(set(ids))], check=False, timeout_s=15)
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline and self.command(
                            ["squeue", "-h"], check=False, timeout_s=15).stdout.strip():
                        time.sleep(0.5)
            except subprocess.TimeoutExpired:
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.daemons.get(name)
            if proc is None:
                continue
            for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
                if proc.poll() is not None:
                    break
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait_s)
                except subprocess.TimeoutExpired:
                    pass
        for pid in self.marked_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while (left := [p for p in self.marked_pids() if not _zombie(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        return [_describe(p) for p in left]


def _die_with_parent() -> None:
    """Run in a daemon before it starts: the kernel sends it SIGTERM when the test process dies,
    however it dies (PR_SET_PDEATHSIG), so a test run killed outright leaves no daemon behind."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG


def _interrupt(signum: int, frame) -> None:
    """SIGTERM (a CI time-out, `timeout`, kill) as Ctrl-C: pytest then still tears the cluster down."""
    raise KeyboardInterrupt(f"signal {signum}")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True  # gone


def _describe(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return str(pid)
    return f"{pid} {argv.strip()}"


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def cluster():
    """A running one-node Slurm for this module's tests, stopped at the end whatever happened."""
    if os.geteuid() != 0:
        _skip_or_fail("the Slurm tests start munged, slurmctld and slurmd as root; not root here")
    path = f"{os.environ.get('PATH', '')}:{SBIN}"
    missing = [p for p in PROGRAMS if shutil.which(p, path=path) is None]
    if missing:
        _skip_or_fail(f"Slurm is not installed (missing {', '.join(missing)}): `make slurm` as root "
                      "installs slurm-wlm, munge and libpmix-dev")
    if not VENV_PYTHON.is_file():
        _skip_or_fail(f"{VENV_PYTHON} not found (`make setup`): the jobs run nepbench with it")
    folder = Path(tempfile.mkdtemp(prefix="nepbench-slurm-"))
    folder.chmod(0o755)  # munged wants its socket's folder reachable by every user
    slurm = SlurmCluster(folder)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        slurm.start()
        yield slurm
    finally:
        signal.signal(signal.SIGTERM, previous)
        left = slurm.stop()
        if not left:
            shutil.rmtree(folder, ignore_errors=True)
        assert not left, f"processes of the Slurm test cluster still running after SIGKILL: {left}"


@pytest.fixture(scope="module")
def nepbench_cli(tmp_path_factory) -> Path:
    """An executable `nepbench` (what NEPBENCH names for the jobs): the .venv's Python on a copy of
    src/nepbench, reference_data, models and pins.toml as they are now, laid out as in the
    checkout (the package finds its data two folders above itself)."""
    snapshot = tmp_path_factory.mktemp("checkout")
    shutil.copytree(ROOT / "src" / "nepbench", snapshot / "src" / "nepbench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("reference_data", "models"):
        shutil.copytree(ROOT / name, snapshot / name, ignore=shutil.ignore_patterns(".*"))  # no locks, temporaries
    shutil.copy2(ROOT / "pins.toml", snapshot / "pins.toml")
    cli = snapshot / "bin" / "nepbench"
    cli.parent.mkdir()
    cli.write_text("#!/bin/sh\n# nepbench from the snapshot of the checkout tests/test_slurm.py took\n"
                   f'PYTHONPATH={snapshot / "src"}${{PYTHONPATH:+:$PYTHONPATH}} exec {VENV_PYTHON} -c '
                   "'import sys; from nepbench.cli import main; sys.exit(main())' \"$@\"\n")
    cli.chmod(0o755)
    return cli


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "slurm-tiny.toml"
    path.write_text(TINY_SUITE)
    return path


def _run_outside_slurm(argv: list[str], env: dict[str, str], what: str) -> str:
    """Run nepbench `argv` directly (not as a job) and return its stdout; one failed line with its
    stderr's end when it fails or outlasts WAIT_S."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, env=env,
                              preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not finish within {WAIT_S} s: {' '.join(argv)}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"{what} exited {done.returncode}: {done.stderr.strip()[-600:]}", pytrace=False)
    return done.stdout


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def _verdicts(results: dict) -> dict[str, tuple]:
    return {v["criterion"]: (v["verdict"], v["value"]) for v in results["verdicts"]}


def _metrics(results: dict) -> dict[str, tuple]:
    return {r["task_id"]: (r["status"], r["metrics"]) for r in results["records"]}


@pytest.fixture(scope="module")
def single_run(cluster, nepbench_cli, suite_file, tmp_path_factory) -> Path:
    """The tiny suite run in one process, outside Slurm (the reference the array must equal)."""
    out = tmp_path_factory.mktemp("single") / "run"
    _run_outside_slurm([str(nepbench_cli), "run", str(suite_file), "--out", str(out)],
                       {**cluster.env, "OMP_NUM_THREADS": "1"}, "the single-process run of the suite")
    return out


@dataclass
class ArrayRun:
    """The array job and its merge as `array_run` left them (folders, final job states, wall time)."""

    results: Path
    merged: Path
    logs: Path
    array_id: str
    elements: list[Job]
    merge: Job
    merge_before: Job
    wall_s: float


def _submit_array(cluster: SlurmCluster, cli: Path, suite_file: Path, results: Path, logs: Path) -> str:
    """run_suite_array.sbatch over every task of `suite_file` into `results`, job logs in `logs`."""
    return cluster.sbatch(EXAMPLES / "run_suite_array.sbatch", options=[
        f"--array=0-{len(TASKS) - 1}", *SMALL_NODE, f"--chdir={logs}", f"--output={logs}/%x-%A_%a.out"],
        env={"IMAGE": "none", "NEPBENCH": str(cli), "SUITE": str(suite_file), "RESULTS": str(results)})


@pytest.fixture(scope="module")
def array_run(cluster, nepbench_cli, suite_file, tmp_path_factory) -> ArrayRun:
    """The README's recipe: the suite as an array job into one folder, then merge.sbatch with
    --dependency=afterany on it; waits for both."""
    base = tmp_path_factory.mktemp("array")
    results, merged, logs = base / "results", base / "merged", base / "logs"
    logs.mkdir()
    start = time.monotonic()
    array_id = _submit_array(cluster, nepbench_cli, suite_file, results, logs)
    merge_id = cluster.sbatch(EXAMPLES / "merge.sbatch", str(results), options=[
        f"--dependency=afterany:{array_id}", f"--chdir={logs}", f"--output={logs}/%x-%j.out"],
        env={"IMAGE": "none", "NEPBENCH": str(nepbench_cli), "OUT": str(merged)})
    (merge_before,) = cluster.jobs(merge_id)
    elements = cluster.wait(array_id, WAIT_S, count=len(TASKS))
    (merge,) = cluster.wait(merge_id, WAIT_S)
    return ArrayRun(results, merged, logs, array_id, elements, merge, merge_before, time.monotonic() - start)


def _log_of(logs: Path, element: Job) -> str:
    (path,) = logs.glob(f"nepbench-suite-*_{element.array_task}.out")
    return path.read_text()


# --------------------------------------------------------------------------------------- tests


def test_array_elements_and_merge_give_the_single_process_report(array_run: ArrayRun, single_run: Path) -> None:
    """run_suite_array.sbatch as a 3-element array into one folder, then merge.sbatch held by
    --dependency=afterany: element i runs the i-th listed task, the merge waits for every element,
    its strict verify passes, and the merged report has the single-process run's verdicts and metrics."""
    run = array_run
    assert len(run.elements) == len(TASKS)
    for element in run.elements:
        log = _log_of(run.logs, element)
        assert element.ok, f"array element {element.array_task}: {element.state} {element.exit_code}: {log[-600:]}"
        index = int(element.array_task)
        assert f"nepbench: task {index} = {TASKS[index]}" in log  # the --task index mapping
    records = sorted(p.name for p in (run.results / "tasks").glob("*.json"))
    assert records == sorted(f"{t}.json" for t in TASKS)
    # the merge was held by its dependency, then ran after every element had ended
    assert run.merge_before.state == "PENDING" and run.merge_before.reason == "Dependency", run.merge_before
    merge_log = next(run.logs.glob("nepbench-merge-*.out")).read_text()
    assert run.merge.ok, f"merge job {run.merge.state} {run.merge.exit_code}: {merge_log[-800:]}"
    assert run.merge.start >= max(e.end for e in run.elements)
    assert "verify: exit 0" in merge_log
    merged, single = _results(run.merged), _results(single_run)
    assert merged["summary"]["pass"] == len(TASKS) and merged["summary"]["exit_code_strict"] == 0
    assert _verdicts(merged) == _verdicts(single)
    assert _metrics(merged) == _metrics(single)
    print(f"array of {len(TASKS)} + merge: submission to merged report {run.wall_s:.1f} s")


def test_a_resubmitted_array_recomputes_nothing(cluster, nepbench_cli: Path, array_run: ArrayRun,
                                                suite_file: Path) -> None:
    """The same array submitted again into the finished folder: every element reports its task as
    cached and no record file changes by a byte."""
    before = {p.name: p.read_bytes() for p in (array_run.results / "tasks").glob("*.json")}
    logs = array_run.logs.parent / "logs-again"
    logs.mkdir()
    start = time.monotonic()
    array_id = _submit_array(cluster, nepbench_cli, suite_file, array_run.results, logs)
    elements = cluster.wait(array_id, WAIT_S, count=len(TASKS))
    for element in elements:
        log = _log_of(logs, element)
        assert element.ok, f"element {element.array_task}: {element.state}: {log[-600:]}"
        task = TASKS[int(element.array_task)]
        assert any(task in line and "(cached)" in line for line in log.splitlines()), log[-600:]
    after = {p.name: p.read_bytes() for p in (array_run.results / "tasks").glob("*.json")}
    assert after == before
    print(f"resubmitted array: {time.monotonic() - start:.1f} s")


def test_an_element_cancelled_mid_task_leaves_no_record_and_its_resubmission_finishes_it(
        cluster, nepbench_cli: Path, suite_file: Path, single_run: Path, tmp_path: Path) -> None:
    """scancel of the element running the NVE task while its MD runs: the job ends CANCELLED with
    no record of that task (and every record there is whole JSON); the resubmitted element reuses
    the finished tasks and computes the cancelled one, to the single-process run's metrics."""
    results, logs = tmp_path / "results", tmp_path / "logs"
    logs.mkdir()
    md_work = results / "work" / TASKS[MD_INDEX]
    md_record = results / "tasks" / f"{TASKS[MD_INDEX]}.json"
    single_md = json.loads((single_run / "tasks" / f"{TASKS[MD_INDEX]}.json").read_text())
    array_id = _submit_array(cluster, nepbench_cli, suite_file, results, logs)
    element = f"{array_id}_{MD_INDEX}"
    deadline, polls = time.monotonic() + WAIT_S, 0
    while not md_work.is_dir():  # the runner makes the task's work folder just before it runs it
        assert time.monotonic() < deadline, f"the NVE task did not start within {WAIT_S} s"
        polls += 1
        if polls % 20 == 0:  # every 2 s: an element that ended before its task began fails now
            ended = [j for j in cluster.jobs(array_id) if j.array_task == str(MD_INDEX) and j.state in FINAL_STATES]
            assert not ended, f"element {element} ended before its task began: {_log_of(logs, ended[0])[-600:]}"
        time.sleep(0.1)
    # a third of the task's single-process wall time in: well inside its MD
    time.sleep(min(0.3 * single_md["provenance"]["wall_s"], 5.0))
    assert not md_record.exists(), "the NVE task finished before it could be cancelled: make it longer"
    cluster.command(["scancel", element])
    jobs = {j.array_task: j for j in cluster.wait(array_id, WAIT_S, count=len(TASKS))}
    assert jobs[str(MD_INDEX)].state == "CANCELLED", jobs[str(MD_INDEX)]
    assert all(jobs[str(i)].ok for i in range(len(TASKS)) if i != MD_INDEX), jobs
    assert not md_record.exists()
    for path in (results / "tasks").glob("*.json"):
        assert json.loads(path.read_text())["status"] == "done", path  # whole records only
    kept = {p.name: p.read_bytes() for p in (results / "tasks").glob("*.json")}
    assert len(kept) == len(TASKS) - 1

    again = tmp_path / "logs-again"
    again.mkdir()
    array_id = _submit_array(cluster, nepbench_cli, suite_file, results, again)
    for job in cluster.wait(array_id, WAIT_S, count=len(TASKS)):
        assert job.ok, f"resubmitted element {job.array_task}: {job.state}: {_log_of(again, job)[-600:]}"
    record = json.loads(md_record.read_text())
    assert record["status"] == "done" and record["metrics"] == single_md["metrics"]
    assert {name: (results / "tasks" / name).read_bytes() for name in kept} == kept  # not recomputed


def test_without_the_image_the_cp2k_scripts_run_the_host_cp2k(tmp_path: Path) -> None:
    """cp2k_shim.sh with IMAGE=none writes no Apptainer shim: the cp2k.psmp first on PATH is the one
    srun starts; with none on PATH it stops the job with one line. (No Slurm needed.)"""
    shim = EXAMPLES / "cp2k_shim.sh"
    host = tmp_path / "host-bin"
    host.mkdir()
    fake = host / "cp2k.psmp"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    script = f'IMAGE=none; SLURM_JOB_ID=7; source "{shim}"; command -v cp2k.psmp; echo "$TMPDIR $SLURM_MPI_TYPE"'
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                         env={"PATH": f"{host}:/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    found, scratch, mpi = out.stdout.split()
    assert (found, scratch, mpi) == (str(fake), f"{tmp_path}/.cp2k_scratch/7", "pmix")
    assert not (tmp_path / ".cp2k_scratch" / "7" / "bin").exists()
    tools = tmp_path / "tools"  # mkdir only: no cp2k.psmp anywhere on PATH
    tools.mkdir()
    (tools / "mkdir").symlink_to(shutil.which("mkdir"))
    bare = subprocess.run(["/bin/bash", "-c", f'IMAGE=none; source "{shim}"; echo still-running'], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30, env={"PATH": str(tools)})
    assert bare.returncode == 1 and "still-running" not in bare.stdout
    assert bare.stderr.strip().splitlines() == ["nepbench: IMAGE=none but no cp2k.psmp on PATH (apt-get install cp2k)"]


def _cp2k_frames(folder: Path) -> list[tuple[np.ndarray, tuple]]:
    """(positions, (energy eV, forces eV/Å, stress eV/Å³)) of a built set's frames, in position order."""
    from nepbench import reference
    from nepbench.structures import labels_of

    frames = sorted(reference.load_frames(folder), key=lambda a: a.positions.round(6).tobytes())
    return [(a.positions.copy(), labels_of(a)) for a in frames]


def _build_counts(output: str) -> tuple[int, int, int]:
    """(labelled, cached, failed) from `nepbench reference build`'s summary line in `output`."""
    found = re.findall(r"reference: labelled (\d+), cached (\d+), failed (\d+)", output)
    assert found, f"no build summary in: {output[-600:]}"
    labelled, cached, failed = (int(n) for n in found[-1])
    return labelled, cached, failed


@pytest.mark.cp2k
def test_cp2k_reference_with_srun_ranks_labels_as_the_direct_build(cluster, nepbench_cli: Path,
                                                                   tmp_path: Path) -> None:
    """cp2k_reference.sbatch with --ntasks=2 on a 2-frame spec: nepbench calls `srun -n 2
    cp2k.psmp` per frame (a recording cp2k.psmp first on PATH shows 2 ranks of one PMIx job per
    frame), the job's `reference verify` passes, and the labels equal a direct build's (mpirun, 2 ranks).

    Debian's CP2K 2023.1 crashed once in some 40 frames here (SIGSEGV in both ranks, under srun; not
    reproduced since). The build keeps a crashed frame for the next build, so each build is run
    again once, as a user would resubmit, and that run must label exactly the frames missing."""
    cp2k = shutil.which("cp2k.psmp")
    if cp2k is None or shutil.which("mpirun") is None:
        _skip_or_fail("cp2k.psmp and mpirun not installed (`make cp2k` as root)")
    spec = tmp_path / "spec.toml"
    spec.write_text(CP2K_SPEC)
    recorder = tmp_path / "bin" / "cp2k.psmp"  # notes each start of CP2K, then runs the real one
    recorder.parent.mkdir()
    calls = tmp_path / "cp2k-calls.txt"
    recorder.write_text(f'#!/bin/sh\necho "job=${{SLURM_JOB_ID:-none}}.${{SLURM_STEP_ID:-none}} '
                        f'rank=${{PMIX_RANK:-none}} ntasks=${{SLURM_STEP_NUM_TASKS:-none}} $*" >> {calls}\n'
                        f'exec {cp2k} "$@"\n')
    recorder.chmod(0o755)

    def direct_build(attempt: int) -> tuple[int, int, int]:
        return _build_counts(_run_outside_slurm(
            [str(nepbench_cli), "reference", "build", str(spec), "--out", str(tmp_path / "direct"), "--ranks", "2"],
            cluster.env, "the direct reference build (mpirun, 2 ranks)"))

    def srun_build(attempt: int) -> tuple[int, int, int]:
        logs = tmp_path / f"logs{attempt}"
        logs.mkdir()
        job_id = cluster.sbatch(EXAMPLES / "cp2k_reference.sbatch", str(spec), options=[
            "--ntasks=2", "--mem-per-cpu=1G", "--time=30", f"--chdir={logs}", f"--output={logs}/%x-%j.out"],
            env={"IMAGE": "none", "NEPBENCH": str(nepbench_cli), "OUT": str(tmp_path / "srun"),
                 "PATH": f"{recorder.parent}:{cluster.env['PATH']}"})
        (job,) = cluster.wait(job_id, WAIT_S)
        log = next(logs.glob("nepbench-cp2k-ref-*.out")).read_text()
        assert job.ok, f"cp2k_reference job {job.state} {job.exit_code}: {log[-800:]}"
        assert "on 2 ranks" in log and "reference verify:" in log and ": ok" in log, log[-600:]
        return _build_counts(log)

    timings = {}
    for name, build in (("direct", direct_build), ("sbatch", srun_build)):
        start = time.monotonic()
        labelled, cached, failed = build(1)
        assert labelled + failed == 2 and cached == 0, (name, labelled, cached, failed)
        if failed:  # a CP2K crash (see above): built again once, the labelled frame is kept
            print(f"{name} build: {failed} frame(s) crashed; building again")
            assert build(2) == (failed, labelled, 0), name
        timings[name] = time.monotonic() - start

    # each labelled frame was one srun step of two PMIx ranks
    starts = [dict(kv.split("=", 1) for kv in line.split()[:3]) for line in calls.read_text().splitlines()
              if "-i in.inp" in line]
    steps: dict[str, set[str]] = {}
    for s in starts:
        steps.setdefault(s["job"], set()).add(s["rank"])
    assert len(steps) >= 2 and not any(step.endswith(".none") for step in steps), starts
    assert all(ranks == {"0", "1"} for ranks in steps.values()), starts
    assert all(s["ntasks"] == "2" for s in starts), starts
    direct_frames, srun_frames = _cp2k_frames(tmp_path / "direct"), _cp2k_frames(tmp_path / "srun")
    assert len(direct_frames) == len(srun_frames) == 2
    for (pos_a, (energy_a, forces_a, stress_a)), (pos_b, (energy_b, forces_b, stress_b)) in zip(
            direct_frames, srun_frames):
        np.testing.assert_array_equal(pos_a, pos_b)
        assert abs(energy_a - energy_b) < 1e-6  # eV
        np.testing.assert_allclose(forces_a, forces_b, rtol=0, atol=1e-5)  # eV/Å
        np.testing.assert_allclose(stress_a, stress_b, rtol=0, atol=1e-7)  # eV/Å³
    print(f"CP2K, 2 frames on 2 ranks: direct build {timings['direct']:.1f} s, "
          f"cp2k_reference.sbatch submission to end {timings['sbatch']:.1f} s")
