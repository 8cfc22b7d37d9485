"""Relaxing a particle: an ASE optimiser (LBFGS, FIRE) on the CPU engine or NVT MD on any engine, with
the frames whose volumes are averaged at the end and half-way through each run.

Why these frames: docs/metrics.md, "MD relaxation frames" and "Optimiser".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from .params import ExpansionParams

#: MD relaxation: the `average_frames` frames averaged at the end of a run (and those just before its
#: half-way step) span at most this fraction of the run (`md_sample_interval`).
MD_AVERAGE_WINDOW_FRACTION = 0.1


def md_sample_interval(steps: int, average_frames: int) -> int:
    """Steps between the frames an MD relaxation records: `average_frames` frames this far apart span
    at most MD_AVERAGE_WINDOW_FRACTION of the `steps`-step run (≥ 1 step). 2000 steps, 5 frames: 50.
    ValueError unless both are ≥ 1."""
    if steps < 1 or average_frames < 1:
        raise ValueError(f"need steps >= 1 and average_frames >= 1, got {steps}, {average_frames}")
    return max(1, int(MD_AVERAGE_WINDOW_FRACTION * steps / max(average_frames - 1, 1)))


def md_window_text(steps: int, average_frames: int) -> str:
    """The method line's words for the frames an MD relaxation of `steps` steps averages."""
    k = md_sample_interval(steps, average_frames)
    span = (average_frames - 1) * k
    return (f"volumes averaged over {average_frames} frames {k} steps apart at the end of each run (for a "
            f"stage: its last {span} of {steps} steps) and, for the convergence check, over as many frames "
            f"ending at its half-way step")


def averaged_frame_indices(times_ps: np.ndarray, half_ps: float, average_frames: int) -> tuple[list[int], list[int]]:
    """Indices of the frames whose volumes are averaged: the last `average_frames` frames of the run,
    and the last `average_frames` frames at or before `half_ps` (the half-way time, ps; empty where
    no frame is that early). `times_ps` are the frames' times (ps, increasing; an engine may or may
    not record the starting frame)."""
    t = np.asarray(times_ps, dtype=float)
    end = list(range(max(0, len(t) - average_frames), len(t)))
    half = [int(i) for i in np.flatnonzero(t <= half_ps + 1e-9)][-average_frames:]
    return end, half


@dataclass
class Relaxed:
    """One relaxation's result: the final atoms, the frames whose volumes are averaged (positions, Å),
    the frames at half the run (for the convergence check) and a few numbers (steps, fmax, energy)."""

    atoms: Atoms
    frames: list[np.ndarray]
    half_frames: list[np.ndarray]
    info: dict[str, float]


@dataclass
class Relaxer:
    """Relaxes a particle by `p.relax` on `engine`; counts atom·steps and throughput (atom·step/s)."""

    p: ExpansionParams
    engine: Any
    atom_steps: float = 0.0
    measured_rates: list[float] = field(default_factory=list)

    def __call__(self, atoms: Atoms, steps: int, seed: int) -> Relaxed:
        start = time.perf_counter()
        res = self._optimise(atoms, steps) if self.p.relax != "md" else self._md(atoms, steps, seed)
        wall = time.perf_counter() - start
        done = res.info["steps"] * len(atoms)
        self.atom_steps += done
        if self.p.relax != "md" and wall > 0:
            self.measured_rates.append(done / wall)
        return res

    def _optimise(self, atoms: Atoms, steps: int) -> Relaxed:
        """ASE LBFGS or FIRE in two halves on one optimiser object (its state carries over), so the
        structure at half the steps is kept without changing the path. The CPU engine's structure
        check (`NepCpuEngine.check_structure`: the open boundaries' vacuum beyond the model's cutoff)
        runs on the particle before and after, as the optimiser drives its calculator directly."""
        from ase.optimize import FIRE, LBFGS

        self.engine.check_structure(atoms, "Si@C particle before relaxation")
        work = atoms.copy()
        work.calc = self.engine.calculator()
        cls = LBFGS if self.p.relax == "lbfgs" else FIRE
        opt = cls(work, logfile=None, maxstep=self.p.maxstep_a)
        first = steps // 2
        converged = opt.run(fmax=self.p.fmax_ev_per_a, steps=first) if first else False
        half = work.positions.copy()
        if not converged:
            opt.run(fmax=self.p.fmax_ev_per_a, steps=steps - first)
        calls = opt.nsteps + 1  # nsteps counts across both runs; the calculator caches the restart point
        forces = work.get_forces()
        energy = float(work.get_potential_energy())
        out = atoms.copy()
        out.positions = work.positions
        if not np.all(np.isfinite(out.positions)) or not np.isfinite(energy):
            raise ValueError("relaxation produced non-finite positions or energy")
        self.engine.check_structure(out, "Si@C particle after relaxation")
        return Relaxed(out, [out.positions.copy()], [half],
                       {"steps": float(calls), "fmax_ev_per_a": float(np.sqrt((forces**2).sum(axis=1)).max()),
                        "energy_ev_per_atom": energy / len(out)})

    def _md(self, atoms: Atoms, steps: int, seed: int) -> Relaxed:
        """NVT MD for `steps`; the frames averaged are the last `average_frames` ones and those at or
        just before the half-way step, `md_sample_interval` steps apart (`averaged_frame_indices`)."""
        from ...engines.base import MDProtocol

        k = md_sample_interval(steps, self.p.average_frames)
        prot = MDProtocol(ensemble="nvt", temperature_k=self.p.temperature_k, timestep_fs=self.p.timestep_fs,
                          steps=steps, sample_interval=k, seed=seed % (2**31), thermostat_coupling_fs=100.0)
        res = self.engine.md(atoms, prot)
        pos = res.trajectory.positions_a
        if not np.all(np.isfinite(pos[-1])):
            raise ValueError("MD produced non-finite positions")
        half_ps = 0.5 * steps * self.p.timestep_fs / 1000.0
        end_idx, half_idx = averaged_frame_indices(res.trajectory.times_ps, half_ps, self.p.average_frames)
        last = [pos[i].copy() for i in end_idx]
        out = atoms.copy()
        out.positions = pos[-1]
        rate = res.timing.engine_reported_atom_steps_per_s or res.timing.atom_steps_per_s
        self.measured_rates.append(float(rate))
        return Relaxed(out, last, [pos[i].copy() for i in half_idx] or last[:1],
                       {"steps": float(steps), "temperature_k": float(np.mean(res.thermo["temperature_k"])),
                        "energy_ev_per_atom": float(res.thermo["potential_energy_ev"][-1]) / len(out)})
