"""CP2K tuning study: which CP2K settings reproduce the committed labels fastest.

Each *variant* is the untuned AIMD preset (`engines.cp2k.AIMD_V1_SETTINGS`) with a few levers
changed that keep the level of theory (PBE, GTH pseudopotentials, the MOLOPT basis family, 500 K
Fermi smearing). Each *case* is either a committed DFT label frame computed as a single point
(forces and energy compared with the label) or the AIMD cell run as NVT MD (wall time per step
after the ASPC extrapolation has warmed up, SCF iterations per step, conserved-quantity drift).

The record (`reference_data/studies/cp2k_tuning.json`) holds one entry per (variant, case): the
settings, wall times, SCF iterations, CP2K's own timing report (top routines by self time), how
busy the machine's other cores were, and the agreement with the label. Finished entries are kept,
so an interrupted study resumes; a variant CP2K rejects is recorded with its error and the study
goes on. `accept` turns the entries of one variant into a verdict (pure).

Units: forces meV/Å, energies meV/atom, times s, drift meV/atom/ps.
"""

from __future__ import annotations

import dataclasses
import json
import lzma
import io
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms
from ase.io import read as ase_read

from .engines.base import MDProtocol
from .engines.cp2k import AIMD_V1_SETTINGS, CP2KEngine, CP2KSettings, HARTREE_EV
from .errors import NepbenchError
from .provenance import atomic_write_json, hardware_info

DEFAULT_RECORD = Path("reference_data/studies/cp2k_tuning.json")
DEFAULT_RECORD_ABS = Path(__file__).resolve().parents[2] / DEFAULT_RECORD
"""The committed record, wherever the process runs from."""

FORCE_RMSE_LIMIT_MEV_PER_A = 5.0
"""Largest accepted RMS force difference from the committed labels, per frame (meV/Å)."""
ENERGY_LIMIT_MEV_PER_ATOM = 0.5
"""Largest accepted |energy difference| from the committed labels, per frame (meV/atom)."""


@dataclass(frozen=True)
class TuningVariant:
    """One candidate setting: `overrides` of the base settings, run on `ranks` MPI ranks.

    Attributes:
        name: short id used as the record key.
        overrides: CP2KSettings fields changed from the base (omp_threads among them).
        ranks: MPI ranks.
        note: what the variant tests, in a few words.
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    ranks: int = 1
    note: str = ""

    def settings(self, base: CP2KSettings = AIMD_V1_SETTINGS) -> CP2KSettings:
        """The base settings with this variant's overrides (ValueError for an invalid value)."""
        return dataclasses.replace(base, **self.overrides)


@dataclass(frozen=True)
class TuningCase:
    """One cell of the study: a committed label frame ("sp") or the AIMD cell as NVT MD ("md").

    Attributes:
        name: record key, e.g. "sp:amorphous".
        kind: "sp" or "md".
        frame_sha256: prefix of the committed label frame's sha256 ("sp").
        aimd_run: committed AIMD run whose last frame starts the MD ("md").
        temperature_k, timestep_fs: the MD's thermostat temperature (K) and time step (fs).
        warmup_steps: MD steps before timing starts (the ASPC extrapolation fills its history).
        timed_steps: MD steps timed after the warm-up.
        builder, builder_params, seed: an "md" case built by `nepbench.systems` instead of read
            from an AIMD run (the throughput task's cells, for CP2K's cost against N).
        coupling_fs: CSVR time constant (fs).
    """

    name: str
    kind: str
    frame_sha256: str = ""
    aimd_run: str = ""
    temperature_k: float = 1200.0
    timestep_fs: float = 2.0
    warmup_steps: int = 4
    timed_steps: int = 6
    builder: str = ""
    builder_params: tuple[tuple[str, Any], ...] = ()
    seed: int = 0
    coupling_fs: float = 50.0

    def protocol(self) -> MDProtocol:
        """The MD protocol of an "md" case (NVT CSVR, seed `seed`)."""
        return MDProtocol(ensemble="nvt", temperature_k=self.temperature_k, timestep_fs=self.timestep_fs,
                          steps=self.timed_steps, sample_interval=1, seed=self.seed,
                          thermostat_coupling_fs=self.coupling_fs, warmup_steps=self.warmup_steps)

    def built(self) -> Atoms:
        """The case's cell from its builder."""
        from . import systems

        return systems.build(self.builder, seed=self.seed, **dict(self.builder_params))


