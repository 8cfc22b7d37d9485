"""Running the CP2K tuning study: every (variant, case) pair not yet recorded, one CP2K run each,
the record written atomically after each (an interrupted study resumes).
"""

from __future__ import annotations

import io
import lzma
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms
from ase.io import read as ase_read

from ..engines.cp2k import AIMD_V1_SETTINGS, CP2KEngine, CP2KSettings, HARTREE_EV
from ..errors import NepbenchError
from ..files import atomic_write_json
from ..provenance import hardware_info
from .agreement import (
    ENERGY_LIMIT_MEV_PER_ATOM, FORCE_RMSE_LIMIT_MEV_PER_A, STRESS_LIMIT_GPA, drift_mev_per_atom_ps, energy_difference_mev_per_atom,
    force_agreement, stress_difference_gpa, timing_report,
)
from .record import DEFAULT_RECORD, cell_key, load_record
from .variants import CASES, MD_ONLY, VARIANTS, TuningCase, TuningVariant


def label_frame(sha_prefix: str, frames: Sequence[Atoms]) -> Atoms:
    """The committed frame whose frame_sha256 starts with `sha_prefix`."""
    for atoms in frames:
        if atoms.info.get("frame_sha256", "").startswith(sha_prefix):
            return atoms
    raise NepbenchError(f"reference_data/dft: no committed frame with sha256 {sha_prefix}…")


def md_start(run: str, aimd_root: Path) -> Atoms:
    """The last committed frame of AIMD run `run` under `aimd_root` (positions and cell)."""
    path = aimd_root / run / "frames.extxyz.xz"
    if not path.is_file():
        raise NepbenchError(f"{path}: no committed AIMD frames for the MD case")
    frames = ase_read(io.StringIO(lzma.decompress(path.read_bytes()).decode()), index=":", format="extxyz")
    atoms = frames[-1]
    atoms.info = {"aimd_run": run, "step": int(atoms.info.get("step", -1))}
    return atoms


def children_cpu_s() -> float:
    """CPU time (user + system, s) of this process's finished children so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_equivalent(wall_s: float, cpu_s: float, total_wall_s: float, cores: int) -> float:
    """`wall_s` scaled by the share of its cores the run got: wall_s × cpu_s / (total_wall_s × cores).

    On a machine where other work took part of the cores, this is the time the run would have
    needed with its cores to itself (CPU time does not grow when a process waits for a core);
    on a quiet machine it equals `wall_s` up to the MPI ranks' idle waits."""
    if total_wall_s <= 0 or cores < 1:
        raise ValueError("total_wall_s must be > 0 and cores >= 1")
    return wall_s * min(1.0, cpu_s / (total_wall_s * cores))


def run_sp(engine: CP2KEngine, atoms: Atoms, workdir: Path) -> dict[str, Any]:
    """Single point of a label frame; agreement with its committed label and CP2K's timing.
    `cpu_s` is CP2K's CPU time (all ranks), the measure of cost that sharing the machine does
    not inflate."""
    from ..engines.cp2k import scf_iterations
    from ..structures import labels_of
    from ..cpu_load import other_cores_busy_while

    cpu0 = children_cpu_s()
    labels, busy = other_cores_busy_while(lambda: engine.single_point(atoms))
    cpu_s = children_cpu_s() - cpu0
    text = next(workdir.glob("sp-*/out.out")).read_text(errors="replace")
    ref_energy, ref_forces, ref_stress = labels_of(atoms)
    rmse, fmax = force_agreement(labels.forces_ev_per_a, ref_forces)
    iterations = sum(scf_iterations(text))
    stress = ({} if labels.stress_ev_per_a3 is None or ref_stress is None else
              {"stress_diff_max_gpa": stress_difference_gpa(labels.stress_ev_per_a3, ref_stress)})
    return {**stress,
        "formula": atoms.get_chemical_formula(), "n_atoms": len(atoms),
        "frame_sha256": atoms.info["frame_sha256"],
        "ref_force_rms_ev_per_a": float(np.sqrt(np.mean(np.asarray(ref_forces) ** 2))),
        "force_rmse_mev_per_a": rmse, "force_max_abs_mev_per_a": fmax,
        "energy_diff_mev_per_atom": energy_difference_mev_per_atom(labels.energy_ev, ref_energy, len(atoms)),
        "wall_s": labels.wall_s, "cpu_s": cpu_s, "scf_iterations": iterations,
        "s_per_scf_iteration": labels.wall_s / max(iterations, 1),
        "cpu_s_per_scf_iteration": cpu_s / max(iterations, 1),
        "other_cores_busy": busy, "timing_top": timing_report(text),
    }


