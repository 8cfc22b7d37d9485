"""`nepbench run SUITE --out DIR`: run a suite's tasks (resumable), then write the report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import load_suite


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run", help="run a suite (resumable) and write its report",
        description="Run a suite's tasks; finished tasks are kept and a rerun resumes.",
        epilog="example: nepbench run suites/quick.toml --model nep89-lisic --out reports/quick",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", help="suite file (TOML), e.g. suites/quick.toml")
    parser.add_argument("--out", required=False, default=None, help="output folder (default reports/<suite>)")
    parser.add_argument("--model", action="append", default=None,
                        help="model name from the registry or path to a nep.txt; repeat to compare")
    parser.add_argument("--task", action="append", default=None, help="run only this task id (repeatable)")
    parser.add_argument("--list-tasks", action="store_true", help="print the task ids and exit")
    parser.add_argument("--force", action="store_true", help="recompute finished tasks")
    parser.add_argument("--no-report", action="store_true", help="write task records only")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..runner import run_suite

    suite = load_suite(args.suite, tuple(args.model) if args.model else None)
    if args.list_tasks:
        for spec in suite.tasks:
            print(spec.id)
        return 0
    out_dir = Path(args.out or Path("reports") / suite.name)

    def show(spec, record, cached) -> None:
        note = "cached" if cached else f"{record['provenance']['wall_s']:.1f} s"
        reason = f": {record['reason']}" if record.get("reason") else ""
        print(f"  {spec.id:40s} {record['status']:14s} ({note}){reason}", flush=True)

    print(f"nepbench run {suite.name}: {len(args.task or suite.tasks)} task(s) → {out_dir}")
    run_suite(suite, out_dir, args.task, on_task=show)
    if args.no_report:
        return 0
    from ..report.render import build_report, write_report, claim_table_text

    report = build_report([out_dir])
    write_report(report, out_dir)
    print(claim_table_text(report))
    print(f"report: {out_dir / 'report.html'}")
    return 0
