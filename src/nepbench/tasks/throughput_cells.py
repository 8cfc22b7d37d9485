"""The throughput task's cells and timed MD: the base cell, its repeats to a size, the timed
protocol and the median s/step of repeated runs (shared by the task and its speed-up-against-N step)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ase import Atoms

from ..engines.base import MDProtocol
from ..metrics import throughput as tp

if TYPE_CHECKING:
    from .throughput import ThroughputParams


def base_cell(p: ThroughputParams, **extra: Any) -> Atoms:
    """The cell every engine runs: the task's builder (by default a seeded amorphous LixSi cell) with
    its parameters and `extra` ones (e.g. n_atoms)."""
    from .. import systems

    return systems.build(p.builder, seed=p.seed, **{**p.builder_params, **extra})


def cell_of_size(base: Atoms, target_atoms: int) -> Atoms:
    """`base` repeated n×n×n with n chosen so the atom count is nearest `target_atoms`."""
    n = max(1, int(round((target_atoms / len(base)) ** (1 / 3))))
    return base.repeat((n, n, n))


def protocol_for(p: ThroughputParams, steps: int, warmup: int) -> MDProtocol:
    """The timed MD: NVT (CSVR, 100 fs) at the task's temperature and time step, `warmup` untimed steps."""
    return MDProtocol(ensemble="nvt", temperature_k=p.temperature_k,
                      timestep_fs=p.timestep_fs, steps=steps,
                      sample_interval=max(1, steps), seed=p.seed,
                      thermostat_coupling_fs=100.0, warmup_steps=warmup)


def time_md(engine, atoms: Atoms, protocol: MDProtocol, repeats: int) -> dict[str, float]:
    """s/step over `repeats` runs (warm-up excluded by the engine), summarised."""
    per_step = [engine.md(atoms, protocol).timing.s_per_step for _ in range(repeats)]
    return tp.summarise_repeats(per_step)


def unique_cells(base: Atoms, targets: list[int]) -> list[Atoms]:
    """The cells for `targets` (0 or below len(base): `base` itself), one per distinct atom count,
    in ascending size: two targets that round to the same repeat would time one cell twice."""
    cells: dict[int, Atoms] = {}
    for target in targets:
        atoms = cell_of_size(base, target) if target >= len(base) else base
        cells.setdefault(len(atoms), atoms)
    return [cells[n] for n in sorted(cells)]
