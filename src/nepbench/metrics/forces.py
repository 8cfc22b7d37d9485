"""Errors of predicted energies, forces and stresses against reference (CP2K DFT) labels.

Pure functions: arrays in, frozen dataclasses out; no I/O. Inputs are in ASE units (eV, eV/Å,
eV/Å³); results carry their unit in every field name (meV/Å, meV/atom, GPa).

Conventions (see docs/metrics.md):
- Force RMSE/MAE are over Cartesian *components* (the NEP/GPUMD convention), not over force-vector
  norms: RMSE = sqrt(mean over atoms and x, y, z of (F_pred - F_ref)^2).
- The headline energy error is the *offset-corrected* per-atom RMSE: CP2K (GTH pseudopotentials) and
  a NEP trained on VASP data have different per-element reference energies, so a per-element offset
  mu_el is fitted by least squares (E_ref - E_pred ~ sum_el n_el mu_el) before the RMSE is taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import units

_COMPONENTS = ("x", "y", "z")
_VOIGT = ("xx", "yy", "zz", "yz", "xz", "xy")


def _finite(name: str, values: object, ndim: int | None = None) -> np.ndarray:
    """`values` as a float array; ValueError if empty, non-finite or of the wrong rank."""
    arr = np.asarray(values, dtype=float)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _forces_pair(ref: object, pred: object) -> tuple[np.ndarray, np.ndarray]:
    ref_arr = _finite("ref_forces_ev_per_a", ref, ndim=2)
    pred_arr = _finite("pred_forces_ev_per_a", pred, ndim=2)
    if ref_arr.shape[1] != 3:
        raise ValueError(f"forces must have shape (n_atoms, 3), got {ref_arr.shape}")
    if ref_arr.shape != pred_arr.shape:
        raise ValueError(f"shape mismatch: ref {ref_arr.shape} vs pred {pred_arr.shape}")
    return ref_arr, pred_arr


def _labels(name: str, labels: Sequence[str], n: int) -> np.ndarray:
    arr = np.asarray([str(s) for s in labels])
    if arr.shape != (n,):
        raise ValueError(f"{name} must have one entry per atom ({n}), got {arr.shape[0]}")
    return arr


def _r2(ref: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res/SS_tot (NaN when the reference is constant)."""
    ss_tot = float(np.sum((ref - ref.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((pred - ref) ** 2)) / ss_tot


@dataclass(frozen=True)
class ForceStats:
    """Component-wise force error statistics over one group of atoms.

    Attributes:
        rmse_mev_per_a: sqrt(mean((F_pred - F_ref)^2)) over atoms and components, meV/Å.
        mae_mev_per_a: mean(|F_pred - F_ref|) over atoms and components, meV/Å.
        ref_rms_mev_per_a: sqrt(mean(F_ref^2)), the scale of the DFT forces, meV/Å.
        r2: coefficient of determination of the components (NaN if the reference is constant).
        n_atoms: atoms in the group.
    """

    rmse_mev_per_a: float
    mae_mev_per_a: float
    ref_rms_mev_per_a: float
    r2: float
    n_atoms: int

    @property
    def relative_rmse(self) -> float:
        """RMSE / reference RMS (dimensionless; NaN if all reference forces are zero)."""
        if self.ref_rms_mev_per_a == 0.0:
            return float("nan")
        return self.rmse_mev_per_a / self.ref_rms_mev_per_a


def _force_stats(ref: np.ndarray, pred: np.ndarray) -> ForceStats:
    diff = pred - ref
    return ForceStats(
        rmse_mev_per_a=1000.0 * float(np.sqrt(np.mean(diff**2))),
        mae_mev_per_a=1000.0 * float(np.mean(np.abs(diff))),
        ref_rms_mev_per_a=1000.0 * float(np.sqrt(np.mean(ref**2))),
        r2=_r2(ref, pred),
        n_atoms=int(ref.shape[0]),
    )


@dataclass(frozen=True)
class ForceErrors:
    """Force errors of a model against reference labels.

    Attributes:
        overall: statistics over every atom and component (the headline numbers).
        max_abs_error_mev_per_a: largest |F_pred - F_ref| component, meV/Å.
        per_element: statistics per chemical symbol.
        per_component: statistics per Cartesian component ("x", "y", "z"); n_atoms counts atoms.
        per_motif: statistics per motif family label (empty when no motifs were given).
    """

    overall: ForceStats
    max_abs_error_mev_per_a: float
    per_element: dict[str, ForceStats]
    per_component: dict[str, ForceStats]
    per_motif: dict[str, ForceStats] = field(default_factory=dict)

    @property
    def rmse_mev_per_a(self) -> float:
        return self.overall.rmse_mev_per_a

    @property
    def mae_mev_per_a(self) -> float:
        return self.overall.mae_mev_per_a

    @property
    def r2(self) -> float:
        return self.overall.r2

    @property
    def ref_rms_mev_per_a(self) -> float:
        return self.overall.ref_rms_mev_per_a


def force_errors(
    ref_forces_ev_per_a: np.ndarray,
    pred_forces_ev_per_a: np.ndarray,
    symbols: Sequence[str],
    motifs: Sequence[str] | None = None,
) -> ForceErrors:
    """Force RMSE/MAE (meV/Å), R² and DFT force RMS, overall and per element/component/motif.

    Args:
        ref_forces_ev_per_a: (n_atoms, 3) reference forces in eV/Å; atoms of all frames concatenated.
        pred_forces_ev_per_a: (n_atoms, 3) predicted forces in eV/Å, same order.
        symbols: chemical symbol of each row.
        motifs: optional motif family label of each row (e.g. "c-Si", "LixSi", "graphite"),
            usually the label of the structure the atom belongs to.

    Raises:
        ValueError: on empty input, NaN/inf, or mismatched shapes/lengths.
    """
    ref, pred = _forces_pair(ref_forces_ev_per_a, pred_forces_ev_per_a)
    n = ref.shape[0]
    sym = _labels("symbols", symbols, n)
    per_element = {el: _force_stats(ref[sym == el], pred[sym == el]) for el in dict.fromkeys(sym)}
    per_component = {c: _force_stats(ref[:, k], pred[:, k]) for k, c in enumerate(_COMPONENTS)}
    per_motif: dict[str, ForceStats] = {}
    if motifs is not None:
        mot = _labels("motifs", motifs, n)
        per_motif = {m: _force_stats(ref[mot == m], pred[mot == m]) for m in dict.fromkeys(mot)}
    return ForceErrors(
        overall=_force_stats(ref, pred),
        max_abs_error_mev_per_a=1000.0 * float(np.max(np.abs(pred - ref))),
        per_element=per_element,
        per_component=per_component,
        per_motif=per_motif,
    )


@dataclass(frozen=True)
class EnergyErrors:
    """Per-atom energy errors of a model against reference energies.

    The number a report uses is `offset_corrected_rmse_mev_per_atom` (see module docstring).

    Attributes:
        raw_rmse_mev_per_atom: RMSE of (E_pred - E_ref)/n_atoms, meV/atom, no correction.
        raw_mae_mev_per_atom: MAE of the same, meV/atom.
        offset_corrected_rmse_mev_per_atom: RMSE of per-atom residuals after subtracting the
            fitted per-element offsets, meV/atom.
        offset_corrected_mae_mev_per_atom: MAE of those residuals, meV/atom.
        offsets_ev: fitted mu_el in eV per atom of element el, with E_ref - E_pred ~ sum n_el mu_el.
        offsets_identifiable: False when the compositions do not span every element independently
            (e.g. one fixed stoichiometry): the residual RMSE is still valid, but the individual
            offsets are only the minimum-norm solution.
        offset_fit_dof: n_structures minus the rank of the composition matrix (>= 1).
        composition_mean_rmse_mev_per_atom: alternative: RMSE of per-atom energies measured from
            each set's own mean over structures of identical composition (groups of >= 2), meV/atom;
            None when no composition occurs twice.
        n_structures: number of structures.
    """

    raw_rmse_mev_per_atom: float
    raw_mae_mev_per_atom: float
    offset_corrected_rmse_mev_per_atom: float
    offset_corrected_mae_mev_per_atom: float
    offsets_ev: dict[str, float]
    offsets_identifiable: bool
    offset_fit_dof: int
    composition_mean_rmse_mev_per_atom: float | None
    n_structures: int

    @property
    def reported_rmse_mev_per_atom(self) -> float:
        """The energy error the report uses: the offset-corrected per-atom RMSE, meV/atom."""
        return self.offset_corrected_rmse_mev_per_atom


def fit_element_offsets(
    delta_energies_ev: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, int]:
    """Least-squares per-element offsets mu (eV/atom) with delta_E ~ counts @ mu.

    The fit minimises the sum of squared *per-atom* residuals (rows divided by n_atoms), so the
    offsets are the ones that minimise the reported per-atom RMSE.

    Args:
        delta_energies_ev: (n_structures,) E_ref - E_pred in eV.
        counts: (n_structures, n_elements) atoms of each element per structure.

    Returns:
        (mu_ev, rank): offsets in eV per atom of each element (minimum-norm solution when the
        composition matrix is rank-deficient) and that matrix's rank.
    """
    delta = _finite("delta_energies_ev", delta_energies_ev, ndim=1)
    cnt = _finite("counts", counts, ndim=2)
    if cnt.shape[0] != delta.shape[0]:
        raise ValueError(f"{cnt.shape[0]} composition rows for {delta.shape[0]} energies")
    n_atoms = cnt.sum(axis=1)
    if np.any(n_atoms <= 0) or np.any(cnt < 0):
        raise ValueError("every structure needs a positive number of atoms and counts >= 0")
    mu, _, rank, _ = np.linalg.lstsq(cnt / n_atoms[:, None], delta / n_atoms, rcond=None)
    return mu, int(rank)


def energy_errors(
    ref_energies_ev: Sequence[float] | np.ndarray,
    pred_energies_ev: Sequence[float] | np.ndarray,
    n_atoms: Sequence[int] | np.ndarray,
    compositions: Sequence[Mapping[str, int]],
) -> EnergyErrors:
    """Per-atom energy RMSE/MAE (meV/atom): raw, offset-corrected, and relative to composition means.

    Args:
        ref_energies_ev: (n_structures,) reference total energies in eV.
        pred_energies_ev: (n_structures,) predicted total energies in eV.
        n_atoms: (n_structures,) atoms per structure.
        compositions: per structure, {element: count}; counts must add up to n_atoms.

    Raises:
        ValueError: on empty/NaN input, mismatched lengths, compositions that do not add up, or
            too few structures to fit the offsets (n_structures <= rank of the compositions).
    """
    ref = _finite("ref_energies_ev", ref_energies_ev, ndim=1)
    pred = _finite("pred_energies_ev", pred_energies_ev, ndim=1)
    nat = _finite("n_atoms", n_atoms, ndim=1)
    if not (ref.shape == pred.shape == nat.shape) or len(compositions) != ref.shape[0]:
        raise ValueError(
            f"length mismatch: ref {ref.shape[0]}, pred {pred.shape[0]}, n_atoms {nat.shape[0]}, "
            f"compositions {len(compositions)}"
        )
    if np.any(nat <= 0) or np.any(nat != np.round(nat)):
        raise ValueError("n_atoms must be positive integers")
    elements = sorted({el for comp in compositions for el in comp})
    counts = np.array([[comp.get(el, 0) for el in elements] for comp in compositions], dtype=float)
    if np.any(counts < 0):
        raise ValueError("composition counts must be >= 0")
    bad = np.nonzero(counts.sum(axis=1) != nat)[0]
    if bad.size:
        raise ValueError(f"composition of structure {bad[0]} does not add up to n_atoms")

    delta = ref - pred
    raw_per_atom = -delta / nat  # (E_pred - E_ref)/N
    mu, rank = fit_element_offsets(delta, counts)
    dof = ref.shape[0] - rank
    if dof < 1:
        raise ValueError(
            f"{ref.shape[0]} structures cannot fit offsets for {rank} independent compositions: "
            "need more structures than independent compositions"
        )
    corrected = (delta - counts @ mu) / nat

    groups: dict[tuple[float, ...], list[int]] = {}
    for i, row in enumerate(counts):
        groups.setdefault(tuple(row), []).append(i)
    dev: list[np.ndarray] = []
    for idx in groups.values():
        if len(idx) >= 2:
            e_ref = ref[idx] / nat[idx]
            e_pred = pred[idx] / nat[idx]
            dev.append((e_pred - e_pred.mean()) - (e_ref - e_ref.mean()))
    comp_rmse = 1000.0 * float(np.sqrt(np.mean(np.concatenate(dev) ** 2))) if dev else None
    return EnergyErrors(
        raw_rmse_mev_per_atom=1000.0 * float(np.sqrt(np.mean(raw_per_atom**2))),
        raw_mae_mev_per_atom=1000.0 * float(np.mean(np.abs(raw_per_atom))),
        offset_corrected_rmse_mev_per_atom=1000.0 * float(np.sqrt(np.mean(corrected**2))),
        offset_corrected_mae_mev_per_atom=1000.0 * float(np.mean(np.abs(corrected))),
        offsets_ev={el: float(m) for el, m in zip(elements, mu)},
        offsets_identifiable=rank == len(elements),
        offset_fit_dof=int(dof),
        composition_mean_rmse_mev_per_atom=comp_rmse,
        n_structures=int(ref.shape[0]),
    )


@dataclass(frozen=True)
class StressErrors:
    """Stress errors over all Voigt components of all structures.

    Attributes:
        rmse_gpa: sqrt(mean((s_pred - s_ref)^2)) over structures and the 6 components, GPa.
        mae_gpa: mean(|s_pred - s_ref|), GPa.
        per_component_rmse_gpa: RMSE per Voigt component ("xx", "yy", "zz", "yz", "xz", "xy"), GPa.
        n_structures: number of structures.
    """

    rmse_gpa: float
    mae_gpa: float
    per_component_rmse_gpa: dict[str, float]
    n_structures: int


def stress_errors(ref_stress_ev_per_a3: np.ndarray, pred_stress_ev_per_a3: np.ndarray) -> StressErrors:
    """Stress RMSE/MAE in GPa from Voigt stresses in eV/Å³ (ASE order xx, yy, zz, yz, xz, xy).

    Args:
        ref_stress_ev_per_a3: (n_structures, 6) or (6,) reference stresses in eV/Å³.
        pred_stress_ev_per_a3: same shape, predicted.

    Raises:
        ValueError: on empty/NaN input or shapes that are not (n, 6) and equal.
    """
    ref = _finite("ref_stress_ev_per_a3", np.atleast_2d(np.asarray(ref_stress_ev_per_a3, float)), 2)
    pred = _finite("pred_stress_ev_per_a3", np.atleast_2d(np.asarray(pred_stress_ev_per_a3, float)), 2)
    if ref.shape[1] != 6 or ref.shape != pred.shape:
        raise ValueError(f"stresses must both be (n, 6) Voigt arrays, got {ref.shape} and {pred.shape}")
    diff_gpa = (pred - ref) / units.GPa
    return StressErrors(
        rmse_gpa=float(np.sqrt(np.mean(diff_gpa**2))),
        mae_gpa=float(np.mean(np.abs(diff_gpa))),
        per_component_rmse_gpa={
            c: float(np.sqrt(np.mean(diff_gpa[:, k] ** 2))) for k, c in enumerate(_VOIGT)
        },
        n_structures=int(ref.shape[0]),
    )


@dataclass(frozen=True)
class ParityData:
    """Force components of one element for a parity plot.

    Attributes:
        ref_ev_per_a: (m,) reference force components, eV/Å.
        pred_ev_per_a: (m,) predicted force components, eV/Å (same order).
        n_total: components available before subsampling (3 x atoms of the element).
    """

    ref_ev_per_a: np.ndarray
    pred_ev_per_a: np.ndarray
    n_total: int


def parity_data(
    ref_forces_ev_per_a: np.ndarray,
    pred_forces_ev_per_a: np.ndarray,
    symbols: Sequence[str],
    max_points_per_element: int = 5000,
    seed: int = 0,
) -> dict[str, ParityData]:
    """Per-element reference/predicted force components for parity plots, at most N points each.

    Subsampling is deterministic: a seeded random choice without replacement (random rather
    than strided so that lattice ordering of atoms cannot alias), kept in input order.

    Args:
        ref_forces_ev_per_a: (n_atoms, 3) reference forces, eV/Å.
        pred_forces_ev_per_a: (n_atoms, 3) predicted forces, eV/Å.
        symbols: chemical symbol of each row.
        max_points_per_element: most components kept per element (>= 1).
        seed: seed of the subsampling.
    """
    ref, pred = _forces_pair(ref_forces_ev_per_a, pred_forces_ev_per_a)
    sym = _labels("symbols", symbols, ref.shape[0])
    if max_points_per_element < 1:
        raise ValueError("max_points_per_element must be >= 1")
    out: dict[str, ParityData] = {}
    for el in sorted(set(sym)):
        r = ref[sym == el].ravel()
        p = pred[sym == el].ravel()
        if r.size > max_points_per_element:
            rng = np.random.default_rng(seed)
            keep = np.sort(rng.choice(r.size, max_points_per_element, replace=False))
            r, p = r[keep], p[keep]
        out[el] = ParityData(ref_ev_per_a=r.copy(), pred_ev_per_a=p.copy(), n_total=int(ref[sym == el].size))
    return out
