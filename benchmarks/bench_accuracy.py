"""Accuracy tracked over commits (`track_*`, each with its unit), on the default model.

* Held-out parity: force and energy RMSE on the reference set's test split (per-element energy
  offsets fitted on the train split), as the `parity` task computes them. A step that comes from
  new frames shows as a change of reference_data/dft/manifest.json in that commit (the frame count
  is not tracked: asv reads a larger value as worse).
* NVE stability: energy drift and fluctuation of the gate suite's NVE check (its NVT stage
  included), run by the md task's code.
* NEP vs CP2K AIMD: partial-RDF error and |log10(D_NEP/D_AIMD)| after NEP MD on the AIMD run's
  own cell and protocol; skipped per run until its AIMD reference exists.

Every tracked number is one where lower is better: asv reads a larger value as worse for every
benchmark, so speeds are tracked as times and ratios as distances from agreement.

Each class runs its expensive part once in `setup_cache` (one parity pass, one MD run per case)
and its `track_*` methods read numbers from it; `setup` raises NotImplementedError (asv: skipped)
when the inputs are missing.
"""

from __future__ import annotations

import tomllib
from typing import Any

from .common import REFERENCE_DIR, REPO_ROOT, nep_engine


def _skip_if_absent(cache: dict[str, Any]) -> None:
    if "skip" in cache:
        raise NotImplementedError(cache["skip"])


class TrackParity:
    """Errors of the default model on the held-out CP2K frames."""

    timeout = 600

    def setup_cache(self) -> dict[str, Any]:
        from nepbench.errors import NepbenchError
        from nepbench.reference import load_frames
        try:
            from nepbench.tasks.parity import parity_outcome
        except ImportError:  # a commit before tasks/accuracy.py was renamed
            from nepbench.tasks.accuracy import parity_outcome

        dft = REFERENCE_DIR / "dft"
        if not (dft / "manifest.json").is_file():
            return {"skip": f"no reference data at {dft}"}
        try:
            engine = nep_engine("calorine")
            test = load_frames(dft, split="test")
            train = load_frames(dft, split="train")
        except (NotImplementedError, NepbenchError) as exc:
            return {"skip": str(exc)}
        if not test:
            return {"skip": "the reference set has no test frames yet"}
        return parity_outcome(engine, test, train, f"{len(test)} held-out frames").metrics

    def setup(self, cache: dict[str, Any]) -> None:
        _skip_if_absent(cache)

    def track_force_rmse(self, cache: dict[str, Any]) -> float:
        return cache["force_rmse_mev_per_a"]

    track_force_rmse.unit = "meV/Å"

    def track_energy_rmse(self, cache: dict[str, Any]) -> float:
        return cache["energy_rmse_mev_per_atom"]

    track_energy_rmse.unit = "meV/atom"


def gated_nve_table() -> dict[str, Any]:
    """The `nve` table of the gate suite's md task (suites/gate.toml): the protocol CI gates."""
    try:
        from nepbench.suite import load_suite
    except ImportError:  # a commit before config.py was split into checks, spec and suite
        from nepbench.config import load_suite

    for task in load_suite(REPO_ROOT / "suites" / "gate.toml").tasks:
        if task.type == "md_accuracy" and "nve" in task.params:
            return dict(task.params["nve"])
    raise NotImplementedError("suites/gate.toml has no md_accuracy task with an nve table")