@dataclass(frozen=True)
class Verdict:
    """Whether a variant is accepted, and why not when it is not.

    Attributes:
        accepted: every label frame agrees within the limits and the MD drift is no worse than
            the baseline's.
        reasons: one line per failed condition (empty when accepted).
        complete: every case of the study has an entry for this variant.
    """

    accepted: bool
    reasons: tuple[str, ...]
    complete: bool


# --------------------------------------------------------------------------------------------
# Pure metrics
# --------------------------------------------------------------------------------------------


def force_agreement(forces: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(RMS, max |component|) of forces − reference, both (N, 3) in eV/Å; returned in meV/Å."""
    diff = np.asarray(forces, dtype=float) - np.asarray(reference, dtype=float)
    if diff.shape != np.shape(reference) or diff.ndim != 2 or diff.shape[1] != 3:
        raise ValueError(f"forces of shape {np.shape(forces)} do not match reference {np.shape(reference)}")
    return float(np.sqrt(np.mean(diff ** 2)) * 1000.0), float(np.abs(diff).max() * 1000.0)


def energy_difference_mev_per_atom(energy_ev: float, reference_ev: float, n_atoms: int) -> float:
    """(energy − reference) / n_atoms in meV/atom."""
    if n_atoms < 1:
        raise ValueError("n_atoms must be >= 1")
    return (energy_ev - reference_ev) / n_atoms * 1000.0


def drift_mev_per_atom_ps(time_ps: np.ndarray, conserved_ev: np.ndarray, n_atoms: int) -> tuple[float, float]:
    """(slope, standard error) of a least-squares line through the conserved quantity, meV/atom/ps."""
    t = np.asarray(time_ps, dtype=float)
    e = np.asarray(conserved_ev, dtype=float) / n_atoms * 1000.0
    if t.size < 3:
        raise ValueError("a drift needs at least 3 points")
    design = np.vstack([t, np.ones_like(t)]).T
    coef, residual, *_ = np.linalg.lstsq(design, e, rcond=None)
    dof = t.size - 2
    sigma2 = float(residual[0]) / dof if residual.size and dof > 0 else 0.0
    se = float(np.sqrt(sigma2 / np.sum((t - t.mean()) ** 2)))
    return float(coef[0]), se


def accept(entries: Sequence[dict[str, Any]], baseline_md: dict[str, Any] | None, n_cases: int,
           force_limit: float = FORCE_RMSE_LIMIT_MEV_PER_A,
           energy_limit: float = ENERGY_LIMIT_MEV_PER_ATOM) -> Verdict:
    """Verdict on one variant from its study entries.

    A label frame passes with RMS ΔF ≤ `force_limit` (meV/Å) and |ΔE| ≤ `energy_limit` (meV/atom).
    The MD passes when |drift| ≤ |baseline drift| + 2·sqrt(se² + se_baseline²): no worse than the
    untuned preset's within the two fits' noise. An entry with an error fails; a variant with no
    MD entry is judged on its frames and marked incomplete.
    """
    reasons: list[str] = []
    for entry in entries:
        case = entry["case"]
        if entry.get("error"):
            reasons.append(f"{case}: CP2K failed ({entry['error']})")
        elif entry["kind"] == "sp":
            if entry["force_rmse_mev_per_a"] > force_limit:
                reasons.append(f"{case}: force RMSE {entry['force_rmse_mev_per_a']:.2f} meV/Å > {force_limit:g}")
            if abs(entry["energy_diff_mev_per_atom"]) > energy_limit:
                reasons.append(f"{case}: |ΔE| {abs(entry['energy_diff_mev_per_atom']):.3f} meV/atom > {energy_limit:g}")
        elif entry["kind"] == "md" and baseline_md is not None and not baseline_md.get("error"):
            slope, se = entry["drift_mev_per_atom_ps"], entry["drift_se_mev_per_atom_ps"]
            b_slope, b_se = baseline_md["drift_mev_per_atom_ps"], baseline_md["drift_se_mev_per_atom_ps"]
            bound = abs(b_slope) + 2.0 * float(np.hypot(se, b_se))
            if abs(slope) > bound:
                reasons.append(f"{case}: drift {slope:+.2f} meV/atom/ps beyond the baseline's bound {bound:.2f}")
    return Verdict(accepted=not reasons and bool(entries), reasons=tuple(reasons), complete=len(entries) >= n_cases)


def speedup(baseline_s: float, variant_s: float) -> float:
    """baseline_s / variant_s (how many times faster the variant is); nan for a non-positive time."""
    return float(baseline_s / variant_s) if baseline_s > 0 and variant_s > 0 else float("nan")


_TIMING_ROW = re.compile(r"^\s(\S+)\s+(\d+)\s+(\d+\.\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


def timing_report(text: str, top: int = 8) -> list[dict[str, Any]]:
    """The `top` routines of CP2K's timing report by maximum self time: name, calls, self and
    total time in s. Empty when the output has no timing report."""
    start = text.rfind("T I M I N G")
    if start < 0:
        return []
    rows = []
    for line in text[start:].splitlines()[1:]:
        match = _TIMING_ROW.match(line)
        if match:
            name, calls, _asd, _self_avg, self_max, _tot_avg, tot_max = match.groups()
            rows.append({"routine": name, "calls": int(calls), "self_s": float(self_max), "total_s": float(tot_max)})
        elif rows and line.strip().startswith("---"):
            break
    rows.sort(key=lambda r: -r["self_s"])
    return rows[:top]


# --------------------------------------------------------------------------------------------
# The study's variants and cases
# --------------------------------------------------------------------------------------------

#: Label frames, one per motif: the committed frame of lowest DFT force RMS (the nearest to
#: equilibrium, so the most like frames MD visits), by frame_sha256 prefix.
SP_CASES: tuple[TuningCase, ...] = (
    TuningCase("sp:amorphous", "sp", frame_sha256="a932b165b3e2"),     # a-LixSi Li30Si8, 0.45 eV/Å
    TuningCase("sp:crystalline", "sp", frame_sha256="f6b37bfece0f"),   # Li15Si4 Li30Si8, 0.22 eV/Å
    TuningCase("sp:interfacial", "sp", frame_sha256="d11fca5bef7b"),   # Si|C-lithiated C25Li6Si16, 1.40 eV/Å
    TuningCase("sp:strained", "sp", frame_sha256="5094620f368e"),      # a-LixSi Li24Si8, 0.39 eV/Å
)
#: The AIMD cell (Li24Si8, 32 atoms) from the last committed frame of a-Li3Si-1200K.
MD_CASE = TuningCase("md:Li24Si8-1200K", "md", aimd_run="a-Li3Si-1200K")
CASES: tuple[TuningCase, ...] = SP_CASES + (MD_CASE,)


def scaling_case(n_atoms: int) -> TuningCase:
    """CP2K's cost at `n_atoms`: the throughput task's cell (a-LixSi, x = 2, seed 7) built with
    `n_atoms`, NVT at 900 K with a 1 fs step, 2 warm-up and 3 timed steps (the throughput task's
    own CP2K window is 1 + 2)."""
    return TuningCase(f"md:a-Li2Si-{n_atoms}", "md", temperature_k=900.0, timestep_fs=1.0, warmup_steps=2,
                      timed_steps=3, builder="a-LixSi", builder_params=(("x", 2.0), ("n_atoms", int(n_atoms))),
                      seed=7, coupling_fs=100.0)


#: CP2K's cost against N (the speed-up as a function of N): run for the baseline and the adopted preset.
SCALING_CASES: tuple[TuningCase, ...] = tuple(scaling_case(n) for n in (32, 64, 96))


def cached_md_timing(record: dict[str, Any], atoms: Atoms, settings: CP2KSettings, cpu_model: str,
                     ranks: int = 1) -> dict[str, Any] | None:
    """The study's MD entry for this very cell (species, positions to 1e-6 Å, cell) run with
    `settings` on `ranks` ranks on a CPU named `cpu_model`, or None: CP2K's cost is reused only
    where it was measured on the same kind of machine."""
    want = json.loads(json.dumps(settings.to_dict()))
    key = cell_key(atoms)
    for entry in record.get("results", {}).values():
        if (entry.get("kind") == "md" and not entry.get("error") and entry.get("cell_key") == key
                and entry.get("settings") == want and entry.get("ranks") == ranks
                and entry.get("cpu_model") == cpu_model):
            return entry
    return None


def cell_key(atoms: Atoms) -> str:
    """sha256 of a cell's species, positions (1e-6 Å) and cell vectors."""
    from .provenance import content_hash

    return content_hash({"numbers": atoms.numbers.tolist(), "positions": np.round(atoms.positions, 6).tolist(),
                         "cell": np.round(atoms.cell.array, 6).tolist()})

E9R40 = {"eps_default": 1e-9, "rel_cutoff_ry": 40.0}
#: Variants in the order the study runs them; the first is the untuned baseline. The levers are
#: compared on one MPI rank (the other core stays free for other work; costs are CPU times, which
#: sharing the machine does not inflate); the `-2x1` / `-1x2` variants compare core layouts on both
#: cores of a quiet machine. EPS_DEFAULT 1e-8 moved energies by 0.65 meV/atom on the first frame
#: (beyond the 0.5 limit), so the other levers sit on EPS_DEFAULT 1e-9.
VARIANTS: tuple[TuningVariant, ...] = (
    TuningVariant("baseline", {}, note="untuned AIMD preset, 1 rank"),
    TuningVariant("e8", {"eps_default": 1e-8}, note="EPS_DEFAULT 1e-8"),
    TuningVariant("e9", {"eps_default": 1e-9}, note="EPS_DEFAULT 1e-9"),
    TuningVariant("e9-r40", E9R40, note="EPS_DEFAULT 1e-9, REL_CUTOFF 40"),
    TuningVariant("e3e9-r40", {**E9R40, "eps_default": 3e-9}, note="EPS_DEFAULT 3e-9, REL_CUTOFF 40"),
    TuningVariant("e9-r40-ng3", {**E9R40, "ngrids": 3}, note="… NGRIDS 3"),
    TuningVariant("e9-r40-elpa", {**E9R40, "diag_library": "ELPA"}, note="… ELPA diagonalisation"),
    TuningVariant("e9-r40-pulay", {**E9R40, "mixing_method": "PULAY_MIXING"}, note="… Pulay mixing"),
    TuningVariant("e9-r40-c350", {**E9R40, "cutoff_ry": 350.0}, note="… CUTOFF 350 Ry"),
    TuningVariant("e9-r40-nonsr", {**E9R40, "basis_set": "DZVP-MOLOPT-GTH"},
                  note="… DZVP-MOLOPT-GTH (non-SR) basis"),
    TuningVariant("e9-r40-aspc4", {**E9R40, "extrapolation_order": 4}, note="… ASPC order 4 (MD only)"),
    TuningVariant("baseline-2x1", {}, ranks=2, note="untuned AIMD preset, 2 ranks × 1 thread"),
    TuningVariant("e9-r40-2x1", E9R40, ranks=2, note="EPS_DEFAULT 1e-9, REL_CUTOFF 40, 2 ranks × 1 thread"),
    TuningVariant("e9-r40-1x2", {**E9R40, "omp_threads": 2}, note="… 1 rank × 2 OpenMP threads"),
)
#: Variants measured on the MD case alone: extrapolation only acts in MD, and the core layouts
#: change the speed, not the numbers (same settings as a variant whose frames are measured).
MD_ONLY = {"e9-r40-aspc4", "baseline-2x1", "e9-r40-2x1", "e9-r40-1x2"}
#: Which 1-rank variant's frames stand for an MD-only variant in the verdict.
FRAMES_FROM = {"e9-r40-aspc4": "e9-r40", "baseline-2x1": "baseline", "e9-r40-2x1": "e9-r40",
               "e9-r40-1x2": "e9-r40"}


def variant_by_name(name: str) -> TuningVariant:
    """The study variant called `name`; KeyError naming the known ones otherwise."""
    for variant in VARIANTS:
        if variant.name == name:
            return variant
    raise KeyError(f"unknown tuning variant {name!r} (known: {', '.join(v.name for v in VARIANTS)})")


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def load_record(path: Path) -> dict[str, Any]:
    """The study record at `path` (empty when absent); NepbenchError naming the file when unreadable."""
    if not path.is_file():
        return {"results": {}}
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NepbenchError(f"{path}: unreadable tuning record ({exc})") from None
    if not isinstance(record.get("results"), dict):
        raise NepbenchError(f"{path}: tuning record has no 'results' mapping")
    return record


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
    from .engines.cp2k import scf_iterations
    from .structures import labels_of
    from .tasks.throughput import other_cores_busy_while

    cpu0 = children_cpu_s()
    labels, busy = other_cores_busy_while(lambda: engine.single_point(atoms))
    cpu_s = children_cpu_s() - cpu0
    text = next(workdir.glob("sp-*/out.out")).read_text(errors="replace")
    ref_energy, ref_forces, _ = labels_of(atoms)
    rmse, fmax = force_agreement(labels.forces_ev_per_a, ref_forces)
    iterations = sum(scf_iterations(text))
    return {
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
    from .engines.cp2k import parse_ener
    from .tasks.throughput import other_cores_busy_while

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
    base: CP2KSettings = AIMD_V1_SETTINGS,
    log: Callable[[str], None] = print,
    engine_factory: Callable[..., CP2KEngine] = CP2KEngine,
) -> dict[str, Any]:
    """Run every (variant, case) pair not yet in the record at `record_path`, writing the record
    atomically after each; return it. A pair that CP2K rejects or fails is recorded with its error
    (one line) and the study goes on; such pairs are retried by a later run."""
    from .reference import load_frames

    record = load_record(record_path)
    frames = list(frames) if frames is not None else None
    for variant in variants:
        try:
            settings = variant.settings(base)
        except (ValueError, TypeError) as exc:
            log(f"tune: variant {variant.name}: invalid setting ({exc}); skipped")
            continue
        for case in cases:
            if case.kind == "sp" and variant.name in MD_ONLY:
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
            record.update(base_settings=base.to_dict(), cp2k=engine.version() if engine.available() else None,
                          hardware=hardware_info(), limits={"force_rmse_mev_per_a": FORCE_RMSE_LIMIT_MEV_PER_A,
                                                           "energy_mev_per_atom": ENERGY_LIMIT_MEV_PER_ATOM})
            atomic_write_json(record_path, record)
            log(f"tune: {key}: " + (f"error: {entry['error']}" if entry.get("error") else summary_line(entry)))
    return record


def summary_line(entry: dict[str, Any]) -> str:
    """One line for a finished entry."""
    if entry["kind"] == "sp":
        return (f"{entry['wall_s']:.1f} s, {entry['scf_iterations']} SCF, ΔF {entry['force_rmse_mev_per_a']:.2f} "
                f"meV/Å RMS, ΔE {entry['energy_diff_mev_per_atom']:+.3f} meV/atom")
    return (f"{entry['s_per_step']:.2f} s/step, {entry['scf_iterations_per_step']} SCF/step, drift "
            f"{entry['drift_mev_per_atom_ps']:+.2f} ± {entry['drift_se_mev_per_atom_ps']:.2f} meV/atom/ps")


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantSummary:
    """One variant's study results, summarised.

    Attributes:
        name: variant name.
        note: what it tests.
        sp_wall_s: mean single-point cost over the label frames (`sp_cost_s`, s), None without any.
        s_per_scf_iteration: mean single-point cost per SCF iteration (s).
        force_rmse_max_mev_per_a: largest per-frame RMS force difference from the labels (meV/Å).
        energy_max_mev_per_atom: largest per-frame |ΔE| from the labels (meV/atom).
        md_s_per_step: steady-state MD cost per step on the AIMD cell (`md_cost_s`, s), None without it.
        md_scf_per_step: SCF iterations per timed MD step.
        drift_mev_per_atom_ps: conserved-quantity drift of the MD (meV/atom/ps).
        md_speedup: baseline MD s/step ÷ this variant's.
        sp_speedup: baseline mean single-point wall ÷ this variant's.
        verdict: `accept`'s verdict.
        cores: cores the variant occupies (ranks × threads).
    """

    name: str
    note: str
    sp_wall_s: float | None
    s_per_scf_iteration: float | None
    force_rmse_max_mev_per_a: float | None
    energy_max_mev_per_atom: float | None
    md_s_per_step: float | None
    md_scf_per_step: float | None
    drift_mev_per_atom_ps: float | None
    md_speedup: float | None
    sp_speedup: float | None
    verdict: Verdict
    cores: int = 1


def sp_cost_s(entry: dict[str, Any]) -> float:
    """A single point's cost: CP2K's CPU time (s), or its wall time in records without one."""
    return float(entry.get("cpu_s", entry["wall_s"]))


def md_cost_s(entry: dict[str, Any]) -> float:
    """An MD step's cost: the CPU-equivalent s/step (`cpu_equivalent`), or the wall s/step."""
    return float(entry.get("s_per_step_cpu_equivalent", entry["s_per_step"]))


def cores_of(variant: TuningVariant) -> int:
    """Cores a variant occupies: MPI ranks × OpenMP threads."""
    return variant.ranks * int(variant.overrides.get("omp_threads", 1))


def summarise(record: dict[str, Any], variants: Sequence[TuningVariant] = VARIANTS,
              cases: Sequence[TuningCase] = CASES, baseline: str = "baseline",
              baseline_2core: str = "baseline-2x1") -> list[VariantSummary]:
    """Per-variant summaries of a study record, in `variants` order (variants with no entry left out).

    Speed-ups compare like with like: single points over the frames both variants finished, MD
    against the baseline on as many cores (`baseline` on one, `baseline_2core` on two). An MD-only
    variant (`MD_ONLY`) is judged on the frames of the variant `FRAMES_FROM` names (same numbers)."""
    results = record["results"]
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for entry in results.values():
        by_variant.setdefault(entry["variant"], []).append(entry)

    md_cases = {c.name for c in cases if c.kind == "md"}

    def good_md(name: str) -> dict[str, Any] | None:
        return next((e for e in by_variant.get(name, [])
                     if e["kind"] == "md" and e["case"] in md_cases and not e.get("error")), None)

    base_sp = {e["case"]: e for e in by_variant.get(baseline, []) if e["kind"] == "sp" and not e.get("error")}
    out = []
    for variant in variants:
        own = by_variant.get(variant.name)
        if not own:
            continue
        frames_source = FRAMES_FROM.get(variant.name, variant.name)
        frame_entries = [e for e in by_variant.get(frames_source, []) if e["kind"] == "sp"]
        entries = frame_entries + [e for e in own if e["kind"] == "md" and e["case"] in md_cases]
        sps = [e for e in frame_entries if not e.get("error")]
        md = good_md(variant.name)
        base_md = good_md(baseline_2core if cores_of(variant) == 2 else baseline)
        drift_base = good_md(baseline)
        shared = [e for e in sps if e["case"] in base_sp]
        sp_speed = (speedup(sum(sp_cost_s(base_sp[e["case"]]) for e in shared), sum(sp_cost_s(e) for e in shared))
                    if shared and variant.name not in MD_ONLY else None)
        out.append(VariantSummary(
            name=variant.name, note=variant.note,
            sp_wall_s=float(np.mean([sp_cost_s(e) for e in sps])) if sps and variant.name not in MD_ONLY else None,
            s_per_scf_iteration=(float(np.mean([sp_cost_s(e) / max(e["scf_iterations"], 1) for e in sps]))
                                 if sps and variant.name not in MD_ONLY else None),
            force_rmse_max_mev_per_a=max((e["force_rmse_mev_per_a"] for e in sps), default=None),
            energy_max_mev_per_atom=max((abs(e["energy_diff_mev_per_atom"]) for e in sps), default=None),
            md_s_per_step=md_cost_s(md) if md else None,
            md_scf_per_step=md["scf_iterations_per_step"] if md else None,
            drift_mev_per_atom_ps=md["drift_mev_per_atom_ps"] if md else None,
            md_speedup=speedup(md_cost_s(base_md), md_cost_s(md)) if md and base_md else None,
            sp_speedup=sp_speed,
            verdict=accept(entries, drift_base if variant.name not in (baseline, baseline_2core) else None,
                           len(cases)),
            cores=cores_of(variant),
        ))
    return out


def fastest_accepted(summaries: Sequence[VariantSummary], cores: int = 1) -> VariantSummary | None:
    """The accepted variant on `cores` cores with an MD measurement and the lowest MD s/step
    (None when none)."""
    timed = [s for s in summaries if s.verdict.accepted and s.md_s_per_step is not None and s.cores == cores]
    return min(timed, key=lambda s: s.md_s_per_step) if timed else None


def scaling_table(record: dict[str, Any], variants: Sequence[str]) -> str:
    """CP2K's MD cost against N (the `SCALING_CASES`) for `variants`, with the fitted exponent of
    s/step ∝ N^b per variant (markdown)."""
    from .metrics.throughput import fit_scaling_exponent

    lines = ["| variant | N | CPU-equiv. s/step | SCF/step |", "|---|---|---|---|"]
    fits = []
    for name in variants:
        rows = sorted((e for e in record["results"].values() if e["variant"] == name and not e.get("error")
                       and e["case"].startswith("md:a-Li2Si-")), key=lambda e: e["n_atoms"])
        for e in rows:
            lines.append(f"| {name} | {e['n_atoms']} | {md_cost_s(e):.2f} | {e['scf_iterations_per_step']} |")
        if len(rows) >= 2:
            b, _, err = fit_scaling_exponent([e["n_atoms"] for e in rows], [md_cost_s(e) for e in rows])
            fits.append(f"{name}: s/step ∝ N^{b:.2f}" + (f" ± {err:.2f}" if np.isfinite(err) else ""))
    return "\n".join(lines + ([""] + fits if fits else []))


def markdown_table(summaries: Sequence[VariantSummary]) -> str:
    """The study's table for docs/cp2k_settings.md."""
    def fmt(value: float | None, spec: str) -> str:
        return "–" if value is None or not np.isfinite(value) else format(value, spec)

    lines = ["| variant | what changes | SP CPU (s) | CPU s/SCF it. | max ΔF RMS (meV/Å) | max \\|ΔE\\| (meV/atom) "
             "| MD s/step (CPU-equiv.) | SCF/step | drift (meV/atom/ps) | MD speed-up | SP speed-up | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        verdict = "accepted" if s.verdict.accepted else ("rejected: " + "; ".join(s.verdict.reasons) if s.verdict.reasons else "–")
        if not s.verdict.complete:
            verdict += " (incomplete)"
        lines.append(f"| {s.name} | {s.note} | {fmt(s.sp_wall_s, '.1f')} | {fmt(s.s_per_scf_iteration, '.2f')} "
                     f"| {fmt(s.force_rmse_max_mev_per_a, '.2f')} | {fmt(s.energy_max_mev_per_atom, '.3f')} "
                     f"| {fmt(s.md_s_per_step, '.2f')} | {fmt(s.md_scf_per_step, '.1f')} "
                     f"| {fmt(s.drift_mev_per_atom_ps, '+.2f')} | {fmt(s.md_speedup, '.2f')}× "
                     f"| {fmt(s.sp_speedup, '.2f')}× | {verdict} |")
    return "\n".join(lines)
