"""Report text: numbers, bounds and verdicts for people, escaping for Markdown and HTML, and the
terminal claim table. Pure functions of verdict dicts (`Verdict.to_dict()`); no I/O.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import textwrap
from typing import Any, Iterable, Mapping, Sequence

VERDICT_LABEL = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "not_measured": "NOT MEASURED"}
VERDICT_MARK = {"pass": "✅", "warn": "⚠️", "fail": "❌", "not_measured": "⏸"}
VERDICT_COLOUR = {"pass": "#1a7f37", "warn": "#b7791f", "fail": "#c62828", "not_measured": "#6b7280"}
#: Width of the terminal claim table unless the caller asks for another (None: one row per claim, unwrapped).
TERMINAL_WIDTH = 100


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


def value_text(v: Mapping[str, Any]) -> str:
    """'149.2 meV/Å' for a measured verdict, '—' for one not measured."""
    if v["value"] is None:
        return "—"
    return f"{fmt_beside_bounds(v['value'], (v['good'], v['bad']))} {v.get('unit', '')}".rstrip()


def measured_text(v: Mapping[str, Any]) -> str:
    """'149.2 meV/Å', or '— (why it was not measured)'."""
    if v["value"] is None:
        return f"— ({v.get('reason') or 'no value'})"
    return value_text(v)


def score_text(score: float, verdict: str) -> str:
    """A score in [0, 1] to two decimals; a warn (strictly between the bounds) never reads 1.00 or
    0.00, which would say it sits on a bound."""
    shown = round(float(score), 2)
    if verdict == "warn":
        shown = min(max(shown, 0.01), 0.99)
    return f"{shown:.2f}"


def counts_line(report: Mapping[str, Any]) -> str:
    """'3 pass, 2 warn, 5 fail, 4 not measured (14 criteria, 8 task records)'."""
    s = report["summary"]
    return (f"{s['pass']} pass, {s['warn']} warn, {s['fail']} fail, {s['not_measured']} not measured "
            f"({len(report['verdicts'])} criteria, {len(report['records'])} task records)")


# ----------------------------------------------------------------------------- terminal


def claim_table_text(report: Mapping[str, Any], width: int | None = TERMINAL_WIDTH) -> str:
    """The claim table as plain text for a terminal: verdict, criterion, measured value, bounds.

    With `width` (default 100 columns) every line fits it: a reason why a claim was not measured
    is a numbered footnote below the table (one note per distinct reason, shared by the models it
    applies to), and a criterion id or notes too long for their column are wrapped. `width=None`
    gives the wide layout: one row per claim with its reason in the row.
    """
    if width is None:
        return _wide_table(report)
    reasons: list[str] = []
    rows = [("VERDICT", "CRITERION", "MEASURED", "BOUNDS")]
    for v in report["verdicts"]:
        measured = value_text(v)
        if v["value"] is None:
            reason = v.get("reason") or "no value"
            if reason not in reasons:
                reasons.append(reason)
            measured = f"— [{reasons.index(reason) + 1}]"
        rows.append((VERDICT_LABEL[v["verdict"]], v["criterion"], measured, bounds_text(v)))
    widths = _column_widths([[len(cell) for cell in row] for row in rows], width)
    lines = []
    for row in rows:
        cells = [textwrap.wrap(cell, w, break_on_hyphens=False) or [""] for cell, w in zip(row[:3], widths)]
        pieces = [row[3]] if len(row[3]) <= widths[3] else row[3].replace(", ", ",\n").split("\n")
        cells.append([line for piece in pieces for line in textwrap.wrap(piece, widths[3], break_on_hyphens=False)])
        for k in range(max(len(c) for c in cells)):
            parts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths)]
            lines.append("  ".join(parts).rstrip())
    if len(rows) == 1:
        lines.append("(the suite has no criteria)")
    notes = [f"[{i}] {reason}" for i, reason in enumerate(reasons, 1)]
    notes += [f"note: {n}" for n in report.get("notes", [])]
    wrapped = [line for note in notes for line in textwrap.wrap(note, width, subsequent_indent="    ",
                                                                 break_on_hyphens=False)]
    return "\n".join(lines + [counts_line(report)] + wrapped)


def _column_widths(lengths: Sequence[Sequence[int]], width: int) -> list[int]:
    """Widths of the verdict, criterion, measured and bounds columns so that a row with two spaces
    between columns fits `width`: verdict and measured keep their longest cell, the criterion id at
    most 34 characters, the bounds what is left (at least 24: bounds too long for it break after
    "pass …,"); where that is not enough the criterion gives way (to 12 at least)."""
    natural = [max(row[i] for row in lengths) for i in range(4)]
    verdict, criterion, measured, bounds = natural[0], min(natural[1], 34), natural[2], natural[3]
    room = width - verdict - measured - 6
    bounds = max(24, min(bounds, room - criterion))
    criterion = max(12, min(criterion, room - bounds))
    return [verdict, criterion, measured, bounds]


def _wide_table(report: Mapping[str, Any]) -> str:
    """One row per claim (`claim_table_text(report, width=None)`)."""
    rows = [("VERDICT", "CRITERION", "MEASURED", "BOUNDS")]
    for v in report["verdicts"]:
        rows.append((VERDICT_LABEL[v["verdict"]], v["criterion"], measured_text(v), bounds_text(v)))
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    if len(rows) == 1:
        lines.append("(the suite has no criteria)")
    notes = [f"note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines + [counts_line(report)] + notes)


# ----------------------------------------------------------------------------- names and escaping


def slug(text: str) -> str:
    """A file-name-safe form of `text` ("{model}" reads "models"); different texts may share one."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace("{model}", "models")).strip("_") or "figure"


def unique_slug(text: str) -> str:
    """`slug(text)`, plus "-" and 8 hex digits of the sha256 of `text` where slugging dropped or
    replaced characters, so texts such as "parity a" and "parity:a" get different names; a text
    that slugging leaves as it is (e.g. "parity-{model}-motifs") keeps its plain slug. Also the
    HTML ids and Markdown anchors of the report."""
    plain = slug(text)
    if plain == text.replace("{model}", "models"):
        return plain
    return f"{plain}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


_MD_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")
_MD_ACTIVE = re.compile(r"([\\`*_\[\]()#!|~$])")  # active anywhere in a line (GFM)


def md(text: Any) -> str:
    """Untrusted text safe in a Markdown table cell or paragraph: one line (every line break,
    "\\r" included, becomes a space), no raw HTML or entities (& < > as entities), and the
    characters that make links, images, emphasis, code, headings or cells backslash-escaped."""
    text = _MD_LINE_BREAKS.sub(" ", str(text if text is not None else ""))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_ACTIVE.sub(r"\\\1", text)


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], raw: bool = False) -> list[str]:
    """A Markdown table, every cell escaped (`md`) unless `raw` (cells the caller built from escaped parts)."""
    cell = (lambda c: str(c)) if raw else md
    lines = ["| " + " | ".join(md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def e(text: Any) -> str:
    """HTML-escaped text (None as empty)."""
    return html.escape(str(text if text is not None else ""), quote=True)


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (),
               css_class: str = "") -> str:
    """An HTML table with every cell escaped; columns in `numeric` right-aligned."""
    num = ' class="num"'
    body = "".join("<tr>" + "".join(f"<td{num if i in numeric else ''}>{e(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    klass = f' class="{css_class}"' if css_class else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
