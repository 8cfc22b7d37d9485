"""Reports: run directories → verdicts, figures, results.json, report.md and report.html.

A run directory holds `suite.json` (the parsed suite) and `tasks/<task_id>.json`, one result record
per task (schema "nepbench.result/1", written by runner.py). Several run directories (e.g. one per
Slurm array element) are merged: tasks and criteria are united by id, and where two directories hold
a record for the same task the newest inputs win (`input_hash`: an old success never stands in for
a run of changed inputs), then, among records of one input, the finished one (then the newest).

Series (plot data) by task type (optional blocks, drawn where a record holds them, in brackets):
  parity       {"forces": {el: {"ref", "pred", ["motif"]}}, "energy": {"ref", "pred"},
                "per_motif": {motif: {...}}}
  md_accuracy  {"rdf": {run: {"r_a", "pairs": {pair: {"ref", "model"}}}},
                ["adf": {run: {"theta_deg", "triplets": {...}}}], ["vdos": {run: {"freq_thz", "species": {...}}}],
                "msd": {run: {sp: {"time_ps", "ref", "model", ["fit_window_ps"]}}},
                "runs": {run: {"aimd_production_ps", ...}},
                "aimd_thermo": {run: {"time_ps", "temperature_k", "potential_ev_per_atom", "warmup_ps", ...}},
                "arrhenius": {"system", "temperature_k", "d_ref_cm2_per_s", "d_model_cm2_per_s", *_stderr}}
                (one entry per point; `system` groups the points of one composition)
  throughput   {"identical_n": [{"n_atoms", "cp2k_s_per_step", "nep_s_per_step", "ratio", ...}],
                "scaling": {engine: {"n_atoms", "s_per_atom_step"}}, "fits": {engine: {"exponent", "prefactor_s", ...}}}
  expansion    {"shell_thickness_nm", "particle_dv_over_v0", "particle_dv_stderr", "core_dv_over_v0",
                "radial": {thickness_nm: {"r_nm", "li_fraction", "strain"}}}

The pages open with the claims × models matrix and what the run can and cannot conclude
(overview.py), then one section per task template: its claims in detail, its method once, its
figures (each caption naming its data source) and its tasks; docs/report.md describes them.
The report itself never runs anything: it reads records, judges criteria and draws figures.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
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
from . import overview, plots
from .criteria import Verdict, accuracy_caveats, counts, exit_code, floor_caveats, hardware_summary, judge_all
from .text import (  # noqa: F401  (re-exported: the commands and tests import them from here)
    VERDICT_COLOUR, VERDICT_LABEL, VERDICT_MARK, bounds_text, claim_table_text, counts_line, e as _e, fmt_beside_bounds,
    fmt_value, html_table as _html_table, md as _md, md_table as _md_table, measured_text, score_text, slug,
    unique_slug,
)

RECORD_SCHEMA = "nepbench.result/1"
REPORT_SCHEMA = "nepbench.report/1"
STATUSES = ("done", "skipped", "not_applicable", "failed")
STATUS_RANK = {"done": 0, "not_applicable": 1, "skipped": 2, "failed": 3}
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
    caveats = accuracy_caveats(verdicts) + floor_caveats(verdicts)
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA, "nepbench_version": __version__, "created_utc": stamp,
        "title": f"nepbench report: {suite.get('name', 'suite')}",
        "run_dirs": [str(Path(d)) for d in run_dirs], "suite": suite,
        "verdicts": [v.to_dict() for v in verdicts],
        "summary": {**counts(verdicts), "exit_code": exit_code(verdicts),
                    "exit_code_strict": exit_code(verdicts, strict=True)},
        "records": ordered, "provenance": provenance_summary(ordered),
        "notes": notes + caveats, "caveats": caveats,
    }
    columns, rows = overview.claim_matrix(report["verdicts"])
    report["matrix"] = overview.matrix_document(columns, rows)
    report["conclusions"] = {title: lines for title, lines in _conclusions(report, rows).sections()}
    if figures:
        report["figures"] = make_figures(report, problems=report["notes"])
    return report


def _conclusions(report: Mapping[str, Any], rows: Sequence[overview.MatrixRow]) -> overview.Conclusions:
    """The "what this run can and cannot conclude" box of a report (`overview.conclusions`)."""
    missing = []
    for group in task_groups(report):
        done = {(_model_name(r) or r["task_id"]): r["series"] for r in group["records"]
                if r["status"] == "done" and isinstance(r.get("series"), Mapping)}
        missing += [line for line in plots.missing_figure_data(group["task_type"], done) if line not in missing]
    return overview.conclusions(report["verdicts"], rows, report["records"], report["provenance"]["hardware"],
                                missing)


def verdicts_of(report: Mapping[str, Any]) -> list[Verdict]:
    """The report's verdicts as `Verdict` objects."""
    fields = set(Verdict.__dataclass_fields__)
    return [Verdict(**{k: v for k, v in d.items() if k in fields}) for d in report["verdicts"]]