class TrackNVEStability:
    """The gate suite's NVE check (its md task's `nve` table: a-Li2Si, 1,000 NVT steps at 900 K, then
    2,000 NVE steps of 1 fs) run by the md task's own code, two numbers from it."""

    timeout = 600

    def setup_cache(self) -> dict[str, Any]:
        try:
            from nepbench.tasks.md_accuracy import run_nve_check
        except ImportError:  # a commit before the shared NVE check
            return {"skip": "this commit's nepbench has no run_nve_check"}
        try:
            engine = nep_engine("calorine")
            table = gated_nve_table()
        except NotImplementedError as exc:
            return {"skip": str(exc)}
        check = run_nve_check(table, engine)
        return {"drift": check.drift_abs_ev_per_atom_per_ps, "fluctuation": check.residual_rms_ev_per_atom,
                "temperature_k": check.temperature_mean_k}

    def setup(self, cache: dict[str, Any]) -> None:
        _skip_if_absent(cache)

    def track_nve_drift(self, cache: dict[str, Any]) -> float:
        return cache["drift"]

    track_nve_drift.unit = "eV/atom/ps"

    def track_nve_energy_fluctuation(self, cache: dict[str, Any]) -> float:
        return cache["fluctuation"]

    track_nve_energy_fluctuation.unit = "eV/atom"


def _aimd_run_ids() -> list[str]:
    try:
        runs = tomllib.loads((REFERENCE_DIR / "aimd.toml").read_text()).get("run", [])
    except (OSError, tomllib.TOMLDecodeError):
        runs = []
    return [str(r["id"]) for r in runs if "id" in r] or ["a-Li3Si-900K"]


def nep_vs_aimd(run_id: str, engine: Any) -> dict[str, float] | str:
    """RDF errors and the diffusivity disagreement of NEP MD against one committed AIMD run (or why not).

    NEP NVT (CSVR) from the AIMD frame after its warm-up, same cell, temperature, time step,
    coupling and production length (seed 1), judged as the md_accuracy task judges it. Returns
    {"rdf_l1_error_max": normalised L1 (max over pairs), "rdf_w1_max_a": Å (NaN when no pair has
    neighbours within r_max), "li_d_log10_ratio_abs": |log10(D_NEP/D_AIMD)| (NaN where the task
    compares none: AIMD production too short or its MSD not diffusive, or the model's D not
    resolved)}, or a one-line reason: a failure in one run is that run's reason, not the whole
    benchmark's.
    """
    from nepbench.aimd import load_aimd, load_aimd_spec
    from nepbench.errors import NepbenchError
    from nepbench.tasks.md_accuracy import (MIN_DIFFUSION_PS, MIN_RDF_PS, compare_li_d, compare_rdf,
                                            matching_protocol, rdf_maxima, rdf_r_max_a)

    nan = float("nan")
    try:
        ref = load_aimd(load_aimd_spec(REFERENCE_DIR / "aimd.toml"), run_id)
    except NepbenchError as exc:
        return f"no AIMD reference for {run_id}: {exc}"
    if ref.production_ps < MIN_RDF_PS:
        return f"AIMD production of {run_id} is {ref.production_ps:.3f} ps < {MIN_RDF_PS} ps"
    try:
        model = engine.md(ref.first_frame, matching_protocol(ref, 1, seed=1)).trajectory
        l1, w1 = rdf_maxima(compare_rdf(ref.trajectory, model, rdf_r_max_a(ref), 80))
        ratio = compare_li_d(ref.trajectory, model, ref.production_ps, MIN_DIFFUSION_PS).log10_ratio
    except Exception as exc:  # noqa: BLE001 - asv would otherwise drop every run of the benchmark
        return f"{run_id}: {type(exc).__name__}: {exc}"
    return {"rdf_l1_error_max": l1, "rdf_w1_max_a": nan if w1 is None else w1,
            "li_d_log10_ratio_abs": nan if ratio is None else abs(ratio)}


