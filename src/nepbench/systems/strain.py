"""Homogeneous strain plus a seeded Gaussian rattle.

The deformation is F = I + ε with a symmetric strain tensor ε; the new cell is `cell @ F` (rows are
lattice vectors) and every position maps the same way, so fractional coordinates are kept before
the rattle. Modes:

- "isotropic":      ε = eps·I (every length × (1 + eps), volume × (1 + eps)³)
- "uniaxial-x|y|z": ε_kk = eps (that Cartesian axis × (1 + eps))
- "shear-xy|yz|xz": ε_ij = ε_ji = eps/2 (engineering shear strain γ = eps)
- "random":         one of the seven above, chosen by the seed (recorded in `info["strain_mode"]`)
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

_AXES = {"x": 0, "y": 1, "z": 2}
STRAIN_MODES = ("isotropic", "uniaxial-x", "uniaxial-y", "uniaxial-z", "shear-xy", "shear-yz", "shear-xz")


def strain_tensor(mode: str, eps: float) -> np.ndarray:
    """Symmetric 3×3 strain tensor ε for `mode` (see module docstring) and magnitude `eps`."""
    eps_tensor = np.zeros((3, 3))
    if mode == "isotropic":
        return np.eye(3) * eps
    kind, _, axes = mode.partition("-")
    if kind == "uniaxial" and axes in _AXES:
        eps_tensor[_AXES[axes], _AXES[axes]] = eps
        return eps_tensor
    if kind == "shear" and len(axes) == 2 and set(axes) <= set(_AXES) and axes[0] != axes[1]:
        i, j = _AXES[axes[0]], _AXES[axes[1]]
        eps_tensor[i, j] = eps_tensor[j, i] = eps / 2
        return eps_tensor
    raise ValueError(f"unknown strain mode {mode!r}; use one of {STRAIN_MODES} or 'random'")


def strain(atoms: Atoms, eps: float, seed: int, rattle_a: float = 0.0, mode: str = "random") -> Atoms:
    """A strained, rattled copy of a periodic `atoms`.

    Args:
        atoms: periodic structure (not modified).
        eps: strain magnitude, e.g. ±0.05 … ±0.10 (dimensionless; |eps| < 0.5).
        seed: seeds the mode choice ("random") and the rattle.
        rattle_a: standard deviation of the Gaussian displacement per Cartesian component, Å.
        mode: see module docstring; default "random".

    Returns:
        The copy, with `info` gaining "strain_mode" (str) and "strain_eps" (float).
    """
    if not np.isfinite(eps) or abs(eps) >= 0.5:
        raise ValueError(f"strain eps must be finite with |eps| < 0.5, got {eps}")
    if not (np.isfinite(rattle_a) and rattle_a >= 0):
        raise ValueError(f"rattle_a must be ≥ 0 Å, got {rattle_a}")
    if not any(atoms.pbc):
        raise ValueError("strain needs a periodic cell")
    rng = np.random.default_rng(seed)
    if mode == "random":
        mode = STRAIN_MODES[int(rng.integers(len(STRAIN_MODES)))]
    deformation = np.eye(3) + strain_tensor(mode, eps)
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ deformation, scale_atoms=False)
    out.positions = atoms.positions @ deformation
    if rattle_a > 0:
        out.positions += rng.normal(0.0, rattle_a, size=out.positions.shape)
    out.info.update(strain_mode=mode, strain_eps=float(eps))
    return out
