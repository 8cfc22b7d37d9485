"""The parity task: energy, force and stress errors of a model on held-out CP2K frames (`run_parity`,
`parity_outcome`), its typed parameters (`ParityParams`) and plot data (`ParitySeries`); for a model
registered with a seed ensemble, the ensemble's force spread beside the error (docs/training.md,
"Ensemble uncertainty")."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, Sequence, TypedDict

import numpy as np
from ase import Atoms

from ..spec import TaskSpec
from ..errors import InputError, ModelError
from ..metrics.forces import energy_errors, fit_element_offsets, force_errors, parity_data, stress_errors
from ..metrics.uncertainty import ensemble_force_sigma, frame_rms, spearman_rho
from ..structures import labels_of
from . import TaskContext, TaskOutcome, cpu_engine, engine_label
from .params import TaskParams

MAX_PARITY_POINTS = 3000


def model_species(ctx: TaskContext) -> tuple[str, ...]:
    """The species of the task's model: its nep.txt header, or an ASE-calculator model's record."""
    if ctx.model_kind == "ase":
        return tuple(ctx.model_species)
    from ..models import read_nep_header

    return tuple(read_nep_header(ctx.model_path)[1])


def missing_species(frames: list[Atoms], species: tuple[str, ...]) -> list[str]:
    present = {s for atoms in frames for s in atoms.get_chemical_symbols()}
    return sorted(present - set(species))


def predict(engine: Any, frames: list[Atoms], source: str = "frames") -> list[Any]:
    """`engine`'s labels of each frame; a frame it refuses is named by `source` (its file) and index."""
    labels = []
    for index, atoms in enumerate(frames):
        try:
            labels.append(engine.single_point(atoms))
        except InputError as exc:
            raise InputError(f"{source} (frame {index})", exc.problem) from None
    return labels


#: Suffixes of per-group force metrics other than elements and motifs (`_near_train`).
RESERVED_GROUPS = frozenset({"far_from_train"})


def motif_label_problem(frames: list[Atoms]) -> str | None:
    """What is wrong with the frames' motif labels (info "motif", else "config_type"), or None:
    per-motif force metrics are named like the per-element ones (`force_rmse_mev_per_a.<group>`),
    so a motif called like an element of the frames, or like a reserved group, would overwrite them."""
    elements = {s for a in frames for s in a.get_chemical_symbols()}
    labels = {_motif(a) for a in frames}
    clash = sorted(labels & (elements | RESERVED_GROUPS))
    if clash:
        return (f"motif label(s) {', '.join(map(repr, clash))} (info 'motif' or 'config_type') name an element or "
                f"a reserved group: per-motif metrics would overwrite force_rmse_mev_per_a.<{clash[0]}>; rename them")
    return None


def _motif(atoms: Atoms) -> str:
    return str(atoms.info.get("motif", atoms.info.get("config_type", "all")))


def _counts(frames: list[Atoms], elements: list[str]) -> np.ndarray:
    return np.array([[Counter(a.get_chemical_symbols()).get(el, 0) for el in elements] for a in frames],
                    dtype=float)


