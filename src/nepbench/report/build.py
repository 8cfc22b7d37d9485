"""Assembling a report: load and merge run directories, leave out records the suite no longer
asks for, judge the criteria, summarise provenance, the claims × models matrix, the "can and
cannot conclude" box and (optionally) the figures. The result is the dict that results.json,
report.md and report.html are written from; the report never runs anything.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import __version__
from ..checks import params_difference
from ..errors import ConfigError, InputError
from . import overview, plots
from .criteria import Verdict, accuracy_caveats, counts, exit_code, floor_caveats, hardware_summary, judge_all
from .figures import make_figures
from .groups import model_name, task_groups, unique
from .load import load_run_dir, merge_records, merge_suites

REPORT_SCHEMA = "nepbench.report/1"


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
    models = unique({"name": r["model"].get("name"), "sha256": r["model"].get("sha256")}
                     for r, _ in prov if isinstance(r.get("model"), Mapping))
    walls = [float(p["wall_s"]) for _, p in prov if isinstance(p.get("wall_s"), (int, float))]
    return {
        "models": models,
        "data_sha256": unique({"sha256": p["data_sha256"],
                                "files": ", ".join(p.get("data_files") or []) or "not recorded"}
                               for _, p in prov if p.get("data_sha256")),
        "packages": versions["packages"],
        "engines": versions["engines"],
        "hardware": unique(hardware_summary(r) for r, _ in prov),
        "nepbench": unique({"version": p.get("nepbench_version"), "commit": p.get("nepbench_commit"),
                             "code_modified": p.get("nepbench_code_modified")} for _, p in prov),
        "tasks": [{"task_id": r["task_id"], "status": r["status"], "model": model_name(r),
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
    report["conclusions"] = {title: lines for title, lines in report_conclusions(report, rows).sections()}
    if figures:
        report["figures"] = make_figures(report, problems=report["notes"])
    return report


def report_conclusions(report: Mapping[str, Any], rows: Sequence[overview.MatrixRow]) -> overview.Conclusions:
    """The "what this run can and cannot conclude" box of a report (`overview.conclusions`)."""
    missing = []
    for group in task_groups(report):
        done = {(model_name(r) or r["task_id"]): r["series"] for r in group["records"]
                if r["status"] == "done" and isinstance(r.get("series"), Mapping)}
        missing += [line for line in plots.missing_figure_data(group["task_type"], done) if line not in missing]
    return overview.conclusions(report["verdicts"], rows, report["records"], report["provenance"]["hardware"],
                                missing)


def verdicts_of(report: Mapping[str, Any]) -> list[Verdict]:
    """The report's verdicts as `Verdict` objects."""
    fields = set(Verdict.__dataclass_fields__)
    return [Verdict(**{k: v for k, v in d.items() if k in fields}) for d in report["verdicts"]]
