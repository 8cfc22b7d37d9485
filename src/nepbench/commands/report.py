"""`nepbench report DIR [DIR ...] [--out OUT]`: results.json, report.md and report.html from run records."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import NepbenchError

EPILOG = """examples:
  nepbench report reports/quick                      # writes reports/quick/report.html etc.
  nepbench report runs/array_* --out reports/paper   # merge the run folders of a Slurm array

Writes results.json (suite, verdicts, records, provenance summary), report.md with figures/*.png
beside it, and report.html (self-contained: figures embedded). Every file is written atomically; a
malformed record stops the report with one line naming the file, and nothing is written.
Where several folders hold a record for one task, the newest inputs win (a success of older inputs
never stands in for a run of changed ones); among records of one input a finished record wins over a
skipped or failed one, then the newest. The exit status is 0 whatever the verdicts: use `nepbench verify` as the gate.
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report", help="write the HTML/Markdown/JSON report of one or more run directories",
        description="Gather the result records of run directories, judge the suite's criteria and "
                    "write results.json, report.md (+ figures/) and report.html.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="DIR", help="run directory (holds suite.json and tasks/)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: DIR when one is given; required when merging)")
    parser.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from ..report.build import build_report
    from ..report.text import claim_table_text
    from ..report.write import write_report

    if args.out is None and len(args.run_dirs) > 1:
        raise NepbenchError("--out is required when merging several run directories")
    out_dir = Path(args.out or args.run_dirs[0])
    if out_dir.exists() and not out_dir.is_dir():
        raise NepbenchError(f"{out_dir}: exists and is not a folder (--out takes the report's folder)")
    inputs = {Path(d).resolve() for d in args.run_dirs}
    if (out_dir / "suite.json").is_file() and out_dir.resolve() not in inputs:
        raise NepbenchError(f"{out_dir}: holds a run (suite.json) that is not among the folders reported; its "
                            "report files would then describe other runs: give another --out")
    report = build_report(args.run_dirs)
    paths = write_report(report, out_dir)
    print(claim_table_text(report))
    print(f"report: {paths['html']}  ({paths['markdown'].name}, {paths['results'].name}, "
          f"{len(report['figures'])} figures)")
    return 0
