"""`nepbench gate RUN --baseline FILE`: accuracy regression gate against a committed baseline.

`nepbench gate RUN_DIR_OR_RESULTS_JSON` compares a run (a run folder, or its results.json) with
`reports/baseline/results.json`; `--update-baseline` writes that file (atomically) from a run.
The comparison rules are in `nepbench.gate`; this module reads and writes the files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NepbenchError
from ..textfiles import load_json, load_toml, prefixed

DEFAULT_BASELINE = Path("reports") / "baseline" / "results.json"

EPILOG = """exit status:
  0  no regression: every compared metric is within its tolerance of the baseline and no
     criterion flipped to fail
  1  regression: a metric is worse than the baseline beyond its tolerance, a criterion flipped
     pass → fail or can no longer be judged, a compared metric is missing or in another unit, a
     task ran with other parameters than the baseline's, or a task's reference data differ from
     the baseline's (unless --allow-data-change or --skip-data-changed)
  2  bad input: the run, its results.json, the baseline or the tolerance file is missing or
     unreadable (one line naming the file), or an unexpected error (one line; --debug shows
     the traceback)

examples:
  nepbench run suites/gate.toml --out reports/gate && nepbench gate reports/gate
  nepbench gate reports/gate/results.json --baseline reports/baseline/results.json
  nepbench gate reports/gate --update-baseline        # what `make baseline` does after the run
  nepbench gate reports/gate --allow-data-change      # new reference frames: compare anyway
  nepbench gate reports/gate --skip-data-changed      # gate only the tasks whose data did not change
                                                      # (what `make baseline` checks before rebaselining)

Tolerances come from the baseline (copied from the suite's [gate] table when it was written);
--tolerances SUITE.toml uses another suite file's [gate] table. docs/tracking.md explains the gate.
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "gate", help="compare a run with the committed baseline; exit 0 pass, 1 regression, 2 bad input",
        description="Accuracy regression gate: a run's metrics and verdicts against a baseline run.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", metavar="RUN", help="run folder (suite.json + tasks/) or a results.json")
    parser.add_argument("--baseline", default=str(DEFAULT_BASELINE),
                        help=f"baseline results.json (default {DEFAULT_BASELINE})")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--allow-data-change", action="store_true",
                      help="compare even when a task's reference data differ from the baseline's (said in the output)")
    data.add_argument("--skip-data-changed", action="store_true",
                      help="leave out the tasks whose reference data differ from the baseline's (said in the "
                           "output) and gate the others")
    parser.add_argument("--tolerances", default=None, metavar="SUITE.toml",
                        help="take tolerances from this suite file's [gate] table instead of the baseline's")
    parser.add_argument("--update-baseline", action="store_true",
                        help="write the baseline from RUN (atomically) instead of comparing; refused when "
                             "a task failed or a criterion was not measured")
    parser.add_argument("--allow-unmeasured", action="store_true",
                        help="with --update-baseline: write it even when criteria were not measured")
    parser.add_argument("--reference-dir", default=None,
                        help="reference set the run used, recorded in a new baseline (default reference_data/)")
    parser.set_defaults(func=_gate)


def _bad_input(exc: NepbenchError) -> NepbenchError:
    exc.exit_code = 2
    return exc


def load_results(path: str | Path) -> tuple[dict[str, Any], str]:
    """(results document, source label) of a run folder or a results.json; exit-2 errors name the file."""
    from ..gate import GateInputError
    from ..report.build import build_report

    path = Path(path)
    if path.is_dir() and (path / "suite.json").is_file():
        try:
            return build_report([path], figures=False), str(path)
        except NepbenchError as exc:
            raise _bad_input(exc) from None
    if path.is_dir() and (path / "results.json").is_file():
        path = path / "results.json"
    if not path.exists():
        raise GateInputError(f"{path}: not found")
    if path.is_dir():
        raise GateInputError(f"{path}: not a run folder (no suite.json) and holds no results.json")
    document = load_json(path, prefixed(GateInputError))
    if not isinstance(document, dict):
        raise GateInputError(f"{path}: expected a JSON object")
    return document, str(path)


def load_tolerances_file(path: str | Path, required: bool = False) -> Any:
    """The [gate] table of a suite file as `Tolerances` (defaults when it has none, unless
    `required`: a file named by --tolerances must have one, or the defaults would pass unnoticed)."""
    from ..gate import GateInputError, parse_tolerances

    path = Path(path)
    data = load_toml(path, prefixed(GateInputError))
    if required and "gate" not in data:
        raise GateInputError(f"{path}: no [gate] table (the tolerances --tolerances should take)")
    try:
        return parse_tolerances(data.get("gate"), f"{path}: [gate]")
    except ConfigError as exc:
        raise _bad_input(exc) from None


def _data_files_of(record: dict[str, Any]) -> list[str]:
    """The reference-data files a record's `data_sha256` covers: its `data_files`, or for records
    from before those were written, what its task type reads."""
    from ..runner import task_data_files

    files = record["provenance"].get("data_files")
    if isinstance(files, list) and files and all(isinstance(f, str) for f in files):
        return files
    return list(task_data_files(str(record.get("task_type"))))


