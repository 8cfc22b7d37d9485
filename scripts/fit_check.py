#!/usr/bin/env python3
"""Can a recipe's NEP fit its own training frames? (issue 27; docs/training.md, "Fit check").

Trains one model with a recipe's `[config]` (or overrides) on the recipe's train frames, then scores
it on those same train frames and on the validation frames, per source/motif group: force RMSE
(meV/Å) and energy RMSE (meV/atom, μ fitted on the train frames). Two label sources:

- `--labels dft` (default): the frames' CP2K labels, as the recipe trains on them;
- `--labels teacher`: every frame relabelled by a NEP (default: the default model) — a target a NEP
  can represent exactly, so a high train error there is the trainer's or the model size's limit,
  not the data's.

A train error far above the target (75 meV/Å) with teacher labels says the model or the step count
is too small; a teacher fit that is good while the DFT fit is not says the DFT labels hold what the
model cannot represent (cutoff, locality, noise). The test split is never read.

    nice .venv/bin/python scripts/fit_check.py --steps 3000 --drop-source dft-v1-far \\
        [--labels teacher] [--set neurons=50] [--out fit.json]

Units: forces eV/Å in the data, errors meV/Å and meV/atom in the output; wall time s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from ase import Atoms

from nepbench.files import atomic_write_json
from nepbench.provenance import PROJECT_ROOT
from nepbench.structures import with_labels
from nepbench.training import TrainingConfig, run_neppo, write_run_directory
from nepbench.training_data import compose
from nepbench.training_ensemble import frame_group
from nepbench.training_recipe import load_recipe
from nepbench.training_search import evaluate, predict_forces_energies


def relabel(frames: Sequence[Atoms], nep_txt: Path) -> list[Atoms]:
    """Copies of `frames` (info kept) whose energy, forces and stress are the NEP at `nep_txt`'s."""
    from nepbench.engines.nep_cpu import NepCpuEngine

    engine = NepCpuEngine(str(nep_txt), backend="calorine")
    labels = [engine.single_point(atoms) for atoms in frames]
    return [with_labels(atoms, label.energy_ev, label.forces_ev_per_a, label.stress_ev_per_a3)
            for atoms, label in zip(frames, labels)]


def grouped_errors(nep_txt: Path, frames: Sequence[Atoms], mu: dict[str, float]) -> dict[str, Any]:
    """Force and energy RMSE of the model on `frames`, overall and per `frame_group`."""
    forces, energies = predict_forces_energies(nep_txt, frames)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, atoms in enumerate(frames):
        groups[frame_group(atoms)].append(i)
    def one(idx: Sequence[int]) -> dict[str, Any]:
        ev = evaluate([frames[i] for i in idx], [forces[i] for i in idx], energies[list(idx)], mu)
        return {"frames": len(idx), "force_rmse_mev_per_a": round(ev.force_rmse_mev_per_a, 1),
                "energy_rmse_mev_per_atom": round(ev.energy_rmse_mev_per_atom, 2)}
    return {"all": one(range(len(frames))), "groups": {g: one(idx) for g, idx in sorted(groups.items())}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="models/nepbench-lisic-v2/recipe.toml")
    parser.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    parser.add_argument("--labels", choices=("dft", "teacher"), default="dft")
    parser.add_argument("--teacher", default="nep89-lisic", help="registry name or nep.txt of the teacher")
    parser.add_argument("--drop-source", action="append", default=[], help="leave a source's frames out")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a TrainingConfig field, e.g. neurons=50 or n_max=[6,6]")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write the record here (JSON, atomic)")
    args = parser.parse_args(argv)

    recipe = load_recipe(args.recipe)
    data = compose(recipe.sources, PROJECT_ROOT, recipe.validation_fraction, recipe.seed)
    train = [a for a in data.train if a.info.get("source") not in args.drop_source]
    validation = list(data.validation)
    teacher = None
    if args.labels == "teacher":
        from nepbench.models.resolve import resolve_model

        teacher = resolve_model(args.teacher)
        train, validation = relabel(train, teacher.path), relabel(validation, teacher.path)
    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    config = TrainingConfig.from_dict({**recipe.config.to_dict(), "generations": args.steps, **overrides})
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nepbench-fit-check-") as tmp:
        run = write_run_directory(Path(tmp) / "run", config, train, [])
        result = run_neppo(run.path, threads=args.threads)
        mu = run.energy_reference_ev_per_atom
        record = {
            "recipe": str(args.recipe), "labels": args.labels,
            "teacher": None if teacher is None else {"path": str(teacher.path), "sha256": teacher.sha256},
            "dropped_sources": args.drop_source, "steps": args.steps, "overrides": overrides,
            "config": config.to_dict(), "train": grouped_errors(result.nep_txt, train, mu),
            "validation": grouped_errors(result.nep_txt, validation, mu) if validation else None,
            "wall_s": round(time.perf_counter() - start, 1),
        }
    for split in ("train", "validation"):
        if record[split]:
            all_ = record[split]["all"]
            print(f"{split:10s} {all_['frames']:4d} frames  force {all_['force_rmse_mev_per_a']:7.1f} meV/Å  "
                  f"energy {all_['energy_rmse_mev_per_atom']:7.2f} meV/atom")
            for group, row in record[split]["groups"].items():
                print(f"  {group:28s} {row['frames']:4d}  {row['force_rmse_mev_per_a']:7.1f}  "
                      f"{row['energy_rmse_mev_per_atom']:7.2f}")
    print(f"wall {record['wall_s']:.0f} s")
    if args.out:
        atomic_write_json(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
