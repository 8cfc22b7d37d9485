"""The AIMD spec (`reference_data/aimd.toml`): its runs, their protocols, and the loader.

`load_aimd_spec` reads and checks the file; `reload_aimd_spec` takes up edits a long-running
grower may keep (analysis or length only).
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ase import Atoms

from ..engines.base import MDProtocol
from ..errors import ConfigError, InputError
from ..prerelax import Prerelax
from ..provenance import PROJECT_ROOT as REPO_ROOT

DEFAULT_SPEC = REPO_ROOT / "reference_data" / "aimd.toml"


@dataclass(frozen=True)
class AimdRun:
    """One AIMD reference run: system (builder + params + seed), protocol and target length.
    `diffusivity_from_step`: the step from which its Li diffusivity is expected to be measurable
    (the sizing study's length, docs/aimd_sizing.md), or None for a run not meant for D."""

    id: str
    builder: str
    params: dict[str, Any]
    seed: int
    protocol: MDProtocol
    target_steps: int
    prerelax: Prerelax | None = None
    settings_preset: str | None = None
    diffusivity_from_step: int | None = None

    def atoms(self) -> Atoms:
        """The builder's structure (species, order and cell of the run; positions before any pre-relaxation)."""
        from .. import systems

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
                      "sample_interval", "thermostat_coupling_fs", "warmup_steps", "prerelax", "settings",
                      "diffusivity_from_step"})


def _spec_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with aimd.toml's keys, settings preset, run ids, builders or warm-ups, or None
    (the numbers themselves are checked by MDProtocol)."""
    from ..checks import unknown_keys, unknown_name
    from ..engines.cp2k import SETTINGS_PRESETS
    from ..systems import BUILDERS, param_problem

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
        d_from = raw.get("diffusivity_from_step")
        if d_from is not None and not (isinstance(d_from, int) and isinstance(target, int)
                                       and isinstance(warmup, int) and warmup < d_from <= target):
            return (f"{where}: diffusivity_from_step {d_from!r} must be an integer after warmup_steps {warmup} "
                    f"and at most target_steps {target}")
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
                                None if "settings" not in raw else str(raw["settings"]),
                                raw.get("diffusivity_from_step")))
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