def reference_details(reference_dir: Path, records: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    """(details, note): what the baseline says about the reference data its records used.

    Recorded only when every record's data hash is what `reference_dir` gives its task type now:
    the DFT manifest's sha256 (reference.data_sha256), frame and test-frame counts and CP2K version
    where a record read the DFT manifest, the AIMD manifest's sha256 where one read that. Else
    ({}, why not).
    """
    from ..gate import GateInputError
    from ..provenance import sha256_file
    from ..reference import data_sha256 as dft_sha256
    from ..reference import load_manifest
    from ..runner import files_sha256

    hashed = [r for r in records if (r.get("provenance") or {}).get("data_sha256")]
    if not hashed:
        return {}, "the run's tasks read no reference data: no reference details recorded"
    if not reference_dir.is_dir():
        raise GateInputError(f"{reference_dir}: no such folder (the reference set the run used; "
                             "--reference-dir names another)")
    stale = [str(r.get("task_id")) for r in hashed
             if files_sha256(_data_files_of(r), reference_dir) != r["provenance"]["data_sha256"]]
    if stale:
        return {}, (f"{reference_dir} holds other data than {', '.join(stale)} used (changed since the run, "
                    "or another folder): reference details not recorded")
    used = {f for r in hashed for f in (r["provenance"].get("data_files") or [])}
    details: dict[str, Any] = {}
    if "dft/manifest.json" in used:
        manifest = load_manifest(reference_dir / "dft" / "manifest.json")
        files = manifest.get("files", {}).values()
        details.update({"dft_manifest_sha256": dft_sha256(reference_dir / "dft"),
                        "n_frames": manifest.get("n_frames"),
                        "n_test_frames": sum(int(f.get("n_test", 0)) for f in files),
                        "cp2k_version": (manifest.get("cp2k") or {}).get("version")})
    if "aimd/manifest.json" in used:
        details["aimd_manifest_sha256"] = sha256_file(reference_dir / "aimd" / "manifest.json")
    return details, None


def _tolerances_for_new_baseline(args: argparse.Namespace, document: dict[str, Any]) -> tuple[Any, str]:
    from ..gate import GateInputError, Tolerances
    from ..reference import REPO_ROOT

    if args.tolerances:
        return load_tolerances_file(args.tolerances, required=True), args.tolerances
    suite_path = (document.get("suite") or {}).get("path")
    if not suite_path:
        return Tolerances(), "built-in defaults (5 % relative)"
    # suite.json records the path as typed (suites/gate.toml): from another folder, try the repository
    for candidate in (Path(suite_path), REPO_ROOT / suite_path):
        if candidate.is_file():
            return load_tolerances_file(candidate), str(candidate)
    raise GateInputError(f"{args.run}: its suite file {suite_path} is found neither from {Path.cwd()} nor "
                         f"under {REPO_ROOT}; its [gate] tolerances would be lost (give --tolerances FILE)")


def _update_baseline(args: argparse.Namespace) -> int:
    from ..gate import GateInputError, baseline_document, null_gated_metrics, snapshot
    from ..files import atomic_write_json
    from ..runner import REFERENCE_DIR

    document, source = load_results(args.run)
    failed = [r["task_id"] for r in document.get("records", []) if r.get("status") == "failed"]
    if failed:
        raise GateInputError(f"{source}: task(s) {', '.join(failed)} failed; a baseline must come from a clean run")
    unmeasured = sorted({f"{v.get('criterion')} ({v.get('reason') or 'not measured'})"
                         for v in document.get("verdicts", []) if v.get("verdict") == "not_measured"})
    if unmeasured and not args.allow_unmeasured:  # the gate holds nothing the baseline lacks
        raise GateInputError(f"{source}: criteria not measured: {'; '.join(unmeasured)}; a baseline without "
                             "them would let later runs off those criteria for good (--allow-unmeasured to "
                             "write it anyway)")
    tolerances, where = _tolerances_for_new_baseline(args, document)
    nulls = null_gated_metrics(snapshot(document, source), tolerances)
    if nulls:
        raise GateInputError(f"{source}: gated metric(s) null or non-finite: {', '.join(nulls)}; "
                             "a baseline must hold a value for each")
    details, note = reference_details(Path(args.reference_dir) if args.reference_dir else REFERENCE_DIR,
                                      list(document.get("records", [])))
    baseline = baseline_document(document, tolerances, source, details)
    atomic_write_json(args.baseline, baseline)
    print(f"gate: baseline written to {args.baseline} from {source}")
    hashes = ", ".join(f"{task} {sha[:12]}" for task, sha in baseline["gate"]["data_sha256"].items()) or "none"
    print(f"  reference-data sha256: {hashes}; tolerances from {where}")
    for model in baseline["gate"]["models"]:
        print(f"  {model['task']}: {model['name']} (sha256 {model['sha256'][:12]})")
    if note:
        print(f"  note: {note}")
    return 0


def _gate(args: argparse.Namespace) -> int:
    from ..gate import GateInputError, baseline_tolerances, compare, result_lines, snapshot

    if args.update_baseline:
        return _update_baseline(args)
    baseline_path = Path(args.baseline)
    if not baseline_path.is_file():
        raise GateInputError(f"{baseline_path}: baseline not found (write one with `make baseline`)")
    base_doc, base_source = load_results(baseline_path)
    run_doc, run_source = load_results(args.run)
    base, run = snapshot(base_doc, base_source), snapshot(run_doc, run_source)
    notes = []
    if args.tolerances:
        tolerances = load_tolerances_file(args.tolerances, required=True)
        notes.append(f"tolerances from {args.tolerances}")
    else:
        tolerances = baseline_tolerances(base_doc, base_source)
        if tolerances is None:
            from ..gate import Tolerances

            tolerances = Tolerances()
            notes.append(f"{base_source} records no tolerances: built-in defaults (5 % relative)")
    result = compare(base, run, tolerances, allow_data_change=args.allow_data_change,
                     skip_data_changed=args.skip_data_changed)
    result.notes[:0] = notes
    print("\n".join(result_lines(result, base, run)))
    return result.exit_code
