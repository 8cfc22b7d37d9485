"""Run a suite: one result record per task, with provenance, cached by content hash.

A record is written atomically to `<out>/tasks/<task_id>.json` as soon as its task finishes. A rerun
(or a run resumed after Ctrl-C) recomputes nothing finished: a task whose record has status "done"
or "not_applicable" and the same input hash is kept as it is. Skipped and failed tasks are tried again.

While a task runs, `Progress` prints where it is (a line when it starts, then its elapsed time and,
while CP2K runs under it, CP2K's MD step k/n with s/step and the time left): one live line on a
terminal, plain lines in a log.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from . import __version__
from .spec import Suite, TaskSpec
from .errors import EngineNotAvailable, InputError, ModelError, ModelUnavailable, NepbenchError
from .files import atomic_write_bytes, atomic_write_json
from .provenance import code_sha256, content_hash, git_code_modified, git_commit, hardware_info, package_versions, sha256_bytes, sha256_file
from .tasks import REFERENCE_DATA_ALL, STAGE_KEY, TASK_REFERENCE_DATA, TaskContext, TaskOutcome, task_function
from .textfiles import load_json

SCHEMA = "nepbench.result/1"
FINAL_STATUSES = ("done", "not_applicable")
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "reference_data"
#: The run folder's copies of the models its tasks ran, each named by its sha256 (`snapshot_model`).
MODELS_DIR = "models"


@dataclass(frozen=True)
class ResolvedModel:
    """A model as this invocation's tasks run it.

    Attributes:
        name: registry name or file name.
        path: the run folder's snapshot of the model file (an ASE-calculator model: of its weights).
        sha256: sha256 of that file.
        source: the registry record's source (kind "ase": the calculator factory and its arguments);
            empty for a NEP given as a file.
        species: the registry record's species (what an ASE-calculator model covers); may be empty.
    """

    name: str
    path: Path
    sha256: str
    source: Mapping[str, Any] = field(default_factory=dict)
    species: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """"ase" for an ASE-calculator comparator, else "nep"."""
        return "ase" if self.source.get("kind") == "ase" else "nep"


def task_data_files(task_type: str, params: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The reference-data files (relative to reference_data/) a task's results depend on: its
    type's (`TASK_REFERENCE_DATA`), except that an md_accuracy task with `runs = []` (the NVE check
    alone, as in the gate suite) reads none, so new AIMD frames leave its record and gate alone, and
    a parity task reads its `dataset`'s manifest (v1 `dft` or v2 `dft-v2`)."""
    if task_type == "md_accuracy" and params is not None and params.get("runs") == []:
        return ()
    if task_type == "parity" and params is not None and params.get("dataset", "dft") != "dft":
        return (f"{params['dataset']}/manifest.json",)  # the reference set the task scores
    return TASK_REFERENCE_DATA.get(task_type, REFERENCE_DATA_ALL)


def files_sha256(files: Iterable[str], reference_dir: Path) -> str | None:
    """sha256 over reference-data `files` (each existing file's name and sha256), None when none exists."""
    parts = [(name, sha256_file(reference_dir / name)) for name in files if (reference_dir / name).is_file()]
    return content_hash(parts) if parts else None


def task_data_sha256(task_type: str, reference_dir: Path, params: Mapping[str, Any] | None = None) -> str | None:
    """`files_sha256` of the files a task reads (`task_data_files`): None when it reads none."""
    return files_sha256(task_data_files(task_type, params), reference_dir)


def task_input_hash(spec: TaskSpec, model: ResolvedModel | None, data_sha256: str | None) -> str:
    """The cache key of a task: its parameters, the model's and the data's sha256, nepbench's
    version and the sha256 of its code (`code_sha256`: after a code change a rerun recomputes)."""
    key = {"task": spec.to_dict(), "model_sha256": model.sha256 if model else None,
           "data_sha256": data_sha256, "nepbench": __version__, "code_sha256": code_sha256()}
    if model is not None and model.kind == "ase":  # the weights alone do not say how they are run
        key["model_source"] = dict(model.source)
    members = _ensemble_sha256s(model)
    if members:  # the parity task reports the spread of these files: new members, a new result
        key["ensemble_sha256"] = members
    return content_hash(key)


