"""Assembly of the built set: per-motif extxyz.xz frame files and manifest.json from the label cache.

`dft/<motif>.extxyz.xz` holds the assembled frames with energy, forces and stress; `dft/manifest.json`
records CP2K version, settings, input-template hash, per-frame and per-file sha256, wall times,
the train/test split and the selection. Files and manifest are written as one set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from ..files import atomic_write_files, exclusive_lock, json_document
from ..provenance import content_hash, hardware_info, package_versions, sha256_bytes, sha256_file
from ..structures import labels_of, structures_bytes
from .labelling import TEMPLATE_INFO, cache_path, item_hash, read_cached
from .spec import ReferenceSpec

if TYPE_CHECKING:
    from .selection import Selection

#: Item fields `_assemble` takes from the spec's item as it is now, not from its cache record.
CURRENT_ITEM_INFO = ("motif", "builder", "candidate", "split")


def _fixed8(values: np.ndarray) -> list[str]:
    """Floats as extxyz writes per-atom arrays (8 decimals), so the text round trip is exact."""
    return [f"{v:.8f}" for v in np.asarray(values, dtype=float).ravel()]


def frame_sha256(atoms: Atoms) -> str:
    """sha256 of a labelled frame's content (species, geometry, labels, motif, split).

    Positions and forces enter at the 8 decimals the extxyz file stores; cell, energy and stress
    are stored at full precision, so the hash of a frame read back from its file is unchanged.
    """
    energy, forces, stress = labels_of(atoms)
    return content_hash({
        "symbols": atoms.get_chemical_symbols(), "positions": _fixed8(atoms.positions),
        "cell": atoms.cell.array.ravel().tolist(), "energy": repr(float(energy)),
        "forces": _fixed8(forces), "stress": None if stress is None else [repr(float(x)) for x in stress],
        "motif": atoms.info.get("motif"), "split": atoms.info.get("split"),
    })


def assemble(items: list[Atoms], engine_info: dict[str, Any], cache_dir: Path, out_dir: Path,
             spec: ReferenceSpec, selection: Selection | None) -> dict[str, Any]:
    """Write per-motif extxyz.xz files and manifest.json from the finished cache items.

    Builders sharing a cache assemble one at a time, so the files and the manifest always agree.
    """
    with exclusive_lock(Path(out_dir) / ".assemble.lock"):
        return _assemble(items, engine_info, cache_dir, Path(out_dir), spec, selection)


def _cached_frames(items: list[Atoms], settings: dict[str, Any], version: str, cache_dir: Path
                   ) -> tuple[dict[str, list[Atoms]], list[dict[str, Any]], dict[str, int]]:
    """(labelled frames by motif, failed-item records, frames per input-template hash) of the
    items' cache records; items with neither record are left out."""
    by_motif: dict[str, list[Atoms]] = {}
    failed: list[dict[str, Any]] = []
    templates: dict[str, int] = {}
    for atoms in items:
        key = item_hash(atoms, settings, version)
        done = cache_path(cache_dir, key)
        if done.exists():
            frame = read_cached(done)
            used = frame.info.pop(TEMPLATE_INFO, None) or "not recorded"
            templates[used] = templates.get(used, 0) + 1
            # the labels are the cache's (its key is the structure, settings and CP2K version); what
            # the spec says of the item now is the item's: a family moved to another motif or
            # builder label must not keep its old one
            for key in CURRENT_ITEM_INFO:
                if key in atoms.info:
                    frame.info[key] = atoms.info[key]
            by_motif.setdefault(frame.info["motif"], []).append(frame)
        elif cache_path(cache_dir, key, failed=True).exists():
            failed.append(json.loads(cache_path(cache_dir, key, failed=True).read_text()))
    return by_motif, failed, templates


