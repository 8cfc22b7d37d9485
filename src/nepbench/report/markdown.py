"""The report as Markdown (report.md); figures are referenced as figures/*.png beside it."""

from __future__ import annotations

from typing import Any, Mapping

from . import overview
from .groups import rows_by_group, task_groups
from .sections import (data_notes, group_methods, metric_rows, owned_figures, provenance_tables, record_heading,
                       report_figures, report_overview, several_machines, task_anchor)
from .text import counts_line, fmt_value, md as _md, md_table as _md_table


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown; figures are referenced as figures/*.png beside report.md.

    Order: the claims × models matrix and one line per claim, what the run can and cannot
    conclude, then per task template its claims in detail, its method once (with per-model
    differences), figures and each task's metrics, then provenance.
    """
    figures = report_figures(report)
    suite = report["suite"]
    columns, rows, box = report_overview(report)
    description = f": {_md(suite['description'])}" if suite.get("description") else ""
    out = [f"# {_md(report['title'])}", "", f"Suite **{_md(suite.get('name'))}**{description}",
           "", f"Generated {report['created_utc']} by nepbench {report['nepbench_version']} "
           f"from {', '.join(map(_md, report['run_dirs']))}.", "", "## Claims × models", "",
           _md(counts_line(report)), ""]
    out += overview.matrix_markdown(columns, rows)
    out += overview.conclusions_markdown(box)
    out += [f"> note: {_md(note)}" for note in data_notes(report)]
    grouped = rows_by_group(report, rows)
    for group in task_groups(report):
        out += ["", f"## {_md(group['title'])}", ""]
        for row in grouped.get(group["id"], []):
            out += overview.claim_detail_markdown(row, several_machines(report))
        out += overview.method_markdown(group_methods(group))
        out += [_md_figure(f) for f in owned_figures(figures, "group", group["id"])]
        for record in group["records"]:
            out += [f'### <a id="{task_anchor(record["task_id"])}"></a>{_md(record["task_id"])}', "",
                    _md(record_heading(record)), ""]
            out += [_md_figure(f) for f in owned_figures(figures, "task", record["task_id"])]
            if record.get("metrics"):
                out += [f"<details><summary>All {len(record['metrics'])} metrics</summary>", ""]
                out += _md_table(("Metric", "Value", "Unit"), metric_rows(record)) + ["</details>", ""]
    if grouped.get(None):
        out += ["", "## Claims without a task record", ""]
        for row in grouped[None]:
            out += overview.claim_detail_markdown(row, several_machines(report))
    out += ["", "## Provenance", ""] + _provenance_markdown(report["provenance"])
    return "\n".join(out).rstrip() + "\n"


def _md_figure(figure: Mapping[str, Any]) -> str:
    caption = _md(figure["caption"]).replace("[", "(").replace("]", ")")
    return f"![{caption}]({figure['file']})\n\n*{caption}*\n"


def _provenance_markdown(prov: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for header, rows in provenance_tables(prov):
        out += _md_table(header, rows)
    return out + [f"Total task wall time: {fmt_value(prov['total_wall_s'])} s"]
