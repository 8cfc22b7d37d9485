"""Reports: run directories → verdicts, figures, results.json, report.md and report.html.

A run directory holds `suite.json` (the parsed suite) and `tasks/<task_id>.json`, one result record
per task (schema "nepbench.result/1", written by runner.py). Several run directories (e.g. one per
Slurm array element) are merged: tasks and criteria are united by id, and where two directories hold
a record for the same task the newest inputs win (`input_hash`: an old success never stands in for
a run of changed inputs), then, among records of one input, the finished one (then the newest).

Series (plot data) by task type:
  parity       {"forces": {el: {"ref", "pred"}}, "energy": {"ref", "pred"}, "per_motif": {motif: {...}}}
  md_accuracy  {"rdf": {run: {"r_a", "pairs": {pair: {"ref", "model"}}}},
                "msd": {run: {sp: {"time_ps", "ref", "model"}}}, "runs": {run: {"aimd_production_ps", ...}},
                "aimd_thermo": {run: {"time_ps", "temperature_k", "potential_ev_per_atom", "warmup_ps", ...}},
                "arrhenius": {"system", "temperature_k", "d_ref_cm2_per_s", "d_model_cm2_per_s", *_stderr}}
                (one entry per point; `system` groups the points of one composition)
  throughput   {"identical_n": [{"n_atoms", "cp2k_s_per_step", "nep_s_per_step", "ratio", ...}],
                "scaling": {engine: {"n_atoms", "s_per_atom_step"}}}
  expansion    {"shell_thickness_nm", "particle_dv_over_v0", "particle_dv_stderr", "core_dv_over_v0",
                "radial": {thickness_nm: {"r_nm", "li_fraction", "strain"}}}

The report itself never runs anything: it reads records, judges criteria and draws figures.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import hashlib
import html
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .. import __version__
from ..config import params_difference
from ..errors import ConfigError, InputError
from ..provenance import atomic_write_files, json_document
from ..textfiles import load_json
from . import plots
from .criteria import Verdict, accuracy_caveats, counts, exit_code, floor_caveats, hardware_summary, judge_all

RECORD_SCHEMA = "nepbench.result/1"
REPORT_SCHEMA = "nepbench.report/1"
STATUSES = ("done", "skipped", "not_applicable", "failed")
STATUS_RANK = {"done": 0, "not_applicable": 1, "skipped": 2, "failed": 3}
VERDICT_LABEL = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "not_measured": "NOT MEASURED"}
VERDICT_MARK = {"pass": "✅", "warn": "⚠️", "fail": "❌", "not_measured": "⏸"}
VERDICT_COLOUR = {"pass": "#1a7f37", "warn": "#b7791f", "fail": "#c62828", "not_measured": "#6b7280"}
FIGURES_DIR = "figures"


# ----------------------------------------------------------------------------- loading


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
    """One suite from several run directories: same name; tasks and criteria united by id."""
    first_path, first = suites[0]
    tasks: dict[str, dict[str, Any]] = {}
    criteria: dict[str, dict[str, Any]] = {}
    task_origin: dict[str, Path] = {}
    criterion_origin: dict[str, Path] = {}
    for path, suite in suites:
        if suite.get("name") != first.get("name"):
            raise InputError(path, f"suite {suite.get('name')!r} is not {first.get('name')!r} of {first_path}")
        _merge_by_id(path, "task", tasks, suite.get("tasks", []), task_origin)
        _merge_by_id(path, "criterion", criteria, suite.get("criteria", []), criterion_origin)
    return {**first, "tasks": list(tasks.values()), "criteria": list(criteria.values())}


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


# ----------------------------------------------------------------------------- building


def _model_name(record: Mapping[str, Any]) -> str | None:
    model = record.get("model")
    return str(model.get("name")) if isinstance(model, Mapping) and model.get("name") else None


def group_key(record: Mapping[str, Any]) -> str:
    """The task id with its model name replaced by {model}: records of one task template share it."""
    model = _model_name(record)
    task_id = str(record["task_id"])
    if not model:
        return task_id
    matches = list(re.finditer(rf"(?<![A-Za-z0-9]){re.escape(model)}(?![A-Za-z0-9])", task_id))
    if not matches:
        return task_id
    last = matches[-1]
    return task_id[:last.start()] + "{model}" + task_id[last.end():]


def _group_title(record: Mapping[str, Any]) -> str:
    title = str(record.get("title") or record["task_id"])
    model = _model_name(record)
    return title.replace(f" ({model})", "") if model else title


def task_groups(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Records grouped by task template (models of one task side by side), in suite order."""
    order = {t["id"]: i for i, t in enumerate(report["suite"].get("tasks", []))}
    records = sorted(report["records"], key=lambda r: (order.get(r["task_id"], len(order)), r["task_id"]))
    groups: dict[str, dict[str, Any]] = {}
    for record in records:
        key = group_key(record)
        group_id = f"{record['task_type']}:{key}"  # one template key may name tasks of two types
        fresh = {"id": group_id, "key": key, "title": _group_title(record), "task_type": record["task_type"],
                 "records": []}
        groups.setdefault(group_id, fresh)["records"].append(record)
    return list(groups.values())


