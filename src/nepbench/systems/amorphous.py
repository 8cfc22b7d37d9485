"""Amorphous cells: seeded random packing in a cube at a target density, then a soft relaxation.

Recipe (every builder): species are inserted in a seeded random order by random sequential
packing with the pair minima of `packing.PAIR_MIN_A` (Si–Si 1.9, C–C 1.3, Li–Li 2.0, Li–Si 2.0,
Li–C 1.8, Si–C 1.7 Å), then `soft_relax` takes up to 40 steps (≤ 0.1 Å each) pushing pairs towards
`PAIR_SOFT_A` (Si–Si 2.25, C–C 1.42, Li–Li/Li–Si 2.45, Li–C 2.1 Å) without ever going below the
minima. These are cheap, deterministic *starting* structures (a DFT candidate pool, or the start of
a melt–quench), not quenched glasses.

Densities (rules stated once here):
- a-Si: 2.28 g/cm³ (≈ 2 % below c-Si's 2.329 g/cm³, as measured for a-Si films).
- a-C: 2.1 g/cm³ by default (the range of amorphous carbon coatings, ~2.0–2.2 g/cm³).
- a-LixSi: volume per Si = V_Si + x·v_Li, linear in x (Vegard-like), with V_Si = a³/8 = 20.02 Å³
  (c-Si, a = 5.431 Å) and v_Li = 14.99 Å³ fixed so that x = 3.75 gives the volume per Si of
  crystalline Li15Si4 (a = 10.685 Å, 16 Si per cell: 76.24 Å³/Si, the +281 % expansion). The rule
  reproduces LiSi (31.4 vs 35.0 Å³/Si), Li12Si7 (43.5 vs 45.7) and Li13Si4 (67.3 vs 68.7) within
  ~10 %. (A Li volume of ~20 Å³/atom, near bcc Li's 21.6, would overestimate Li15Si4 by 25 %.)
- a-LiC: the carbon keeps the a-C volume per atom (from `density_g_cm3`) and each Li adds
  6.56 Å³, the volume Li adds in LiC6 over graphite ((√3/2)a²c of LiC6 minus 6 graphite atoms).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from .crystalline import A_GRAPHITE_A, A_LI15SI4_A, A_LIC6_A, A_SI_A, C_GRAPHITE_A, C_LIC6_A
from .packing import pack_periodic, soft_relax

AMU_A3_PER_G_CM3 = 1.0 / 1.66053906660  # 1 g/cm³ expressed in amu/Å³
A_SI_DENSITY_G_CM3 = 2.28
A_C_DENSITY_G_CM3 = 2.1
V_SI_A3 = A_SI_A**3 / 8  # 20.02 Å³ per Si in c-Si
V_LI_IN_LIXSI_A3 = (A_LI15SI4_A**3 / 16 - V_SI_A3) / 3.75  # 14.99 Å³ per Li
_V_GRAPHITE_PER_C_A3 = np.sqrt(3) / 2 * A_GRAPHITE_A**2 * C_GRAPHITE_A / 4
V_LI_IN_LIC_A3 = np.sqrt(3) / 2 * A_LIC6_A**2 * C_LIC6_A - 6 * _V_GRAPHITE_PER_C_A3  # 6.56 Å³


def mass_amu(symbols: Sequence[str]) -> float:
    """Total mass in amu."""
    return float(sum(atomic_masses[atomic_numbers[s]] for s in symbols))


def density_g_cm3(atoms: Atoms) -> float:
    """Mass density of a periodic cell in g/cm³."""
    return mass_amu(atoms.get_chemical_symbols()) / atoms.get_volume() / AMU_A3_PER_G_CM3


def lixsi_volume_per_si_a3(x: float) -> float:
    """Volume per Si atom (Å³) of LixSi by the linear rule V_Si + x·v_Li (see module docstring)."""
    return V_SI_A3 + x * V_LI_IN_LIXSI_A3


def lixsi_counts(x: float, n_atoms: int = 32) -> tuple[int, int]:
    """(n_li, n_si) with n_li/n_si closest to x and n_li + n_si within ±25 % of `n_atoms`.

    Ties go to the total closest to `n_atoms`, then the smaller cell. Examples (n_atoms = 32):
    x = 0.5 → (11, 22); 1 → (16, 16); 2 → (22, 11); 3 → (24, 8); 3.75 → (30, 8).
    """
    if not (x >= 0 and np.isfinite(x)):
        raise ValueError(f"x must be a finite number ≥ 0, got {x}")
    best: tuple[float, int, int, int, int] | None = None
    for n_si in range(1, n_atoms + 1):
        n_li = int(round(x * n_si))
        total = n_si + n_li
        if not 0.75 * n_atoms <= total <= 1.25 * n_atoms:
            continue
        key = (round(abs(n_li / n_si - x), 9), abs(total - n_atoms), total, n_li, n_si)
        if best is None or key < best:
            best = key
    if best is None:
        raise ValueError(f"no LixSi cell with x = {x} near {n_atoms} atoms")
    return best[3], best[4]


def _cube(symbols: list[str], volume_a3: float, seed: int, relax_steps: int) -> Atoms:
    if not symbols:
        raise ValueError("the cell would hold no atoms (n_atoms must be ≥ 1)")
    if relax_steps < 0:
        raise ValueError(f"relax_steps must be ≥ 0, got {relax_steps}")
    rng = np.random.default_rng(seed)
    order = [symbols[k] for k in rng.permutation(len(symbols))]
    length = volume_a3 ** (1 / 3)
    atoms = pack_periodic(np.eye(3) * length, order, rng)
    if relax_steps:
        atoms = soft_relax(atoms, n_steps=relax_steps)
    return atoms[np.argsort(atoms.numbers, kind="stable")]


def _volume_from_density(symbols: list[str], rho_g_cm3: float) -> float:
    if not rho_g_cm3 > 0:
        raise ValueError(f"density must be > 0 g/cm³, got {rho_g_cm3}")
    return mass_amu(symbols) / (rho_g_cm3 * AMU_A3_PER_G_CM3)


def a_si(seed: int, n_atoms: int = 64, density_g_cm3: float = A_SI_DENSITY_G_CM3, relax_steps: int = 40) -> Atoms:
    """Amorphous Si: `n_atoms` Si (default 64) in a cube at `density_g_cm3` (default 2.28 g/cm³)."""
    symbols = ["Si"] * n_atoms
    return _cube(symbols, _volume_from_density(symbols, density_g_cm3), seed, relax_steps)


def a_c(seed: int, n_atoms: int = 64, density_g_cm3: float = A_C_DENSITY_G_CM3, relax_steps: int = 40) -> Atoms:
    """Amorphous C: `n_atoms` C (default 64) in a cube at `density_g_cm3` (default 2.1 g/cm³)."""
    symbols = ["C"] * n_atoms
    return _cube(symbols, _volume_from_density(symbols, density_g_cm3), seed, relax_steps)


def a_lixsi(seed: int, x: float = 2.0, n_atoms: int = 32, n_si: int | None = None, relax_steps: int = 40) -> Atoms:
    """Amorphous LixSi (x from 0 to ~4.4) at the linear-volume density rule.

    Cell size: `n_si` Si and round(x·n_si) Li if `n_si` is given, else `lixsi_counts(x, n_atoms)`
    (≈ `n_atoms`, default 32, with x as exact as possible). Volume = n_si · (20.02 + 14.99 x) Å³
    evaluated at the *actual* Li/Si ratio.
    """
    if n_si is None:
        n_li, n_si = lixsi_counts(x, n_atoms)
    else:
        if n_si < 1:
            raise ValueError(f"n_si must be ≥ 1, got {n_si}")
        n_li = int(round(x * n_si))
    symbols = ["Li"] * n_li + ["Si"] * n_si
    volume = n_si * lixsi_volume_per_si_a3(n_li / n_si)
    return _cube(symbols, volume, seed, relax_steps)


def a_lic(seed: int, n_c: int = 36, li_per_c: float = 1 / 6, density_g_cm3: float = A_C_DENSITY_G_CM3,
          relax_steps: int = 40) -> Atoms:
    """Lithiated amorphous carbon: `n_c` C (default 36) and round(li_per_c·n_c) Li (default 6).

    Volume = n_c · (a-C volume per C at `density_g_cm3`) + n_li · 6.56 Å³ (Li volume in LiC6).
    Default Li6C36 (42 atoms, LiC6 composition), 2.07 g/cm³.
    """
    n_li = int(round(li_per_c * n_c))
    carbon = ["C"] * n_c
    volume = _volume_from_density(carbon, density_g_cm3) + n_li * V_LI_IN_LIC_A3
    return _cube(["Li"] * n_li + carbon, volume, seed, relax_steps)
