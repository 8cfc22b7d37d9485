#!/usr/bin/env python3
"""How far are Γ-only CP2K labels from k-point-sampled ones? (issue 27; docs/cp2k_settings.md,
"k-point study").

Relabels committed frames with the CP2K settings they were labelled with plus a Monkhorst-Pack mesh
(`CP2KSettings.kpoints`) and records, per frame, the difference from the committed Γ-only labels:
force RMS and max |component| (meV/Å), energy (meV/atom), max |stress component| (GPa), and both
wall times; it keeps the k-point labels too, so that two meshes on one frame can be compared
(`--table` prints both tables). A v2 frame's Γ label and settings come from the set's label cache
(`label-tuned` or `label`), so the study still runs once the set holds k-point labels. The
record's `aimd:a-Li3Si-1500K-v2:-1` rows come from that run's Γ-only steps, which were dropped on
2026-12-07 when it restarted with k-points; they are in git history (commit a8f5f4c). Frames come from the v2 reference set (by frame_sha256 prefix) or from a committed AIMD
run (`aimd:<run>:<index>` into its force-carrying frames). The record is resumable: finished
(frame, mesh) pairs are kept and skipped; each new one is written atomically under a lock, so runs
on both cores may share the record.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/kpoint_study.py --frame bd1d840666 --frame aimd:a-Li3Si-1500K-v2:-1 \\
        --mesh 2,2,2 [--record reference_data/studies/kpoints_v2.json] [--ranks 1]
    .venv/bin/python scripts/kpoint_study.py --table     # the record as docs/cp2k_settings.md shows it

Units: forces eV/Å in the data; differences meV/Å, meV/atom, GPa; wall time s.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from nepbench.cp2k_tuning.agreement import energy_difference_mev_per_atom, force_agreement, stress_difference_gpa
from nepbench.aimd.spec import load_aimd_spec
from nepbench.engines.cp2k import SETTINGS_PRESETS, CP2KEngine, CP2KSettings
from nepbench.engines.cp2k.segments import read_labelled_frames
from nepbench.errors import ConfigError
from nepbench.files import atomic_write_json, exclusive_lock
from nepbench.provenance import PROJECT_ROOT
from nepbench.reference.assembly import frame_sha256
from nepbench.reference.labelling import cache_path, item_hash, read_cached
from nepbench.reference.verification import load_manifest
from nepbench.structures import labels_of

DEFAULT_RECORD = PROJECT_ROOT / "reference_data" / "studies" / "kpoints_v2.json"
V2_DIR = PROJECT_ROOT / "reference_data" / "dft-v2"
AIMD_SPEC = PROJECT_ROOT / "reference_data" / "aimd.toml"
GAMMA_PRESETS = ("label-tuned", "label")


def find_frame(key: str) -> tuple[Atoms, CP2KSettings, dict[str, Any]]:
    """(frame, the CP2K settings its labels were computed with, description) for a `key`: a v2
    frame_sha256 prefix (settings from dft-v2/manifest.json) or `aimd:<run>:<i>`, the i-th
    force-carrying frame of a committed AIMD run (settings from its state.json)."""
    if key.startswith("aimd:"):
        _, run_id, index = key.split(":")
        try:
            run = load_aimd_spec(AIMD_SPEC).run(run_id)
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None
        run_dir = AIMD_SPEC.parent / "aimd" / run_id
        frame = read_labelled_frames(run_dir)[int(index)]
        settings = CP2KSettings.from_dict(json.loads((run_dir / "state.json").read_text())["settings"])
        return frame, settings, {"source": f"aimd/{run_id}", "step": int(frame.info["step"]),
                                 "builder": run.builder, "temperature_k": run.protocol.temperature_k}
    matches = [(f, preset) for f, preset in gamma_labels() if str(f.info["frame_sha256"]).startswith(key)]
    if len(matches) != 1:
        raise SystemExit(f"{V2_DIR / 'cache'}: {len(matches)} Γ-only labels match frame_sha256 prefix {key!r} (need 1)")
    frame, preset = matches[0]
    info = {k: frame.info.get(k) for k in ("builder", "motif", "split", "temperature_k", "interface", "carbon")}
    return frame, SETTINGS_PRESETS[preset], {"source": "dft-v2", **{k: v for k, v in info.items() if v is not None}}


@functools.cache
def gamma_labels() -> list[tuple[Atoms, str]]:
    """Every Γ-only label in the v2 set's label cache, as (frame with info `frame_sha256`, preset):
    the labels of `label-tuned` and `label`, the presets the v2 frames had before `label-kp`. The
    frame_sha256 is the one the set gave the frame while it held that label (the study's keys).
    Read once per run: every --frame key looks its frame up here."""
    cache = V2_DIR / "cache"
    version = load_manifest(V2_DIR / "manifest.json")["cp2k"]["version"]
    found: list[tuple[Atoms, str]] = []
    for path in sorted(cache.glob("*.json.gz")):
        atoms = read_cached(path)
        for preset in GAMMA_PRESETS:
            if cache_path(cache, item_hash(atoms, SETTINGS_PRESETS[preset].to_dict(), version)) == path:
                atoms.info["frame_sha256"] = frame_sha256(atoms)
                found.append((atoms, preset))
    return found


def compare(frame: Atoms, base: CP2KSettings, mesh: tuple[int, int, int], ranks: int) -> dict[str, Any]:
    """Label `frame` with `base` + `mesh` and return its differences from the frame's Γ labels."""
    energy, forces, stress = labels_of(frame)
    settings = dataclasses.replace(base, kpoints=mesh)
    with tempfile.TemporaryDirectory(prefix="nb-kpoints-") as tmp:
        engine = CP2KEngine(settings, workdir=tmp, ranks=ranks)
        start = time.perf_counter()
        labels = engine.single_point(frame)
        wall = time.perf_counter() - start
    rms, worst = force_agreement(labels.forces_ev_per_a, forces)
    entry: dict[str, Any] = {
        "force_rms_diff_mev_per_a": rms, "force_max_diff_mev_per_a": worst,
        "energy_diff_mev_per_atom": energy_difference_mev_per_atom(labels.energy_ev, energy, len(frame)),
        "gamma_force_rms_mev_per_a": float(np.sqrt(np.mean(np.asarray(forces) ** 2)) * 1000.0),
        "kpoint_force_rms_mev_per_a": float(np.sqrt(np.mean(labels.forces_ev_per_a ** 2)) * 1000.0),
        "wall_s": wall, "gamma_wall_s": float(frame.info["wall_s"]) if "wall_s" in frame.info else None,
        "settings": settings.to_dict(), "ranks": ranks,
        "energy_ev": labels.energy_ev, "forces_ev_per_a": np.round(labels.forces_ev_per_a, 6).tolist(),
        "stress_ev_per_a3": None if labels.stress_ev_per_a3 is None else np.asarray(labels.stress_ev_per_a3).tolist(),
    }
    if stress is not None and labels.stress_ev_per_a3 is not None:
        entry["stress_max_diff_gpa"] = stress_difference_gpa(labels.stress_ev_per_a3, stress)
    return entry


def read_record(path: Path) -> dict[str, Any]:
    """The study record at `path`, or an empty one; SystemExit naming the file when unreadable."""
    if not path.is_file():
        return {"study": "Γ-only labels against a Monkhorst-Pack mesh", "entries": []}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{path}: unreadable study record ({exc}); left as it is") from None


def markdown_table(record: dict[str, Any]) -> str:
    """The record as the table docs/cp2k_settings.md shows, one row per (frame, mesh)."""
    rows = ["| frame | atoms | cell lengths (Å) | mesh | Γ force RMS (meV/Å) | ΔF RMS / max (meV/Å) "
            "| ΔE (meV/atom) | Δσ max (GPa) | wall k / Γ (s) |", "|---" * 9 + "|"]
    for e in record["entries"]:
        name = " ".join(str(e[k]) for k in ("builder", "interface") if e.get(k)) or e["frame"]
        where = e["source"] if e["source"] != "dft-v2" else f"{e.get('motif', '')} {e.get('split', '')}".strip()
        widths = "×".join(f"{x:.1f}" for x in e["cell_lengths_a"])
        stress = f"{e['stress_max_diff_gpa']:.2f}" if "stress_max_diff_gpa" in e else "–"
        gamma_wall = f"{e['gamma_wall_s']:.0f}" if e.get("gamma_wall_s") else "–"
        rows.append(f"| {name} ({where}, {e['temperature_k']:g} K) `{e['frame']}` | {e['formula']} "
                    f"| {widths} | {'×'.join(map(str, e['mesh']))} | {e['gamma_force_rms_mev_per_a']:.0f} "
                    f"| {e['force_rms_diff_mev_per_a']:.0f} / {e['force_max_diff_mev_per_a']:.0f} "
                    f"| {e['energy_diff_mev_per_atom']:+.1f} | {stress} | {e['wall_s']:.0f} / {gamma_wall} |")
    return "\n".join(rows)


def convergence_table(record: dict[str, Any]) -> str:
    """For each frame labelled on two or more meshes: each mesh against the next coarser one."""
    rows = ["| frame | meshes | ΔF RMS / max (meV/Å) | ΔE (meV/atom) |", "|---|---|---|---|"]
    by_frame: dict[str, list[dict[str, Any]]] = {}
    for e in record["entries"]:
        if "forces_ev_per_a" in e:
            by_frame.setdefault(e["frame"], []).append(e)
    for frame, entries in by_frame.items():
        entries.sort(key=lambda e: int(np.prod(e["mesh"])))
        for coarse, fine in zip(entries, entries[1:]):
            rms, worst = force_agreement(np.array(fine["forces_ev_per_a"]), np.array(coarse["forces_ev_per_a"]))
            de = energy_difference_mev_per_atom(fine["energy_ev"], coarse["energy_ev"], fine["n_atoms"])
            rows.append(f"| {fine['formula']} `{frame}` | {'×'.join(map(str, coarse['mesh']))} → "
                        f"{'×'.join(map(str, fine['mesh']))} | {rms:.0f} / {worst:.0f} | {de:+.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="store_true", help="run no CP2K: print the record's table")
    parser.add_argument("--frame", action="append", default=[],
                        help="v2 frame_sha256 prefix or aimd:<run>:<index> (repeatable)")
    parser.add_argument("--mesh", default="2,2,2", help="Monkhorst-Pack mesh n_a,n_b,n_c (default 2,2,2)")
    parser.add_argument("--record", type=Path, default=DEFAULT_RECORD)
    parser.add_argument("--ranks", type=int, default=1)
    args = parser.parse_args(argv)
    mesh = tuple(int(n) for n in args.mesh.split(","))
    if len(mesh) != 3 or min(mesh) < 1:
        parser.error(f"--mesh: need three integers >= 1, got {args.mesh!r}")
    if args.table:
        record = read_record(args.record)
        print(markdown_table(record) + "\n\n" + convergence_table(record))
        return 0
    if not args.frame:
        parser.error("--frame is required (or --table)")
    lock = args.record.with_name(f".{args.record.name}.lock")
    for key in args.frame:
        if any(e["frame"] == key and tuple(e["mesh"]) == mesh for e in read_record(args.record)["entries"]):
            print(f"{key} {mesh}: already recorded")
            continue
        frame, base, info = find_frame(key)
        entry = {"frame": key, "frame_sha256": str(frame.info.get("frame_sha256", "")),
                 "formula": frame.get_chemical_formula(), "n_atoms": len(frame),
                 "cell_lengths_a": [round(float(x), 3) for x in frame.cell.lengths()],
                 "mesh": list(mesh), **info, **compare(frame, base, mesh, args.ranks)}
        with exclusive_lock(lock):  # studies on both cores share one record
            record = read_record(args.record)
            record["entries"].append(entry)
            atomic_write_json(args.record, record)
        print(f"{key} {entry['formula']} {mesh}: ΔF RMS {entry['force_rms_diff_mev_per_a']:.1f} meV/Å "
              f"(max {entry['force_max_diff_mev_per_a']:.0f}), ΔE {entry['energy_diff_mev_per_atom']:.2f} meV/atom, "
              f"wall {entry['wall_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
