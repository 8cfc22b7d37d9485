"""Train an ensemble of NEPs that differ only in their seed, and measure on the test frames how its
spread tracks the error: the registered model is member 0, the others give the uncertainty.

Docs: docs/training.md ("Ensemble uncertainty").
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms

from .metrics.uncertainty import ensemble_force_sigma, frame_rms, spearman_rho
from .structures import labels_of
from .training import RunDirectory, TrainingConfig, TrainingResult, run_neppo, write_run_directory
from .training_data import TrainingSet
from .training_search import Evaluation, evaluate, predict_forces_energies


@dataclass
class Member:
    """One trained ensemble member: its seed, run directory and neppo result."""

    seed: int
    run: RunDirectory
    result: TrainingResult


def train_members(config: TrainingConfig, n_members: int, data: TrainingSet, work_dir: str | Path,
                  threads: int = 1, log: Callable[[str], None] = print,
                  timeout_s: float | None = None) -> list[Member]:
    """Train `n_members` models with `config`, member k with seed config.seed + k, on the train and
    validation frames together (`TrainingSet.final_train`), the test frames in test.xyz, each in
    `work_dir/member-k`."""
    members = []
    for k in range(n_members):
        member_config = dataclasses.replace(config, seed=config.seed + k).validate()
        run = write_run_directory(Path(work_dir) / f"member-{k}", member_config, data.final_train(), data.test)
        log(f"member {k + 1}/{n_members}: seed {member_config.seed}, {member_config.generations} steps, "
            f"{run.n_train} train frames")
        members.append(Member(member_config.seed, run, run_neppo(run.path, threads=threads, timeout_s=timeout_s)))
    return members


@dataclass
class EnsembleTest:
    """The ensemble on the test frames.

    Attributes:
        members: each member's Evaluation on all test frames.
        frame_force_rmse_mev_per_a: member 0's force RMSE per test frame, meV/Å.
        frame_sigma_mev_per_a: the ensemble's force spread per test frame (RMS of the per-atom σ), meV/Å.
        frame_group: each test frame's group (its source and motif).
        spearman_sigma_error: rank correlation of spread and error over the frames (nan with < 3
            frames or one member).
    """

    members: list[Evaluation]
    frame_force_rmse_mev_per_a: list[float]
    frame_sigma_mev_per_a: list[float]
    frame_group: list[str]
    spearman_sigma_error: float

    def by_group(self) -> dict[str, dict[str, float]]:
        """Per group: frames, member 0's force RMSE (meV/Å, over the group's atoms) and mean spread."""
        groups: dict[str, list[int]] = defaultdict(list)
        for index, group in enumerate(self.frame_group):
            groups[group].append(index)
        out = {}
        for group, idx in sorted(groups.items()):
            err = np.array(self.frame_force_rmse_mev_per_a)[idx]
            sig = np.array(self.frame_sigma_mev_per_a)[idx]
            out[group] = {"frames": len(idx), "force_rmse_mev_per_a": float(np.sqrt(np.mean(err ** 2))),
                          "sigma_mean_mev_per_a": float(np.mean(sig)) if sig.size and np.all(np.isfinite(sig))
                          else float("nan")}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"members": [{**dataclasses.asdict(e), "score": e.score} for e in self.members],
                "spearman_sigma_error": self.spearman_sigma_error, "by_group": self.by_group(),
                "frames": [{"group": g, "force_rmse_mev_per_a": round(e, 2), "sigma_mev_per_a": round(s, 2)}
                           for g, e, s in zip(self.frame_group, self.frame_force_rmse_mev_per_a,
                                              self.frame_sigma_mev_per_a)]}


def frame_group(atoms: Atoms) -> str:
    """`source/motif` of a frame (motif "aimd" for AIMD frames)."""
    return f"{atoms.info.get('source', '?')}/{atoms.info.get('motif', '?')}"


def ensemble_test(members: Sequence[Member], frames: Sequence[Atoms]) -> EnsembleTest:
    """Evaluate every member on `frames` and the ensemble's spread against member 0's error."""
    predictions = [predict_forces_energies(m.result.nep_txt, frames) for m in members]
    evaluations = [evaluate(frames, f, e, m.run.energy_reference_ev_per_atom)
                   for m, (f, e) in zip(members, predictions)]
    sizes = [len(a) for a in frames]
    ref = np.concatenate([labels_of(a)[1] for a in frames])
    first = np.concatenate(predictions[0][0])
    frame_err = 1000.0 * frame_rms(np.sqrt(np.mean((first - ref) ** 2, axis=1)), sizes)
    if len(members) >= 2:
        stacked = np.stack([np.concatenate(f) for f, _ in predictions])
        frame_sigma = 1000.0 * frame_rms(ensemble_force_sigma(stacked), sizes)
        rho = spearman_rho(frame_sigma, frame_err)
    else:
        frame_sigma, rho = np.full(len(frames), np.nan), float("nan")
    return EnsembleTest(evaluations, frame_err.tolist(), frame_sigma.tolist(), [frame_group(a) for a in frames], rho)
