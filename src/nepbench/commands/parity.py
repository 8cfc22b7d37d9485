"""`nepbench parity --model M --data FILE.extxyz --out DIR`: parity of any model on any labelled data.

Writes the same record, plots, results.json and criteria as the suite's parity task, so
`nepbench verify DIR` judges it too. Bad models or data give one line and write nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from ..spec import TaskSpec

from ..suite import load_suite
from ..errors import ConfigError, InputError

#: The suite name of a `nepbench parity` output folder: a rerun may write over one, never over a suite's run.
PARITY_SUITE = "parity"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "parity", help="energy/force/stress parity of a model on a labelled extxyz file",
        description="Parity of any NEP model on any labelled extxyz (energy, forces, optional stress). "
                    "Frames with info split=train/test use train for the energy offsets.",
        epilog="example: nepbench parity --model nep89-lisic --data my_dft.extxyz --out reports/mine",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="registry name (a NEP or an ASE-calculator comparator, "
                                                         "e.g. chgnet-0.3.0) or path to a nep.txt")
    parser.add_argument("--data", required=True, help="labelled extxyz (energy, forces[, stress]); .gz/.xz ok")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--criteria", default=str(Path(__file__).resolve().parents[3] / "suites" / "quick.toml"),
                        help="suite whose parity criteria are applied (default suites/quick.toml)")
    parser.set_defaults(func=_parity)


def _parity(args: argparse.Namespace) -> int:
    from ..engines.ase_calc import cpu_engine
    from ..models import resolve_model
    from ..files import atomic_write_json
    from ..provenance import sha256_file
    from ..report.build import build_report
    from ..report.text import claim_table_text
    from ..report.write import write_report
    from ..runner import ResolvedModel, claim_run_dir, make_record, record_path
    from ..structures import read_structures
    from ..tasks.parity import member_engines, parity_outcome

    out = Path(args.out)
    claim_run_dir(out, PARITY_SUITE)  # before the work: never over another suite's run
    info = resolve_model(args.model)
    frames = read_structures(args.data, allowed_species=info.species, require_labels=True)
    test = [f for f in frames if f.info.get("split") == "test"]
    train = [f for f in frames if f.info.get("split") == "train"]
    if not test or not train:
        test, train = frames, None
    elif len(test) + len(train) < len(frames):  # a third split would drop out of both, unsaid
        other = sorted({str(f.info.get("split")) for f in frames} - {"test", "train"})
        raise InputError(args.data, f"{len(frames) - len(test) - len(train)} frame(s) with split "
                         f"{', '.join(other)}: every frame must be split=test or split=train when both are "
                         "given (or give none, and every frame is scored with in-sample offsets)")
    model = ResolvedModel(info.name, Path(info.path), info.sha256, dict(info.source), tuple(info.species))
    spec = TaskSpec("parity", "parity", f"Parity on {Path(args.data).name}",
                    {"data": str(args.data)}, (info.name,))
    suite = load_suite(args.criteria, (info.name,))
    criteria = [dataclasses.replace(c, id=c.id.split("[")[0], task="parity")
                for c in suite.criteria if c.task == f"parity-{info.name}"]
    if not criteria:
        raise ConfigError(f"{args.criteria}: no criterion on a parity task to judge the model by")
    start = time.perf_counter()
    engine = cpu_engine(info)
    outcome = parity_outcome(engine, test, train, f"{len(test)} frames of {args.data}", str(args.data),
                             ensemble=member_engines(info.ensemble, engine))
    data_sha = sha256_file(args.data)
    record = make_record(spec, outcome, model, data_sha, data_sha, time.perf_counter() - start,
                         data_files=[str(args.data)])
    atomic_write_json(out / "suite.json", {"name": PARITY_SUITE, "description": f"parity on {args.data}",
                                           "tasks": [spec.to_dict()],
                                           "criteria": [c.to_dict() for c in criteria]})
    atomic_write_json(record_path(out, spec.id), record)
    report = build_report([out])
    write_report(report, out)
    print(claim_table_text(report))
    print(f"report: {out / 'report.html'}")
    return 0