def _ensemble_sha256s(model: ResolvedModel | None) -> list[str]:
    """sha256 of each further seed-ensemble member the registry lists for a local NEP (empty for
    any other model, or one whose registry table no longer registers this file)."""
    if model is None or model.source.get("kind") != "local":
        return []
    from .models import load_registry

    record = load_registry().get(model.name)
    if record is None or record.sha256 != model.sha256:
        return []
    return [member.sha256 for member in record.ensemble]


def _resolve(name: str, cache: dict[str, ResolvedModel], out_dir: Path) -> ResolvedModel:
    """The model `name` as this invocation's tasks run it: its snapshot under `out_dir`."""
    if name not in cache:
        from .models import resolve_model

        info = resolve_model(name)
        suffix = f".{Path(info.path).name}" if info.kind == "ase" else ".nep.txt"  # weights keep their name
        cache[name] = ResolvedModel(info.name, snapshot_model(Path(info.path), info.sha256, out_dir / MODELS_DIR,
                                                              suffix), info.sha256, dict(info.source),
                                    tuple(info.species))
    return cache[name]


def _registered(name: str) -> ResolvedModel:
    """Registry model `name` as its record describes it (path empty: nothing of it runs), for the
    record of a task skipped because the model's package is missing."""
    from .models import load_registry

    record = load_registry()[name]
    return ResolvedModel(record.name, Path(), record.sha256, dict(record.source), tuple(record.species))


def snapshot_model(path: Path, sha256: str, folder: Path, suffix: str = ".nep.txt") -> Path:
    """A copy of model file `path`, named by its `sha256`, in `folder` (the run folder's models/):
    the file every task of the run reads, so a record's model_sha256 names the bytes its task ran
    however `path` changes during the run (a trainer rewriting its nep.txt, `nepbench train
    --register --force` replacing a registered model), and the run folder holds the model it judged.
    The file is named `<sha256><suffix>` (an ASE-calculator model's weights keep their own file name,
    whose extension its loader may read).

    Raises:
        ModelError naming `path`: its bytes no longer have `sha256` (it changed after it was resolved).
    """
    target = folder / f"{sha256}{suffix}"
    if target.is_file() and sha256_file(target) == sha256:
        return target
    data = path.read_bytes()
    found = sha256_bytes(data)
    if found != sha256:
        raise ModelError(f"{path}: changed after it was resolved (sha256 {found[:12]}…, resolved as "
                         f"{sha256[:12]}…): run again once it is no longer being written")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    return target


def record_path(out_dir: Path, task_id: str) -> Path:
    return out_dir / "tasks" / f"{task_file_stem(task_id)}.json"


def task_file_stem(task_id: str) -> str:
    """A task id as one file or folder name: a model given as a path puts "/" (and "..") in the id."""
    return task_id.replace("/", "_")


