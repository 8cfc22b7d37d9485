"""Hyper-parameter search on a validation split: train one short model per grid point of a recipe
on the train frames, score it on the validation frames, keep the best. The test split is never seen.

Score (lower is better): force RMSE / 75 meV/Å + energy RMSE / 5 meV/atom on the validation frames,
each error over its target (issue targets; docs/training.md, "Search"). Energies are compared as
totals: the model's energy plus the per-element references μ fitted on its train frames.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms

from .structures import labels_of
from .training import TrainingConfig, run_neppo, write_run_directory
from .training_data import TrainingSet
from .training_recipe import Recipe

#: Errors at which each term of the score is 1 (the v2 targets: 75 meV/Å, 5 meV/atom).
FORCE_TARGET_MEV_PER_A = 75.0
ENERGY_TARGET_MEV_PER_ATOM = 5.0


@dataclass(frozen=True)
class Evaluation:
    """A model's errors on a set of frames.

    Attributes:
        force_rmse_mev_per_a: RMSE over all force components, meV/Å.
        energy_rmse_mev_per_atom: RMSE of (E_model + Σ n_el μ_el − E_DFT) / n_atoms, meV/atom.
        n_frames: frames evaluated.
    """

    force_rmse_mev_per_a: float
    energy_rmse_mev_per_atom: float
    n_frames: int

    @property
    def score(self) -> float:
        return (self.force_rmse_mev_per_a / FORCE_TARGET_MEV_PER_A
                + self.energy_rmse_mev_per_atom / ENERGY_TARGET_MEV_PER_ATOM)


def predict_forces_energies(nep_txt: str | Path, frames: Sequence[Atoms]) -> tuple[list[np.ndarray], np.ndarray]:
    """(forces per frame in eV/Å, energies in eV) of the model at `nep_txt` on `frames` (CPU NEP)."""
    from .engines.nep_cpu import NepCpuEngine

    engine = NepCpuEngine(str(nep_txt), backend="calorine")
    labels = [engine.single_point(atoms) for atoms in frames]
    return [np.asarray(l.forces_ev_per_a) for l in labels], np.array([l.energy_ev for l in labels])


def evaluate(frames: Sequence[Atoms], forces: Sequence[np.ndarray], energies: np.ndarray,
             mu_ev_per_atom: dict[str, float]) -> Evaluation:
    """Errors of predicted `forces`/`energies` against the frames' DFT labels (pure)."""
    if not frames:
        return Evaluation(math.nan, math.nan, 0)
    ref_f = np.concatenate([labels_of(a)[1] for a in frames])
    dft_e = np.array([labels_of(a)[0] for a in frames])
    shift = np.array([sum(mu_ev_per_atom.get(s, 0.0) for s in a.get_chemical_symbols()) for a in frames])
    n = np.array([len(a) for a in frames], dtype=float)
    force = 1000.0 * float(np.sqrt(np.mean((np.concatenate(forces) - ref_f) ** 2)))
    energy = 1000.0 * float(np.sqrt(np.mean(((energies + shift - dft_e) / n) ** 2)))
    return Evaluation(force, energy, len(frames))


@dataclass(frozen=True)
class Trial:
    """One grid point: its overrides, the config trained, its validation errors and wall time (s)."""

    overrides: dict[str, Any]
    config: TrainingConfig
    validation: Evaluation
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides.items()},
                "validation": {**dataclasses.asdict(self.validation), "score": self.validation.score},
                "wall_s": round(self.wall_s, 1), "steps": self.config.generations}


def run_search(recipe: Recipe, data: TrainingSet, work_dir: str | Path, threads: int = 1,
               log: Callable[[str], None] = print) -> list[Trial]:
    """Train every grid point of `recipe` on `data.train` for `recipe.search_steps` steps in
    `work_dir/trial-K` and score it on `data.validation`; trials in grid order. With no validation
    frames or a one-point grid, nothing is trained and [] is returned (the base config stands)."""
    grid = recipe.grid()
    if not data.validation or len(grid) < 2:
        return []
    trials = []
    for k, overrides in enumerate(grid):
        config = recipe.trial_config(overrides)
        run = write_run_directory(Path(work_dir) / f"trial-{k}", config, data.train, [])
        result = run_neppo(run.path, threads=threads)
        forces, energies = predict_forces_energies(result.nep_txt, data.validation)
        trial = Trial(overrides, config, evaluate(data.validation, forces, energies,
                                                  run.energy_reference_ev_per_atom), result.wall_s)
        log(f"search {k + 1}/{len(grid)} {overrides}: validation force {trial.validation.force_rmse_mev_per_a:.0f} "
            f"meV/Å, energy {trial.validation.energy_rmse_mev_per_atom:.1f} meV/atom, score "
            f"{trial.validation.score:.2f} ({result.wall_s:.0f} s)")
        trials.append(trial)
    return trials


def best_overrides(trials: Sequence[Trial]) -> dict[str, Any]:
    """The overrides of the lowest-scoring trial (the first of equals); {} for no trials. A trial
    with a non-finite score never wins."""
    finite = [t for t in trials if math.isfinite(t.validation.score)]
    return dict(min(finite, key=lambda t: t.validation.score).overrides) if finite else {}
