"""Writing a report: figures/*.png, report.md, report.html and results.json as one atomic set,
removing the figures of the previous report that this one no longer draws."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import InputError
from ..files import atomic_write_files, json_document
from .figures import FIGURES_DIR
from .html import render_html
from .markdown import render_markdown
from .sections import report_figures


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
    figures = report_figures(report)
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
