"""`nepbench train --recipe TOML --out DIR`: compose the sources, search the grid on the validation
split, train the ensemble, test it, write DIR and optionally register member 0.

DIR receives: nep.txt (member 0, the model that is registered), members/member-K/nep.txt (K ≥ 1),
loss.csv and loss.png (member 0), train.log, provenance.json (recipe, per-source data hashes and
counts, search trials, the chosen config, every member's result, the ensemble on the test frames).
With --prepare-only (or --trainer gpumd) it writes members/member-K/ run directories (nep.in,
train.xyz, test.xyz) for GPUMD's `nep` and stops (docs/training.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_recipe(args: argparse.Namespace, out: Path) -> int:
    """Run the recipe named by args.recipe into `out` (already checked by `_train`); exit code."""
    from .. import training
    from ..errors import InputError
    from ..files import atomic_write_files, json_document
    from ..provenance import PROJECT_ROOT, content_hash
    from ..training_data import compose
    from ..training_ensemble import ensemble_test, train_members
    from ..training_recipe import load_recipe
    from ..training_search import best_overrides, run_search
    from .train import loss_csv, loss_png, register_trained_model

    recipe = load_recipe(args.recipe)
    data = compose(recipe.sources, PROJECT_ROOT, recipe.validation_fraction, recipe.seed)
    counts = data.counts()
    _log(f"recipe {recipe.name}: train {counts['train']}, validation {counts['validation']} "
         f"({len(data.validation_origins)} origins), test {counts['test']}")
    if not data.test:
        raise InputError(recipe.path, "no test frames: a model trained here must be tested on held-out data")
    prepare_only = args.prepare_only or args.trainer == "gpumd"
    if prepare_only:
        for k in range(recipe.members):
            config = dataclasses.replace(recipe.config, seed=recipe.seed + k)
            training.write_run_directory(out / "members" / f"member-{k}", config, data.final_train(), data.test,
                                         trainer=args.trainer)
        _log(f"prepared {recipe.members} run directories under {out / 'members'} for {args.trainer}")
        return 0
    with tempfile.TemporaryDirectory(prefix="nepbench-train-") as tmp:
        trials = run_search(recipe, data, Path(tmp) / "search", threads=args.threads, log=_log)
        chosen = best_overrides(trials)
        config = training.TrainingConfig.from_dict({**recipe.config.to_dict(), **chosen})
        members = train_members(config, recipe.members, data, Path(tmp) / "members", threads=args.threads,
                                log=_log, timeout_s=args.timeout)
        test = ensemble_test(members, data.test)
        first = members[0]
        data_sha256 = content_hash(data.data_sha256)
        record = training.training_provenance(config, first.run, first.result, data_sha256, None)
        record.update(schema="nepbench.training/2", recipe=recipe.to_dict(),
                      sources_data_sha256=data.data_sha256, counts=counts,
                      validation_origins=data.validation_origins,
                      search={"trials": [t.to_dict() for t in trials], "chosen": chosen,
                              "score": "force RMSE / 75 meV/Å + energy RMSE / 5 meV/atom on the validation frames"},
                      members=[_member_record(m) for m in members], ensemble_test=test.to_dict())
        outputs = {out / "nep.txt": first.result.nep_txt.read_bytes(),
                   out / "nep.in": (first.run.path / "nep.in").read_bytes(),
                   out / "loss.csv": loss_csv(first.result.loss_curve).encode(),
                   out / "loss.png": loss_png(first.result.loss_curve, config),
                   out / "train.log": (first.run.path / "train.log").read_bytes()}
        for k, member in enumerate(members[1:], start=1):
            outputs[out / "members" / f"member-{k}" / "nep.txt"] = member.result.nep_txt.read_bytes()
        outputs[out / "provenance.json"] = json_document(record).encode()  # last: it names the others
        if out.exists() and args.force:
            shutil.rmtree(out / "members", ignore_errors=True)
        atomic_write_files(outputs)
    m0 = test.members[0]
    _log(f"test ({m0.n_frames} frames): force RMSE {m0.force_rmse_mev_per_a:.0f} meV/Å, energy RMSE "
         f"{m0.energy_rmse_mev_per_atom:.1f} meV/atom; ensemble spread vs error Spearman ρ "
         f"{test.spearman_sigma_error:.2f}")
    for group, row in test.by_group().items():
        _log(f"  {group:28s} {row['frames']:3d} frames  force RMSE {row['force_rmse_mev_per_a']:6.0f} meV/Å  "
             f"spread {row['sigma_mean_mev_per_a']:5.0f} meV/Å")
    print(f"model: {out / 'nep.txt'}   provenance: {out / 'provenance.json'}")
    if args.register:
        register_trained_model(args.register, out, record)
    return 0


def _member_record(member: Any) -> dict[str, Any]:
    result = member.result
    return {"seed": member.seed, "steps": result.steps, "wall_s": round(result.wall_s, 1),
            "final": result.final, "files_sha256": member.run.files_sha256,
            "energy_reference_ev_per_atom": member.run.energy_reference_ev_per_atom}
