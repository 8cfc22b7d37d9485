"""md_accuracy's MD stability check: the energy drift of an NVE run on a built cell after an NVT
stage at its temperature (`run_nve_check`), set by the task's `nve` table (`NveParams`). The asv
benchmark runs the same function on the gate suite's table, so the nightly number is the gated one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypedDict

import numpy as np

from ..checks import integer, unknown_keys, unknown_name
from ..engines.base import MDProtocol
from ..metrics.stability import nve_energy_drift_ev_per_atom_per_ps
from .params import TaskParams, positive_int, positive_number

#: NVT steps (CSVR at the nve table's temperature) run before the NVE check when its table names none:
#: a builder's packing releases enough heat to take an unthermostatted a-Li2Si cell from 900 K to a
#: ~3,600 K melt, so without them the drift is measured at a temperature each model sets itself.
DEFAULT_NVE_NVT_STEPS = 1000


@dataclasses.dataclass(frozen=True)
class NveParams(TaskParams):
    """An md_accuracy task's `nve` table (keys of the same names): the cell (`builder` and its
    `params`, built with `seed`), its temperature (K), time step (fs) and NVE `steps`, after
    `nvt_steps` of NVT (0: none)."""

    TASK = "md_accuracy"

    builder: str
    temperature_k: float
    timestep_fs: float
    steps: int
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 3
    nvt_steps: int = DEFAULT_NVE_NVT_STEPS

    @classmethod
    def problem(cls, params: Mapping[str, Any]) -> str | None:
        """What is wrong with an `nve` table ("nve ..."), or None (its seed is checked by the task)."""
        from .. import systems

        if not isinstance(params, Mapping):
            return f"nve must be a table, got {params!r}"
        problem = unknown_keys(params, NVE_KEYS)
        if problem:
            return f"nve has {problem}"
        problem = unknown_name(params.get("builder"), systems.BUILDERS, "builder")
        if problem:
            return f"nve has {problem}"
        problem = systems.param_problem(params["builder"], params.get("params", {}))
        if problem:
            return f"nve {problem}"
        for key in ("temperature_k", "timestep_fs"):
            if not positive_number(params.get(key)):
                return f"nve {key} must be a number > 0, got {params.get(key)!r}"
        if not positive_int(params.get("steps")):
            return f"nve steps must be an integer >= 1, got {params.get('steps')!r}"
        nvt_steps = integer(params.get("nvt_steps", DEFAULT_NVE_NVT_STEPS))
        if nvt_steps is None or nvt_steps < 0:
            return f"nve nvt_steps must be an integer >= 0, got {params.get('nvt_steps')!r}"
        return None


#: The keys an `nve` table may hold.
NVE_KEYS = NveParams.names()
#: The NVE cell when a task's params name none (the quick and gate suites give the same cell with
#: its seed and NVT stage).
DEFAULT_NVE = NveParams(builder="a-LixSi", params={"x": 2.0}, temperature_k=900.0, timestep_fs=1.0, steps=2000)


class NveSeries(TypedDict):
    """md_accuracy series `nve`: the NVE run's total energy per atom (eV/atom) against time (ps)."""

    time_ps: list[float]
    total_energy_ev_per_atom: list[float]


@dataclasses.dataclass(frozen=True)
class NveCheck:
    """One NVE stability run (`run_nve_check`).

    Attributes:
        drift_abs_ev_per_atom_per_ps: |slope| of the total energy per atom (eV/atom/ps).
        drift_stderr_ev_per_atom_per_ps: its standard error (eV/atom/ps).
        residual_rms_ev_per_atom: RMS of the total energy about the fitted line (eV/atom).
        temperature_mean_k: mean kinetic temperature of the NVE run (K).
        time_ps / total_energy_ev_per_atom: the sampled total energy per atom (ps, eV/atom).
        words: the protocol in a phrase, for a method text.
    """

    drift_abs_ev_per_atom_per_ps: float
    drift_stderr_ev_per_atom_per_ps: float
    residual_rms_ev_per_atom: float
    temperature_mean_k: float
    time_ps: np.ndarray
    total_energy_ev_per_atom: np.ndarray
    words: str


def run_nve_check(nve: NveParams | Mapping[str, Any], engine: Any) -> NveCheck:
    """Energy drift of an NVE run on the cell of an `nve` table (MD stability); a table given as a
    mapping is read by `NveParams.from_params` (ConfigError on a bad one).

    The builder's packing is first equilibrated for `nvt_steps` of NVT (CSVR, 100 fs) at the table's
    temperature; the NVE run then starts from the last NVT frame with fresh Maxwell–Boltzmann
    velocities at that temperature (seed + 1), so it runs near the stated temperature. With
    nvt_steps = 0 the NVE run starts from the packing and heats as it relaxes (a-Li2Si from 900 K:
    a ~3,600 K melt with the default model)."""
    from .. import systems

    if not isinstance(nve, NveParams):
        nve = NveParams.from_params(nve)
    seed, temperature_k, timestep_fs = nve.seed, nve.temperature_k, nve.timestep_fs
    atoms = systems.build(nve.builder, seed=seed, **nve.params)
    start_words = f"from {temperature_k:.0f} K velocities on the packing"
    if nve.nvt_steps > 0:
        nvt = MDProtocol("nvt", temperature_k, timestep_fs, nve.nvt_steps, sample_interval=nve.nvt_steps, seed=seed,
                         thermostat_coupling_fs=100.0)
        atoms = engine.md(atoms, nvt).trajectory.frame(-1)
        atoms.wrap()
        seed += 1
        start_words = (f"after {nve.nvt_steps} NVT steps (CSVR, 100 fs) at {temperature_k:.0f} K, from fresh "
                       f"{temperature_k:.0f} K velocities")
    protocol = MDProtocol("nve", temperature_k, timestep_fs, nve.steps, sample_interval=10, seed=seed,
                          warmup_steps=0)
    result = engine.md(atoms, protocol)
    total = result.thermo["potential_energy_ev"] + result.thermo["kinetic_energy_ev"]
    drift = nve_energy_drift_ev_per_atom_per_ps(result.thermo["time_ps"], total, len(atoms))
    mean_t = float(np.mean(result.thermo["temperature_k"]))
    return NveCheck(abs(drift.drift_ev_per_atom_per_ps), drift.stderr_ev_per_atom_per_ps,
                    drift.residual_rms_ev_per_atom, mean_t, np.asarray(result.thermo["time_ps"]),
                    total / len(atoms),
                    f"NVE drift of {nve.builder} ({len(atoms)} atoms) {start_words}, {nve.steps} "
                    f"steps of {timestep_fs:g} fs: mean T {mean_t:.0f} K")


def record_nve_check(nve: NveParams, engine: Any, metrics: dict[str, float], units: dict[str, str],
                     series: dict[str, Any]) -> str:
    """`run_nve_check` into the task's metrics and series (`NveSeries`); returns the method's words on it."""
    check = run_nve_check(nve, engine)
    metrics["nve_drift_abs_ev_per_atom_per_ps"] = check.drift_abs_ev_per_atom_per_ps
    metrics["nve_drift_stderr_ev_per_atom_per_ps"] = check.drift_stderr_ev_per_atom_per_ps
    units["nve_drift_abs_ev_per_atom_per_ps"] = "eV/atom/ps"
    metrics["nve_temperature_mean_k"] = check.temperature_mean_k
    units["nve_temperature_mean_k"] = "K"
    series["nve"] = {"time_ps": check.time_ps, "total_energy_ev_per_atom": check.total_energy_ev_per_atom}
    return check.words
