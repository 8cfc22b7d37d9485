"""Small seeded NEP4 models with random parameters, for tests (not physics).

`write_random_model` writes a complete nep.txt that calorine, NEP_CPU and GPUMD load, so tests can
run engines and tasks without downloading a real model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from nepbench.files import atomic_write_bytes


def n_parameters(n_types: int, n_max: tuple[int, int], basis_size: tuple[int, int],
                 l_max: tuple[int, int, int], n_neuron: int) -> tuple[int, int, int]:
    """(ANN, descriptor, scaler) parameter counts of a one-hidden-layer NEP4 potential."""
    n_angular_terms = l_max[0] + (l_max[1] > 0) + (l_max[2] > 0)
    n_input = (n_max[0] + 1) + (n_max[1] + 1) * n_angular_terms
    n_ann = (n_input * n_neuron + 2 * n_neuron) * n_types + 1
    n_desc = n_types**2 * ((n_max[0] + 1) * (basis_size[0] + 1) + (n_max[1] + 1) * (basis_size[1] + 1))
    return n_ann, n_desc, n_input


def write_random_model(path: str | os.PathLike[str], species: Sequence[str] = ("Li", "Si", "C"),
                       seed: int = 0, cutoff_a: tuple[float, float] = (5.0, 4.0),
                       n_max: tuple[int, int] = (4, 4), basis_size: tuple[int, int] = (6, 6),
                       l_max: tuple[int, int, int] = (4, 2, 0), n_neuron: int = 8,
                       zbl_a: tuple[float, float] | None = (1.0, 2.0),
                       weight_scale: float = 0.3) -> Path:
    """Write a small seeded NEP4 model with random parameters (for tests; not physics).

    The network weights are drawn from N(0, weight_scale²), descriptor weights from U(-1, 1)
    and scalers from U(0.5, 1.5), which gives a smooth potential with forces of order 1 eV/Å;
    `zbl_a` (inner, outer cutoff in Å) adds GPUMD's universal ZBL repulsion at short range.
    """
    rng = np.random.default_rng(seed)
    n_ann, n_desc, n_input = n_parameters(len(species), n_max, basis_size, l_max, n_neuron)
    values = np.concatenate([rng.normal(0.0, weight_scale, n_ann), rng.uniform(-1, 1, n_desc),
                             rng.uniform(0.5, 1.5, n_input)])
    token = "nep4_zbl" if zbl_a else "nep4"
    lines = [f"{token} {len(species)} {' '.join(species)}"]
    if zbl_a:
        lines.append(f"zbl {zbl_a[0]:g} {zbl_a[1]:g}")
    lines += [f"cutoff {cutoff_a[0]:g} {cutoff_a[1]:g} 200 100", f"n_max {n_max[0]} {n_max[1]}",
              f"basis_size {basis_size[0]} {basis_size[1]}", f"l_max {l_max[0]} {l_max[1]} {l_max[2]}",
              f"ANN {n_neuron} 0"]
    lines += [f"{v:15.7e}" for v in values]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return Path(path)


def cpunep_forces(model_paths: Sequence[str | os.PathLike[str]], frames: Sequence) -> np.ndarray:
    """Forces (eV/Å) of each model on each frame from calorine's CPUNEP, independently of nepbench's
    engines: shape (models, total atoms of `frames` in order, 3). The frames are copied, not changed."""
    from calorine.calculators import CPUNEP

    out = []
    for path in model_paths:
        per_frame = []
        for atoms in frames:
            work = atoms.copy()
            work.calc = CPUNEP(str(path))
            per_frame.append(work.get_forces())
        out.append(np.concatenate(per_frame))
    return np.array(out)
