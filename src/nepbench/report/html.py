"""The report as one self-contained HTML page (report.html): CSS inline, figures as base64 PNG
data URIs, no script and no link outside the file."""

from __future__ import annotations

import base64
from typing import Any, Mapping, Sequence

from . import overview
from .groups import rows_by_group, task_groups
from .sections import (data_notes, group_methods, metric_rows, owned_figures, provenance_tables, record_heading,
                       report_figures, report_overview, several_machines, task_anchor)
from .text import VERDICT_COLOUR, VERDICT_LABEL, e as _e, fmt_value, html_table as _html_table, unique_slug

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
           f"<h3>{_e(record['task_id'])}</h3>", f'<p class="small">{_e(record_heading(record))}</p>']
    out += [_html_figure(f) for f in figures]
    if record.get("metrics"):
        out.append(f"<details><summary>All {len(record['metrics'])} metrics</summary>"
                   + _html_table(("Metric", "Value", "Unit"), metric_rows(record), numeric=(1,), css_class="metrics")
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
    figures = report_figures(report)
    suite = report["suite"]
    columns, rows, box = report_overview(report)
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
    out += [f'<p class="small">note: {_e(n)}</p>' for n in data_notes(report)] + ["</section>"]
    grouped = rows_by_group(report, rows)
    for group in task_groups(report):
        out += [f'<section class="group" id="group-{_e(unique_slug(group["key"]))}"><h2>{_e(group["title"])}</h2>']
        out += [overview.claim_detail_html(row, task_anchor, several_machines(report))
                for row in grouped.get(group["id"], [])]
        out.append(overview.method_html(group_methods(group)))
        out += [_html_figure(f) for f in owned_figures(figures, "group", group["id"])]
        for record in group["records"]:
            out += _html_record(record, owned_figures(figures, "task", record["task_id"]))
        out.append("</section>")
    if grouped.get(None):
        out += ['<section class="group" id="group-no-record"><h2>Claims without a task record</h2>']
        out += [overview.claim_detail_html(row, task_anchor, several_machines(report))
                for row in grouped[None]] + ["</section>"]
    out += _html_provenance(report["provenance"])
    return "\n".join(out + ["</body></html>"]) + "\n"
