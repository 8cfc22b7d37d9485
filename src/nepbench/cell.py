"""Geometry of a periodic cell (rows = cell vectors, Å). Pure functions, no I/O."""

from __future__ import annotations

import numpy as np


def cell_thicknesses_a(cell_a: np.ndarray) -> np.ndarray:
    """Perpendicular widths of a cell in Å: its volume over the area of each pair of opposite faces.

    Half the smallest width is the largest radius within which the minimum image is unique.

    Raises:
        ValueError: a cell that is not a finite (3, 3) array, or has zero volume.
    """
    cell = np.asarray(cell_a, dtype=float)
    if cell.shape != (3, 3) or not np.all(np.isfinite(cell)):
        raise ValueError(f"cell must be a finite (3, 3) array, got shape {cell.shape}")
    volume = abs(float(np.linalg.det(cell)))
    if volume <= 1e-12:
        raise ValueError("cell is singular (zero volume)")
    areas = np.linalg.norm(np.cross(np.roll(cell, -1, axis=0), np.roll(cell, -2, axis=0)), axis=1)
    return volume / areas
