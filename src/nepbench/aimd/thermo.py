"""Thermodynamics of committed AIMD runs from their md.ener: temperature, drift, trends, the
detected end of equilibration and whether the warm-up ended stationary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from .runs import require_committed_run, run_dir_of
from .spec import AimdSpec


def read_ener(folder: Path, total_steps: int) -> dict[str, Any] | None:
    """The columns of a run's md.ener (see `engines.cp2k.parse_ener`) up to its committed step
    `total_steps` (rows past it are leftovers of a killed commit), or None when it has none."""
    from ..engines.cp2k import ENER_FILE, parse_ener
    from ..errors import EngineCrashed

    if not (folder / ENER_FILE).is_file():
        return None
    try:
        ener = parse_ener((folder / ENER_FILE).read_text())
    except (EngineCrashed, UnicodeDecodeError) as exc:  # parse_ener knows the text, not the file
        raise InputError(folder / ENER_FILE, str(exc)) from None
    keep = ener["step"] <= total_steps
    return {name: column[keep] for name, column in ener.items()}


#: Fewest MD steps after a detected start of equilibration (metrics/equilibration.py), and fewest
#: effectively independent samples after it for the start to be reported: with fewer, a slow
#: relaxation still under way cannot be told from a fluctuation.
EQUILIBRATION_MIN_STEPS = 20
EQUILIBRATION_MIN_EFFECTIVE_SAMPLES = 10.0


def _equilibrated_step(ener: dict[str, Any]) -> tuple[int | None, float | None]:
    """(MD step from which the potential energy is stationary, effective samples after it).

    `detect_equilibration` over steps 1 on. The step is None with fewer than
    2 × EQUILIBRATION_MIN_STEPS steps or fewer than EQUILIBRATION_MIN_EFFECTIVE_SAMPLES effective
    samples after it; the sample count is None only in the first case.
    """
    from ..metrics.equilibration import detect_equilibration

    moved = ener["step"] >= 1
    if moved.sum() < 2 * EQUILIBRATION_MIN_STEPS:
        return None, None
    found = detect_equilibration(ener["potential_ha"][moved], min_samples=EQUILIBRATION_MIN_STEPS)
    step = int(ener["step"][moved][found.start_index])
    return (step if found.effective_samples >= EQUILIBRATION_MIN_EFFECTIVE_SAMPLES else None,
            round(found.effective_samples, 1))


def thermo_history(spec: AimdSpec, run_id: str) -> dict[str, Any] | None:
    """Every committed step's temperature and potential energy of an AIMD run, for plotting.

    Returns None before the run's first commit, else {"time_ps", "temperature_k",
    "potential_ev_per_atom" (relative to step 0), "target_temperature_k", "warmup_ps",
    "equilibrated_ps" (the detected start of a stationary potential energy, or None)}; lists, in
    ps, K and eV/atom.
    """
    import json

    from ..engines.cp2k import HARTREE_EV

    run = spec.run(run_id)
    folder = run_dir_of(spec, run)
    if not (folder / "state.json").is_file():
        return None
    state = json.loads((folder / "state.json").read_text())
    require_committed_run(spec, run, state, folder)
    ener = read_ener(folder, state["total_steps"])
    if ener is None or ener["step"].size == 0:
        return None
    potential = ener["potential_ha"] * HARTREE_EV / len(state["symbols"])
    step, _ = _equilibrated_step(ener)
    dt_ps = run.protocol.timestep_fs / 1000
    return {"time_ps": (ener["step"] * dt_ps).tolist(), "temperature_k": ener["temperature_k"].tolist(),
            "potential_ev_per_atom": (potential - potential[0]).tolist(),
            "target_temperature_k": run.protocol.temperature_k, "warmup_ps": run.warmup_ps,
            "equilibrated_ps": None if step is None else step * dt_ps}


#: Fewest steps after the warm-up for the potential energy's trend to be reported.
TREND_MIN_STEPS = 10


def thermo_summary(ener: dict[str, Any] | None, n_atoms: int, warmup_ps: float,
                   coupling_fs: float = 50.0) -> dict[str, Any]:
    """Mean temperature after the warm-up (with the standard error of that mean over its correlated
    steps), conserved-quantity drift and the detected end of equilibration of a run's md.ener columns.

    Also the potential energy's trend after the warm-up (meV/atom/ps ± its standard error,
    `metrics.equilibration.linear_trend`; from TREND_MIN_STEPS steps on) and the temperature offset
    that trend alone would hold the CSVR thermostat at (`csvr_heat_offset_k`, K, over CP2K's 3N − 3
    degrees of freedom): a structure still relaxing releases heat that the thermostat removes only
    with its coupling time, so its mean T sits above target by that much.

    With the CSVR thermostat CP2K's conserved quantity includes the thermostat's energy, so its
    drift after the warm-up (the NVE energy-drift metric applied to it, meV/atom/ps ± the stderr
    of the slope, which assumes independent residuals) measures integration error: time step, SCF.
    The warm-up is left out: its violent start set the slope before (a-LiC read −0.35 over the whole
    run against +1.78 over the production).
    `potential_energy_equilibrated_at_step` and `potential_energy_effective_samples` are
    `_equilibrated_step`'s pair: a check on the warm-up chosen in aimd.toml, not a cut.
    """
    from ..engines.cp2k import HARTREE_EV
    from ..metrics.equilibration import mean_standard_error, relaxation_heat
    from ..metrics.stability import nve_energy_drift_ev_per_atom_per_ps

    no_trend = {"potential_trend_mev_per_atom_per_ps_after_warmup": None,
                "potential_trend_stderr_mev_per_atom_per_ps_after_warmup": None,
                "thermostat_heat_offset_k": None}
    no_drift = {"conserved_drift_mev_per_atom_per_ps_after_warmup": None,
                "conserved_drift_stderr_mev_per_atom_per_ps_after_warmup": None}
    empty = {"temperature_mean_k_after_warmup": None, "temperature_stderr_k_after_warmup": None,
             "potential_energy_equilibrated_at_step": None, "potential_energy_effective_samples": None,
             **no_drift, **no_trend}
    if ener is None or ener["step"].size < 3:
        return empty
    times_ps = ener["time_fs"] / 1000
    after = times_ps >= warmup_ps - 1e-9
    drift = dict(no_drift)
    if after.sum() >= 3:  # over the production only: the warm-up's violent start would set the slope
        fit = nve_energy_drift_ev_per_atom_per_ps(times_ps[after], ener["conserved_ha"][after] * HARTREE_EV, n_atoms)
        drift = {"conserved_drift_mev_per_atom_per_ps_after_warmup": round(fit.drift_ev_per_atom_per_ps * 1000, 4),
                 "conserved_drift_stderr_mev_per_atom_per_ps_after_warmup":
                     round(fit.stderr_ev_per_atom_per_ps * 1000, 4)}
    equilibrated, effective = _equilibrated_step(ener)
    temps_after = ener["temperature_k"][after]
    trend = dict(no_trend)
    if after.sum() >= TREND_MIN_STEPS:
        fit, heat_k = relaxation_heat(times_ps[after], ener["potential_ha"][after] * HARTREE_EV, n_atoms,
                                      coupling_fs)
        trend = {"potential_trend_mev_per_atom_per_ps_after_warmup": round(fit.slope, 2),
                 "potential_trend_stderr_mev_per_atom_per_ps_after_warmup": round(fit.stderr, 2),
                 "thermostat_heat_offset_k": round(heat_k, 1)}
    return {**trend, **drift, **warmup_stationarity(times_ps, ener["potential_ha"] * HARTREE_EV, n_atoms, warmup_ps),
            "temperature_mean_k_after_warmup": round(float(temps_after.mean()), 1) if after.any() else None,
            "temperature_stderr_k_after_warmup": round(mean_standard_error(temps_after), 1)
            if temps_after.size >= 2 else None,
            "potential_energy_equilibrated_at_step": equilibrated,
            "potential_energy_effective_samples": effective}


#: The warm-up's second half is tested for a trend in E_pot (the first half holds the start's shock).
STATIONARITY_SIGMAS = 2.0


def warmup_stationarity(times_ps: Any, potential_ev: Any, n_atoms: int, warmup_ps: float) -> dict[str, Any]:
    """Whether the AIMD warm-up ended stationary: the linear trend of E_pot over the warm-up's second
    half (meV/atom/ps, `metrics.equilibration.linear_trend`, its error allowing for correlation) is
    consistent with zero within STATIONARITY_SIGMAS standard errors. None where the warm-up has
    fewer than 6 steps. A run that is not stationary is never used for a diffusivity."""
    import numpy as np

    from ..metrics.equilibration import linear_trend

    t = np.asarray(times_ps, dtype=float)
    window = (t >= warmup_ps / 2 - 1e-9) & (t <= warmup_ps + 1e-9)
    if warmup_ps <= 0 or window.sum() < 6:
        return {"warmup_trend_mev_per_atom_per_ps": None, "warmup_trend_stderr_mev_per_atom_per_ps": None,
                "warmup_stationary": None}
    fit = linear_trend(t[window], np.asarray(potential_ev, dtype=float)[window] / n_atoms * 1000.0)
    return {"warmup_trend_mev_per_atom_per_ps": round(fit.slope, 2),
            "warmup_trend_stderr_mev_per_atom_per_ps": round(fit.stderr, 2),
            "warmup_stationary": bool(abs(fit.slope) <= STATIONARITY_SIGMAS * fit.stderr)}
