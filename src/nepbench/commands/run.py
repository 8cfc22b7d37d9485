"""`nepbench run SUITE --out DIR`: run a suite's tasks (resumable), then write the report.

Exit status: 0 when no task of this run failed (a task skipped for a stated reason, such as a
missing GPU or program, or not applicable, does not count); 1 when any task failed (one line on
stderr names them; the records and the report are still written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..suite import load_suite


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run", help="run a suite (resumable) and write its report",
        description="Run a suite's tasks; finished tasks are kept and a rerun resumes.",
        epilog="example: nepbench run suites/quick.toml --model nep89-lisic --out reports/quick\n\n"
               "exit status: 0 no task failed (skipped and not-applicable tasks do not count),\n"
               "1 a task failed (named on stderr); judge the claims with `nepbench verify`",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", help="suite file (TOML), e.g. suites/quick.toml")
    parser.add_argument("--out", required=False, default=None, help="output folder (default reports/<suite>)")
    parser.add_argument("--model", action="append", default=None,
                        help="model name from the registry (a NEP, or an ASE-calculator comparator such as "
                             "chgnet-0.3.0) or path to a nep.txt; repeat to compare")
    parser.add_argument("--task", action="append", default=None, help="run only this task id (repeatable)")
    parser.add_argument("--list-tasks", action="store_true", help="print the task ids and exit")
    parser.add_argument("--force", action="store_true", help="recompute finished tasks")
    parser.add_argument("--no-report", action="store_true", help="write task records only")
    parser.add_argument("--dry-run", action="store_true",
                        help="print each task's planned cost (CP2K steps, NEP atom·steps, predicted wall time "
                             "on this machine from rates measured now) and exit without running")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..runner import run_suite

    suite = load_suite(args.suite, tuple(args.model) if args.model else None)
    check_models(suite)
    if args.list_tasks:
        for spec in suite.tasks:
            print(spec.id)
        return 0
    out_dir = Path(args.out or Path("reports") / suite.name)

    def show(spec, record, cached) -> None:
        note = "cached" if cached else f"{record['provenance']['wall_s']:.1f} s"
        reason = f": {record['reason']}" if record.get("reason") else ""
        print(f"  {spec.id:40s} {record['status']:14s} ({note}){reason}", flush=True)

    specs = [suite.task(t) for t in args.task] if args.task else list(suite.tasks)  # unknown id: ConfigError
    fetch_registry_models(specs)
    if args.dry_run:
        return _dry_run(suite, specs)
    print(f"nepbench run {suite.name}: {len(specs)} task(s) → {out_dir}")
    records = run_suite(suite, out_dir, args.task, force=args.force, on_task=show)
    if not args.no_report:
        from ..report.build import build_report
        from ..report.text import claim_table_text
        from ..report.write import write_report

        report = build_report([out_dir])
        write_report(report, out_dir)
        print(claim_table_text(report))
        print(f"report: {out_dir / 'report.html'}")
    return _exit_status(records)


def _dry_run(suite: Any, specs: list[Any]) -> int:
    """Print the planned cost of `specs` and their total (`plan.plan_suite`); nothing is run or written."""
    import dataclasses

    from ..plan import measured_rates, plan_suite
    from ..reference import DEFAULT_ROOT
    from ..runner import duration

    plans = plan_suite(dataclasses.replace(suite, tasks=tuple(specs)), DEFAULT_ROOT)
    rates = measured_rates(DEFAULT_ROOT, models=[plan.model for plan in plans if plan.model])
    own = "".join(f", {name} {rate:,.0f}" for name, rate in rates.model_atom_steps_per_s.items())
    print(f"nepbench run {suite.name} --dry-run: {len(plans)} task(s); rates here: NEP "
          f"{rates.nep_atom_steps_per_s:,.0f} atom·steps/s (nep89-lisic{own}, measured now), CP2K "
          f"{rates.cp2k_s_per_step_n:.1f} s/step at {rates.cp2k_n_atoms} atoms on 1 rank ({rates.source})")
    for plan in plans:
        print(f"  {plan.line(rates)}")
    total = sum(plan.predicted_wall_s(rates) for plan in plans)
    print(f"predicted total: ~{duration(total)} (an estimate; nothing was run)")
    return 0


def check_models(suite: Any) -> None:
    """Refuse, before anything is written, a model that is neither a registry name nor a readable
    nep.txt (ModelError naming it). Registry models are fetched after --list-tasks (`fetch_registry_models`)."""
    from ..models import load_registry, resolve_model

    registry = load_registry()
    for name in sorted({m for spec in suite.tasks for m in spec.models}):
        if name not in registry:
            resolve_model(name, fetch=False, registry=registry)


def fetch_registry_models(specs: Any) -> None:
    """Fetch and verify, before anything is printed or written, every registry model the tasks
    `specs` will run (the cache is used when it holds a verified copy): a download that fails, or a
    file that fails its sha256, is one ModelError naming the model, not one failed record per task
    after hours of other tasks. User files were checked by `check_models`. An ASE-calculator
    comparator whose package is not installed (`ModelUnavailable`) is named on stderr and its tasks
    are recorded as skipped with the reason; a bad one (unknown calculator, missing weights file,
    sha256 mismatch) is a ModelError like any other."""
    from ..errors import ModelUnavailable
    from ..models import fetch_model, load_registry

    registry = load_registry()
    for name in sorted({m for spec in specs for m in spec.models if m in registry}):
        try:
            fetch_model(name, registry)
        except ModelUnavailable as exc:
            print(f"nepbench run: {name} will be skipped: {exc}", file=sys.stderr)


def _exit_status(records: list[dict]) -> int:
    """1 (with one line on stderr naming them) when any record of this run has status "failed", else 0."""
    failed = [str(r.get("task_id")) for r in records if r.get("status") == "failed"]
    if failed:
        print(f"nepbench run: {len(failed)} task(s) failed: {', '.join(failed)} "
              "(reasons above and in their records)", file=sys.stderr)
        return 1
    return 0
