"""The report's first screen: the claims × models matrix, one line per claim, the method of each
task template once (with per-model differences), and what the run can and cannot conclude.

Pure functions of the report's verdict dicts (`Verdict.to_dict()`) and records; the `*_html` and
`*_markdown` functions return text and never read files. Criteria of one claim are written
`<claim>[<model>]` in the suites (one per model); a criterion without a model suffix is a row of
its own, in the column of its record's model (or NO_MODEL for a model-free task).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .criteria import ACCURACY_CRITERIA
from .text import (
    VERDICT_COLOUR, VERDICT_LABEL, VERDICT_MARK, bounds_text, e, fmt_value, md, score_text, unique_slug, value_text,
)

#: The column of a criterion whose task runs no model.
NO_MODEL = "(no model)"


@dataclass
class MatrixRow:
    """One claim across models.

    key: the claim's id (the criterion id without its "[model]" suffix); claim: its words without
    the " (model)" suffix; cells: model column → verdict dict, in column order.
    """

    key: str
    claim: str
    cells: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def verdicts(self) -> list[Mapping[str, Any]]:
        return list(self.cells.values())


def verdict_column(v: Mapping[str, Any]) -> str:
    """The model a verdict belongs to: its record's model, else the criterion id's "[model]" suffix,
    else NO_MODEL."""
    if v.get("model"):
        return str(v["model"])
    found = re.fullmatch(r".+\[(.+)\]", str(v["criterion"]))
    return found.group(1) if found else NO_MODEL


def _row_key(v: Mapping[str, Any], column: str) -> str:
    """The criterion id without a "[column]" suffix (the claim shared by the models)."""
    criterion = str(v["criterion"])
    suffix = f"[{column}]"
    return criterion[:-len(suffix)] if criterion.endswith(suffix) and len(criterion) > len(suffix) else criterion


def _claim_words(v: Mapping[str, Any], column: str) -> str:
    claim = str(v.get("claim") or "")
    suffix = f" ({column})"
    return claim[:-len(suffix)] if claim.endswith(suffix) else claim


def claim_matrix(verdicts: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[MatrixRow]]:
    """(model columns, claim rows) of the verdicts, both in first-appearance order.

    Any number of models: a column per model name found. A criterion whose cell is taken (same
    claim id and model) gets a row of its own: its full criterion id, or that id with " (2)", " (3)"...
    """
    columns: list[str] = []
    rows: dict[str, MatrixRow] = {}
    for v in verdicts:
        column = verdict_column(v)
        key, n = _row_key(v, column), 1
        if key in rows and column in rows[key].cells:
            key = str(v["criterion"])
        while key in rows and column in rows[key].cells:
            n += 1
            key = f"{v['criterion']} ({n})"
        row = rows.setdefault(key, MatrixRow(key, _claim_words(v, column)))
        row.cells[column] = v
        if column not in columns:
            columns.append(column)
    return columns, list(rows.values())


def matrix_document(columns: Sequence[str], rows: Sequence[MatrixRow]) -> dict[str, Any]:
    """The matrix for results.json: models, and per claim the criterion and verdict of each model's cell."""
    return {"models": list(columns),
            "rows": [{"claim_id": r.key, "claim": r.claim,
                      "cells": {m: {"criterion": v["criterion"], "verdict": v["verdict"], "value": v["value"]}
                                for m, v in r.cells.items()}} for r in rows]}


def row_bounds(row: MatrixRow) -> str:
    """'pass ≤ 100, fail ≥ 200 meV/Å · source: …', per model where the models' bounds differ."""
    texts = {m: f"{bounds_text(v)} · source: {v.get('source') or 'not given'}" for m, v in row.cells.items()}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return "; ".join(f"{m}: {t}" for m, t in texts.items())


def cell_anchor(v: Mapping[str, Any]) -> str:
    """The HTML id / Markdown anchor of a verdict's detail row."""
    return f"v-{unique_slug(str(v['criterion']))}"


def row_anchor(row: MatrixRow) -> str:
    return f"claim-{unique_slug(row.key)}"