class TrackAimdAgreement:
    """NEP MD against each CP2K AIMD reference run: one NEP run per AIMD run feeds all three."""

    params = _aimd_run_ids()
    param_names = ["aimd_run"]
    timeout = 900

    def setup_cache(self) -> dict[str, Any]:
        try:
            engine = nep_engine("calorine")
        except NotImplementedError as exc:
            return {run_id: str(exc) for run_id in self.params}
        return {run_id: nep_vs_aimd(run_id, engine) for run_id in self.params}

    def setup(self, cache: dict[str, Any], run_id: str) -> None:
        if isinstance(cache.get(run_id), str) or run_id not in cache:
            raise NotImplementedError(cache.get(run_id, f"no result for {run_id}"))

    def track_rdf_l1_error(self, cache: dict[str, Any], run_id: str) -> float:
        return cache[run_id]["rdf_l1_error_max"]

    track_rdf_l1_error.unit = "normalised L1"

    def track_rdf_w1(self, cache: dict[str, Any], run_id: str) -> float:
        return cache[run_id]["rdf_w1_max_a"]

    track_rdf_w1.unit = "Å"

    def track_li_d_log10_ratio_abs(self, cache: dict[str, Any], run_id: str) -> float:
        """|log10(D_NEP/D_AIMD)|, lower is better in either direction (NaN where none is compared).
        The signed ratio it replaced had no better direction, and asv reads larger as worse."""
        return cache[run_id]["li_d_log10_ratio_abs"]

    track_li_d_log10_ratio_abs.unit = "|log10(D_NEP/D_AIMD)|"


class TrackSpeedRatio:
    """NEP vs CP2K speed on one cell in one run: 8-atom c-Si, NVT 600 K, 1 fs; CP2K 2 timed steps
    (1 warm-up) at a 100 Ry grid on one rank, NEP (calorine) 200 timed steps (10 warm-up).

    Tracks NEP's wall time per step over CP2K's on identical atoms and protocol (lower is better,
    as asv reads every number), and both per-step times. The reduced CP2K grid makes CP2K faster
    than in the throughput task: this ratio follows the code over commits; the quick suite's
    `speedup` is the claim.
    """

    timeout = 600

    def setup_cache(self) -> dict[str, Any]:
        from nepbench.engines.base import MDProtocol
        from nepbench.engines.cp2k import CP2KEngine
        from nepbench.errors import NepbenchError

        from .common import have_cp2k, tiny_cp2k_settings, tiny_si

        if not have_cp2k():
            return {"skip": "cp2k.psmp not installed"}
        try:
            nep = nep_engine("calorine")
        except NotImplementedError as exc:
            return {"skip": str(exc)}
        atoms = tiny_si(8)

        def protocol(steps: int, warmup: int) -> MDProtocol:
            return MDProtocol("nvt", 600.0, 1.0, steps=steps, sample_interval=steps, seed=7,
                              thermostat_coupling_fs=50.0, warmup_steps=warmup)

        try:
            cp2k_s = CP2KEngine(tiny_cp2k_settings(md=True), ranks=1, timeout_s=500).md(
                atoms, protocol(2, 1)).timing.s_per_step
        except NepbenchError as exc:
            return {"skip": f"CP2K run failed: {exc}"}
        nep_s = nep.md(atoms, protocol(200, 10)).timing.s_per_step
        return {"cp2k_s_per_step": cp2k_s, "nep_s_per_step": nep_s}

    def setup(self, cache: dict[str, Any]) -> None:
        _skip_if_absent(cache)

    def track_nep_over_cp2k_time(self, cache: dict[str, Any]) -> float:
        """NEP's wall time per step as a fraction of CP2K's (the inverse of the speed-up: asv reads a
        larger number as worse, so the speed-up itself would show a slower NEP as an improvement)."""
        return cache["nep_s_per_step"] / cache["cp2k_s_per_step"]

    track_nep_over_cp2k_time.unit = "NEP s/step ÷ CP2K s/step"

    def track_cp2k_s_per_step(self, cache: dict[str, Any]) -> float:
        return cache["cp2k_s_per_step"]

    track_cp2k_s_per_step.unit = "s/step"

    def track_nep_s_per_step(self, cache: dict[str, Any]) -> float:
        return cache["nep_s_per_step"]

    track_nep_s_per_step.unit = "s/step"
