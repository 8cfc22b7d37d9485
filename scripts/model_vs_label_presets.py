#!/usr/bin/env python3
"""Which of two CP2K label presets does an independent model agree with? (issue 25;
docs/cp2k_settings.md, "k-point study").

For every frame of a reference spec's selection whose label cache holds a label under both presets
(as `nepbench reference compare-presets` pairs them), computes the model's forces and records, per
frame, the force RMS of model − A, model − B and B − A (meV/Å, over all components), then the same
over all the paired frames' components together. A model trained on converged PBE data that sits
closer to B than to A on most frames is evidence that B is the better-converged label; the model's
own error stays in both numbers, so only their difference speaks. Energies are left out: a model's
energy zero differs from CP2K's by a per-element constant.

    .venv/bin/python scripts/model_vs_label_presets.py [--spec reference_data/spec-v2.toml] \\
        [--a label-tuned] [--b label-kp] [--model nep89-lisic] \\
        [--record reference_data/studies/nep89_gamma_vs_kp_v2.json]

Runs no CP2K (NEP on the CPU, seconds per frame). Units: forces eV/Å in the data, meV/Å out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from nepbench import reference
from nepbench.cp2k_tuning.agreement import force_agreement
from nepbench.cp2k_tuning.preset_check import labelled_under_both
from nepbench.engines import cp2k
from nepbench.files import atomic_write_json
from nepbench.provenance import PROJECT_ROOT
from nepbench.reference.labelling import item_hash
from nepbench.structures import labels_of

DEFAULT_RECORD = PROJECT_ROOT / "reference_data" / "studies" / "nep89_gamma_vs_kp_v2.json"


def compare(spec_path: Path, preset_a: str, preset_b: str, model: str) -> dict[str, Any]:
    """The record: per-frame and pooled force RMS of model − A, model − B and B − A (meV/Å)."""
    from nepbench.engines.nep_cpu import NepCpuEngine
    from nepbench.models.fetch import fetch_model

    spec = reference.load_spec(spec_path)
    selection = reference.select_items(spec, reference.recorded_picks(spec.out_path))
    settings_a, settings_b = (cp2k.SETTINGS_PRESETS[name].to_dict() for name in (preset_a, preset_b))
    version = cp2k.CP2KEngine(cp2k.SETTINGS_PRESETS[preset_b]).version()
    engine = NepCpuEngine(str(fetch_model(model)), backend="calorine")
    frames, pooled = [], {"model": [], "a": [], "b": []}
    for atoms, a, b in labelled_under_both(selection.items, spec.out_path / "cache", settings_a, settings_b, version):
        forces = {"model": engine.single_point(atoms).forces_ev_per_a, "a": labels_of(a)[1], "b": labels_of(b)[1]}
        for key, value in forces.items():
            pooled[key].append(value)
        frames.append({"frame": item_hash(atoms, settings_b, version)[:12], "motif": atoms.info.get("motif", ""),
                       "builder": atoms.info.get("builder", ""), "formula": atoms.get_chemical_formula(),
                       **rms_of(forces)})
    total = rms_of({key: np.concatenate(parts) for key, parts in pooled.items()}) if frames else {}
    closer_to_b = sum(f["force_rms_model_b_mev_per_a"] < f["force_rms_model_a_mev_per_a"] for f in frames)
    return {"spec": str(spec_path.relative_to(PROJECT_ROOT)) if spec_path.is_relative_to(PROJECT_ROOT) else str(spec_path),
            "preset_a": preset_a, "preset_b": preset_b, "model": model, "cp2k_version": version,
            "n_frames": len(frames), "n_closer_to_b": closer_to_b, **total, "frames": frames}


def rms_of(forces: dict[str, np.ndarray]) -> dict[str, float]:
    """Force RMS (meV/Å, `force_agreement`) of model − A, model − B and B − A, from (N, 3) forces
    keyed "model", "a", "b" (eV/Å)."""
    pairs = {"model_a": ("model", "a"), "model_b": ("model", "b"), "b_a": ("b", "a")}
    return {f"force_rms_{name}_mev_per_a": round(force_agreement(forces[x], forces[y])[0], 1)
            for name, (x, y) in pairs.items()}


def table(record: dict[str, Any]) -> str:
    """The record as a markdown table, one row per frame and a last row over all components."""
    a, b, m = record["preset_a"], record["preset_b"], record["model"]
    lines = [f"| family | builder | formula | {m} − {a} | {m} − {b} | {b} − {a} |", "|---|---|---|---|---|---|"]
    for f in record["frames"]:
        builder = f["builder"].replace("|", "\\|")  # "Si|C" would split the markdown cell
        lines.append(f"| {f['motif']} | {builder} | {f['formula']} | {f['force_rms_model_a_mev_per_a']:.0f} | "
                     f"{f['force_rms_model_b_mev_per_a']:.0f} | {f['force_rms_b_a_mev_per_a']:.0f} |")
    lines.append(f"| all {record['n_frames']} frames | | | {record['force_rms_model_a_mev_per_a']:.0f} | "
                 f"{record['force_rms_model_b_mev_per_a']:.0f} | {record['force_rms_b_a_mev_per_a']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=PROJECT_ROOT / "reference_data" / "spec-v2.toml")
    parser.add_argument("--a", default="label-tuned", help="preset A (default label-tuned: Γ only)")
    parser.add_argument("--b", default="label-kp", help="preset B (default label-kp: k-points)")
    parser.add_argument("--model", default="nep89-lisic", help="registered model name (default nep89-lisic)")
    parser.add_argument("--record", type=Path, default=DEFAULT_RECORD)
    args = parser.parse_args(argv)
    for name in (args.a, args.b):
        if name not in cp2k.SETTINGS_PRESETS:
            print(f"model_vs_label_presets: unknown CP2K settings preset {name!r}", file=sys.stderr)
            return 2
    record = compare(args.spec.resolve(), args.a, args.b, args.model)
    if not record["frames"]:
        print(f"model_vs_label_presets: no frame of {args.spec} is labelled under both {args.a} and {args.b}",
              file=sys.stderr)
        return 1
    atomic_write_json(args.record, record)
    print(table(record))
    print(f"{record['model']} is closer to {args.b} than to {args.a} on {record['n_closer_to_b']} of "
          f"{record['n_frames']} frames; record: {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