# ----------------------------------------------------------------------------- methods


def _clauses(method: str) -> list[str]:
    """`method` split at "; " outside parentheses and brackets, each clause stripped."""
    out, depth, start = [], 0, 0
    for i, char in enumerate(method):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == ";" and depth <= 0:
            out.append(method[start:i].strip())
            start = i + 1
    out.append(method[start:].strip())
    return [c for c in out if c]


_LABEL = re.compile(r"^([^\s:;,()]{1,40}): ")


def split_methods(methods: Mapping[str, str]) -> tuple[list[str], dict[str, list[str]]]:
    """(clauses every model's method shares, model → its other clauses) of one task template.

    Methods are split into clauses at "; " (outside parentheses). A clause of one model that is not
    shared and has no label of its own is prefixed with the label ("a-Li3Si-900K: …") of the
    nearest clause before it that starts with one, so "NEP T 858 K" says which run it belongs to.
    Models with an empty method are left out; one model alone shares every clause.
    """
    split = {m: _clauses(text) for m, text in methods.items() if text}
    if not split:
        return [], {}
    first = next(iter(split.values()))
    common = [c for c in dict.fromkeys(first) if all(c in clauses for clauses in split.values())]
    differences: dict[str, list[str]] = {}
    for model, clauses in split.items():
        label, own = None, []
        for clause in clauses:
            found = _LABEL.match(clause)
            if found:
                label = found.group(1)
            if clause in common:
                continue
            own.append(clause if found or ":" in clause or label is None else f"{label}: {clause}")
        if own:
            differences[model] = own
    return common, differences


def _per_model_heading(common: Sequence[str]) -> str:
    return "Per model (what differs from the above):" if common else "Per model:"


def method_html(methods: Mapping[str, str]) -> str:
    """A collapsed <details> block: the shared method once, then each model's differences."""
    common, differences = split_methods(methods)
    if not common and not differences:
        return ""
    body = f"<p>{e('; '.join(common))}</p>" if common else ""
    if differences:
        items = "".join(f"<li><b>{e(m)}</b>: {e('; '.join(d))}</li>" for m, d in differences.items())
        body += f'<p class="small">{_per_model_heading(common)}</p><ul class="small">{items}</ul>'
    return f'<details class="method"><summary>Method</summary>{body}</details>'


def method_markdown(methods: Mapping[str, str]) -> list[str]:
    """The shared method once, then each model's differences, as Markdown lines."""
    common, differences = split_methods(methods)
    out = [f"**Method**: {md('; '.join(common))}", ""] if common else []
    if differences:
        out += [_per_model_heading(common), ""]
        out += [f"- **{md(m)}**: {md('; '.join(d))}" for m, d in differences.items()] + [""]
    return out


# ----------------------------------------------------------------------------- matrix and claim lines


def _cell_text(v: Mapping[str, Any]) -> str:
    """The measured value; for a claim not measured "—", or "unresolved" where the gap blocks verify."""
    if v["value"] is None:
        return "unresolved" if v.get("unexpected") else "—"
    return value_text(v)


def matrix_html(columns: Sequence[str], rows: Sequence[MatrixRow]) -> str:
    """The claims × models table: each cell the measured value on its verdict's colour, linked to
    its detail row; a claim links to its line below. Columns share the width left by the claim
    column, so up to four models fit 1150 px without scrolling."""
    if not rows:
        return '<p id="matrix">The suite has no criteria.</p>'
    model_pct = min(18.0, 62.0 / max(1, len(columns)))
    cols = f'<col style="width:{100 - model_pct * len(columns):.1f}%">' + "".join(
        f'<col style="width:{model_pct:.1f}%">' for _ in columns)
    head = "<th>Claim</th>" + "".join(f'<th class="model">{e(c)}</th>' for c in columns)
    out = ['<div class="matrix-wrap"><table id="matrix" class="matrix">', f"<colgroup>{cols}</colgroup>",
           f"<thead><tr>{head}</tr></thead><tbody>"]
    for row in rows:
        cells = [f'<th scope="row"><a href="#{row_anchor(row)}">{e(row.claim)}</a>'
                 f'<span class="cid">{e(row.key)}</span></th>']
        for column in columns:
            v = row.cells.get(column)
            if v is None:
                cells.append('<td class="cell none">—</td>')
                continue
            score = f"score {score_text(v['score'], v['verdict'])}" if v.get("score") is not None else ""
            tip = v.get("reason") or score
            cells.append(f'<td class="cell" style="background:{VERDICT_COLOUR[v["verdict"]]}" title="{e(tip)}">'
                         f'<a href="#{cell_anchor(v)}">{e(_cell_text(v))}'
                         f'<span class="vlabel">{e(VERDICT_LABEL[v["verdict"]])}</span></a></td>')
        out.append(f'<tr class="row">{"".join(cells)}</tr>')
    return "\n".join(out + ["</tbody></table></div>"])