# ----------------------------------------------------------------------------- figures


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


def figure_source(records: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    """'Data: series rdf of tasks md-a, md-b (tasks/<id>.json); reference aimd/manifest.json (sha256 1a2b3c4d5e6f…)':
    where a figure's numbers come from, for its caption."""
    tasks = ", ".join(str(r["task_id"]) for r in records)
    data = _unique((", ".join((r.get("provenance") or {}).get("data_files") or []) or "reference data",
                    str((r.get("provenance") or {}).get("data_sha256") or "")[:12]) for r in records
                   if (r.get("provenance") or {}).get("data_sha256"))
    reference = "; ".join(f"{files} (sha256 {sha}…)" for files, sha in data)
    return (f"Data: series {', '.join(keys)} of task{'s' if len(records) > 1 else ''} {tasks} (tasks/<id>.json)"
            + (f"; reference {reference}" if reference else "; no reference data"))


def _has_series(record: Mapping[str, Any], keys: Sequence[str]) -> bool:
    series = record.get("series")
    return isinstance(series, Mapping) and any(series.get(k) not in (None, {}, []) for k in keys)


def figure_bounds(verdicts: Sequence[Mapping[str, Any]], tasks: Iterable[str],
                  prefixes: Sequence[str]) -> list[tuple[float, str]]:
    """(pass bound, label) of each criterion on `tasks` whose metric starts with one of `prefixes`,
    one per distinct bound: the claim a figure draws as a line (e.g. the study's 70,000×)."""
    if not prefixes:
        return []
    tasks = set(tasks)
    out: dict[float, str] = {}
    for v in verdicts:
        if v["task"] in tasks and str(v["metric"]).startswith(tuple(prefixes)):
            claim = re.sub(r"\[[^\]]*\]$", "", str(v["criterion"]))
            sign = "≤" if v["good"] < v["bad"] else "≥"
            out.setdefault(float(v["good"]), f"{claim}: pass {sign} {fmt_value(v['good'])} {v['unit']}".rstrip())
    return list(out.items())


def group_figures(group: Mapping[str, Any], problems: list[str] | None = None,
                  verdicts: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Overlay figures of one group: every finished model of the task template on the same axes;
    each caption names its data source (`figure_source`) and the claims drawn as lines come from
    `verdicts` (`figure_bounds`)."""
    done = [r for r in group["records"] if r["status"] == "done" and isinstance(r.get("series"), Mapping)]
    if not done:
        return []
    by_model = {(_model_name(r) or r["task_id"]): r["series"] for r in done}
    out = []
    for spec in plots.OVERLAY.get(group["task_type"], ()):
        bounds = figure_bounds(verdicts, (r["task_id"] for r in done), spec.bound_metrics)
        draw = (lambda spec=spec, bounds=bounds: spec.function(by_model, bounds=bounds)) if spec.bound_metrics \
            else (lambda spec=spec: spec.function(by_model))
        source = figure_source([r for r in done if _has_series(r, spec.keys)], spec.keys)
        out.append(_figure(f"{group['key']}-{spec.kind}", f"{spec.caption}. {source}", "group", group["id"],
                           draw, problems))
    return [f for f in out if f]


def record_figures(record: Mapping[str, Any], problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Per-task figures of one finished record (parity panels, throughput bars, radial profiles),
    each caption naming its data source."""
    series = record.get("series")
    if record["status"] != "done" or not isinstance(series, Mapping):
        return []
    label = _model_name(record) or ""
    out = [_figure(f"{record['task_id']}-{spec.kind}",
                   spec.caption + (f" — {label}" if label else "") + f". {figure_source([record], spec.keys)}",
                   "task", record["task_id"], lambda spec=spec: spec.function(series, label), problems)
           for spec in plots.PER_TASK.get(record["task_type"], ())]
    return [f for f in out if f]


def make_figures(report: Mapping[str, Any], problems: list[str] | None = None) -> list[dict[str, Any]]:
    """All figures of the report: per group the overlays, then each record's own.

    Figures that cannot be drawn from a malformed series are left out, with a line in `problems`.
    """
    figures: list[dict[str, Any]] = []
    for group in task_groups(report):
        figures.extend(group_figures(group, problems, report.get("verdicts", ())))
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


def _overview(report: Mapping[str, Any]) -> tuple[list[str], list[overview.MatrixRow], overview.Conclusions]:
    columns, rows = overview.claim_matrix(report["verdicts"])
    return columns, rows, _conclusions(report, rows)


def rows_by_group(report: Mapping[str, Any],
                  rows: Sequence[overview.MatrixRow]) -> dict[str | None, list[overview.MatrixRow]]:
    """Matrix rows by the group (task template) of their first task that has a record; None: no record."""
    group_of = {r["task_id"]: g["id"] for g in task_groups(report) for r in g["records"]}
    out: dict[str | None, list[overview.MatrixRow]] = {}
    for row in rows:
        group = next((group_of[v["task"]] for v in row.verdicts if v["task"] in group_of), None)
        out.setdefault(group, []).append(row)
    return out


def _data_notes(report: Mapping[str, Any]) -> list[str]:
    """The report's notes less the caveats the conclusions box already says."""
    caveats = set(report.get("caveats", ()))
    return [n for n in report.get("notes", []) if n not in caveats]


def _group_methods(group: Mapping[str, Any]) -> dict[str, str]:
    return {(_model_name(r) or r["task_id"]): str(r.get("method") or "") for r in group["records"]}


def _several_machines(report: Mapping[str, Any]) -> bool:
    """True when the records come from more than one machine: each claim row then names its hardware
    (otherwise the one machine is said once, in the conclusions box and the provenance)."""
    return len([h for h in report["provenance"]["hardware"] if h]) > 1


def task_anchor(task_id: str) -> str:
    """The HTML id / Markdown anchor of a task's section."""
    return f"task-{unique_slug(task_id)}"


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown; figures are referenced as figures/*.png beside report.md.

    Order: the claims × models matrix and one line per claim, what the run can and cannot
    conclude, then per task template its claims in detail, its method once (with per-model
    differences), figures and each task's metrics, then provenance.
    """
    figures = _figures(report)
    suite = report["suite"]
    columns, rows, box = _overview(report)
    description = f": {_md(suite['description'])}" if suite.get("description") else ""
    out = [f"# {_md(report['title'])}", "", f"Suite **{_md(suite.get('name'))}**{description}",
           "", f"Generated {report['created_utc']} by nepbench {report['nepbench_version']} "
           f"from {', '.join(map(_md, report['run_dirs']))}.", "", "## Claims × models", "",
           _md(counts_line(report)), ""]
    out += overview.matrix_markdown(columns, rows)
    out += overview.conclusions_markdown(box)
    out += [f"> note: {_md(note)}" for note in _data_notes(report)]
    grouped = rows_by_group(report, rows)
    for group in task_groups(report):
        out += ["", f"## {_md(group['title'])}", ""]
        for row in grouped.get(group["id"], []):
            out += overview.claim_detail_markdown(row, _several_machines(report))
        out += overview.method_markdown(_group_methods(group))
        out += [_md_figure(f) for f in _owned(figures, "group", group["id"])]
        for record in group["records"]:
            out += [f'### <a id="{task_anchor(record["task_id"])}"></a>{_md(record["task_id"])}', "",
                    _md(_record_heading(record)), ""]
            out += [_md_figure(f) for f in _owned(figures, "task", record["task_id"])]
            if record.get("metrics"):
                out += [f"<details><summary>All {len(record['metrics'])} metrics</summary>", ""]
                out += _md_table(("Metric", "Value", "Unit"), _metric_rows(record)) + ["</details>", ""]
    if grouped.get(None):
        out += ["", "## Claims without a task record", ""]
        for row in grouped[None]:
            out += overview.claim_detail_markdown(row, _several_machines(report))
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
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1rem auto;max-width:1150px;
color:#1f2328;line-height:1.4;padding:0 1rem}
h1{margin:.2rem 0;font-size:1.6rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2rem}
h3 .cid{display:inline;margin-left:.4rem}
.meta{color:#57606a;font-size:.85rem;margin:.2rem 0 .4rem}
table{border-collapse:collapse;width:100%;margin:.6rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
table.metrics{width:auto;min-width:45%}
table.claim-detail{table-layout:fixed}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.verdict{font-weight:700;color:#fff;white-space:nowrap;text-align:center}
.small{font-size:.78rem;color:#57606a}
.badge{display:inline-block;border-radius:1rem;padding:.05rem .6rem;margin-left:.4rem;color:#fff;font-weight:600;
font-size:.8rem;vertical-align:middle}
#overview h2{margin-top:.6rem}
.matrix-wrap{overflow-x:auto}
table.matrix{table-layout:fixed;margin:.3rem 0 .5rem;font-size:.85rem}
table.matrix th[scope=row]{font-weight:400;background:#fff}
table.matrix th[scope=row] a{color:inherit;text-decoration:none}
table.matrix th.model{text-align:center;overflow-wrap:anywhere}
.cid{display:block;font-size:.72rem;color:#57606a;font-family:ui-monospace,monospace;font-weight:400}
td.cell{text-align:center;vertical-align:middle;padding:.25rem .3rem;font-variant-numeric:tabular-nums;
overflow-wrap:anywhere}
td.cell a{color:#fff;text-decoration:none;display:block}
td.cell.none{background:#f6f8fa;color:#57606a}
.vlabel{display:block;font-size:.68rem;font-weight:700;letter-spacing:.04em}
ul.claim-lines{font-size:.8rem;color:#3d444d;padding-left:1.2rem;margin:.3rem 0}
.box{border:1px solid #d0d7de;border-left:4px solid #b7791f;background:#fffbeb;padding:.2rem 1rem .5rem;margin:1rem 0}
.box h2{margin-top:.4rem;border:0;font-size:1.1rem}.box h4{margin:.5rem 0 .1rem}
.box ul{margin:.1rem 0;padding-left:1.2rem;font-size:.85rem}
details{margin:.4rem 0}summary{cursor:pointer;color:#0969da}
details.method p,details.method ul{font-size:.82rem;color:#3d444d}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eaeef2}
figcaption{font-size:.82rem;color:#57606a}
code{font-size:.82rem;word-break:break-all}
.status-skipped,.status-not_applicable,.status-failed{color:#6b7280}
"""


def _html_figure(figure: Mapping[str, Any]) -> str:
    data = base64.b64encode(figure["png"]).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(figure["caption"])}">'
            f"<figcaption>{_e(figure['caption'])}</figcaption></figure>")


def _html_record(record: Mapping[str, Any], figures: Sequence[Mapping[str, Any]]) -> list[str]:
    """One task: its status line, its own figures, and its metrics in a collapsed table."""
    out = [f'<section class="task status-{_e(record["status"])}" id="{_e(task_anchor(record["task_id"]))}">',
           f"<h3>{_e(record['task_id'])}</h3>", f'<p class="small">{_e(_record_heading(record))}</p>']
    out += [_html_figure(f) for f in figures]
    if record.get("metrics"):
        out.append(f"<details><summary>All {len(record['metrics'])} metrics</summary>"
                   + _html_table(("Metric", "Value", "Unit"), _metric_rows(record), numeric=(1,), css_class="metrics")
                   + "</details>")
    return out + ["</section>"]


def _html_provenance(prov: Mapping[str, Any]) -> list[str]:
    out = ['<section id="provenance"><h2>Provenance</h2>']
    for header, rows in provenance_tables(prov):
        out.append(_html_table(header, rows, numeric=(3,) if header[0] == "Task" else ()))
    return out + [f"<p>Total task wall time: {_e(fmt_value(prov['total_wall_s']))} s</p>", "</section>"]


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML file: CSS inline, figures as base64 PNG data URIs, no
    script and no link outside the file.

    Order as `render_markdown`: the claims × models matrix first (cells link to their detail
    rows), one line per claim, the "can and cannot conclude" box, then the task templates.
    """
    figures = _figures(report)
    suite = report["suite"]
    columns, rows, box = _overview(report)
    badges = "".join(f'<span class="badge" style="background:{VERDICT_COLOUR[k]}">{report["summary"][k]} '
                     f"{_e(VERDICT_LABEL[k].lower())}</span>" for k in VERDICT_LABEL)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_e(report['title'])}</title><style>{CSS}</style></head><body>",
           f"<h1>{_e(report['title'])}</h1>",
           f'<p class="meta">Suite <b>{_e(suite.get("name"))}</b>'
           + (f": {_e(suite.get('description'))}" if suite.get("description") else "")
           + f" · generated {_e(report['created_utc'])} by nepbench {_e(report['nepbench_version'])} "
           f"from {_e(', '.join(report['run_dirs']))}</p>",
           f'<section id="overview"><h2>Claims × models{badges}</h2>',
           overview.matrix_html(columns, rows), overview.claim_lines_html(rows), overview.conclusions_html(box)]
    out += [f'<p class="small">note: {_e(n)}</p>' for n in _data_notes(report)] + ["</section>"]
    grouped = rows_by_group(report, rows)
    for group in task_groups(report):
        out += [f'<section class="group" id="group-{_e(unique_slug(group["key"]))}"><h2>{_e(group["title"])}</h2>']
        out += [overview.claim_detail_html(row, task_anchor, _several_machines(report))
                for row in grouped.get(group["id"], [])]
        out.append(overview.method_html(_group_methods(group)))
        out += [_html_figure(f) for f in _owned(figures, "group", group["id"])]
        for record in group["records"]:
            out += _html_record(record, _owned(figures, "task", record["task_id"]))
        out.append("</section>")
    if grouped.get(None):
        out += ['<section class="group" id="group-no-record"><h2>Claims without a task record</h2>']
        out += [overview.claim_detail_html(row, task_anchor, _several_machines(report))
                for row in grouped[None]] + ["</section>"]
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