def run_md(engine: CP2KEngine, atoms: Atoms, case: TuningCase, workdir: Path) -> dict[str, Any]:
    """NVT MD of the AIMD cell: steady-state s/step (CP2K's UsedTime after the warm-up), SCF
    iterations per timed step, and the conserved quantity's drift over the whole run."""
    from ..engines.cp2k import parse_ener
    from ..cpu_load import other_cores_busy_while

    protocol = case.protocol()
    cpu0 = children_cpu_s()
    result, busy = other_cores_busy_while(lambda: engine.md(atoms, protocol))
    cpu_s = children_cpu_s() - cpu0
    run_dir = next(workdir.glob("md-*"))
    text = (run_dir / "out.out").read_text(errors="replace")
    ener = parse_ener(next(run_dir.glob("*.ener")).read_text())
    timed = ener["step"] > protocol.warmup_steps
    per_step = [float(v) for v in ener["used_time_s"][timed]]
    slope, se = drift_mev_per_atom_ps(ener["time_fs"] / 1000.0, ener["conserved_ha"] * HARTREE_EV, len(atoms))
    return {
        "formula": atoms.get_chemical_formula(), "n_atoms": len(atoms), "start": dict(atoms.info),
        "cell_key": cell_key(atoms), "cpu_model": hardware_info().get("cpu_model"),
        "protocol": protocol.to_dict(), "s_per_step": float(np.mean(per_step)), "s_per_step_each": per_step,
        "cpu_s": cpu_s, "s_per_step_cpu_equivalent": cpu_equivalent(
            float(np.mean(per_step)), cpu_s, result.timing.total_wall_s, engine.ranks * engine.settings.omp_threads),
        "scf_iterations_per_step": result.extra.get("scf_iterations_per_timed_step"),
        "drift_mev_per_atom_ps": slope, "drift_se_mev_per_atom_ps": se,
        "wall_s": result.timing.total_wall_s, "other_cores_busy": busy, "timing_top": timing_report(text),
    }


def run_study(
    record_path: Path = DEFAULT_RECORD,
    variants: Sequence[TuningVariant] = VARIANTS,
    cases: Sequence[TuningCase] = CASES,
    frames: Sequence[Atoms] | None = None,
    aimd_root: Path = Path("reference_data/aimd"),
    base: CP2KSettings | None = None,
    log: Callable[[str], None] = print,
    engine_factory: Callable[..., CP2KEngine] = CP2KEngine,
) -> dict[str, Any]:
    """Run every (variant, case) pair not yet in the record at `record_path`, writing the record
    atomically after each; return it. Each variant's settings are `base` with its overrides, or
    its own preset's when `base` is None. A pair that CP2K rejects or fails is recorded with its
    error (one line) and the study goes on; such pairs are retried by a later run."""
    from ..reference import load_frames

    record = load_record(record_path)
    frames = list(frames) if frames is not None else None
    for variant in variants:
        try:
            settings = variant.settings(base)
        except (ValueError, TypeError) as exc:
            log(f"tune: variant {variant.name}: invalid setting ({exc}); skipped")
            continue
        for case in cases:
            if (case.kind == "sp" and variant.name in MD_ONLY) or (case.kind == "md" and variant.sp_only):
                continue
            key = f"{variant.name}|{case.name}"
            old = record["results"].get(key)
            if old is not None and not old.get("error"):
                continue
            workdir = Path(tempfile.mkdtemp(prefix="nepbench-tune-"))
            engine = engine_factory(settings, workdir=workdir, ranks=variant.ranks)
            entry: dict[str, Any] = {"variant": variant.name, "case": case.name, "kind": case.kind,
                                     "settings": settings.to_dict(), "ranks": variant.ranks,
                                     "omp_threads": settings.omp_threads}
            try:
                if case.kind == "sp":
                    if frames is None:
                        frames = load_frames()
                    entry.update(run_sp(engine, label_frame(case.frame_sha256, frames), workdir))
                else:
                    start = case.built() if case.builder else md_start(case.aimd_run, aimd_root)
                    entry.update(run_md(engine, start, case, workdir))
            except NepbenchError as exc:
                entry["error"] = str(exc).splitlines()[0][:300]
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            record["results"][key] = entry
            record.update(base_settings=(base or AIMD_V1_SETTINGS).to_dict(), cp2k=engine.version() if engine.available() else None,
                          hardware=hardware_info(), limits={"force_rmse_mev_per_a": FORCE_RMSE_LIMIT_MEV_PER_A,
                                                           "energy_mev_per_atom": ENERGY_LIMIT_MEV_PER_ATOM,
                                                           "stress_max_abs_gpa": STRESS_LIMIT_GPA})
            atomic_write_json(record_path, record)
            log(f"tune: {key}: " + (f"error: {entry['error']}" if entry.get("error") else summary_line(entry)))
    return record


def summary_line(entry: dict[str, Any]) -> str:
    """One line for a finished entry."""
    if entry["kind"] == "sp":
        stress = (f", max |Δσ| {entry['stress_diff_max_gpa']:.3f} GPa" if "stress_diff_max_gpa" in entry else "")
        return (f"{entry['wall_s']:.1f} s, {entry['scf_iterations']} SCF, ΔF {entry['force_rmse_mev_per_a']:.2f} "
                f"meV/Å RMS, ΔE {entry['energy_diff_mev_per_atom']:+.3f} meV/atom{stress}")
    return (f"{entry['s_per_step']:.2f} s/step, {entry['scf_iterations_per_step']} SCF/step, drift "
            f"{entry['drift_mev_per_atom_ps']:+.2f} ± {entry['drift_se_mev_per_atom_ps']:.2f} meV/atom/ps")
