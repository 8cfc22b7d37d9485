"""How close a held-out frame is to the frames a model was fitted on.

A random split within a reference family can put a rattled or strained copy of one crystal on both
sides: such a test frame measures interpolation between training frames, not held-out accuracy.
`rms_distance_a` compares two frames of the same atoms in the same order in fractional coordinates
(so a homogeneous strain of one cell against the other counts as no displacement, and periodic
images are taken into account); `nearest_distances_a` gives each test frame's distance to its
nearest training frame. Distances in Å.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms


def rms_distance_a(a: Atoms, b: Atoms) -> float | None:
    """Root-mean-square displacement (Å) between two frames of the same species in the same order,
    or None when they are not comparable (other species, order or atom count).

    Fractional coordinates of `a` and `b` are differenced, wrapped to [−½, ½) along periodic
    directions, and turned back into Å with `a`'s cell, so a strained copy of a structure is at
    distance ≈ 0 from it whatever the strain.
    """
    if len(a) != len(b) or not np.array_equal(a.numbers, b.numbers):
        return None
    frac_a = np.linalg.solve(a.cell.array.T, a.positions.T).T
    frac_b = np.linalg.solve(b.cell.array.T, b.positions.T).T
    delta = frac_a - frac_b
    periodic = np.asarray(a.pbc, dtype=bool) & np.asarray(b.pbc, dtype=bool)
    delta[:, periodic] -= np.round(delta[:, periodic])
    return float(np.sqrt(np.mean(np.sum((delta @ a.cell.array) ** 2, axis=1))))


def nearest_distances_a(test: Sequence[Atoms], train: Sequence[Atoms]) -> np.ndarray:
    """Per test frame, `rms_distance_a` (Å) to its nearest comparable training frame; inf where no
    training frame has the same species in the same order."""
    out = np.full(len(test), np.inf)
    for i, frame in enumerate(test):
        distances = [d for other in train if (d := rms_distance_a(frame, other)) is not None]
        if distances:
            out[i] = min(distances)
    return out