def _frame_files(by_motif: dict[str, list[Atoms]], out_dir: Path) -> tuple[dict[Path, bytes], dict[str, Any]]:
    """({path: extxyz.xz bytes}, the manifest's "files" entries) of one frame file per motif; sets
    each frame's `frame_sha256`."""
    files: dict[str, Any] = {}
    contents: dict[Path, bytes] = {}
    for motif, frames in sorted(by_motif.items()):
        path = out_dir / f"{motif}.extxyz.xz"
        for frame in frames:
            frame.info["frame_sha256"] = frame_sha256(frame)
        contents[path] = structures_bytes(path.name, frames)
        files[path.name] = {
            "sha256": sha256_bytes(contents[path]), "n_frames": len(frames),
            "n_test": sum(f.info["split"] == "test" for f in frames),
            "frames": [{"frame_sha256": f.info["frame_sha256"], "hash": f.info["hash"],
                        "builder": f.info.get("builder"), "split": f.info["split"],
                        "n_atoms": len(f), "formula": f.get_chemical_formula(),
                        "wall_s": round(float(f.info["wall_s"]), 2),
                        "force_rms_ev_per_a": _force_rms(f)} for f in frames],
        }
    return contents, files


def _force_rms(atoms: Atoms) -> float | None:
    """RMS of a labelled frame's DFT force components (eV/Å, 4 decimals), None without forces:
    how far from equilibrium the frame is (docs/cp2k_settings.md)."""
    forces = labels_of(atoms)[1]
    return None if forces is None else round(float(np.sqrt(np.mean(np.asarray(forces) ** 2))), 4)


def _selection_record(spec: ReferenceSpec, selection: Selection | None) -> dict[str, Any] | None:
    """The manifest's "selection" entry: method, pool and picks per family (None without a selection)."""
    return None if selection is None else {
        "method": (f"DIRECT ({'per-structure mean NEP descriptor of ' + str(spec.sampler_model) if spec.descriptor == 'nep' else 'structural fingerprint'}"
                   " → StandardScaler → PCA (Kaiser) → BIRCH → one per cluster, nearest the centroid), per family"
                   + (f", among the {spec.uncertain_fraction:g} of each pool where {spec.sampler_model}'s seed ensemble"
                      " disagrees most (force spread σ; the cut per family below)"
                      if spec.select_by == "ensemble_sigma" else "")
                   + ("; MD families split by origin (whole runs are test)" if any(f.md for f in spec.families) else "")),
        "pool_size": selection.pool_size, "selected": len(selection.items),
        "selected_fraction": round(selection.selected_fraction, 4),
        "selection_version": spec.selection_version,
        "per_family": selection.per_family,
    }


def _assemble(items: list[Atoms], engine_info: dict[str, Any], cache_dir: Path, out_dir: Path,
              spec: ReferenceSpec, selection: Selection | None) -> dict[str, Any]:
    settings = engine_info["settings"]
    version = engine_info["version"]
    by_motif, failed, templates = _cached_frames(items, settings, version, cache_dir)
    contents, files = _frame_files(by_motif, out_dir)
    n_frames = sum(f["n_frames"] for f in files.values())
    manifest = {
        "schema": "nepbench.reference/1",
        "name": spec.name,
        "spec": Path(spec.path).name,
        "spec_sha256": sha256_file(spec.path) if spec.path else None,
        "cp2k": {"version": version, "settings": settings,
                 "input_template_sha256": engine_info.get("input_template_sha256"),
                 # frames per input template they were labelled with ("not recorded": before it was kept)
                 "frames_by_input_template": dict(sorted(templates.items()))},
        "seed": spec.seed,
        "test_fraction": spec.test_fraction,
        "selection": _selection_record(spec, selection),
        "n_frames": n_frames,
        "n_failed": len(failed),
        "failed": failed,
        "total_cp2k_wall_s": round(sum(fr["wall_s"] for f in files.values() for fr in f["frames"]), 1),
        "files": files,
        "hardware": hardware_info(),
        "packages": package_versions(),
    }
    # frame files and manifest as one set (all staged, then renamed, the manifest last), so a kill
    # while writing leaves the old set whole, and one between the renames leaves frames that
    # `verify` finds at odds with the old manifest; then the files of motifs the spec no longer has
    stale = [p for p in out_dir.glob("*.extxyz.xz") if p not in contents]
    atomic_write_files({**contents, out_dir / "manifest.json": json_document(manifest).encode()})
    for path in stale:
        path.unlink(missing_ok=True)
    return manifest
