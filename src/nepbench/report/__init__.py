"""Reports: criteria → verdicts (criteria.py), the first screen (overview.py), figures (plots.py),
numbers and escaping (text.py), Markdown/HTML/JSON (render.py).

The report never runs anything: it reads the result records of one or more run directories.
"""

from .criteria import Verdict, exit_code, judge, judge_all, validate_criterion
from .render import build_report, claim_table_text, render_html, render_markdown, write_report

__all__ = [
    "Verdict", "judge", "judge_all", "exit_code", "validate_criterion",
    "build_report", "write_report", "render_markdown", "render_html", "claim_table_text",
]
