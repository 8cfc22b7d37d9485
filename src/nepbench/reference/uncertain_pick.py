"""Active-learning selection (`select_by = "ensemble_sigma"`): which candidates the ensemble disagrees on.

With `select_by = "ensemble_sigma"` a spec scores each family's candidate pool by the force spread of
its sampler model's seed ensemble and lets DIRECT pick only among the most uncertain part:

1. every candidate gets σ, the RMS over its atoms of the per-atom ensemble force spread
   (`metrics.uncertainty.ensemble_force_sigma`, `frame_rms`; eV/Å), from NEP_CPU single points of
   every member (`frame_sigma_ev_per_a`);
2. the `uncertain_fraction` of the pool with the largest σ is kept (`uncertain_cut`);
3. DIRECT picks the family's `select` among those (all of them when fewer remain).

The sampler model needs a registered ensemble of at least two members in all (`sampler_members`).
Reasoning and the round-by-round recipe: docs/training.md, "Active learning".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from ase import Atoms

from ..errors import ConfigError

if TYPE_CHECKING:
    from .spec import ReferenceSpec

#: Decimals σ keeps in the manifest's per-family record (eV/Å: 1e-6 is far below any spread that matters).
SIGMA_DECIMALS = 6


@dataclass(frozen=True)
class UncertainCut:
    """The uncertain part of one family's pool.

    Attributes:
        sigma_ev_per_a: σ of every candidate of the pool, in pool order (eV/Å).
        kept: candidate indices kept (the `n_uncertain` largest σ), ascending.
        sigma_cut_ev_per_a: the smallest σ kept: every kept candidate has σ ≥ it, every other ≤ it.
        fraction: the `uncertain_fraction` the cut was made with.
    """

    sigma_ev_per_a: np.ndarray
    kept: tuple[int, ...]
    sigma_cut_ev_per_a: float
    fraction: float

    def record(self, picked: Sequence[int]) -> dict[str, Any]:
        """What the manifest's per-family selection entry adds for an active-learning round: the
        cut, how many candidates it kept, the mean σ of the `picked` candidates and of the whole
        pool (eV/Å, rounded to `SIGMA_DECIMALS`)."""
        picked_sigma = self.sigma_ev_per_a[list(picked)] if len(picked) else np.array([np.nan])
        return {"select_by": "ensemble_sigma", "uncertain_fraction": self.fraction,
                "uncertain_kept": len(self.kept),
                "sigma_cut_ev_per_a": round(self.sigma_cut_ev_per_a, SIGMA_DECIMALS),
                "sigma_picked_mean_ev_per_a": round(float(np.mean(picked_sigma)), SIGMA_DECIMALS),
                "sigma_pool_mean_ev_per_a": round(float(np.mean(self.sigma_ev_per_a)), SIGMA_DECIMALS)}


def n_uncertain(n_pool: int, fraction: float) -> int:
    """How many of `n_pool` candidates the top `fraction` holds: ⌈fraction × n_pool⌉, at least 1.
    The product is rounded to 9 decimals first, so float noise (0.3 × 10 = 3.0000000000000004)
    does not add a candidate.

    Raises:
        ValueError: n_pool < 1, or fraction outside (0, 1].
    """
    if n_pool < 1:
        raise ValueError(f"the pool must hold at least one candidate, got {n_pool}")
    if not (0.0 < fraction <= 1.0):
        raise ValueError(f"uncertain_fraction must be in (0, 1], got {fraction}")
    return max(1, min(n_pool, math.ceil(round(fraction * n_pool, 9))))


def uncertain_cut(sigma_ev_per_a: Sequence[float] | np.ndarray, fraction: float) -> UncertainCut:
    """The `n_uncertain(len(sigma), fraction)` candidates with the largest σ (pure).

    Candidates are ranked by σ descending; equal σ rank by candidate index ascending (the lower
    index is kept), so the count kept is exact and the cut does not depend on the machine's sort.

    Raises:
        ValueError: σ not 1-D, empty, negative or not finite; fraction outside (0, 1].
    """
    sigma = np.asarray(sigma_ev_per_a, dtype=float)
    if sigma.ndim != 1 or sigma.size == 0:
        raise ValueError(f"sigma must be a non-empty 1-D array, got shape {sigma.shape}")
    if not np.all(np.isfinite(sigma)) or np.any(sigma < 0):
        raise ValueError("sigma must be finite and >= 0")
    n_keep = n_uncertain(sigma.size, fraction)
    order = np.lexsort((np.arange(sigma.size), -sigma))  # σ descending, then index ascending
    kept = np.sort(order[:n_keep])
    return UncertainCut(sigma, tuple(int(i) for i in kept), float(sigma[order[n_keep - 1]]), float(fraction))


def frame_sigma_ev_per_a(frames: Sequence[Atoms], member_paths: Sequence[str | os.PathLike[str]],
                         threads: int | None = 1, source: str = "frame") -> np.ndarray:
    """σ of each frame (eV/Å): the RMS over its atoms of the per-atom spread of the members' forces
    (`metrics.uncertainty.ensemble_force_sigma`, variance with ddof = 1), the forces from NEP_CPU
    single points (`engines.nep_cpu.NepCpuEngine`, `threads` OpenMP threads) of each nep.txt in
    `member_paths`. An engine error names a frame as `source#<its info "candidate", else its index>`.

    Raises:
        ValueError: fewer than 2 members, or non-finite forces.
        InputError / ModelError from the engine: a frame it cannot evaluate, a bad model file.
    """
    from ..engines.nep_cpu import NepCpuEngine
    from ..metrics.uncertainty import ensemble_force_sigma, frame_rms

    if len(member_paths) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(member_paths)}")
    if not frames:
        return np.zeros(0)
    forces = []
    for path in member_paths:
        engine = NepCpuEngine(str(path), threads=threads)
        forces.append(np.concatenate([engine.single_point(atoms, f"{source}#{atoms.info.get('candidate', k)}").forces_ev_per_a
                                      for k, atoms in enumerate(frames)]))
    per_atom = ensemble_force_sigma(np.stack(forces))
    return frame_rms(per_atom, [len(atoms) for atoms in frames])


def sampler_members(spec: "ReferenceSpec") -> tuple[Path, ...]:
    """The nep.txt files of the spec's sampler model's seed ensemble: the model's own file (member 0)
    and its registered further members (`models.resolve_model(...).ensemble`).

    Raises:
        ConfigError naming the spec file: no sampler_model, or an ensemble of fewer than 2 members
            in all (a user's nep.txt never has one; a registered model only with an `ensemble` list).
        ModelError from the resolver: a member file missing or changed.
    """
    from ..models import resolve_model

    if not spec.sampler_model:
        raise ConfigError(f"{spec.path}: select_by = \"ensemble_sigma\" needs sampler_model (a registered model "
                          "with a seed ensemble)")
    model = resolve_model(spec.sampler_model)
    members = (Path(model.path), *model.ensemble)
    if len(members) < 2:
        raise ConfigError(f"{spec.path}: select_by = \"ensemble_sigma\" needs a sampler_model with a seed ensemble "
                          f"of at least 2 members; {spec.sampler_model!r} has 1 (no `ensemble` in its registry "
                          "table: train it with a recipe of members >= 2 and --register, docs/training.md)")
    return members