def offset_corrected_energy_residuals_ev_per_atom(
        train_ref: np.ndarray, train_pred: np.ndarray, train_counts: np.ndarray,
        test_ref: np.ndarray, test_pred: np.ndarray, test_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom test residuals (eV/atom) after per-element offsets fitted on the training split.

    CP2K's GTH total energies and a NEP's energies differ by a constant per element; the offsets
    μ_el (eV/atom) are fitted by least squares on training frames (E_ref − E_pred ≈ Σ n_el μ_el) and
    applied unchanged to the held-out frames. Returns (residuals, offsets).
    """
    mu, _ = fit_element_offsets(train_ref - train_pred, train_counts)
    n_atoms = test_counts.sum(axis=1)
    return (test_pred + test_counts @ mu - test_ref) / n_atoms, mu


#: Reference sets a parity task may score: v1 (random packings and rattles, kept as the
#: far-from-equilibrium robustness set) and v2 (frames MD visits; docs/reference_v2.md).
#: A reference set: a folder of reference_data/ named "dft" or "dft-<name>" (dft-v2, an active-learning
#: round's dft-v2-al1, ...); whether it exists is checked when the task runs.
DATASET_NAME = re.compile(r"dft(-[a-z0-9]+)*")
SPLITS = ("test", "train")


@dataclass(frozen=True)
class ParityParams(TaskParams):
    """A parity task's parameters (suite `[[task]]` keys of the same names).

    split: the frames scored, "test" (held out) or "train" (the fit's own, offsets in-sample);
    motifs: the reference set's motifs scored (None: all); dataset: the reference set (DATASET_NAME).
    """

    TASK = "parity"

    split: str = "test"
    motifs: tuple[str, ...] | None = None
    dataset: str = "dft"

    @classmethod
    def problem(cls, params: dict[str, Any]) -> str | None:
        """What is wrong with `split`, `dataset` or `motifs` (a non-empty list of the reference set's
        motifs), or None."""
        from ..reference import MOTIFS

        split = params.get("split", cls.split)
        if split not in SPLITS:
            return f"split must be one of {', '.join(SPLITS)}, got {split!r}"
        dataset = params.get("dataset", cls.dataset)
        if not isinstance(dataset, str) or not DATASET_NAME.fullmatch(dataset):
            return f"dataset must be 'dft' or 'dft-<name>' (a folder of reference_data/), got {dataset!r}"
        motifs = params.get("motifs")
        if motifs is not None:
            if not isinstance(motifs, list) or not motifs or not all(isinstance(m, str) for m in motifs):
                return f"motifs must be a non-empty list of motif names, got {motifs!r}"
            unknown = sorted(set(motifs) - set(MOTIFS))
            if unknown:
                return f"unknown motif(s) {', '.join(unknown)} (known: {', '.join(MOTIFS)})"
        return None


#: Parameters a parity task reads, and what is wrong with their values (one line) or None: the suite
#: loader checks a suite file's tasks with them.
TASK_PARAMS = ParityParams.names()
check_params = ParityParams.check


class ForceParity(TypedDict):
    """One element's force components in the parity plot (eV/Å; at most MAX_PARITY_POINTS drawn)."""

    ref: list[float]
    pred: list[float]
    rmse_mev_per_a: NotRequired[float]  # over every component, not only those drawn (older records lack it)
    n_components: NotRequired[int]  # every component's count (older records lack it)
    motif: NotRequired[list[str]]  # the motif of each component drawn: no task writes it yet


class MotifForces(TypedDict):
    """Force RMSE (meV/Å) over one motif's test frames."""

    force_rmse_mev_per_a: float
    n_frames: int


class EnergyParity(TypedDict):
    """Energies per atom (eV/atom) of the test frames, the model's after the per-element offsets."""

    ref: list[float]
    pred: list[float]


class EnsembleSpread(TypedDict):
    """The seed ensemble on the scored frames, one value per frame in the frames' order (meV/Å):
    the spread σ (RMS over the frame's atoms of the per-atom σ) and the registered model's force
    RMSE (over the frame's force components); `members` counts member 0 (the registered model) in."""

    frame_sigma_mev_per_a: list[float]
    frame_force_rmse_mev_per_a: list[float]
    frame_motif: list[str]  # each frame's motif (info "motif", else "config_type", else "all")
    members: int


class ParitySeries(TypedDict):
    """A parity record's `series` (numpy arrays when written, lists when read back from JSON)."""

    forces: dict[str, ForceParity]  # element → its components
    per_motif: dict[str, MotifForces]
    ensemble: NotRequired[EnsembleSpread]  # only for a model registered with ensemble members
    energy: NotRequired[EnergyParity]  # absent where the energy offsets cannot be fitted
    energy_offsets_ev_per_atom: NotRequired[dict[str, float]]  # element → offset, likewise


def offset_fit_problem(fit_counts: np.ndarray, test_counts: np.ndarray, elements: list[str],
                       in_sample: bool) -> str | None:
    """Why per-element energy offsets fitted on frames with `fit_counts` would not give honest
    per-atom energy errors on frames with `test_counts` (atoms per element, columns `elements`);
    None when they would.

    Three ways: an element of the test frames is absent from the fit (its offset would silently stay
    0); the test compositions are not combinations of the fitted ones (the fit cannot tell the
    offsets they need apart); or, fitted in-sample, no more frames than independent offsets (the
    fit would absorb the errors and report 0).
    """
    n_fit = fit_counts.shape[0]
    absent = [el for j, el in enumerate(elements) if test_counts[:, j].any() and not fit_counts[:, j].any()]
    if absent:
        return (f"energy offsets cannot be fitted for {', '.join(absent)}: absent from the {n_fit} frame(s) "
                "they are fitted on")
    fit_rows = fit_counts / fit_counts.sum(axis=1, keepdims=True)
    test_rows = test_counts / test_counts.sum(axis=1, keepdims=True)
    rank = int(np.linalg.matrix_rank(fit_rows))
    if int(np.linalg.matrix_rank(np.vstack([fit_rows, test_rows]))) > rank:
        return (f"the {n_fit} frame(s) the energy offsets are fitted on span {rank} independent "
                f"composition(s), too few to tell apart the offsets of the test frames' {len(elements)} elements")
    if in_sample and n_fit <= rank:
        return (f"energy offsets fitted in-sample on {n_fit} frame(s) with {rank} independent composition(s): "
                "the fit would absorb the energy errors; give more frames than elements, or frames with split=train")
    return None


def run_parity(spec: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    """Energy, force and stress errors of the model on the reference set's held-out split (a NEP on
    nep_cpu, an ASE-calculator comparator on ase_calc: same frames, same per-element offset fit)."""
    from ..reference import load_frames

    p = ParityParams.from_params(spec.params)
    data_dir = ctx.reference_dir / p.dataset
    test = load_frames(data_dir, split=p.split, motifs=p.motifs)
    train = load_frames(data_dir, split="train", motifs=p.motifs)
    lacking = missing_species(test + train, model_species(ctx))
    if lacking:
        return TaskOutcome("not_applicable", reason=f"model {ctx.model_name} lacks species "
                           f"{', '.join(lacking)} present in the reference data")
    # split = "train" scores the fit's own frames: parity_outcome sees the shared frames and fits in-sample
    what = "CP2K training frames" if p.split == "train" else "held-out CP2K frames"
    engine = cpu_engine(ctx)
    return parity_outcome(engine, test, train, f"{len(test)} {what} ({p.split} split)", str(data_dir),
                          ensemble=member_engines(ensemble_paths(ctx), engine))


def ensemble_paths(ctx: TaskContext) -> tuple[Path, ...]:
    """The files of the further seed-ensemble members (1..K-1) of the task's model, as its registry
    table lists them (`ensemble`), each checked (`models.ensemble_member_paths`); () for a model
    without one (a NEP given as a file, a downloaded NEP, an ASE-calculator comparator).

    Raises:
        ModelError naming the registry: its table now registers another file than the one the task
            runs (re-registered during the run), so its ensemble is not this model's.
    """
    if ctx.model_kind != "nep" or ctx.model_source.get("kind") != "local" or not ctx.model_name:
        return ()
    from ..models import ensemble_member_paths, load_registry

    record = load_registry().get(ctx.model_name)
    if record is None or not record.ensemble:
        return ()
    if record.sha256 != ctx.model_sha256:
        raise ModelError(f"{record.registry_file}: [models.{record.name}] now registers sha256 "
                         f"{record.sha256[:12]}…, not the {str(ctx.model_sha256)[:12]}… this task runs, so its "
                         "ensemble belongs to another model; run again")
    return ensemble_member_paths(record)


def member_engines(paths: Sequence[Path], engine: Any) -> list[Any]:
    """A NEP_CPU engine per ensemble member file, with the thread count of `engine` (member 0's)."""
    if not paths:
        return []
    from ..engines import nep_cpu  # looked up on the module at call time, so a test's stand-in takes its place

    threads = getattr(engine, "threads", None)
    return [nep_cpu.NepCpuEngine(path) if threads is None else nep_cpu.NepCpuEngine(path, threads=threads)
            for path in paths]


def _shared_frames(a: list[Atoms], b: list[Atoms]) -> bool:
    """Whether a structure (same species in the same order, same positions and cell) is in both lists."""
    def key(atoms: Atoms) -> bytes:
        return atoms.numbers.tobytes() + atoms.get_positions().tobytes() + np.asarray(atoms.cell).tobytes()

    return bool({key(x) for x in a} & {key(x) for x in b})


#: A test frame closer than this (Å, RMS in fractional coordinates: `metrics.similarity`) to a
#: training frame is a rattled or strained copy of a training parent, not a held-out structure. On
#: the committed set such pairs sit 0.09–0.29 Å apart and every other test frame ≥ 1.37 Å from any
#: training frame (2026-11-28).
NEAR_TRAIN_A = 0.5


def _near_train(test: list[Atoms], train: list[Atoms], ref_f: np.ndarray, pred_f: np.ndarray,
                symbols: list[str], metrics: dict[str, float], units: dict[str, str]) -> str:
    """Records how many test frames lie within NEAR_TRAIN_A of a training frame
    (`n_test_frames_near_train`) and the force RMSE (meV/Å) over the others
    (`force_rmse_mev_per_a.far_from_train`); returns the method's words on it ("" when none is near)."""
    from ..metrics.similarity import nearest_distances_a

    near = nearest_distances_a(test, train) < NEAR_TRAIN_A
    metrics["n_test_frames_near_train"] = float(near.sum())
    units["n_test_frames_near_train"] = f"frames (within {NEAR_TRAIN_A} Å RMS of a training frame)"
    if not near.any():
        return ""
    text = (f"; {int(near.sum())} of {len(test)} test frames lie within {NEAR_TRAIN_A} Å (RMS, fractional "
            "coordinates) of a training frame (rattled or strained copies of one parent)")
    if near.all():
        return text + ": none is far from the training set"
    far_atoms = np.concatenate([np.full(len(a), not n) for a, n in zip(test, near)])
    far = force_errors(ref_f[far_atoms], pred_f[far_atoms], [s for s, f in zip(symbols, far_atoms) if f])
    metrics["force_rmse_mev_per_a.far_from_train"] = far.rmse_mev_per_a
    units["force_rmse_mev_per_a.far_from_train"] = "meV/Å"
    return text + f"; force RMSE over the other {int((~near).sum())}: {far.rmse_mev_per_a:.0f} meV/Å"


def parity_outcome(engine: Any, test: list[Atoms], train: list[Atoms] | None, what: str,
                   source: str = "frames", ensemble: Sequence[Any] = ()) -> TaskOutcome:
    """Parity metrics and plot data (`ParitySeries`) of `engine` on labelled `test` frames.

    Per-element energy offsets are fitted on `train` (another split of the same data) and applied
    to `test`; with `train=None`, or a `train` that shares a structure with `test`, they are fitted
    on `test` itself (in-sample, stated in the method, and refused with too few frames).
    Frames without a "motif" in their info count as motif "all". `source` names the frames' file
    in errors: a frame the engine refuses, or motif labels that clash with element names.
    `ensemble`: engines of the model's further seed-ensemble members (`engine` is member 0); with
    any, the ensemble's force spread joins the metrics and series (`_ensemble_metrics`).
    """
    problem = motif_label_problem(test)
    if problem:
        raise InputError(source, problem)
    if train and _shared_frames(test, train):  # the fit would see scored frames: in-sample, and said so
        train = None
    offsets_from = train if train else test
    test_pred = predict(engine, test, source)
    train_pred = predict(engine, train, source) if train else test_pred

    ref_f = np.concatenate([labels_of(a)[1] for a in test])
    pred_f = np.concatenate([lab.forces_ev_per_a for lab in test_pred])
    symbols = [s for a in test for s in a.get_chemical_symbols()]
    motif_of = [_motif(a) for a in test]
    atom_motifs = [m for a, m in zip(test, motif_of) for _ in range(len(a))]
    ferr = force_errors(ref_f, pred_f, symbols, atom_motifs)
    metrics: dict[str, float] = {
        "force_rmse_mev_per_a": ferr.rmse_mev_per_a, "force_mae_mev_per_a": ferr.mae_mev_per_a,
        "force_r2": ferr.r2, "dft_force_rms_mev_per_a": ferr.ref_rms_mev_per_a,
        "force_max_abs_error_mev_per_a": ferr.max_abs_error_mev_per_a,
        "n_test_frames": float(len(test)), "n_frames_for_offsets": float(len(offsets_from)),
    }
    units = {"force_rmse_mev_per_a": "meV/Å", "force_mae_mev_per_a": "meV/Å",
             "dft_force_rms_mev_per_a": "meV/Å", "energy_rmse_mev_per_atom": "meV/atom",
             "energy_mae_mev_per_atom": "meV/atom", "force_r2": "",
             "force_max_abs_error_mev_per_a": "meV/Å", "n_test_frames": "frames", "n_frames_for_offsets": "frames"}
    reasons: dict[str, str] = {}
    problem, energy_series = _energy_metrics(test, test_pred, offsets_from, train_pred, not train, metrics, units,
                                             reasons)
    _group_force_metrics(ferr, motif_of, metrics, units)
    _stress_metrics(test, test_pred, metrics, units, reasons)
    series = _parity_series(ferr, ref_f, pred_f, symbols, motif_of)
    series.update(energy_series)
    offsets = (f"offsets fitted on {len(offsets_from)} training frames" if train
               else "offsets fitted on the same frames (in-sample)")
    energies = f"energies not compared ({problem})" if problem else f"energies per atom after per-element {offsets}"
    nearness = _near_train(test, train, ref_f, pred_f, symbols, metrics, units) if train else ""
    spread = _ensemble_metrics(ensemble, test, ref_f, pred_f, source, metrics, units, reasons, series, motif_of) \
        if ensemble else ""
    method = (f"{what}; force components over all atoms; {energies}{nearness}{spread}; "
              f"{engine_label(engine)} via {engine.version()}")
    return TaskOutcome("done", metrics=metrics, metric_units=units, series=series, method=method,
                       engines={getattr(engine, "name", "nep_cpu"): engine.version()}, seed=0, metric_reasons=reasons)


def _ensemble_metrics(ensemble: Sequence[Any], test: list[Atoms], ref_f: np.ndarray, pred_f: np.ndarray,
                      source: str, metrics: dict[str, float], units: dict[str, str], reasons: dict[str, str],
                      series: ParitySeries, motif_of: list[str]) -> str:
    """The seed ensemble's force spread on the test frames beside the registered model's error.

    Every member in `ensemble` predicts the test frames; with the registered model's forces
    `pred_f` (member 0, eV/Å) they give per atom σ_i = sqrt(mean over x, y, z of the across-member
    variance, ddof 1) (`metrics.uncertainty.ensemble_force_sigma`). Into `metrics`:
    `force_sigma_rms_mev_per_a` (RMS of σ_i over all test atoms), `ensemble_members` (M, member 0
    included) and `force_sigma_error_spearman` (Spearman's ρ between each frame's σ, the RMS over
    its atoms, and the registered model's force RMSE on it, against `ref_f`), or in `reasons` why ρ
    is undefined (fewer than 3 frames, a constant σ or error); the per-frame values, with each
    frame's motif (`motif_of`), into `series["ensemble"]` (`EnsembleSpread`). Returns the method's
    words on it.
    """
    sizes = [len(a) for a in test]
    members = [np.concatenate([lab.forces_ev_per_a for lab in predict(e, test, source)]) for e in ensemble]
    sigma = ensemble_force_sigma(np.stack([pred_f, *members]))
    frame_sigma = 1000.0 * frame_rms(sigma, sizes)
    frame_error = 1000.0 * frame_rms(np.sqrt(np.mean((pred_f - ref_f) ** 2, axis=1)), sizes)
    rho = spearman_rho(frame_sigma, frame_error)
    n_members = len(members) + 1
    metrics["force_sigma_rms_mev_per_a"] = 1000.0 * float(np.sqrt(np.mean(sigma ** 2)))
    metrics["ensemble_members"] = float(n_members)
    units.update({"force_sigma_rms_mev_per_a": "meV/Å", "ensemble_members": "models",
                  "force_sigma_error_spearman": "Spearman ρ (per-frame σ vs force RMSE)"})
    if np.isfinite(rho):
        metrics["force_sigma_error_spearman"] = rho
        rho_text = f"ρ = {rho:.2f}"
    else:
        reasons["force_sigma_error_spearman"] = (f"Spearman's ρ is undefined over {len(test)} frame(s): it needs "
                                                 "3 or more, with σ and error not constant")
        rho_text = "ρ undefined"
    series["ensemble"] = {"frame_sigma_mev_per_a": frame_sigma.tolist(),
                          "frame_force_rmse_mev_per_a": frame_error.tolist(), "frame_motif": list(motif_of),
                          "members": n_members}
    return (f"; ensemble uncertainty from {n_members} seed-ensemble members (member 0 the registered model): per "
            "atom σ = sqrt(mean over x, y, z of the across-member force variance, ddof 1), RMS over all test atoms; "
            f"per frame σ (RMS over its atoms) vs the registered model's force RMSE, Spearman {rho_text}")


def _energy_metrics(test: list[Atoms], test_pred: list[Any], offsets_from: list[Atoms], offsets_pred: list[Any],
                    in_sample: bool, metrics: dict[str, float], units: dict[str, str],
                    reasons: dict[str, str]) -> tuple[str | None, dict[str, Any]]:
    """Per-atom energy errors (meV/atom) of the test frames after per-element offsets fitted on
    `offsets_from` (predicted `offsets_pred`), into `metrics`; where the fit cannot give honest errors
    (`offset_fit_problem`) the reason goes to `reasons` instead (the forces stand). Also the RMSE with
    offsets fitted on the test frames themselves, given more frames than elements. Returns (the fit's
    problem or None, the energy blocks of the series)."""
    elements = sorted({s for a in offsets_from + test for s in a.get_chemical_symbols()})
    e_ref_test = np.array([labels_of(a)[0] for a in test])
    e_pred_test = np.array([lab.energy_ev for lab in test_pred])
    fit_counts, test_counts = _counts(offsets_from, elements), _counts(test, elements)
    energy_series: dict[str, Any] = {}
    problem = offset_fit_problem(fit_counts, test_counts, elements, in_sample=in_sample)
    if problem:  # forces stand; the energy errors would be an artefact of the offsets
        reasons.update({"energy_rmse_mev_per_atom": problem, "energy_mae_mev_per_atom": problem})
    else:
        residual, mu = offset_corrected_energy_residuals_ev_per_atom(
            np.array([labels_of(a)[0] for a in offsets_from]), np.array([lab.energy_ev for lab in offsets_pred]),
            fit_counts, e_ref_test, e_pred_test, test_counts)
        metrics["energy_rmse_mev_per_atom"] = 1000 * float(np.sqrt(np.mean(residual**2)))
        metrics["energy_mae_mev_per_atom"] = 1000 * float(np.mean(np.abs(residual)))
        n_atoms = np.array([len(a) for a in test])
        energy_series = {"energy": {"ref": e_ref_test / n_atoms, "pred": (e_pred_test + test_counts @ mu) / n_atoms},
                         "energy_offsets_ev_per_atom": dict(zip(elements, mu.tolist()))}
    if len(test) > len(elements):
        in_sample_errors = energy_errors(e_ref_test, e_pred_test, [len(a) for a in test],
                                         [Counter(a.get_chemical_symbols()) for a in test])
        metrics["energy_rmse_in_sample_offsets_mev_per_atom"] = in_sample_errors.offset_corrected_rmse_mev_per_atom
        units["energy_rmse_in_sample_offsets_mev_per_atom"] = "meV/atom"
    return problem, energy_series


def _group_force_metrics(ferr: Any, motif_of: list[str], metrics: dict[str, float], units: dict[str, str]) -> None:
    """Force RMSE per element, the relative RMSE, and per motif its RMSE, DFT force RMS, relative RMSE
    and frame count (`force_errors` result `ferr`; `motif_of`: each test frame's motif)."""
    for el, stats in ferr.per_element.items():
        metrics[f"force_rmse_mev_per_a.{el}"] = stats.rmse_mev_per_a
        units[f"force_rmse_mev_per_a.{el}"] = "meV/Å"
    metrics["force_relative_rmse"] = ferr.overall.relative_rmse
    units["force_relative_rmse"] = "RMSE / DFT force RMS"
    for motif, stats in ferr.per_motif.items():
        metrics[f"force_rmse_mev_per_a.{motif}"] = stats.rmse_mev_per_a
        metrics[f"dft_force_rms_mev_per_a.{motif}"] = stats.ref_rms_mev_per_a
        metrics[f"force_relative_rmse.{motif}"] = stats.relative_rmse
        metrics[f"n_test_frames.{motif}"] = float(motif_of.count(motif))
        units.update({f"force_rmse_mev_per_a.{motif}": "meV/Å", f"dft_force_rms_mev_per_a.{motif}": "meV/Å",
                      f"force_relative_rmse.{motif}": "RMSE / DFT force RMS", f"n_test_frames.{motif}": "frames"})


def _stress_metrics(test: list[Atoms], test_pred: list[Any], metrics: dict[str, float], units: dict[str, str],
                    reasons: dict[str, str]) -> None:
    """Stress RMSE and MAE (GPa) over the test frames with a DFT stress, or the reason there are none."""
    stressed = [(labels_of(a)[2], lab.stress_ev_per_a3) for a, lab in zip(test, test_pred)
                if labels_of(a)[2] is not None and lab.stress_ev_per_a3 is not None]
    if stressed:
        serr = stress_errors(np.array([s[0] for s in stressed]), np.array([s[1] for s in stressed]))
        metrics["stress_rmse_gpa"] = serr.rmse_gpa
        metrics["stress_mae_gpa"] = serr.mae_gpa
        metrics["n_stress_frames"] = float(len(stressed))  # frames without a DFT stress are left out
        units.update({"stress_rmse_gpa": "GPa", "stress_mae_gpa": "GPa", "n_stress_frames": "frames"})
    else:  # said, not left blank
        reasons["stress_rmse_gpa"] = ("no scored frame has a DFT stress (a 'stress', or a 'virial' on a "
                                      "periodic cell, in its info or results)"
                                      if all(labels_of(a)[2] is None for a in test) else "the engine gave no stress")


def _parity_series(ferr: Any, ref_f: np.ndarray, pred_f: np.ndarray, symbols: list[str],
                   motif_of: list[str]) -> ParitySeries:
    """The force blocks of the series: the points drawn (at most MAX_PARITY_POINTS per element) with
    the recorded RMSE over all of them, and the RMSE per motif."""
    parity = parity_data(ref_f, pred_f, symbols, MAX_PARITY_POINTS, seed=0)
    return {
        "forces": {el: {"ref": d.ref_ev_per_a, "pred": d.pred_ev_per_a,
                        "rmse_mev_per_a": ferr.per_element[el].rmse_mev_per_a,
                        "n_components": 3 * ferr.per_element[el].n_atoms} for el, d in parity.items()},
        "per_motif": {m: {"force_rmse_mev_per_a": s.rmse_mev_per_a, "n_frames": motif_of.count(m)}
                      for m, s in ferr.per_motif.items()},
    }
