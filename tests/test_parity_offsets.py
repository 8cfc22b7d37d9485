"""When per-element energy offsets give honest per-atom energy errors (tasks/parity.offset_fit_problem)."""

from __future__ import annotations

import numpy as np
import pytest

from nepbench.tasks.parity import offset_fit_problem

ELEMENTS = ["C", "Li", "Si"]


def counts(*rows: tuple[int, int, int]) -> np.ndarray:
    return np.array(rows, dtype=float)


def test_varied_training_compositions_are_fine() -> None:
    fit = counts((0, 10, 10), (0, 30, 10), (20, 4, 0), (8, 8, 8))
    assert offset_fit_problem(fit, counts((0, 20, 12), (6, 2, 24)), ELEMENTS, in_sample=False) is None


def test_an_element_missing_from_the_fit_is_named() -> None:
    problem = offset_fit_problem(counts((24, 0, 0), (16, 0, 0)), counts((0, 20, 12)), ELEMENTS, in_sample=False)
    assert problem is not None and "cannot be fitted for Li, Si" in problem and "2 frame(s)" in problem


def test_compositions_outside_the_fitted_span_cannot_be_told_apart() -> None:
    """Every training frame is LiSi (1:1): only the sum of the Li and Si offsets is fitted, which
    serves LiSi test frames but not Li3Si ones."""
    fit = counts((0, 10, 10), (0, 16, 16), (0, 12, 12))
    assert offset_fit_problem(fit, counts((0, 8, 8)), ELEMENTS, in_sample=False) is None
    problem = offset_fit_problem(fit, counts((0, 24, 8)), ELEMENTS, in_sample=False)
    assert problem is not None and "span 1 independent composition(s)" in problem


@pytest.mark.parametrize("n_frames, flagged", [(2, True), (3, False)])
def test_in_sample_needs_more_frames_than_independent_offsets(n_frames: int, flagged: bool) -> None:
    fit = counts((0, 10, 10), (0, 30, 10), (0, 12, 20))[:n_frames]
    problem = offset_fit_problem(fit, fit, ELEMENTS, in_sample=True)
    assert (problem is not None) == flagged
    # the same frames as a separate training split are an honest (if noisy) fit
    assert offset_fit_problem(fit, counts((0, 20, 12)), ELEMENTS, in_sample=False) is None


# ------------------------------------------------------------------ parity_outcome on known errors

from ase import Atoms  # noqa: E402

from nepbench.engines.base import Labels  # noqa: E402
from nepbench.errors import InputError  # noqa: E402
from nepbench.structures import with_labels  # noqa: E402
from nepbench.tasks.parity import parity_outcome  # noqa: E402

MU = {"C": -1.25, "Li": 0.75, "Si": 3.5}  # eV/atom: what the DFT energies sit above the model's


class _Linear:
    """A stand-in model: energy = Σ x-coordinates (eV), forces 0.1·positions (eV/Å)."""

    def single_point(self, atoms):
        if atoms.info.get("refuse"):
            raise InputError("<structure>", "refused by this stand-in")
        return Labels(float(atoms.positions[:, 0].sum()), 0.1 * atoms.positions, None, 0.0)

    def version(self):
        return "linear 1.0"


def _frame(symbols: str, seed: int, error_ev_per_atom: float = 0.0, motif: str = "amorphous") -> Atoms:
    """A labelled frame: the stand-in's energy + Σ n_el μ_el + a known per-atom error; forces 0.1 eV/Å off."""
    atoms = Atoms(symbols, positions=np.random.default_rng(seed).uniform(0, 6, (len(Atoms(symbols)), 3)),
                  cell=np.eye(3) * 6, pbc=True)
    model = _Linear().single_point(atoms)
    energy = model.energy_ev + sum(MU[s] for s in atoms.get_chemical_symbols()) + len(atoms) * error_ev_per_atom
    labelled = with_labels(atoms, energy, model.forces_ev_per_a + 0.1, None)
    labelled.info["motif"] = motif
    return labelled


def test_the_held_out_energy_error_is_the_one_left_after_the_fitted_offsets():
    """Every parity test labelled frames with the model itself, so the offsets were 0 and a sign
    error in them passed: here the training split fixes μ exactly and the test frames carry known errors."""
    train = [_frame(s, i) for i, s in enumerate(["Li2Si2", "LiSi3", "C4Li", "C2Si2", "Li3SiC"])]
    errors = np.array([0.010, -0.020, 0.005])
    test = [_frame(s, 10 + i, e) for i, (s, e) in enumerate(zip(["Li3Si", "CSi2", "LiC3"], errors))]
    outcome = parity_outcome(_Linear(), test, train, "3 frames")
    assert outcome.series["energy_offsets_ev_per_atom"] == pytest.approx(MU, abs=1e-9)
    assert outcome.metrics["energy_rmse_mev_per_atom"] == pytest.approx(1000 * np.sqrt(np.mean(errors**2)))
    assert outcome.metrics["energy_mae_mev_per_atom"] == pytest.approx(1000 * np.mean(np.abs(errors)))
    energy = outcome.series["energy"]
    assert np.asarray(energy["ref"]) - np.asarray(energy["pred"]) == pytest.approx(errors)
    assert outcome.metrics["force_rmse_mev_per_a"] == pytest.approx(100.0)
    assert "stress_rmse_gpa" not in outcome.metrics  # no frame carries a stress, and the record says so
    assert outcome.metric_reasons["stress_rmse_gpa"].startswith("no scored frame has a DFT stress")


def test_a_motif_named_like_an_element_is_refused_naming_the_file():
    """Per-motif metrics share force_rmse_mev_per_a.<group> with per-element ones: frames whose
    config_type was "Li" overwrote the Li force RMSE with the motif's."""
    train = [_frame(s, i) for i, s in enumerate(["Li2Si2", "LiSi3", "C4Li", "C2Si2"])]
    test = [_frame("Li3Si", 10, motif="Li"), _frame("CSi2", 11)]
    with pytest.raises(InputError, match=r"^data\.extxyz: motif label\(s\) 'Li' \(info 'motif' or 'config_type'\)"):
        parity_outcome(_Linear(), test, train, "2 frames", "data.extxyz")
    test[0].info["motif"] = "far_from_train"
    with pytest.raises(InputError, match="'far_from_train'"):
        parity_outcome(_Linear(), test, train, "2 frames", "data.extxyz")


def test_a_frame_the_engine_refuses_is_named_by_file_and_index():
    train = [_frame(s, i) for i, s in enumerate(["Li2Si2", "LiSi3", "C4Li", "C2Si2"])]
    test = [_frame("Li3Si", 10), _frame("CSi2", 11)]
    test[1].info["refuse"] = True
    with pytest.raises(InputError) as exc:
        parity_outcome(_Linear(), test, train, "2 frames", "data.extxyz")
    assert str(exc.value) == "data.extxyz (frame 1): refused by this stand-in"  # was "<structure>: ..."