def claim_lines_html(rows: Sequence[MatrixRow]) -> str:
    """One line per claim (the matrix row's words are not repeated): its id, bounds and source."""
    items = "".join(f'<li id="{row_anchor(r)}"><b>{e(r.key)}</b>: {e(row_bounds(r))}</li>' for r in rows)
    return f'<ul class="claim-lines">{items}</ul>' if items else ""


def matrix_markdown(columns: Sequence[str], rows: Sequence[MatrixRow]) -> list[str]:
    """The matrix as a Markdown table (cells link to their detail rows), then one line per claim."""
    if not rows:
        return ["The suite has no criteria.", ""]
    out = ["| Claim | " + " | ".join(md(c) for c in columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        cells = [f"[{md(row.claim)}](#{row_anchor(row)})"]
        for column in columns:
            v = row.cells.get(column)
            cells.append("—" if v is None else
                         f"[{VERDICT_MARK[v['verdict']]} {md(_cell_text(v))}](#{cell_anchor(v)})")
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out += [f'- <a id="{row_anchor(r)}"></a>**{md(r.key)}**: {md(row_bounds(r))}' for r in rows]
    return out + [""]


# ----------------------------------------------------------------------------- claim detail


def _detail_note(v: Mapping[str, Any], hardware: bool) -> str:
    """Why a claim was not measured, the reference's noise floor, and (with `hardware`) where it ran."""
    parts = []
    if v.get("reason"):
        parts.append(str(v["reason"]))
    if v.get("floor_value") is not None:
        unit = f" {v['unit']}" if v.get("unit") else ""
        parts.append(f"reference's own noise {v['floor_metric']} = {fmt_value(v['floor_value'])}{unit}")
    if hardware and v.get("hardware"):
        parts.append(str(v["hardware"]))
    return "; ".join(parts)


def _verdict_text(v: Mapping[str, Any]) -> str:
    score = f" (score {score_text(v['score'], v['verdict'])})" if v.get("score") is not None else ""
    return f"{VERDICT_LABEL[v['verdict']]}{score}"


def claim_detail_html(row: MatrixRow, task_anchor: Any, hardware: bool = False) -> str:
    """One claim: its words, bounds and source, then a row per model (anchor of the matrix cell):
    measured value, verdict, and why it was not measured / the reference's noise floor / (with
    `hardware`, for records of several machines) where it ran. `task_anchor(task_id)` gives the id
    of the task's section."""
    lines = [f'<div class="claim" id="detail-{row_anchor(row)}"><h3>{e(row.claim)} '
             f'<span class="cid">{e(row.key)}</span></h3>', f'<p class="small">{e(row_bounds(row))}</p>',
             '<table class="claim-detail"><colgroup><col style="width:22%"><col style="width:16%">'
             '<col style="width:16%"><col></colgroup><thead><tr><th>Model</th><th>Measured</th><th>Verdict</th>'
             "<th>Note</th></tr></thead><tbody>"]
    for column, v in row.cells.items():
        lines.append(f'<tr id="{cell_anchor(v)}"><td>{e(column)}<br><a class="small" href="#{task_anchor(v["task"])}">'
                     f'task {e(v["task"])}</a></td><td class="num">{e(value_text(v))}</td>'
                     f'<td class="verdict" style="background:{VERDICT_COLOUR[v["verdict"]]}">{e(_verdict_text(v))}</td>'
                     f'<td class="small">{e(_detail_note(v, hardware))}</td></tr>')
    return "\n".join(lines + ["</tbody></table></div>"])


def claim_detail_markdown(row: MatrixRow, hardware: bool = False) -> list[str]:
    """One claim as Markdown: heading, bounds and source, a table row per model (with its anchor)."""
    out = [f"### {md(row.claim)} ({md(row.key)})", "", md(row_bounds(row)), "",
           "| Model | Measured | Verdict | Note |", "|---|---|---|---|"]
    for column, v in row.cells.items():
        out.append(f'| <a id="{cell_anchor(v)}"></a>{md(column)} (task {md(v["task"])}) | {md(value_text(v))} | '
                   f"{VERDICT_MARK[v['verdict']]} {md(_verdict_text(v))} | {md(_detail_note(v, hardware))} |")
    return out + [""]


# ----------------------------------------------------------------------------- what the run can conclude


def _base(v: Mapping[str, Any]) -> str:
    return _row_key(v, verdict_column(v))


def accuracy_lines(verdicts: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per model failing an accuracy criterion (`ACCURACY_CRITERIA`): which of its other judged
    verdicts rest on it."""
    failing: dict[str, list[Mapping[str, Any]]] = {}
    for v in verdicts:
        if _base(v) in ACCURACY_CRITERIA and v["verdict"] == "fail":
            failing.setdefault(verdict_column(v), []).append(v)
    out = []
    for model, fails in failing.items():
        what = " and ".join(f"{_base(v)} ({value_text(v)}; pass {'≤' if v['good'] < v['bad'] else '≥'} "
                            f"{fmt_value(v['good'])})" for v in fails)
        resting = [_base(v) for v in verdicts if verdict_column(v) == model and v["verdict"] != "not_measured"
                   and _base(v) not in ACCURACY_CRITERIA]
        rest = (f"its {', '.join(resting)} verdict{'s' if len(resting) > 1 else ''} rest on a potential that is "
                "not near-DFT on these frames" if resting else "no other verdict of it was judged")
        out.append(f"{model} fails {what}: {rest}.")
    return out


def floor_lines(rows: Sequence[MatrixRow]) -> list[str]:
    """Per claim whose reference noise (`floor`) is beyond its pass bound: that noise, the bound and
    each model's value and verdict."""
    out = []
    for row in rows:
        limited = [(m, v) for m, v in row.cells.items() if v["value"] is not None and v.get("floor_value") is not None
                   and (v["floor_value"] > v["good"] if v["good"] < v["bad"] else v["floor_value"] < v["good"])]
        if not limited:
            continue
        v0 = limited[0][1]
        unit = f" {v0['unit']}" if v0.get("unit") else ""
        floors = sorted({fmt_value(v["floor_value"]) for _, v in limited})
        models = ", ".join(f"{m} {fmt_value(v['value'])} ({VERDICT_LABEL[v['verdict']]})" for m, v in limited)
        out.append(f"{row.key}: the reference's own sampling noise ({v0['floor_metric']} = {' / '.join(floors)}{unit}) "
                   f"is beyond the pass bound ({fmt_value(v0['good'])}{unit}), so a pass is hardly within reach; "
                   f"{models}. A longer reference would sharpen these verdicts.")
    return out


def not_measured_lines(rows: Sequence[MatrixRow]) -> list[str]:
    """Claims not measured, one line per claim and reason (the models sharing it named together);
    a gap that makes `verify` exit 2 says so."""
    out = []
    for row in rows:
        by_reason: dict[str, list[str]] = {}
        blocking: set[str] = set()
        for model, v in row.cells.items():
            if v["verdict"] == "not_measured":
                reason = str(v.get("reason") or "no reason given")
                by_reason.setdefault(reason, []).append(model)
                if v.get("unexpected"):
                    blocking.add(reason)
        for reason, models in by_reason.items():
            flag = " [blocks verify: exit 2]" if reason in blocking else ""
            out.append(f"{row.key} ({', '.join(models)}): {reason}{flag}")
    return out


def _plain_reason(text: str) -> str:
    return re.sub(r"^not measured:\s*", "", text.strip())


def unjudged_metric_lines(records: Sequence[Mapping[str, Any]], verdicts: Sequence[Mapping[str, Any]]) -> list[str]:
    """Top-level metrics a record explains it could not measure (`metric_reasons`) that no criterion
    judges, and tasks without a criterion that did not finish: one line per distinct reason, naming
    the metrics and tasks. Per-run or per-element metrics ("name.run") are left to the task's section."""
    judged = {(v["task"], v["metric"]) for v in verdicts}
    shown = {str(v.get("reason") or "") for v in verdicts}
    grouped: dict[str, list[str]] = {}
    for record in records:
        task = str(record["task_id"])
        if record.get("status") != "done" and all(v["task"] != task for v in verdicts):
            grouped.setdefault(f"{record.get('status')}: {record.get('reason') or 'no reason given'}", []).append(task)
        for metric, reason in (record.get("metric_reasons") or {}).items():
            if "." in metric or (task, metric) in judged or any(reason in s for s in shown):
                continue
            grouped.setdefault(_plain_reason(str(reason)), [])
            if metric not in grouped[_plain_reason(str(reason))]:
                grouped[_plain_reason(str(reason))].append(metric)
    return [f"{', '.join(names)}: {reason}" for reason, names in grouped.items()]


@dataclass(frozen=True)
class Conclusions:
    """What a run can and cannot conclude, as lines under five headings (empty lists are left out)."""

    resting_on_failed_accuracy: list[str]
    limited_by_reference: list[str]
    not_measured: list[str]
    not_recorded: list[str]
    hardware: list[str]

    def sections(self) -> list[tuple[str, list[str]]]:
        """(heading, lines) of each non-empty part, in reading order."""
        titled = [("Verdicts resting on a model that fails accuracy", self.resting_on_failed_accuracy),
                  ("Limited by the reference", self.limited_by_reference),
                  ("Claims not measured, and why", self.not_measured),
                  ("Not measured or not recorded (no claim rests on it)", self.not_recorded),
                  ("Hardware", self.hardware)]
        return [(title, lines) for title, lines in titled if lines]


def conclusions(verdicts: Sequence[Mapping[str, Any]], rows: Sequence[MatrixRow], records: Sequence[Mapping[str, Any]],
                hardware: Sequence[str], missing_data: Sequence[str] = ()) -> Conclusions:
    """The "what this run can and cannot conclude" box from the verdicts, matrix rows, records,
    the provenance's hardware lines and the figures' missing data (`plots.missing_figure_data`)."""
    return Conclusions(
        resting_on_failed_accuracy=accuracy_lines(verdicts),
        limited_by_reference=floor_lines(rows),
        not_measured=not_measured_lines(rows),
        not_recorded=unjudged_metric_lines(records, verdicts) + list(missing_data),
        hardware=[h for h in hardware if h] or ["not recorded"],
    )


def conclusions_html(box: Conclusions) -> str:
    """The box as an <aside> of headed lists."""
    parts = ['<aside id="conclusions" class="box"><h2>What this run can and cannot conclude</h2>']
    for title, lines in box.sections():
        parts.append(f"<h4>{e(title)}</h4><ul>" + "".join(f"<li>{e(line)}</li>" for line in lines) + "</ul>")
    return "".join(parts + ["</aside>"])


def conclusions_markdown(box: Conclusions) -> list[str]:
    """The box as a Markdown section of headed lists."""
    out = ["## What this run can and cannot conclude", ""]
    for title, lines in box.sections():
        out += [f"**{md(title)}**", ""] + [f"- {md(line)}" for line in lines] + [""]
    return out
