"""The label cache: CP2K labels of selected items, one record per item, keyed by its inputs.

`dft/cache/<hash>.json.gz` holds one labelled item (or `<hash>.failed.json` an SCF failure); the
key (`item_hash`) is the sha256 of structure, CP2K settings and version, so a rerun skips
finished items. `label_items` labels what is missing, several builders side by side.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from ase import Atoms

from ..errors import EngineError, InputError, SCFNotConverged
from ..files import LockHeld, atomic_write_bytes, atomic_write_json, exclusive_lock
from ..provenance import content_hash, sha256_bytes
from ..structures import with_labels


def item_hash(atoms: Atoms, settings: dict[str, Any], cp2k_version: str) -> str:
    """sha256 of everything that determines a label: structure, CP2K settings and version."""
    return content_hash({
        "numbers": atoms.numbers, "positions": np.round(atoms.positions, 8),
        "cell": np.round(atoms.cell.array, 8), "pbc": atoms.pbc,
        "settings": settings, "cp2k": cp2k_version,
    })


def input_template_sha256(settings: Any) -> str | None:
    """sha256 of the CP2K single-point input nepbench writes for a fixed probe cell (Li, Si, C)
    with `settings`: it changes when the input writer does (a new keyword, another section), which
    the cache key (structure, settings, CP2K version) does not see. None for engines without
    CP2K settings (test stand-ins)."""
    from ..engines.cp2k import CP2KSettings, build_input

    if not isinstance(settings, CP2KSettings):
        return None
    probe = Atoms("LiSiC", positions=[[0.0, 0.0, 0.0], [2.5, 0.0, 0.0], [0.0, 2.5, 0.0]],
                  cell=[8.0, 8.0, 8.0], pbc=True)
    return sha256_bytes(build_input(probe, settings).encode())


def cache_path(cache_dir: Path, key: str, failed: bool = False) -> Path:
    """Where the label cache in `cache_dir` keeps item `key` (its `item_hash`, first 24 hex digits
    in the name): `<key>.json.gz` for a labelled item, `<key>.failed.json` with `failed` for one
    whose SCF failed. Only the path: it need not exist."""
    return cache_dir / (f"{key[:24]}.failed.json" if failed else f"{key[:24]}.json.gz")


def _write_cached(path: Path, atoms: Atoms, energy: float, forces: np.ndarray,
                  stress: np.ndarray | None, wall_s: float, key: str, template_sha256: str | None = None) -> None:
    record = {
        "input_template_sha256": template_sha256,
        "hash": key, "symbols": atoms.get_chemical_symbols(), "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(), "pbc": atoms.pbc.tolist(),
        "info": {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float))},
        "energy_ev": energy, "forces_ev_per_a": np.asarray(forces).tolist(),
        "stress_ev_per_a3": None if stress is None else np.asarray(stress).tolist(), "wall_s": wall_s,
    }
    atomic_write_bytes(path, gzip.compress(json.dumps(record).encode(), mtime=0))


#: Where `read_cached` puts the record's input-template hash; `_assemble` takes it out again.
TEMPLATE_INFO = "_input_template_sha256"


def read_cached(path: Path) -> Atoms:
    """A labelled frame from a cache record (info carries hash, wall_s, split, motif)."""
    try:
        record = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable cache record ({exc})") from None
    atoms = Atoms(record["symbols"], positions=record["positions"], cell=record["cell"], pbc=record["pbc"])
    atoms.info.update(record["info"])
    atoms.info["hash"] = record["hash"]
    atoms.info["wall_s"] = record["wall_s"]
    atoms.info[TEMPLATE_INFO] = record.get("input_template_sha256")  # None: labelled before it was kept
    stress = None if record["stress_ev_per_a3"] is None else np.array(record["stress_ev_per_a3"])
    return with_labels(atoms, record["energy_ev"], np.array(record["forces_ev_per_a"]), stress)


def cached_label(cache_dir: Path, atoms: Atoms, settings: dict[str, Any], cp2k_version: str) -> Atoms | None:
    """The cached label of `atoms` under `settings` (CP2KSettings.to_dict()) and CP2K `cp2k_version`
    (`read_cached`), or None when the cache has no finished record for them."""
    path = cache_path(cache_dir, item_hash(atoms, settings, cp2k_version))
    return read_cached(path) if path.is_file() else None


@dataclass
class BuildReport:
    labelled: int
    skipped_cached: int
    failed: int
    wall_s: float
    failures: list[str] = field(default_factory=list)
    skipped_busy: int = 0  # items another builder was labelling at the time
    skipped_failed: int = 0  # items whose SCF failed in an earlier build (left out; --retry-failed)


def label_items(items: Iterable[Atoms], engine: Any, cache_dir: Path, retry_failed: bool = False,
                on_item: Callable[[int, int], None] | None = None,
                limit: int | None = None) -> BuildReport:
    """Label every item with `engine.single_point`, skipping items already cached.

    An item whose SCF does not converge is logged in a `.failed.json` record and left out (later
    builds skip it and count it in `skipped_failed`, unless `retry_failed`). A run that crashes
    otherwise (no output, MPI that did not start, a timeout, a killed rank: the machine's fault as
    often as the item's) is counted as failed in this build only and tried again by the next one.
    Nothing half-written reaches the cache. Several builders may share one cache
    (e.g. one CP2K rank each on 2 cores): an item is locked while it is labelled
    (`.<key>.lock` in the cache folder) and the others skip it.
    """
    items = list(items)
    settings = engine.settings.to_dict()
    version = engine.version()
    template = input_template_sha256(engine.settings)
    report = BuildReport(0, 0, 0, 0.0)
    start = time.perf_counter()
    for index, atoms in enumerate(items):
        key = item_hash(atoms, settings, version)
        done, failed = cache_path(cache_dir, key), cache_path(cache_dir, key, failed=True)
        if done.exists():
            report.skipped_cached += 1
        elif failed.exists() and not retry_failed:
            report.skipped_failed += 1
        elif limit is not None and report.labelled + report.failed >= limit:
            break
        else:
            lock = cache_dir / f".{key[:24]}.lock"
            try:
                with exclusive_lock(lock, blocking=False):
                    if done.exists():  # another builder finished it just now
                        report.skipped_cached += 1
                    elif failed.exists() and not retry_failed:  # or recorded its SCF failure
                        report.skipped_failed += 1
                    else:
                        _label_one(atoms, engine, key, done, failed, report, template)
                    lock.unlink(missing_ok=True)  # a builder that opens it later finds `done`
            except LockHeld:  # another builder is labelling it now
                report.skipped_busy += 1
        if on_item:
            on_item(index + 1, len(items))
    report.wall_s = time.perf_counter() - start
    return report


def _label_one(atoms: Atoms, engine: Any, key: str, done: Path, failed: Path, report: BuildReport,
               template_sha256: str | None = None) -> None:
    """Label one item into `done`, or record its SCF failure in `failed`; count it in `report`
    (another crash is counted, not recorded: the next build tries the item again)."""
    try:
        labels = engine.single_point(atoms)
    except (SCFNotConverged, EngineError) as exc:
        if not isinstance(exc, SCFNotConverged) and "not found" in str(exc):
            raise
        if isinstance(exc, SCFNotConverged):
            atomic_write_json(failed, {"hash": key, "error": str(exc), "info": {
                k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float))}})
        report.failed += 1
        report.failures.append(f"{atoms.info.get('builder')}#{atoms.info.get('candidate')}: {exc}")
    else:
        _write_cached(done, atoms, labels.energy_ev, labels.forces_ev_per_a,
                      labels.stress_ev_per_a3, labels.wall_s, key, template_sha256)
        report.labelled += 1
