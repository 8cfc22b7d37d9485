"""When per-element energy offsets give honest per-atom energy errors (tasks/accuracy.offset_fit_problem)."""

from __future__ import annotations

import numpy as np
import pytest

from nepbench.tasks.accuracy import offset_fit_problem

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
