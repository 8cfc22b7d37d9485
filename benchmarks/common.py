"""Shared helpers of the asv benchmarks (no benchmarks here).

Paths point at this checkout (benchmarks/..), not at the installed package: asv installs each
commit as a wheel into its own environment, where the package cannot find the repository. The
benchmarks therefore always read the checkout's reference data and model registry.

A case that cannot run here raises NotImplementedError from `setup`, which asv reports as skipped
(no GPU or gpumd, no cp2k, no AIMD reference yet, the default model not cached while offline).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT / "reference_data"
if (REPO_ROOT / "models" / "registry.toml").is_file():
    os.environ.setdefault("NEPBENCH_REGISTRY", str(REPO_ROOT / "models" / "registry.toml"))

#: NEP CPU backends timed: calorine's CPUNEP and nep-adapters on one OpenMP thread (one thread
#: keeps numbers comparable on a shared machine; tests/test_bench_nep.py sweeps threads).
BACKENDS = ["calorine", "nep-adapters"]
ADAPTER_THREADS = 1
SPECIES = ("Li", "Si", "C")


def default_model_path() -> Path:
    """The default model's nep.txt (fetched once, then cached); NotImplementedError when offline."""
    from nepbench.errors import ModelError
    from nepbench.models import DEFAULT_MODEL, resolve_model

    offline = os.environ.get("NEPBENCH_OFFLINE") == "1"
    try:
        return resolve_model(DEFAULT_MODEL, fetch=not offline).path
    except ModelError as exc:
        raise NotImplementedError(f"default model unavailable: {exc}") from None


def nep_engine(backend: str = "calorine"):
    """A `NepCpuEngine` on the default model; NotImplementedError if the backend is not installed."""
    from nepbench.engines import nep_cpu

    if backend == "nep-adapters" and not nep_cpu.adapters_installed():
        raise NotImplementedError("nep-adapters is not installed")
    threads = ADAPTER_THREADS if backend == "nep-adapters" else None
    return nep_cpu.NepCpuEngine(default_model_path(), backend=backend, threads=threads)


def lattice_cell(n_atoms: int):
    """A jittered cubic Li/Si/C lattice (2.6 Å spacing, seed 0) of `n_atoms` = n³ atoms."""
    from nepbench.engines.nep_cpu import check_cell

    n_side = round(n_atoms ** (1 / 3))
    if n_side**3 != n_atoms:
        raise ValueError(f"n_atoms must be a cube, got {n_atoms}")
    return check_cell(SPECIES, n_side=n_side)


def have_cp2k() -> bool:
    return shutil.which("cp2k.psmp") is not None


def tiny_si(n_atoms: int = 2, rattle_a: float = 0.03):
    """Diamond Si: the 2-atom primitive cell or the 8-atom cubic cell, rattled (seed 1)."""
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=(n_atoms == 8))
    atoms.rattle(rattle_a, seed=1)
    return atoms


def tiny_cp2k_settings(md: bool = False):
    """CP2K settings for timing tiny cells: the project presets at a 100 Ry grid, no stress.

    Not the settings of the reference labels (400 Ry): these numbers track CP2K's speed and the
    NEP÷CP2K ratio over commits, not the accuracy of the labels.
    """
    import dataclasses

    from nepbench.engines.cp2k import AIMD_SETTINGS, LABEL_SETTINGS

    base = AIMD_SETTINGS if md else LABEL_SETTINGS
    return dataclasses.replace(base, cutoff_ry=100.0, rel_cutoff_ry=20.0, stress=False, ranks=1)