def _unique(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


def provenance_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Models with sha256, data hashes, package and engine versions, hardware and wall times."""
    prov = [(r, r.get("provenance") or {}) for r in records]
    versions: dict[str, dict[str, list[Any]]] = {"packages": {}, "engines": {}}
    for _, p in prov:
        for kind in versions:
            for name, version in (p.get(kind) or {}).items():
                versions[kind].setdefault(name, [])
                if version not in versions[kind][name]:
                    versions[kind][name].append(version)
    models = _unique({"name": r["model"].get("name"), "sha256": r["model"].get("sha256")}
                     for r, _ in prov if isinstance(r.get("model"), Mapping))
    walls = [float(p["wall_s"]) for _, p in prov if isinstance(p.get("wall_s"), (int, float))]
    return {
        "models": models,
        "data_sha256": _unique({"sha256": p["data_sha256"],
                                "files": ", ".join(p.get("data_files") or []) or "not recorded"}
                               for _, p in prov if p.get("data_sha256")),
        "packages": versions["packages"],
        "engines": versions["engines"],
        "hardware": _unique(hardware_summary(r) for r, _ in prov),
        "nepbench": _unique({"version": p.get("nepbench_version"), "commit": p.get("nepbench_commit"),
                             "code_modified": p.get("nepbench_code_modified")} for _, p in prov),
        "tasks": [{"task_id": r["task_id"], "status": r["status"], "model": _model_name(r),
                   "wall_s": p.get("wall_s"), "seed": p.get("seed"), "created_utc": p.get("created_utc"),
                   "hardware": hardware_summary(r), "input_hash": r.get("input_hash"),
                   "commit": p.get("nepbench_commit"), "code_sha256": p.get("nepbench_code_sha256"),
                   "data_sha256": p.get("data_sha256")} for r, p in prov],
        "total_wall_s": round(sum(walls), 3),
    }


def build_report(run_dirs: Sequence[str | Path], figures: bool = True,
                 now: _dt.datetime | None = None) -> dict[str, Any]:
    """Load and merge run directories, judge the criteria and (optionally) draw the figures.

    Raises:
        InputError: a missing run directory or suite.json, or a malformed record (names the file).
        ConfigError: a malformed criterion (names the file and the criterion).
    """
    if not run_dirs:
        raise InputError(".", "no run directory given")
    suites, found = [], []
    for run_dir in run_dirs:
        suite, records = load_run_dir(run_dir)
        suites.append((Path(run_dir) / "suite.json", suite))
        found.extend(records)
    suite = merge_suites(suites)
    task_params = {str(t.get("id")): t.get("params") for t in suite.get("tasks", []) if isinstance(t, Mapping)}
    stray = [(path, record) for path, record in found if record["task_id"] not in task_params]
    stale = {(path, record["task_id"]): difference for path, record in found if record["task_id"] in task_params
             and (difference := params_difference(record.get("params"), task_params[record["task_id"]]))}
    found = [(path, record) for path, record in found
             if record["task_id"] in task_params and (path, record["task_id"]) not in stale]
    records, notes = merge_records(found)
    notes += [f"{path}: task {record['task_id']!r} is not in the suite as it was last run (a record left "
              "from an earlier version of it or another --model): left out" for path, record in stray]
    notes += [f"{path}: task {task!r} ran with other parameters than the suite's ({difference}): left out; "
              "rerun the task" for (path, task), difference in stale.items()]
    try:
        verdicts = judge_all(suite.get("criteria", []), records)
    except ConfigError as exc:
        raise ConfigError(f"{suites[0][0]}: {exc}") from None
    stale_tasks = {task: f"{path} ({difference})" for (path, task), difference in stale.items()}
    verdicts = [dataclasses.replace(v, reason=f"{v.reason}: its record {stale_tasks[v.task]} ran with other "
                                               "parameters than the suite's; rerun the task")
                if v.task_status is None and v.task in stale_tasks else v for v in verdicts]
    order = {t["id"]: i for i, t in enumerate(suite.get("tasks", []))}
    ordered = sorted(records.values(), key=lambda r: (order.get(r["task_id"], len(order)), r["task_id"]))
    stamp = (now or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds")
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA, "nepbench_version": __version__, "created_utc": stamp,
        "title": f"nepbench report: {suite.get('name', 'suite')}",
        "run_dirs": [str(Path(d)) for d in run_dirs], "suite": suite,
        "verdicts": [v.to_dict() for v in verdicts],
        "summary": {**counts(verdicts), "exit_code": exit_code(verdicts),
                    "exit_code_strict": exit_code(verdicts, strict=True)},
        "records": ordered, "provenance": provenance_summary(ordered),
        "notes": notes + accuracy_caveats(verdicts) + floor_caveats(verdicts),
    }
    if figures:
        report["figures"] = make_figures(report, problems=report["notes"])
    return report


def verdicts_of(report: Mapping[str, Any]) -> list[Verdict]:
    """The report's verdicts as `Verdict` objects."""
    fields = set(Verdict.__dataclass_fields__)
    return [Verdict(**{k: v for k, v in d.items() if k in fields}) for d in report["verdicts"]]


# ----------------------------------------------------------------------------- figures


def slug(text: str) -> str:
    """A file-name-safe form of `text` ("{model}" reads "models"); different texts may share one."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace("{model}", "models")).strip("_") or "figure"


def unique_slug(text: str) -> str:
    """`slug(text)`, plus "-" and 8 hex digits of the sha256 of `text` where slugging dropped or
    replaced characters, so texts such as "parity a" and "parity:a" get different names; a text
    that slugging leaves as it is (e.g. "parity-{model}-motifs") keeps its plain slug."""
    plain = slug(text)
    if plain == text.replace("{model}", "models"):
        return plain
    return f"{plain}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def _figure(file_stem: str, caption: str, scope: str, owner: str, draw: Callable[[], bytes | None],
            problems: list[str] | None) -> dict[str, Any] | None:
    """A figure entry (scope "group": owner = group id, type:key; "task": owner = task id), None when not drawn.

    A series too malformed to plot costs its figure, not the report: the error goes to `problems`.
    """
    file = f"{FIGURES_DIR}/{unique_slug(file_stem)}.png"
    try:
        png = draw()
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError) as exc:
        if problems is not None:
            problems.append(f"{file} not drawn: malformed series of {owner} ({type(exc).__name__}: {exc})")
        return None
    if png is None:
        return None
    return {"file": file, "caption": caption, "scope": scope, "owner": owner, "png": png}


def group_figures(group: Mapping[str, Any], problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Overlay figures of one group: every finished model of the task template on the same axes."""
    done = [r for r in group["records"] if r["status"] == "done" and isinstance(r.get("series"), Mapping)]
    if not done:
        return []
    by_model = {(_model_name(r) or r["task_id"]): r["series"] for r in done}
    out = [_figure(f"{group['key']}-{kind}", caption, "group", group["id"],
                   lambda function=function: function(by_model), problems)
           for kind, caption, function in plots.OVERLAY.get(group["task_type"], ())]
    return [f for f in out if f]


def record_figures(record: Mapping[str, Any], problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Per-task figures of one finished record (parity panels, throughput bars, radial profiles)."""
    series = record.get("series")
    if record["status"] != "done" or not isinstance(series, Mapping):
        return []
    label = _model_name(record) or ""
    out = [_figure(f"{record['task_id']}-{kind}", caption + (f" — {label}" if label else ""), "task",
                   record["task_id"], lambda function=function: function(series, label), problems)
           for kind, caption, function in plots.PER_TASK.get(record["task_type"], ())]
    return [f for f in out if f]


def make_figures(report: Mapping[str, Any], problems: list[str] | None = None) -> list[dict[str, Any]]:
    """All figures of the report: per group the overlays, then each record's own.

    Figures that cannot be drawn from a malformed series are left out, with a line in `problems`.
    """
    figures: list[dict[str, Any]] = []
    for group in task_groups(report):
        figures.extend(group_figures(group, problems))
        for record in group["records"]:
            figures.extend(record_figures(record, problems))
    return _distinct_files(figures)


def _distinct_files(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`figures` with a file name used twice (e.g. task "x-models" beside group "x-{model}") made
    distinct: the later figure gets "-2", "-3", ... before ".png"."""
    used: set[str] = set()
    for figure in figures:
        stem, file, n = figure["file"][:-len(".png")], figure["file"], 1
        while file in used:
            n += 1
            file = f"{stem}-{n}.png"
        figure["file"] = file
        used.add(file)
    return figures


def _figures(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return report["figures"] if "figures" in report else make_figures(report)


def _owned(figures: Sequence[Mapping[str, Any]], scope: str, owner: str) -> list[Mapping[str, Any]]:
    return [f for f in figures if f["scope"] == scope and f["owner"] == owner]


# ----------------------------------------------------------------------------- formatting


def fmt_value(value: Any) -> str:
    """A number for people: thousands separated when large, 4 significant digits otherwise."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e3:
        return f"{value:,.0f}"
    if value == 0 or abs(value) >= 1e-3:
        return f"{value:.4g}"
    return f"{value:.3e}"


def bounds_text(v: Mapping[str, Any]) -> str:
    """'pass ≤ 100, fail ≥ 200 meV/Å' (or ≥/≤ when higher is better)."""
    good, bad, unit = fmt_value(v["good"]), fmt_value(v["bad"]), v.get("unit", "")
    if v["good"] < v["bad"]:
        return f"pass ≤ {good}, fail ≥ {bad} {unit}".rstrip()
    return f"pass ≥ {good}, fail ≤ {bad} {unit}".rstrip()


def fmt_beside_bounds(value: float, bounds: Sequence[float]) -> str:
    """`fmt_value(value)`, with more significant digits (up to 12) while it would read the same
    as a bound it does not equal: 69,999.6 beside "pass ≥ 70,000" must not print as 70,000."""
    text = fmt_value(value)
    for digits in range(5, 13):
        if not any(text == fmt_value(b) and value != b for b in bounds):
            return text
        text = f"{value:,.{digits}g}" if abs(value) >= 1e3 else f"{value:.{digits}g}"
    return text


def measured_text(v: Mapping[str, Any]) -> str:
    """'149.2 meV/Å', or '— (why it was not measured)'."""
    if v["value"] is None:
        return f"— ({v.get('reason') or 'no value'})"
    return f"{fmt_beside_bounds(v['value'], (v['good'], v['bad']))} {v.get('unit', '')}".rstrip()


def _counts_line(report: Mapping[str, Any]) -> str:
    s = report["summary"]
    return (f"{s['pass']} pass, {s['warn']} warn, {s['fail']} fail, {s['not_measured']} not measured "
            f"({len(report['verdicts'])} criteria, {len(report['records'])} task records)")


def claim_table_text(report: Mapping[str, Any]) -> str:
    """The claim table as plain text for a terminal: verdict, criterion, measured value, bounds."""
    rows = [("VERDICT", "CRITERION", "MEASURED", "BOUNDS")]
    for v in report["verdicts"]:
        rows.append((VERDICT_LABEL[v["verdict"]], v["criterion"], measured_text(v), bounds_text(v)))
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    if len(rows) == 1:
        lines.append("(the suite has no criteria)")
    notes = [f"note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines + [_counts_line(report)] + notes)


_MD_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")
_MD_ACTIVE = re.compile(r"([\\`*_\[\]()#!|~$])")  # active anywhere in a line (GFM)


def _md(text: Any) -> str:
    """Untrusted text safe in a Markdown table cell or paragraph: one line (every line break,
    "\\r" included, becomes a space), no raw HTML or entities (& < > as entities), and the
    characters that make links, images, emphasis, code, headings or cells backslash-escaped."""
    text = _MD_LINE_BREAKS.sub(" ", str(text if text is not None else ""))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_ACTIVE.sub(r"\\\1", text)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return lines + [""]


def score_text(score: float, verdict: str) -> str:
    """A score in [0, 1] to two decimals; a warn (strictly between the bounds) never reads 1.00 or
    0.00, which would say it sits on a bound."""
    shown = round(float(score), 2)
    if verdict == "warn":
        shown = min(max(shown, 0.01), 0.99)
    return f"{shown:.2f}"


def _claim_row(v: Mapping[str, Any]) -> list[str]:
    where = f"{v['criterion']} · task {v['task']}" + (f" · model {v['model']}" if v.get("model") else "")
    score = f" (score {score_text(v['score'], v['verdict'])})" if v.get("score") is not None else ""
    return [f"{v['claim']} [{where}]", measured_text(v), f"{bounds_text(v)}; source: {v['source']}",
            v.get("method") or "—", v.get("hardware") or "—",
            f"{VERDICT_MARK[v['verdict']]} {VERDICT_LABEL[v['verdict']]}{score}"]


CLAIM_HEADER = ("Claim", "Measured", "Bounds", "Method", "Hardware", "Verdict")


def _metric_rows(record: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    units = record.get("metric_units") or {}
    return [(name, fmt_value(value), units.get(name, "")) for name, value in (record.get("metrics") or {}).items()]


def _record_heading(record: Mapping[str, Any]) -> str:
    model = record.get("model") or {}
    parts = [f"status: {record['status']}"]
    if record.get("reason"):
        parts.append(f"reason: {record['reason']}")
    if model:
        sha = model.get("sha256")
        parts.append(f"model: {model.get('name')} ({f'sha256 {str(sha)[:12]}…' if sha else 'sha256 not recorded'})")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- Markdown


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown; figures are referenced as figures/*.png beside report.md."""
    figures = _figures(report)
    suite = report["suite"]
    description = f": {_md(suite['description'])}" if suite.get("description") else ""
    out = [f"# {_md(report['title'])}", "", f"Suite **{_md(suite.get('name'))}**{description}",
           "", f"Generated {report['created_utc']} by nepbench {report['nepbench_version']} "
           f"from {', '.join(map(_md, report['run_dirs']))}.", "", "## Claims", "",
           _md(_counts_line(report)), ""]
    out += _md_table(CLAIM_HEADER, (_claim_row(v) for v in report["verdicts"]))
    for note in report.get("notes", []):
        out.append(f"> note: {_md(note)}")
    for group in task_groups(report):
        out += ["", f"## {_md(group['title'])}", ""]
        out += [_md_figure(f) for f in _owned(figures, "group", group["id"])]
        for record in group["records"]:
            out += [f"### {_md(record['task_id'])}", "", _md(_record_heading(record)), ""]
            if record.get("method"):
                out += [f"Method: {_md(record['method'])}", ""]
            if record.get("metrics"):
                out += _md_table(("Metric", "Value", "Unit"), _metric_rows(record))
            out += [_md_figure(f) for f in _owned(figures, "task", record["task_id"])]
    out += ["", "## Provenance", ""] + _provenance_markdown(report["provenance"])
    return "\n".join(out).rstrip() + "\n"


def _md_figure(figure: Mapping[str, Any]) -> str:
    caption = _md(figure["caption"]).replace("[", "(").replace("]", ")")
    return f"![{caption}]({figure['file']})\n\n*{caption}*\n"


def _short(value: Any, n: int = 12) -> str:
    """The first `n` characters of a hash or commit, or "—" when none was recorded."""
    return str(value)[:n] if value else "—"


def provenance_tables(prov: Mapping[str, Any]) -> list[tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """The provenance section as (header, rows) tables, shared by the Markdown and HTML renderers."""
    def versions(values: Sequence[Any]) -> str:
        return ", ".join("not installed" if v is None else str(v) for v in values)

    return [
        (("Model", "sha256"), [(m["name"], m["sha256"]) for m in prov["models"]]),
        (("Reference data sha256", "over reference_data/"),
         [(d["sha256"], d["files"]) for d in prov["data_sha256"]] or [("—", "")]),
        (("Package / engine", "Kind", "Version(s)"),
         [(n, "package", versions(v)) for n, v in prov["packages"].items()]
         + [(n, "engine", versions(v)) for n, v in prov["engines"].items()]),
        (("Hardware",), [(h or "—",) for h in prov["hardware"]]),
        (("nepbench version", "commit", "code changed since commit"),
         [(n["version"], n["commit"], {True: "yes", False: "no"}.get(n.get("code_modified"), "unknown"))
          for n in prov["nepbench"]]),
        (("Task", "Status", "Model", "Wall (s)", "Seed", "Created (UTC)", "Commit", "Code sha256", "Data sha256",
          "Input hash"),
         [(t["task_id"], t["status"], t["model"] or "—", fmt_value(t["wall_s"]), t["seed"], t["created_utc"],
           _short(t.get("commit")), _short(t.get("code_sha256")), _short(t.get("data_sha256")),
           _short(t["input_hash"], 16)) for t in prov["tasks"]]),
    ]


def _provenance_markdown(prov: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for header, rows in provenance_tables(prov):
        out += _md_table(header, rows)
    return out + [f"Total task wall time: {fmt_value(prov['total_wall_s'])} s"]


# ----------------------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1150px;
color:#1f2328;line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2.2rem}
.meta{color:#57606a;font-size:.9rem}
table{border-collapse:collapse;width:100%;margin:.6rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
table.metrics{width:auto;min-width:45%}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.verdict{font-weight:700;color:#fff;white-space:nowrap;text-align:center}
.score{font-weight:400;font-size:.78rem}
.small{font-size:.78rem;color:#57606a}
.badge{display:inline-block;border-radius:1rem;padding:.1rem .7rem;margin-right:.4rem;color:#fff;font-weight:600}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eaeef2}
figcaption{font-size:.85rem;color:#57606a}
code{font-size:.82rem;word-break:break-all}
.status-skipped,.status-not_applicable,.status-failed{color:#6b7280}
"""


def _e(text: Any) -> str:
    """HTML-escaped text (None as empty)."""
    return html.escape(str(text if text is not None else ""), quote=True)


def _html_claims(report: Mapping[str, Any]) -> list[str]:
    head = "".join(f"<th>{_e(h)}</th>" for h in CLAIM_HEADER)
    out = ['<table id="claims">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for v in report["verdicts"]:
        where = f"{v['criterion']} · task {v['task']}" + (f" · model {v['model']}" if v.get("model") else "")
        score = (f'<br><span class="score">score {score_text(v["score"], v["verdict"])}</span>'
                 if v.get("score") is not None else "")
        colour = VERDICT_COLOUR[v["verdict"]]
        measured = (f'<td class="num">{_e(measured_text(v))}</td>' if v["value"] is not None
                    else f'<td><span class="small">{_e(measured_text(v))}</span></td>')
        out.append(
            f'<tr class="verdict-{_e(v["verdict"])}">'
            f'<td>{_e(v["claim"])}<br><span class="small">{_e(where)}</span></td>{measured}'
            f'<td>{_e(bounds_text(v))}<br><span class="small">source: {_e(v["source"])}</span></td>'
            f'<td class="small">{_e(v.get("method") or "—")}</td>'
            f'<td class="small">{_e(v.get("hardware") or "—")}</td>'
            f'<td class="verdict" style="background:{colour}">{_e(VERDICT_LABEL[v["verdict"]])}{score}</td></tr>')
    if not report["verdicts"]:
        out.append(f'<tr><td colspan="{len(CLAIM_HEADER)}">The suite has no criteria.</td></tr>')
    return out + ["</tbody></table>"]


def _html_table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (),
                css_class: str = "") -> str:
    """An HTML table with every cell escaped; columns in `numeric` right-aligned."""
    num = ' class="num"'
    body = "".join("<tr>" + "".join(f"<td{num if i in numeric else ''}>{_e(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    klass = f' class="{css_class}"' if css_class else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_figure(figure: Mapping[str, Any]) -> str:
    data = base64.b64encode(figure["png"]).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(figure["caption"])}">'
            f"<figcaption>{_e(figure['caption'])}</figcaption></figure>")


def _html_record(record: Mapping[str, Any], figures: Sequence[Mapping[str, Any]]) -> list[str]:
    out = [f'<section class="task status-{_e(record["status"])}" id="task-{_e(unique_slug(record["task_id"]))}">',
           f"<h3>{_e(record['task_id'])}</h3>", f"<p>{_e(_record_heading(record))}</p>"]
    if record.get("method"):
        out.append(f'<p class="small">Method: {_e(record["method"])}</p>')
    if record.get("metrics"):
        out.append(_html_table(("Metric", "Value", "Unit"), _metric_rows(record), numeric=(1,),
                               css_class="metrics"))
    out += [_html_figure(f) for f in figures]
    return out + ["</section>"]


def _html_provenance(prov: Mapping[str, Any]) -> list[str]:
    out = ['<section id="provenance"><h2>Provenance</h2>']
    for header, rows in provenance_tables(prov):
        out.append(_html_table(header, rows, numeric=(3,) if header[0] == "Task" else ()))
    return out + [f"<p>Total task wall time: {_e(fmt_value(prov['total_wall_s']))} s</p>", "</section>"]


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML file: CSS inline, figures as base64 PNG data URIs."""
    figures = _figures(report)
    suite = report["suite"]
    badges = "".join(f'<span class="badge" style="background:{VERDICT_COLOUR[k]}">{report["summary"][k]} '
                     f"{_e(VERDICT_LABEL[k].lower())}</span>" for k in VERDICT_LABEL)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_e(report['title'])}</title><style>{CSS}</style></head><body>",
           f"<h1>{_e(report['title'])}</h1>",
           f'<p class="meta">Suite <b>{_e(suite.get("name"))}</b>'
           + (f": {_e(suite.get('description'))}" if suite.get("description") else "")
           + f"<br>Generated {_e(report['created_utc'])} by nepbench {_e(report['nepbench_version'])} "
           f"from {_e(', '.join(report['run_dirs']))}</p>",
           '<section id="claims-section"><h2>Claims</h2>', f"<p>{badges}</p>"]
    out += _html_claims(report)
    out += [f'<p class="small">note: {_e(n)}</p>' for n in report.get("notes", [])] + ["</section>"]
    for group in task_groups(report):
        out += [f'<section class="group" id="group-{_e(unique_slug(group["key"]))}"><h2>{_e(group["title"])}</h2>']
        out += [_html_figure(f) for f in _owned(figures, "group", group["id"])]
        for record in group["records"]:
            out += _html_record(record, _owned(figures, "task", record["task_id"]))
        out.append("</section>")
    out += _html_provenance(report["provenance"])
    return "\n".join(out + ["</body></html>"]) + "\n"


# ----------------------------------------------------------------------------- writing


def results_document(report: Mapping[str, Any], figures: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """results.json: the report without PNG bytes (figures listed by file and caption)."""
    doc = {k: v for k, v in report.items() if k != "figures"}
    doc["figures"] = [{k: v for k, v in f.items() if k != "png"} for f in figures]
    return doc


def _previous_figures(out: Path) -> set[str]:
    """The figure files the report now in `out` lists in its results.json (empty when there is none
    or it cannot be read): the only PNGs a new report may remove."""
    try:
        document = json.loads((out / "results.json").read_text())
        return {str(f["file"]) for f in document.get("figures", []) if isinstance(f, Mapping) and "file" in f}
    except (OSError, ValueError, TypeError, AttributeError):
        return set()


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write figures/*.png, report.md, report.html and results.json as one set
    (`atomic_write_files`: all are written in full before any is renamed into place).

    Everything is rendered in memory first, so a rendering error leaves the folder as it was, and a
    failed write replaces no file. Then the figures of the previous report (listed in its
    results.json) that this report no longer draws are removed; other files in figures/ are left
    alone. Returns the paths written.

    Raises:
        InputError: the report holds no task record (nothing is written: a report of nothing
            must not replace a real one, e.g. after `tasks/` was moved away).
    """
    out = Path(out_dir)
    if not report.get("records"):
        dirs = ", ".join(str(Path(d) / "tasks") for d in report.get("run_dirs", [])) or str(out)
        raise InputError(dirs, f"no task records: nothing to report, {out} left as it was "
                         "(`nepbench run SUITE --out DIR` writes them)")
    figures = _figures(report)
    markdown = render_markdown({**report, "figures": figures})
    page = render_html({**report, "figures": figures})
    document = results_document(report, figures)
    previous = _previous_figures(out)
    files: dict[Path, bytes] = {out / figure["file"]: figure["png"] for figure in figures}
    files.update({out / "report.md": markdown.encode(), out / "report.html": page.encode(),
                  out / "results.json": json_document(document).encode()})
    atomic_write_files(files)
    written = {f["file"] for f in figures}
    for name in sorted(previous - written):
        stale = out / name
        if stale.parent == out / FIGURES_DIR and stale.suffix == ".png":
            stale.unlink(missing_ok=True)
    return {"results": out / "results.json", "markdown": out / "report.md", "html": out / "report.html",
            "figures": out / FIGURES_DIR}
