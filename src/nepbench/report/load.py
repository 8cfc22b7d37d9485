"""Reading run directories: `suite.json` and the result records `tasks/<task_id>.json`, checked
against schema "nepbench.result/1" (written by runner.py), and merged across directories.

Several run directories (e.g. one per Slurm array element) are merged: tasks and criteria are
united by id, and where two directories hold a record for the same task the newest inputs win
(`input_hash`: an old success never stands in for a run of changed inputs), then, among records of
one input, the finished one (then the newest). A malformed file raises `InputError` naming it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import InputError
from ..textfiles import load_json

RECORD_SCHEMA = "nepbench.result/1"
STATUSES = ("done", "skipped", "not_applicable", "failed")
STATUS_RANK = {"done": 0, "not_applicable": 1, "skipped": 2, "failed": 3}


def _read_json(path: Path) -> Any:
    """Parsed JSON of `path`; InputError naming the file when it is unreadable or malformed."""
    return load_json(path, InputError)


def _float_or_inf(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _check_record(path: Path, record: Any) -> dict[str, Any]:
    """The record if it follows schema nepbench.result/1, else InputError naming the file and field."""
    if not isinstance(record, dict):
        raise InputError(path, f"a result record must be a JSON object, not {type(record).__name__}")
    if record.get("schema") != RECORD_SCHEMA:
        raise InputError(path, f"unknown schema {record.get('schema')!r} (expected {RECORD_SCHEMA!r})")
    for key in ("task_id", "task_type"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise InputError(path, f"'{key}' must be a non-empty string")
    if record.get("status") not in STATUSES:
        raise InputError(path, f"'status' is {record.get('status')!r}; expected one of {', '.join(STATUSES)}")
    for key in ("metrics", "metric_units", "metric_reasons", "series", "provenance"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            raise InputError(path, f"'{key}' must be a JSON object")
    for name, value in (record.get("metrics") or {}).items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(path, f"metric {name!r} is {value!r}; metrics must be numbers")
        if isinstance(value, int) and not math.isfinite(_float_or_inf(value)):
            raise InputError(path, f"metric {name!r} is an integer too large for a float ({len(str(value))} digits)")
    for key in ("metric_units", "metric_reasons"):
        for name, value in (record.get(key) or {}).items():
            if not isinstance(value, str):
                raise InputError(path, f"'{key}' of {name!r} is {value!r}; it must be a string")
    for field_name, names in (("unresolved_metrics", record.get("unresolved_metrics")),
                              ("provenance.data_files", (record.get("provenance") or {}).get("data_files"))):
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            raise InputError(path, f"'{field_name}' must be a list of strings, not {names!r}")
    if record.get("input_hash") is not None and not isinstance(record["input_hash"], str):
        raise InputError(path, f"'input_hash' must be a string or null, not {record['input_hash']!r}")
    for key in ("packages", "engines", "hardware"):
        if (record.get("provenance") or {}).get(key) is not None and not isinstance(record["provenance"][key], dict):
            raise InputError(path, f"'provenance.{key}' must be a JSON object")
    gpus = ((record.get("provenance") or {}).get("hardware") or {}).get("gpus")
    if gpus is not None and (not isinstance(gpus, list) or not all(isinstance(g, str) for g in gpus)):
        raise InputError(path, f"'provenance.hardware.gpus' must be a list of strings, not {gpus!r}")
    model = record.get("model")
    if model is not None:
        if not isinstance(model, dict):
            raise InputError(path, "'model' must be a JSON object or null")
        for key in ("name", "sha256"):
            if model.get(key) is not None and not isinstance(model[key], str):
                raise InputError(path, f"'model.{key}' must be a string or null, not {model[key]!r}")
    return record


def _check_suite(path: Path, suite: Any) -> dict[str, Any]:
    """The suite dict if it has a name and lists of tasks and criteria, else InputError."""
    if not isinstance(suite, dict):
        raise InputError(path, "suite.json must be a JSON object")
    for key in ("tasks", "criteria"):
        if not isinstance(suite.get(key, []), list):
            raise InputError(path, f"'{key}' must be a list")
    for index, task in enumerate(suite.get("tasks", [])):
        if not isinstance(task, dict) or not isinstance(task.get("id"), str):
            raise InputError(path, f"task #{index} must be an object with an 'id'")
    for index, crit in enumerate(suite.get("criteria", [])):
        if not isinstance(crit, dict):
            raise InputError(path, f"criterion #{index} must be an object")
    return suite


def load_run_dir(run_dir: str | Path) -> tuple[dict[str, Any], list[tuple[Path, dict[str, Any]]]]:
    """(suite, [(path, record)]) of one run directory; InputError naming the first bad file."""
    run_dir = Path(run_dir)
    suite_path = run_dir / "suite.json"
    if not suite_path.is_file():
        problem = "no such directory" if not run_dir.exists() else "not a nepbench run directory (no suite.json)"
        raise InputError(run_dir if not run_dir.exists() else suite_path, problem)
    suite = _check_suite(suite_path, _read_json(suite_path))
    tasks_dir = run_dir / "tasks"
    if tasks_dir.exists() and not tasks_dir.is_dir():
        raise InputError(tasks_dir, "must be the folder of task records, not a file")
    records = []
    for path in sorted(tasks_dir.glob("*.json")):
        if not path.name.startswith("."):  # skip half-written temporary files
            records.append((path, _check_record(path, _read_json(path))))
    return suite, records


def _merge_by_id(path: Path, kind: str, merged: dict[str, dict[str, Any]],
                 items: Iterable[dict[str, Any]], origin: dict[str, Path]) -> None:
    """Add `items` to `merged` by id (`origin`: the file each id came from); InputError when one id
    has two different definitions."""
    for item in items:
        key = str(item.get("id"))
        if key in merged and merged[key] != item:
            where = "earlier in this file" if origin[key] == path else f"in {origin[key]}"
            raise InputError(path, f"{kind} {key!r} is defined twice, differently ({where})")
        merged.setdefault(key, item)
        origin.setdefault(key, path)


def merge_suites(suites: Sequence[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """One suite from several run directories: tasks and criteria united by id (InputError when
    one id has two definitions). Folders of one suite (a Slurm array) keep its name and
    description; folders of several suites (the quick suite and the comparators') are named
    "quick + comparators", their descriptions joined in folder order."""
    first_path, first = suites[0]
    tasks: dict[str, dict[str, Any]] = {}
    criteria: dict[str, dict[str, Any]] = {}
    task_origin: dict[str, Path] = {}
    criterion_origin: dict[str, Path] = {}
    names: list[str] = []
    descriptions: list[str] = []
    for path, suite in suites:
        name = str(suite.get("name"))
        if name not in names:
            names.append(name)
            descriptions.append(str(suite.get("description") or ""))
        _merge_by_id(path, "task", tasks, suite.get("tasks", []), task_origin)
        _merge_by_id(path, "criterion", criteria, suite.get("criteria", []), criterion_origin)
    merged = {**first, "tasks": list(tasks.values()), "criteria": list(criteria.values())}
    if len(names) > 1:
        merged["name"] = " + ".join(names)
        merged["description"] = "; ".join(f"{n}: {d}" if d else n for n, d in zip(names, descriptions))
    return merged


def _created(pair: tuple[Path, dict[str, Any]]) -> str:
    return str((pair[1].get("provenance") or {}).get("created_utc") or "")


def _best_first(candidates: list[tuple[Path, dict[str, Any]]]) -> list[tuple[Path, dict[str, Any]]]:
    """Records of one task, best first. Records of other inputs (another `input_hash`: the model
    file, the reference data, the code or the parameters changed) are ordered newest inputs first,
    so an old success never stands in for a newer run of changed inputs; records of one input are
    ordered finished before skipped before failed, then newest."""
    newest = sorted(candidates, key=_created, reverse=True)
    input_order: dict[Any, int] = {}
    for _, record in newest:
        input_order.setdefault(record.get("input_hash"), len(input_order))
    by_status = sorted(newest, key=lambda pr: STATUS_RANK.get(str(pr[1].get("status")), 9))
    return sorted(by_status, key=lambda pr: input_order[pr[1].get("input_hash")])


def merge_records(found: Sequence[tuple[Path, dict[str, Any]]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """task_id → the best record (`_best_first`: newest inputs, then done first, then newest), and
    notes about duplicates."""
    by_task: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for path, record in found:
        by_task.setdefault(record["task_id"], []).append((path, record))
    chosen: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for task_id, candidates in by_task.items():
        candidates = _best_first(candidates)
        chosen[task_id] = candidates[0][1]
        if len(candidates) > 1:
            others = ", ".join(str(p) for p, _ in candidates[1:])
            notes.append(f"task {task_id}: used {candidates[0][0]} ({candidates[0][1]['status']}); "
                         f"ignored {others}")
    return chosen, notes