def load_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def make_record(spec: TaskSpec, outcome: TaskOutcome, model: ResolvedModel | None,
                data_sha256: str | None, input_hash: str, wall_s: float,
                data_files: list[str] | None = None) -> dict[str, Any]:
    """A result record with its provenance (see report/ for the schema). `data_files`: what
    `data_sha256` covers (default: the reference-data files the task type reads)."""
    if data_files is None:
        data_files = list(task_data_files(spec.type, spec.params)) if data_sha256 else []
    return {
        "schema": SCHEMA, "task_id": spec.id, "task_type": spec.type, "title": spec.title,
        "model": {"name": model.name, "sha256": model.sha256} if model else None,
        "status": outcome.status, "reason": outcome.reason, "metrics": outcome.metrics,
        "metric_units": outcome.metric_units,
        "metric_reasons": outcome.metric_reasons, "unresolved_metrics": sorted(outcome.unresolved_metrics),
        "method": outcome.method, "series": outcome.series,
        "params": spec.params,
        "provenance": {
            "model_sha256": model.sha256 if model else None, "data_sha256": data_sha256,
            "data_files": data_files,
            "packages": package_versions(), "engines": outcome.engines, "hardware": hardware_info(),
            "seed": outcome.seed, "wall_s": round(wall_s, 3), "nepbench_version": __version__,
            "nepbench_commit": git_commit(), "nepbench_code_modified": git_code_modified(),
            "nepbench_code_sha256": code_sha256(),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "input_hash": input_hash,
    }


def run_task(spec: TaskSpec, out_dir: Path, models: dict[str, ResolvedModel],
             reference_dir: Path = REFERENCE_DIR, force: bool = False,
             shared: dict[str, Any] | None = None, progress: "Progress | None" = None,
             position: tuple[int, int] = (1, 1)) -> tuple[dict[str, Any], bool]:
    """Run one task unless a finished record with the same input hash exists; returns (record, cached).

    `shared` is the state the tasks of one invocation share (`TaskContext.shared`); a new dict if None.
    `progress` reports a task that runs (not one kept from the cache) as task `position` = (k, n).
    """
    data_sha = task_data_sha256(spec.type, reference_dir, spec.params)
    model: ResolvedModel | None = None
    model_error: str | None = None
    model_missing: str | None = None  # an optional comparator's package is not installed: skipped
    if spec.models:
        try:
            model = _resolve(spec.models[0], models, out_dir)
        except ModelUnavailable as exc:
            model_missing = str(exc)
            model = _registered(spec.models[0])  # named in the record, so it sits in its model's column
        except ModelError as exc:
            model_error = str(exc)
    input_hash = task_input_hash(spec, model, data_sha)
    path = record_path(out_dir, spec.id)
    old = load_record(path)
    if not force and old and old.get("input_hash") == input_hash and old.get("status") in FINAL_STATUSES:
        return old, True
    start = time.perf_counter()
    if model_error is not None:
        outcome = TaskOutcome("failed", reason=model_error)
    elif model_missing is not None:
        outcome = TaskOutcome("skipped", reason=model_missing)
    else:
        context = TaskContext(out_dir / "work" / task_file_stem(spec.id), reference_dir,
                              model.path if model else None, model.name if model else None,
                              model.sha256 if model else None, {} if shared is None else shared,
                              model_source=dict(model.source) if model else {},
                              model_species=tuple(model.species) if model else ())
        context.work_dir.mkdir(parents=True, exist_ok=True)
        context.shared.pop(STAGE_KEY, None)  # a stage the previous task left is not this task's
        watch = (progress.task(spec, *position, shared=context.shared) if progress is not None
                 else contextlib.nullcontext())
        try:
            with watch:
                outcome = task_function(spec.type)(spec, context)
        except EngineNotAvailable as exc:
            outcome = TaskOutcome("skipped", reason=str(exc))
        except NepbenchError as exc:
            outcome = TaskOutcome("failed", reason=str(exc))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a bug: record it as failed with the traceback's last line
            outcome = TaskOutcome("failed", reason=f"{type(exc).__name__}: {exc}")
            (context.work_dir / "traceback.txt").write_text(traceback.format_exc())
    record = make_record(spec, outcome, model, data_sha, input_hash, time.perf_counter() - start)
    atomic_write_json(path, record)
    return record, False


def claim_run_dir(out_dir: Path, suite_name: str) -> None:
    """Check that `out_dir` may take a run of suite `suite_name`: it is new, empty, or already holds
    a run of that suite (a rerun, or another Slurm array task of it).

    Raises:
        InputError: `out_dir` is a file, or holds the run of another suite (writing there would
            replace that run's suite.json, and with it the criteria `verify` judges) or a
            suite.json that cannot be read.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "output folder is a file")
    suite_json = out_dir / "suite.json"
    if not suite_json.exists():
        return
    held = load_json(suite_json, lambda path, problem: InputError(
        path, f"unreadable ({problem}); give another output folder or remove it"))
    held_name = held.get("name") if isinstance(held, dict) else None
    if held_name != suite_name:
        raise InputError(out_dir, f"holds a run of suite {held_name!r}, not {suite_name!r}: give another "
                         "output folder (one folder holds one suite's run; `nepbench report` merges folders)")


def run_suite(suite: Suite, out_dir: Path, task_ids: list[str] | None = None,
              reference_dir: Path = REFERENCE_DIR, force: bool = False,
              on_task: Callable[[TaskSpec, dict[str, Any], bool], None] | None = None,
              progress: "Progress | bool" = True) -> list[dict[str, Any]]:
    """Run every task of `suite` (or `task_ids`) into `out_dir`; returns the records in suite order.

    `on_task(spec, record, cached)` is called after each task. `progress`: True reports each task
    that runs on stdout (`Progress()`), False nothing, or a `Progress` of the caller's.

    Raises:
        ConfigError: an unknown task id (before anything is written).
        InputError: `out_dir` holds another suite's run (`claim_run_dir`).
    """
    specs = [suite.task(t) for t in task_ids] if task_ids else list(suite.tasks)
    claim_run_dir(out_dir, suite.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "suite.json", suite.to_dict())
    reporter = Progress() if progress is True else (progress or None)
    models: dict[str, ResolvedModel] = {}
    shared: dict[str, Any] = {}
    records = []
    for index, spec in enumerate(specs, 1):
        record, cached = run_task(spec, out_dir, models, reference_dir, force, shared, reporter,
                                  (index, len(specs)))
        records.append(record)
        if on_task:
            on_task(spec, record, cached)
    return records


# ----------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class Activity:
    """What a running task is doing: `stage` (a new stage gets a new line in a log, e.g. "CP2K MD
    step 2/3") and `detail` (updated in place, e.g. "35.7 s/step, ~36 s left")."""

    stage: str
    detail: str = ""

    def text(self) -> str:
        return f"{self.stage} ({self.detail})" if self.detail else self.stage


def describe_cp2k(input_text: str, ener_text: str | None) -> Activity:
    """Where a CP2K run is, from its input (in.inp) and its `.ener` file so far (None: not written yet).

    MD (an &MD section with STEPS n): "CP2K MD step k/n" with the last step's wall time and the
    time left at that rate; before the first step ends, "CP2K MD step 0/n" (set-up and first SCF).
    Without &MD: "CP2K single point". The `.ener` columns are CP2K's: step, time, kinetic,
    temperature, potential, conserved, used time (s).
    """
    steps = re.search(r"^\s*&MD\b.*?^\s*STEPS\s+(\d+)", input_text, re.M | re.S | re.I)
    if steps is None:
        return Activity("CP2K single point")
    total = int(steps.group(1))
    rows = [line.split() for line in (ener_text or "").splitlines() if not line.lstrip().startswith("#")]
    rows = [r for r in rows if len(r) >= 7]
    if not rows:
        return Activity(f"CP2K MD step 0/{total}", "set-up and first SCF")
    try:
        step, used_s = int(float(rows[-1][0])), float(rows[-1][6])
    except ValueError:
        return Activity(f"CP2K MD step ?/{total}")
    if step == 0:  # CP2K writes step 0 (the start, 0 s used) before the first step ends
        return Activity(f"CP2K MD step 0/{total}", "set-up and first SCF")
    left = max(0, total - step) * used_s
    return Activity(f"CP2K MD step {step}/{total}", f"{used_s:.1f} s/step, ~{duration(left)} left")


def _children_by_parent(proc: Path) -> dict[int, list[int]]:
    """Parent pid → child pids, from /proc/<pid>/stat (processes that vanish meanwhile are skipped)."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])  # "pid (comm) state ppid ..."; comm may hold ")"
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    return children


def descendants(root_pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Every process under `root_pid` (children, their children, ...); [] where /proc is absent."""
    try:
        children = _children_by_parent(proc)
    except OSError:
        return []
    out, todo = [], list(children.get(root_pid, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cp2k_activity(root_pid: int | None = None, proc: Path = Path("/proc")) -> Activity | None:
    """What the CP2K run under process `root_pid` (default: this one) is doing (`describe_cp2k`),
    found through the working folder of a descendant whose command is cp2k*; None when no CP2K runs
    under it or its files cannot be read. Reads /proc only: nothing is asked of CP2K."""
    for pid in sorted(descendants(os.getpid() if root_pid is None else root_pid, proc)):
        try:
            argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
            if not any(Path(a.decode(errors="replace")).name.startswith("cp2k") for a in argv if a):
                continue
            folder = Path(os.readlink(proc / str(pid) / "cwd"))
            input_text = (folder / "in.inp").read_text(errors="replace")
        except OSError:
            continue
        project = re.search(r"^\s*PROJECT(?:_NAME)?\s+(\S+)", input_text, re.M | re.I)
        ener = folder / f"{project.group(1) if project else 'cp2k'}-1.ener"
        try:
            ener_text = ener.read_text(errors="replace") if ener.is_file() else None
        except OSError:
            ener_text = None
        return describe_cp2k(input_text, ener_text)
    return None


def duration(seconds: float) -> str:
    """A duration of `seconds` (s, rounded to whole seconds) as short text: '42 s' under a minute,
    '3m05s' under an hour, '2h07m' (seconds dropped) above."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Progress of a suite run on `stream` (default stdout, where `nepbench run` prints each task's
    result): a line when a task starts ("[3/8] throughput-x: running (throughput, model x)"), then
    while it runs its elapsed time, the stage the task states (`STAGE_KEY`) and what `activity()`
    says is running under it (default: `cp2k_activity`).

    On a terminal (`live`, default: `stream.isatty()`) one line is rewritten every `interval_s`
    (default 1 s) and cleared when the task ends; otherwise (a log, CI, Slurm) a plain line is
    written when the activity's stage changes, and at least every `quiet_s` (default 60 s), checked
    every `interval_s` (default 5 s). The task's own result line is the caller's (`on_task`).
    """

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, interval_s: float | None = None,
                 quiet_s: float = 60.0, activity: Callable[[], Activity | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(isatty and isatty()) if live is None else live
        self.interval_s = interval_s if interval_s is not None else (1.0 if self.live else 5.0)
        self.quiet_s = quiet_s
        self.activity = activity if activity is not None else cp2k_activity
        self.clock = clock
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def task(self, spec: TaskSpec, index: int = 1, total: int = 1,
             shared: Mapping[str, Any] | None = None) -> Iterator[None]:
        """Report `spec` (task `index` of `total`) as running while the block runs; the stage the task
        writes to `shared[STAGE_KEY]` leads its progress line."""
        model = f", model {spec.models[0]}" if spec.models else ""
        self._write(f"[{index}/{total}] {spec.id}: running ({spec.type}{model})\n")
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(spec.id, self.clock(), stop, shared), daemon=True,
                                name=f"progress-{spec.id}")
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()
            if self.live:
                self._write("\r\x1b[K")

    @staticmethod
    def status_line(task_id: str, elapsed_s: float, activity: Activity | None) -> str:
        """'  throughput-x: 2m30s; CP2K MD step 2/3 (35.7 s/step, ~36 s left)'."""
        return f"  {task_id}: {duration(elapsed_s)}" + (f"; {activity.text()}" if activity else "")

    def _beat(self, task_id: str, start: float, stop: threading.Event, shared: Mapping[str, Any] | None) -> None:
        last_stage: str | None = None
        last_line = start
        while not stop.wait(self.interval_s):
            try:
                activity = self.activity()
            except Exception:  # progress must never break the task it reports on
                activity = None
            stage = (shared or {}).get(STAGE_KEY)
            if isinstance(stage, str) and stage:
                activity = Activity(f"{stage}; {activity.stage}", activity.detail) if activity else Activity(stage)
            now = self.clock()
            line = self.status_line(task_id, now - start, activity)
            if self.live:
                self._write("\r\x1b[K" + line[:self._columns() - 1])
                continue
            stage = activity.stage if activity else None
            if stage != last_stage or now - last_line >= self.quiet_s:
                self._write(line + "\n")
                last_stage, last_line = stage, now

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, AttributeError, ValueError):
            return 100

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # a closed pipe: the run goes on without its progress
                pass
