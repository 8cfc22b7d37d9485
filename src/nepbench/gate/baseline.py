"""The gate's baseline document: a run's results without plot series plus a `gate` block (schema,
source run, data hashes, models, tolerances), and the tolerances read back from one."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping

from ..errors import ConfigError
from .snapshots import GateInputError, snapshot
from .tolerances import Tolerances, parse_tolerances

BASELINE_SCHEMA = "nepbench.gate-baseline/1"
REPORT_SCHEMA = "nepbench.report/1"


def baseline_document(report: Mapping[str, Any], tolerances: Tolerances, source_run: str,
                      reference: Mapping[str, Any] | None = None,
                      now: _dt.datetime | None = None) -> dict[str, Any]:
    """The baseline: the run's results document without plot series, plus a `gate` block.

    The `gate` block records the schema, when and from which run it was taken, the reference-data
    hashes the records carry, per task template (`data_sha256`), `reference` (e.g.
    reference.data_sha256 of the DFT manifest and its frame count, where known), the models with
    their sha256, and the tolerances.
    """
    snap = snapshot(report, source_run)
    records = [{k: v for k, v in r.items() if k != "series"} for r in report["records"]]
    stamp = (now or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds")
    gate = {
        "schema": BASELINE_SCHEMA, "created_utc": stamp, "source_run": source_run,
        "data_sha256": dict(sorted(snap.data_sha256.items())),
        "reference": dict(reference or {}),
        "models": [{"task": t, "name": n, "sha256": s} for t, (n, s) in sorted(snap.models.items())],
        "tolerances": tolerances.to_dict(),
        "nepbench_commit": _first_commit(report),
    }
    keep = ("schema", "nepbench_version", "created_utc", "title", "suite", "verdicts", "summary", "provenance")
    return {**{k: report[k] for k in keep if k in report}, "records": records, "gate": gate}


def _first_commit(report: Mapping[str, Any]) -> str | None:
    for item in (report.get("provenance") or {}).get("nepbench") or []:
        if isinstance(item, Mapping) and item.get("commit"):
            return str(item["commit"])
    return None


def baseline_tolerances(document: Mapping[str, Any], source: str) -> Tolerances | None:
    """The tolerances a baseline was written with, or None for a plain results.json."""
    gate = document.get("gate")
    if not isinstance(gate, Mapping):
        return None
    try:
        return parse_tolerances(gate.get("tolerances"), f"{source}: gate.tolerances")
    except ConfigError as exc:
        raise GateInputError(str(exc)) from None
