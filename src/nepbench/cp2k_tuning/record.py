"""The tuning study's record (`reference_data/studies/cp2k_tuning.json`): where it lives, loading
it, and looking up a measured MD cost for a cell (`cached_md_timing`, used by the throughput task).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from ..engines.cp2k import CP2KSettings
from ..errors import NepbenchError
from ..provenance import PROJECT_ROOT, content_hash

DEFAULT_RECORD = Path("reference_data/studies/cp2k_tuning.json")
DEFAULT_RECORD_ABS = PROJECT_ROOT / DEFAULT_RECORD
"""The committed record, wherever the process runs from."""


def load_record(path: Path) -> dict[str, Any]:
    """The study record at `path` (empty when absent); NepbenchError naming the file when unreadable."""
    if not path.is_file():
        return {"results": {}}
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NepbenchError(f"{path}: unreadable tuning record ({exc})") from None
    if not isinstance(record.get("results"), dict):
        raise NepbenchError(f"{path}: tuning record has no 'results' mapping")
    return record


def _md_entries(record: dict[str, Any], atoms: Atoms, settings: CP2KSettings, ranks: int) -> list[dict[str, Any]]:
    """The study's error-free MD entries for this very cell (species, positions to 1e-6 Å, cell)
    run with `settings` on `ranks` ranks, on any CPU, in record order."""
    want = json.loads(json.dumps(settings.to_dict()))
    key = cell_key(atoms)
    return [entry for entry in record.get("results", {}).values()
            if entry.get("kind") == "md" and not entry.get("error") and entry.get("cell_key") == key
            and entry.get("settings") == want and entry.get("ranks") == ranks]


def cached_md_timing(record: dict[str, Any], atoms: Atoms, settings: CP2KSettings, cpu_model: str,
                     ranks: int = 1) -> dict[str, Any] | None:
    """The study's MD entry for this very cell run with `settings` on `ranks` ranks on a CPU named
    `cpu_model`, or None: CP2K's cost is reused only where it was measured on the same kind of
    machine (or, by a machine without CP2K, where `recorded_cpu` names the one it was)."""
    return next((e for e in _md_entries(record, atoms, settings, ranks) if e.get("cpu_model") == cpu_model), None)


def recorded_cpu(record: dict[str, Any], atoms: Atoms, settings: CP2KSettings, prefer: str,
                 ranks: int = 1) -> str | None:
    """The CPU model of a `cached_md_timing` entry for this cell and settings: `prefer` where it
    has one, else the first other CPU recorded (for a machine without CP2K), else None."""
    cpus = [str(e["cpu_model"]) for e in _md_entries(record, atoms, settings, ranks) if e.get("cpu_model")]
    return prefer if prefer in cpus else (cpus[0] if cpus else None)


def cell_key(atoms: Atoms) -> str:
    """sha256 of a cell's species, positions (1e-6 Å) and cell vectors."""
    return content_hash({"numbers": atoms.numbers.tolist(), "positions": np.round(atoms.positions, 6).tolist(),
                         "cell": np.round(atoms.cell.array, 6).tolist()})
