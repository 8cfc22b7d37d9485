"""`reference_data/aimd/manifest.json`: every run's system, protocol, CP2K settings and version,
committed length, cost and file hashes; written from the committed state, read and verified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ase import Atoms

from ..errors import InputError
from ..files import atomic_write_json
from ..provenance import hardware_info, sha256_file
from .runs import committed_run_problem, run_dir_of
from .spec import AimdSpec
from .thermo import read_ener, thermo_summary


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
        ener = read_ener(folder, state["total_steps"])
        runs[run.id] = {
            **thermo_summary(ener, len(state["symbols"]), run.protocol.warmup_steps * dt / 1000,
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
            "growth": growth_plan(state["total_steps"], run.target_steps, run.diffusivity_from_step,
                                  _s_per_step_with_restarts(state)),
        }
    manifest = {"schema": "nepbench.aimd/1", "spec": Path(spec.path).name,
                "spec_sha256": spec.sha256, "runs": runs, "hardware": hardware_info()}
    atomic_write_json(Path(spec.path).parent / "aimd" / "manifest.json", manifest)
    return manifest


def growth_plan(total_steps: int, target_steps: int, diffusivity_from_step: int | None,
                s_per_step: float | None) -> dict[str, Any]:
    """How far a run still has to grow: steps to its target and to the step its Li diffusivity
    is expected from (None for a run not meant for D), and the CP2K hours each takes at
    `s_per_step` (the run's recorded cost per step with restarts, on its current ranks; hours None
    without one). Pure."""
    def hours(steps: int) -> float | None:
        return None if s_per_step is None else round(steps * s_per_step / 3600.0, 1)

    to_target = max(0, target_steps - total_steps)
    plan: dict[str, Any] = {"steps_to_target": to_target, "cp2k_hours_to_target": hours(to_target),
                            "diffusivity_from_step": diffusivity_from_step,
                            "steps_to_diffusivity": None, "cp2k_hours_to_diffusivity": None}
    if diffusivity_from_step is not None:
        to_d = max(0, diffusivity_from_step - total_steps)
        plan.update(steps_to_diffusivity=to_d, cp2k_hours_to_diffusivity=hours(to_d))
    return plan


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

    from ..engines.cp2k import RESTART_DIR, named_restart_files

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


def load_aimd_manifest(path: str | Path) -> dict[str, Any]:
    """aimd/manifest.json, checked for the shape its readers rely on: an object whose `runs` maps
    each run id to an object with a `files` object (relative path → sha256). InputError names the
    file for anything else."""
    from ..textfiles import load_json

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
