"""The report's figures: which are drawn for each task group and record (`plots.OVERLAY`,
`plots.PER_TASK`, and `STATED`: per-task figures whose caption states a number of the record's
series), their file names under figures/, captions naming the data source, and the claim bounds
drawn as lines. A series too malformed to plot costs its figure, not the report.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import plots
from .groups import model_name, task_groups, unique
from .plots.parity import ensemble_caption, error_vs_sigma_png
from .text import fmt_value, unique_slug

FIGURES_DIR = "figures"

#: Per-task figures beside `plots.PER_TASK` whose caption also states a number of the record's own
#: series: task type → (figure, the function giving that statement from the series, None without it).
STATED: dict[str, Sequence[tuple[plots.FigureSpec, Callable[[Mapping[str, Any]], str | None]]]] = {
    "parity": ((plots.FigureSpec("uncertainty", "Per-frame force RMSE of the registered model vs its seed "
                                                "ensemble's force spread σ (member 0 included; y = σ dashed)",
                                 error_vs_sigma_png, ("ensemble",)), ensemble_caption),),
}


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
    data = unique((", ".join((r.get("provenance") or {}).get("data_files") or []) or "reference data",
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
    by_model = {(model_name(r) or r["task_id"]): r["series"] for r in done}
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
    label = model_name(record) or ""
    specs = [(spec, None) for spec in plots.PER_TASK.get(record["task_type"], ())]
    specs += list(STATED.get(record["task_type"], ()))
    out = [_figure(f"{record['task_id']}-{spec.kind}",
                   spec.caption + _statement(stated, series) + (f" — {label}" if label else "")
                   + f". {figure_source([record], spec.keys)}",
                   "task", record["task_id"], lambda spec=spec: spec.function(series, label), problems)
           for spec, stated in specs]
    return [f for f in out if f]


def _statement(stated: Callable[[Mapping[str, Any]], str | None] | None, series: Mapping[str, Any]) -> str:
    """"; <what `stated` says of `series`>", or "" where it says nothing (a malformed series is
    reported when its figure is drawn)."""
    if stated is None:
        return ""
    try:
        text = stated(series)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError):
        return ""
    return f"; {text}" if text else ""


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


def report_figures(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return report["figures"] if "figures" in report else make_figures(report)
