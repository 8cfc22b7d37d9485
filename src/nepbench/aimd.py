"""CP2K AIMD reference trajectories, grown segment by segment (resumable across sessions).

`reference_data/aimd.toml` defines the runs; each lives in `reference_data/aimd/<id>/` (CP2K restart
file, frames, energies, state) and `reference_data/aimd/manifest.json` records every run's system,
protocol, CP2K settings and version, committed length, cost and file hashes.
"""

from __future__ import annotations

import hashlib
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ase import Atoms

from .engines.base import MDProtocol
from .errors import ConfigError, InputError
from .prerelax import Prerelax, start_structure
from .provenance import LockHeld, atomic_write_json, exclusive_lock, hardware_info, sha256_file

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = REPO_ROOT / "reference_data" / "aimd.toml"


@dataclass(frozen=True)
class AimdRun:
    """One AIMD reference run: system (builder + params + seed), protocol and target length."""

    id: str
    builder: str
    params: dict[str, Any]
    seed: int
    protocol: MDProtocol
    target_steps: int
    prerelax: Prerelax | None = None
    settings_preset: str | None = None

    def atoms(self) -> Atoms:
        """The builder's structure (species, order and cell of the run; positions before any pre-relaxation)."""
        from . import systems

        return systems.build(self.builder, seed=self.seed, **self.params)

    @property
    def warmup_ps(self) -> float:
        return self.protocol.warmup_steps * self.protocol.timestep_fs / 1000.0


@dataclass(frozen=True)
class AimdSpec:
    """The runs of an aimd.toml; `sha256` is that of the text they were parsed from."""

    runs: tuple[AimdRun, ...]
    settings_preset: str = "aimd"
    segment_steps: int = 20
    path: str = ""
    sha256: str = ""

    def preset_of(self, run: AimdRun) -> str:
        """The CP2K settings preset a run uses: its own `settings`, else the spec's."""
        return run.settings_preset or self.settings_preset

    def run(self, run_id: str) -> AimdRun:
        for run in self.runs:
            if run.id == run_id:
                return run
        raise ConfigError(f"{self.path}: no AIMD run {run_id!r}")


#: Keys aimd.toml may hold at its top and in each [[run]].
SPEC_KEYS = frozenset({"settings", "segment_steps", "run"})
RUN_KEYS = frozenset({"id", "builder", "params", "seed", "temperature_k", "timestep_fs", "target_steps",
                      "sample_interval", "thermostat_coupling_fs", "warmup_steps", "prerelax", "settings"})


