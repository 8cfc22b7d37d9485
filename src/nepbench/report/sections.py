"""Pieces of a report page that the Markdown and HTML renderers share: the overview (claims ×
models matrix and conclusions box), notes, per-group methods, task anchors, record headings and
metric rows, a group's figures, and the provenance tables.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from . import overview
from .build import report_conclusions
from .figures import make_figures
from .groups import model_name
from .text import fmt_value, unique_slug


def report_figures(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return report["figures"] if "figures" in report else make_figures(report)


def owned_figures(figures: Sequence[Mapping[str, Any]], scope: str, owner: str) -> list[Mapping[str, Any]]:
    return [f for f in figures if f["scope"] == scope and f["owner"] == owner]


def metric_rows(record: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    units = record.get("metric_units") or {}
    return [(name, fmt_value(value), units.get(name, "")) for name, value in (record.get("metrics") or {}).items()]


def record_heading(record: Mapping[str, Any]) -> str:
    model = record.get("model") or {}
    parts = [f"status: {record['status']}"]
    if record.get("reason"):
        parts.append(f"reason: {record['reason']}")
    if model:
        sha = model.get("sha256")
        parts.append(f"model: {model.get('name')} ({f'sha256 {str(sha)[:12]}…' if sha else 'sha256 not recorded'})")
    return "; ".join(parts)


def report_overview(report: Mapping[str, Any]) -> tuple[list[str], list[overview.MatrixRow], overview.Conclusions]:
    columns, rows = overview.claim_matrix(report["verdicts"])
    return columns, rows, report_conclusions(report, rows)


def data_notes(report: Mapping[str, Any]) -> list[str]:
    """The report's notes less the caveats the conclusions box already says."""
    caveats = set(report.get("caveats", ()))
    return [n for n in report.get("notes", []) if n not in caveats]


def group_methods(group: Mapping[str, Any]) -> dict[str, str]:
    return {(model_name(r) or r["task_id"]): str(r.get("method") or "") for r in group["records"]}


def several_machines(report: Mapping[str, Any]) -> bool:
    """True when the records come from more than one machine: each claim row then names its hardware
    (otherwise the one machine is said once, in the conclusions box and the provenance)."""
    return len([h for h in report["provenance"]["hardware"] if h]) > 1


def task_anchor(task_id: str) -> str:
    """The HTML id / Markdown anchor of a task's section."""
    return f"task-{unique_slug(task_id)}"


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
