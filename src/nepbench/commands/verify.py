"""`nepbench verify DIR [DIR ...] [--strict]`: the regression gate; the exit status says if claims hold."""

from __future__ import annotations

import argparse

from ..errors import NepbenchError

EPILOG = """exit status:
  0  every criterion that could be judged passes ("warn", between the good and bad bounds, counts
     as a pass but is printed); criteria not measured for a stated gap in what was available (a
     task skipped because a program or the GPU is missing, not applicable, a reference too short)
     are printed and do not block
  1  at least one criterion fails (at or beyond its "bad" bound)
  2  cannot judge: no criterion could be judged at all (no results), a task failed or has no
     record, a metric is missing without a stated reason or is NaN/inf, the run could not resolve
     a metric (not converged, a broken measurement, the model's value unresolved), the run directory or a
     record is unreadable or malformed, --strict and any criterion is not measured, or an
     unexpected error (one line; --debug shows the traceback)

examples:
  nepbench verify reports/quick
  nepbench verify --strict reports/paper          # on the GPU node: every claim must be measured
  nepbench verify runs/array_*                     # merged Slurm array run folders
"""

MEANING = {0: "claims hold", 1: "a claim fails", 2: "cannot judge"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "verify", help="judge a run's criteria; exit 0 pass, 1 fail, 2 cannot judge",
        description="Judge the suite's criteria against the result records of a run (no report written).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="DIR", help="run directory (holds suite.json and tasks/)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 2 when any criterion is not measured, whatever the reason")
    parser.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from ..report.criteria import exit_code
    from ..report.build import build_report, verdicts_of
    from ..report.text import claim_table_text

    try:
        report = build_report(args.run_dirs, figures=False)
    except NepbenchError as exc:  # unreadable input: cannot judge (1 is kept for failed claims)
        exc.exit_code = 2
        raise
    print(claim_table_text(report))
    code = exit_code(verdicts_of(report), strict=args.strict)
    print(f"verify: exit {code} ({MEANING[code]}{', strict' if args.strict else ''})")
    return code
