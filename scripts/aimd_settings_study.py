#!/usr/bin/env python3
"""Measure the AIMD CP2K settings' grid levers (CUTOFF, REL_CUTOFF, EPS_DEFAULT) against force accuracy.

For a few committed reference frames of the kinds the AIMD runs simulate (Li-rich a-LixSi, Li in
a-C), each candidate setting computes a single point; its forces are compared with the committed
label (LABEL_SETTINGS, 400 Ry), and its wall time and SCF iteration count are recorded. An MD
step is a handful of SCF iterations (about 11 in the committed AIMD), so wall time per SCF
iteration is the cost an AIMD step scales with.

    .venv/bin/python scripts/aimd_settings_study.py --ranks 1 [--out reference_data/studies/aimd_settings.json]

Writes the JSON record atomically (resumable: finished (config, frame) pairs are kept) and prints a
markdown table for docs/cp2k_settings.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from nepbench import reference
from nepbench.engines.cp2k import CP2KEngine, CP2KSettings
from nepbench.files import atomic_write_json
from nepbench.provenance import hardware_info
from nepbench.structures import labels_of

# The AIMD preset as it stood before this study (engines/cp2k.py history); configs override it.
STUDY_BASE = CP2KSettings(cutoff_ry=250.0, rel_cutoff_ry=50.0, eps_scf=1e-5, max_scf=60,
                          electronic_temperature_k=1000.0, mixing_alpha=0.4, nbroyden=8,
                          eps_default=1e-10, stress=False)
# (name, overrides of STUDY_BASE); the first is STUDY_BASE itself.
# Names read CUTOFF/REL_CUTOFF (Ry)/EPS_DEFAULT, then any EPS_SCF or smearing change.
CONFIGS: list[tuple[str, dict]] = [
    ("250/50/1e-10", dict(cutoff_ry=250.0, rel_cutoff_ry=50.0, eps_default=1e-10)),
    ("200/40/1e-10", dict(cutoff_ry=200.0, rel_cutoff_ry=40.0, eps_default=1e-10)),
    ("400/50/1e-10", dict(cutoff_ry=400.0, rel_cutoff_ry=50.0, eps_default=1e-10)),
    ("400/50/1e-10 eps_scf 1e-6", dict(cutoff_ry=400.0, rel_cutoff_ry=50.0, eps_default=1e-10, eps_scf=1e-6)),
    ("400/50/1e-10 eps_scf 1e-6 500 K", dict(cutoff_ry=400.0, rel_cutoff_ry=50.0, eps_default=1e-10,
                                            eps_scf=1e-6, electronic_temperature_k=500.0)),
    ("400/50/1e-10 500 K", dict(cutoff_ry=400.0, rel_cutoff_ry=50.0, eps_default=1e-10,
                               electronic_temperature_k=500.0)),
]
# Committed reference frames used (by frame_sha256 prefix): Li30Si8 and Li24Si8 (a-LixSi), C30Li8 (a-LiC)
FRAME_SHA256_PREFIXES = ("9561d5686e61", "1c5456e3bef3", "23328f9381e9")


def pick_frames() -> list:
    """The study's committed frames, found by frame_sha256 in the reference set."""
    by_sha = {a.info["frame_sha256"][:12]: a for a in reference.load_frames()}
    missing = [p for p in FRAME_SHA256_PREFIXES if p not in by_sha]
    if missing:
        raise SystemExit(f"reference_data/dft: frames {missing} not in the committed set")
    return [by_sha[p] for p in FRAME_SHA256_PREFIXES]


def scf_iterations(out_text: str) -> int:
    """SCF iterations CP2K reported for the (single) SCF run in `out_text`."""
    found = re.findall(r"SCF run converged in\s+(\d+) steps", out_text)
    if not found:
        raise RuntimeError("no converged SCF in the CP2K output")
    return sum(int(n) for n in found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--out", default="reference_data/studies/aimd_settings.json")
    args = parser.parse_args()
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.is_file() else {"results": {}}
    frames = pick_frames()
    for name, overrides in CONFIGS:
        settings = dataclasses.replace(STUDY_BASE, **overrides)
        for atoms in frames:
            key = f"{name} {atoms.info['frame_sha256'][:12]}"
            if key in record["results"]:
                continue
            workdir = Path(tempfile.mkdtemp(prefix="aimd-study-"))
            engine = CP2KEngine(settings, workdir=workdir, ranks=args.ranks)
            labels = engine.single_point(atoms)
            text = next(workdir.glob("sp-*/out.out")).read_text()
            shutil.rmtree(workdir, ignore_errors=True)
            _, ref_forces, _ = labels_of(atoms)
            diff = np.asarray(labels.forces_ev_per_a) - ref_forces
            iterations = scf_iterations(text)
            record["results"][key] = {
                "config": name, "settings": settings.to_dict(), "formula": atoms.get_chemical_formula(),
                "builder": atoms.info["builder"], "frame_sha256": atoms.info["frame_sha256"],
                "force_rmse_mev_per_a": float(np.sqrt(np.mean(diff ** 2)) * 1000),
                "force_max_abs_mev_per_a": float(np.abs(diff).max() * 1000),
                "ref_force_rms_ev_per_a": float(np.sqrt(np.mean(ref_forces ** 2))),
                "wall_s": labels.wall_s, "scf_iterations": iterations,
                "wall_s_per_scf_iteration": labels.wall_s / iterations,
            }
            record.update(reference_settings="LABEL_SETTINGS (committed labels)", ranks=args.ranks,
                          study_base_settings=STUDY_BASE.to_dict(), cp2k=engine.version(),
                          hardware=hardware_info())
            atomic_write_json(out, record)
            print(key, record["results"][key], flush=True)
    print_table(record)
    return 0


def print_table(record: dict) -> None:
    """Markdown table: per config, mean/max force RMSE vs labels and mean wall per SCF iteration."""
    by_config: dict[str, list[dict]] = {}
    for entry in record["results"].values():
        by_config.setdefault(entry["config"], []).append(entry)
    base = by_config.get(CONFIGS[0][0])
    base_cost = np.mean([e["wall_s_per_scf_iteration"] for e in base]) if base else float("nan")
    print("| CUTOFF/REL_CUTOFF (Ry)/EPS_DEFAULT, changes | frames | force RMSE vs labels, mean / max (meV/Å) "
          "| max \\|ΔF\\| (meV/Å) | s per SCF iteration | cost vs first row |")
    print("|---|---|---|---|---|---|")
    for name, _ in CONFIGS:
        entries = by_config.get(name, [])
        if not entries:
            continue
        rmse = [e["force_rmse_mev_per_a"] for e in entries]
        cost = np.mean([e["wall_s_per_scf_iteration"] for e in entries])
        print(f"| {name} | {len(entries)} | {np.mean(rmse):.1f} / {max(rmse):.1f} | "
              f"{max(e['force_max_abs_mev_per_a'] for e in entries):.0f} | {cost:.2f} | "
              f"{cost / base_cost:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