def _spec_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with aimd.toml's keys, settings preset, run ids, builders or warm-ups, or None
    (the numbers themselves are checked by MDProtocol)."""
    from .config import unknown_keys, unknown_name
    from .engines.cp2k import SETTINGS_PRESETS
    from .systems import BUILDERS, param_problem

    problem = unknown_keys(data, SPEC_KEYS)
    if problem:
        return problem
    problem = unknown_name(data.get("settings", "aimd"), SETTINGS_PRESETS, "CP2K settings preset")
    if problem:
        return problem
    runs = data.get("run", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        return "'run' must be an array of tables ([[run]])"
    ids = [r.get("id") for r in runs]
    if len(set(map(str, ids))) != len(ids):
        return "duplicate run ids"
    for raw in runs:
        where = f"AIMD run {raw.get('id', '?')!r}"
        problem = unknown_keys(raw, RUN_KEYS)
        if problem:
            return f"{where}: {problem}"
        if "settings" in raw:
            problem = unknown_name(raw["settings"], SETTINGS_PRESETS, "CP2K settings preset")
            if problem:
                return f"{where}: {problem}"
        problem = unknown_name(raw.get("builder"), BUILDERS, "builder")
        if problem is None:  # parameters the builder does not take, or of the wrong kind
            problem = param_problem(raw["builder"], raw.get("params", {}))
        if problem:
            return f"{where}: {problem}"
        warmup, target = raw.get("warmup_steps", 0), raw.get("target_steps")
        if isinstance(warmup, int) and isinstance(target, int) and not 0 <= warmup < target:
            return f"{where}: warmup_steps {warmup} must be >= 0 and below target_steps {target}"
        interval = raw.get("sample_interval", 5)
        if isinstance(warmup, int) and isinstance(interval, int) and interval > 0 and warmup % interval:
            # production would start at the next frame, not at the warm-up's end the lengths are taken from
            return f"{where}: warmup_steps {warmup} must be a multiple of sample_interval {interval}"
    return None


def load_aimd_spec(path: str | Path = DEFAULT_SPEC) -> AimdSpec:
    """The AIMD spec at `path` (ConfigError naming the file for anything it cannot use)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: AIMD spec not found")
    raw_bytes = path.read_bytes()
    try:
        data = tomllib.loads(raw_bytes.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: malformed TOML ({exc})") from None
    problem = _spec_problem(data)
    if problem:
        raise ConfigError(f"{path}: {problem}")
    runs = []
    for raw in data.get("run", []):
        try:
            protocol = MDProtocol(
                ensemble="nvt", temperature_k=float(raw["temperature_k"]),
                timestep_fs=float(raw["timestep_fs"]), steps=int(raw["target_steps"]),
                sample_interval=int(raw.get("sample_interval", 5)), seed=int(raw["seed"]),
                thermostat_coupling_fs=float(raw.get("thermostat_coupling_fs", 50.0)),
                warmup_steps=int(raw.get("warmup_steps", 0)))
            prerelax = (Prerelax.from_dict(raw["prerelax"], f"{path}: AIMD run {raw['id']!r}")
                        if "prerelax" in raw else None)
            runs.append(AimdRun(str(raw["id"]), str(raw["builder"]), dict(raw.get("params", {})),
                                int(raw["seed"]), protocol, int(raw["target_steps"]), prerelax,
                                None if "settings" not in raw else str(raw["settings"])))
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{path}: AIMD run {raw.get('id', '?')!r}: {exc}") from None
    return AimdSpec(tuple(runs), str(data.get("settings", "aimd")), int(data.get("segment_steps", 20)),
                    str(path), hashlib.sha256(raw_bytes).hexdigest())


def _same_system_and_dynamics(a: AimdRun, b: AimdRun) -> bool:
    """True when two runs differ at most in what is analysis or length: warm-up cut, target."""
    strip = {"warmup_steps": 0, "steps": 1}
    return (a.builder, a.params, a.seed, a.prerelax, replace(a.protocol, **strip)) == \
        (b.builder, b.params, b.seed, b.prerelax, replace(b.protocol, **strip))


def reload_aimd_spec(spec: AimdSpec) -> AimdSpec:
    """The spec as its file reads now when it still describes the runs being grown, else `spec`.

    A grower runs for hours with the spec it started with. When aimd.toml is edited meanwhile in
    what is analysis or length only (a longer warm-up, another target), the manifest it writes
    must describe the file as it is. When the file no longer loads, or changes a run's system or
    dynamics, the manifest keeps describing `spec` and records `spec.sha256`, which `verify_aimd`
    reports as a manifest for another version of aimd.toml (the next segment refuses a changed
    protocol anyway).
    """
    try:
        current = load_aimd_spec(spec.path)
    except (ConfigError, InputError, OSError):
        return spec
    now = {run.id: run for run in current.runs}
    if all(run.id not in now or _same_system_and_dynamics(run, now[run.id]) for run in spec.runs):
        return current
    return spec


def run_dir_of(spec: AimdSpec, run: AimdRun) -> Path:
    return Path(spec.path).parent / "aimd" / run.id


def start_atoms(spec: AimdSpec, run: AimdRun) -> Atoms:
    """The structure the run starts from: the builder's, or its pre-relaxed form (`prerelax.py`)."""
    built = run.atoms()
    if run.prerelax is None:
        return built
    return start_structure(run_dir_of(spec, run), built, run.prerelax, committed_steps(spec, run) > 0,
                           run.protocol.temperature_k, run.seed)


def committed_steps(spec: AimdSpec, run: AimdRun) -> int:
    """MD steps committed so far for `run` (0 when it has not started)."""
    import json

    state = run_dir_of(spec, run) / "state.json"
    return int(json.loads(state.read_text())["total_steps"]) if state.is_file() else 0


def committed_run_problem(run: AimdRun, state: dict[str, Any]) -> str | None:
    """Why the spec's `run` does not describe the run committed with `state`, or None.

    The dynamics (`engines.cp2k.protocol_mismatch`: time step, temperature, sampling, seed,
    coupling) and the system (the builder's species in order, and its cell) must be the ones the
    data were made with: a reader takes the warm-up cut and the time axis from the spec, and the
    system's label from its builder parameters.
    """
    import numpy as np

    from .engines.cp2k import protocol_mismatch

    mismatch = protocol_mismatch(state, run.protocol)
    if mismatch:
        return mismatch
    built = run.atoms()
    if built.get_chemical_symbols() != list(state["symbols"]):
        return (f"builder {run.builder} {run.params} makes {built.get_chemical_formula()}, the committed run "
                f"holds {Atoms(state['symbols']).get_chemical_formula()}")
    if not np.allclose(built.cell.array, np.asarray(state["cell_a"], dtype=float), atol=1e-6):
        return f"builder {run.builder} {run.params} makes another cell than the committed run's"
    return None


def _require_committed_run(spec: AimdSpec, run: AimdRun, state: dict[str, Any], folder: Path) -> None:
    """InputError naming aimd.toml when `committed_run_problem` finds one: a reader would take the
    warm-up cut, the time axis and the system from the spec, not from the data."""
    mismatch = committed_run_problem(run, state)
    if mismatch:
        raise InputError(spec.path, f"run {run.id}: {mismatch} (committed in {folder / 'state.json'})")


def write_manifest(spec: AimdSpec) -> dict[str, Any]:
    """reference_data/aimd/manifest.json from the runs' committed state, for `spec` as loaded
    (its `spec_sha256` is `spec.sha256`: the text `spec` was parsed from, not the file as it is now)."""
    runs = {}
    for run in spec.runs:
        folder = run_dir_of(spec, run)
        if not (folder / "state.json").is_file():
            continue
        state, files = _committed_files(folder)
        mismatch = committed_run_problem(run, state)
        if mismatch:  # the manifest would describe a system or dynamics the data were not made with
            raise InputError(spec.path, f"run {run.id}: {mismatch} (committed in {folder / 'state.json'}); "
                             "restore it, or give the new system or dynamics a new run id")
        dt = run.protocol.timestep_fs
        ener = _read_ener(folder, state["total_steps"])
        runs[run.id] = {
            **_thermo_summary(ener, len(state["symbols"]), run.protocol.warmup_steps * dt / 1000,
                              run.protocol.thermostat_coupling_fs),
            "builder": run.builder, "params": run.params, "seed": run.seed,
            "prerelax": run.prerelax.to_dict() if run.prerelax else None,
            "formula": Atoms(state["symbols"]).get_chemical_formula(), "n_atoms": len(state["symbols"]),
            "protocol": run.protocol.to_dict(), "target_steps": run.target_steps,
            "total_steps": state["total_steps"], "length_ps": state["total_steps"] * dt / 1000,
            "production_ps": max(0.0, (state["total_steps"] - run.protocol.warmup_steps) * dt / 1000),
            "total_wall_s": round(state["total_wall_s"], 1),
            "s_per_step_median": _s_per_step_median(ener, state),
            "s_per_step_with_restarts": _s_per_step_with_restarts(state),
            "scf_iterations_per_step": _mean_scf_iterations(state["segments"]),
            "segments": len(state["segments"]), "cp2k_version": _cp2k_versions(state),
            "settings": state["settings"], "ranks": state["ranks"], "files": files,
        }
    manifest = {"schema": "nepbench.aimd/1", "spec": Path(spec.path).name,
                "spec_sha256": spec.sha256, "runs": runs, "hardware": hardware_info()}
    atomic_write_json(Path(spec.path).parent / "aimd" / "manifest.json", manifest)
    return manifest


def _cp2k_versions(state: dict[str, Any]) -> str:
    """The CP2K version(s) a run was grown with, joined by " + " when a segment recorded another
    (segments from before versions were recorded per segment count as the state's)."""
    versions = [s.get("cp2k_version", state["version"]) for s in state["segments"]] or [state["version"]]
    return " + ".join(dict.fromkeys(versions))


def _committed_files(folder: Path, attempts: int = 5) -> tuple[dict[str, Any], dict[str, str]]:
    """(state, {relative path: sha256}) of a run folder's committed files: everything but hidden
    files, segment work folders and restart files the state does not name (left by a killed
    commit until the next one removes them).

    A grower may commit a segment meanwhile (another process: the manifest is written without
    the run's lock, which a grower holds for a whole segment); then a file can vanish or the state
    move on while the files are hashed, and the snapshot is taken again.
    """
    import json

    from .engines.cp2k import RESTART_DIR, named_restart_files

    for attempt in range(attempts):
        state_text = (folder / "state.json").read_text()
        state = json.loads(state_text)
        named = named_restart_files(state)
        try:
            files = {}
            for path in sorted(folder.rglob("*")):
                relative = path.relative_to(folder)
                rel = relative.as_posix()
                if (any(part.startswith(".") for part in relative.parts) or not path.is_file()
                        or (rel.startswith(f"{RESTART_DIR}/") and rel not in named)):
                    continue
                files[rel] = sha256_file(path)
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            continue
        if (folder / "state.json").read_text() == state_text:
            return state, files
    raise InputError(folder / "state.json", f"the run kept changing while its files were hashed ({attempts} tries)")


def _read_ener(folder: Path, total_steps: int) -> dict[str, Any] | None:
    """The columns of a run's md.ener (see `engines.cp2k.parse_ener`) up to its committed step
    `total_steps` (rows past it are leftovers of a killed commit), or None when it has none."""
    from .engines.cp2k import ENER_FILE, parse_ener
    from .errors import EngineCrashed

    if not (folder / ENER_FILE).is_file():
        return None
    try:
        ener = parse_ener((folder / ENER_FILE).read_text())
    except (EngineCrashed, UnicodeDecodeError) as exc:  # parse_ener knows the text, not the file
        raise InputError(folder / ENER_FILE, str(exc)) from None
    keep = ener["step"] <= total_steps
    return {name: column[keep] for name, column in ener.items()}


def _segments_on_current_ranks(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The segments run on the run's current rank count (`state["ranks"]`; segments from before
    ranks were recorded per segment count as that too): the ones a cost per step is taken from."""
    return [s for s in state["segments"] if s.get("ranks", state["ranks"]) == state["ranks"]]


def _s_per_step_median(ener: dict[str, Any] | None, state: dict[str, Any]) -> float:
    """Median CP2K time per MD step in s over every timed step of the segments run on the run's
    current rank count (`state["ranks"]`; segments from before ranks were recorded per segment count
    as that too).

    A segment's first step carries its start-up SCF and is left out, as in each segment's
    `s_per_step`. Per step, not per segment, so one slow or paused stretch does not set it.
    Falls back to the median of the segments' means when md.ener is missing (`ener` None).
    """
    import numpy as np

    segments = _segments_on_current_ranks(state)
    if ener is not None:
        in_segments = np.zeros(ener["step"].shape, bool)
        for seg in segments:  # their steps after the first
            in_segments |= (ener["step"] > seg["start_step"] + 1) & (ener["step"] <= seg["end_step"])
        if in_segments.any():
            return round(float(np.median(ener["used_time_s"][in_segments])), 2)
    return float(np.median([s["s_per_step"] for s in segments]))


def _s_per_step_with_restarts(state: dict[str, Any]) -> float | None:
    """Median over the segments run on the run's current rank count of wall time / steps (s): the
    cost per step a run's remaining steps will take, each segment's restart and first step included
    (a-Li3Si-900K, 2026-11-28: 68.9 s against a 65.7 s median step). None without such segments."""
    import numpy as np

    costs = [s["wall_s"] / (s["end_step"] - s["start_step"]) for s in _segments_on_current_ranks(state)
             if s["end_step"] > s["start_step"] and s.get("wall_s") is not None]
    return round(float(np.median(costs)), 2) if costs else None


def _mean_scf_iterations(segments: list[dict[str, Any]]) -> float | None:
    """Mean SCF iterations per timed MD step over the segments that recorded it (None if none did).

    Each segment's mean covers its steps after the first (as its s_per_step does), so it is
    weighted by that number of steps.
    """
    pairs = [(s["scf_iterations_mean"], s["end_step"] - s["start_step"] - 1) for s in segments
             if s.get("scf_iterations_mean") is not None and s["end_step"] - s["start_step"] > 1]
    weight = sum(w for _, w in pairs)
    return round(sum(m * w for m, w in pairs) / weight, 2) if weight else None


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
    from .metrics.equilibration import detect_equilibration

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

    from .engines.cp2k import HARTREE_EV

    run = spec.run(run_id)
    folder = run_dir_of(spec, run)
    if not (folder / "state.json").is_file():
        return None
    state = json.loads((folder / "state.json").read_text())
    _require_committed_run(spec, run, state, folder)
    ener = _read_ener(folder, state["total_steps"])
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


def _thermo_summary(ener: dict[str, Any] | None, n_atoms: int, warmup_ps: float,
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
    from .engines.cp2k import HARTREE_EV
    from .metrics.equilibration import mean_standard_error, relaxation_heat
    from .metrics.stability import nve_energy_drift_ev_per_atom_per_ps

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

    from .metrics.equilibration import linear_trend

    t = np.asarray(times_ps, dtype=float)
    window = (t >= warmup_ps / 2 - 1e-9) & (t <= warmup_ps + 1e-9)
    if warmup_ps <= 0 or window.sum() < 6:
        return {"warmup_trend_mev_per_atom_per_ps": None, "warmup_trend_stderr_mev_per_atom_per_ps": None,
                "warmup_stationary": None}
    fit = linear_trend(t[window], np.asarray(potential_ev, dtype=float)[window] / n_atoms * 1000.0)
    return {"warmup_trend_mev_per_atom_per_ps": round(fit.slope, 2),
            "warmup_trend_stderr_mev_per_atom_per_ps": round(fit.stderr, 2),
            "warmup_stationary": bool(abs(fit.slope) <= STATIONARITY_SIGMAS * fit.stderr)}


def grow(spec: AimdSpec, engine: Any, run_ids: list[str] | None = None, max_wall_s: float | None = None,
         on_segment: Callable[[AimdRun, Any], None] | None = None, poll_s: float = 10.0,
         stop_requested: Callable[[], bool] | None = None) -> dict[str, int]:
    """Extend the runs round-robin by `segment_steps` until each reaches its target (or time is up).

    Each segment continues from the run's restart file; the manifest is rewritten after each one.
    Several processes may grow one spec side by side (e.g. one CP2K rank each on a 2-core machine):
    a run is locked while a segment grows it (`<run>/.lock`), and a process skips runs that another
    one holds, waiting `poll_s` s when every unfinished run is busy. `stop_requested`, when it
    returns True, stops the growth before the next segment (the running one is finished and
    committed). Returns the committed steps per run.
    """
    start = time.perf_counter()
    runs = [spec.run(r) for r in run_ids] if run_ids else list(spec.runs)
    # one engine for every run, or a callable giving each run its engine (its settings preset)
    engine_for = (lambda run: engine) if hasattr(engine, "run_md_segment") else engine

    def committed() -> dict[str, int]:
        return {r.id: committed_steps(spec, r) for r in runs}

    def must_stop() -> bool:
        timed_out = max_wall_s is not None and time.perf_counter() - start > max_wall_s
        return timed_out or (stop_requested is not None and stop_requested())

    while True:
        pending = [r for r in runs if committed_steps(spec, r) < r.target_steps]
        if not pending:
            return committed()
        progressed = False
        for run in pending:
            if must_stop():
                return committed()
            try:
                with exclusive_lock(run_dir_of(spec, run) / ".lock", blocking=False):
                    steps = min(spec.segment_steps, run.target_steps - committed_steps(spec, run))
                    if steps < 1:  # another process finished it meanwhile
                        continue
                    result = engine_for(run).run_md_segment(run_dir_of(spec, run), start_atoms(spec, run),
                                                            run.protocol, steps)
            except LockHeld:
                continue
            progressed = True
            with exclusive_lock(Path(spec.path).parent / "aimd" / ".manifest.lock"):
                write_manifest(reload_aimd_spec(spec))
            if on_segment:
                on_segment(run, result)
        if not progressed:
            if must_stop() or (max_wall_s is not None and time.perf_counter() - start + poll_s > max_wall_s):
                return committed()
            time.sleep(poll_s)


@dataclass
class AimdReference:
    """A committed AIMD run ready for comparison (warm-up frames already removed)."""

    run: AimdRun
    trajectory: Any
    thermo: dict[str, Any]
    total_steps: int
    total_wall_s: float
    first_frame: Atoms = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def production_ps(self) -> float:
        times = self.trajectory.times_ps
        return float(times[-1] - times[0]) if len(times) > 1 else 0.0


def load_aimd(spec: AimdSpec, run_id: str) -> AimdReference:
    """The committed AIMD run `run_id` with frames before the warm-up's end removed (InputError when
    aimd.toml no longer describes the committed run's system or dynamics)."""
    import json

    import numpy as np

    from .engines.base import Trajectory
    from .engines.cp2k import read_md_run

    run = spec.run(run_id)
    folder = run_dir_of(spec, run)
    if not (folder / "state.json").is_file():
        raise InputError(folder / "state.json", f"AIMD run {run_id} has not started "
                         "(run `nepbench reference aimd`)")
    _require_committed_run(spec, run, json.loads((folder / "state.json").read_text()), folder)
    traj, thermo, total, wall = read_md_run(folder)
    keep = traj.times_ps >= run.warmup_ps - 1e-9
    if keep.sum() < 2:
        raise InputError(folder, f"AIMD run {run_id} has {total} steps, not past its "
                         f"{run.protocol.warmup_steps}-step warm-up yet")
    production = Trajectory(traj.symbols, traj.times_ps[keep] - traj.times_ps[keep][0],
                            traj.positions_a[keep], traj.cells_a[keep], traj.pbc)
    thermo_kept = {k: np.asarray(v)[keep] for k, v in thermo.items()}
    return AimdReference(run, production, thermo_kept, total, wall, production.frame(0))


def load_aimd_manifest(path: str | Path) -> dict[str, Any]:
    """aimd/manifest.json, checked for the shape its readers rely on: an object whose `runs` maps
    each run id to an object with a `files` object (relative path → sha256). InputError names the
    file for anything else."""
    from .textfiles import load_json

    path = Path(path)
    manifest = load_json(path, InputError)
    runs = manifest.get("runs") if isinstance(manifest, dict) else None
    if not isinstance(runs, dict):
        raise InputError(path, "expected a JSON object with a 'runs' object (run id → entry)")
    for run_id, entry in runs.items():
        files = entry.get("files") if isinstance(entry, dict) else None
        if not (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())):
            raise InputError(path, f"run {run_id!r} needs a 'files' object of sha256 strings")
    return manifest


def verify_aimd(spec: AimdSpec) -> list[str]:
    """Problems found checking every AIMD file against aimd/manifest.json (empty list = ok)."""
    path = Path(spec.path).parent / "aimd" / "manifest.json"
    if not path.is_file():
        return []
    manifest = load_aimd_manifest(path)
    problems = []
    if manifest.get("spec_sha256") != sha256_file(spec.path):
        problems.append(f"{path}: written for another version of {Path(spec.path).name} (rewrite it with "
                        "`nepbench reference aimd --manifest-only`)")
    for run_id, entry in manifest["runs"].items():
        folder = path.parent / run_id
        for rel, digest in entry["files"].items():
            target = folder / rel
            if not target.is_file():
                problems.append(f"{target}: missing")
            elif sha256_file(target) != digest:
                problems.append(f"{target}: sha256 differs from the AIMD manifest")
    return problems
