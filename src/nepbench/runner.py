"""Run a suite: one result record per task, with provenance, cached by content hash.

A record is written atomically to `<out>/tasks/<task_id>.json` as soon as its task finishes. A rerun
(or a run resumed after Ctrl-C) recomputes nothing finished: a task whose record has status "done"
or "not_applicable" and the same input hash is kept as it is. Skipped and failed tasks are tried again.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .config import Suite, TaskSpec
from .errors import EngineNotAvailable, InputError, ModelError, NepbenchError
from .provenance import (
    atomic_write_bytes, atomic_write_json, code_sha256, content_hash, git_code_modified, git_commit, hardware_info,
    package_versions, sha256_bytes, sha256_file,
)
from .tasks import REFERENCE_DATA_ALL, TASK_REFERENCE_DATA, TaskContext, TaskOutcome, task_function
from .textfiles import load_json

SCHEMA = "nepbench.result/1"
FINAL_STATUSES = ("done", "not_applicable")
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "reference_data"
#: The run folder's copies of the models its tasks ran, each named by its sha256 (`snapshot_model`).
MODELS_DIR = "models"


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path
    sha256: str


def task_data_files(task_type: str, params: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The reference-data files (relative to reference_data/) a task's results depend on: its
    type's (`TASK_REFERENCE_DATA`), except that an md_accuracy task with `runs = []` (the NVE check
    alone, as in the gate suite) reads none, so new AIMD frames leave its record and gate alone."""
    if task_type == "md_accuracy" and params is not None and params.get("runs") == []:
        return ()
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
    return content_hash({"task": spec.to_dict(), "model_sha256": model.sha256 if model else None,
                         "data_sha256": data_sha256, "nepbench": __version__, "code_sha256": code_sha256()})


def _resolve(name: str, cache: dict[str, ResolvedModel], out_dir: Path) -> ResolvedModel:
    """The model `name` as this invocation's tasks run it: its snapshot under `out_dir`."""
    if name not in cache:
        from .models import resolve_model

        info = resolve_model(name)
        cache[name] = ResolvedModel(info.name, snapshot_model(Path(info.path), info.sha256, out_dir / MODELS_DIR),
                                    info.sha256)
    return cache[name]


def snapshot_model(path: Path, sha256: str, folder: Path) -> Path:
    """A copy of model file `path`, named by its `sha256`, in `folder` (the run folder's models/):
    the file every task of the run reads, so a record's model_sha256 names the bytes its task ran
    however `path` changes during the run (a trainer rewriting its nep.txt, `nepbench train
    --register --force` replacing a registered model), and the run folder holds the model it judged.

    Raises:
        ModelError naming `path`: its bytes no longer have `sha256` (it changed after it was resolved).
    """
    target = folder / f"{sha256}.nep.txt"
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
             shared: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
    """Run one task unless a finished record with the same input hash exists; returns (record, cached).

    `shared` is the state the tasks of one invocation share (`TaskContext.shared`); a new dict if None.
    """
    data_sha = task_data_sha256(spec.type, reference_dir, spec.params)
    model: ResolvedModel | None = None
    model_error: str | None = None
    if spec.models:
        try:
            model = _resolve(spec.models[0], models, out_dir)
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
    else:
        context = TaskContext(out_dir / "work" / task_file_stem(spec.id), reference_dir,
                              model.path if model else None, model.name if model else None,
                              model.sha256 if model else None, {} if shared is None else shared)
        context.work_dir.mkdir(parents=True, exist_ok=True)
        try:
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
              on_task: Callable[[TaskSpec, dict[str, Any], bool], None] | None = None) -> list[dict[str, Any]]:
    """Run every task of `suite` (or `task_ids`) into `out_dir`; returns the records in suite order.

    Raises:
        ConfigError: an unknown task id (before anything is written).
        InputError: `out_dir` holds another suite's run (`claim_run_dir`).
    """
    specs = [suite.task(t) for t in task_ids] if task_ids else list(suite.tasks)
    claim_run_dir(out_dir, suite.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "suite.json", suite.to_dict())
    models: dict[str, ResolvedModel] = {}
    shared: dict[str, Any] = {}
    records = []
    for spec in specs:
        record, cached = run_task(spec, out_dir, models, reference_dir, force, shared)
        records.append(record)
        if on_task:
            on_task(spec, record, cached)
    return records
