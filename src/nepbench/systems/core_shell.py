"""Si@C core–shell nanoparticle for large-scale MD (1e3–1e6 atoms).

Geometry: a Si sphere of radius R (centred in a cubic box) inside an amorphous-carbon shell
R ≤ r ≤ R + t, with `vacuum_nm` of empty space on every side (box edge 2(R + t + vacuum)).

- Core "crystalline": every diamond-Si site (a = 5.431 Å, 0.04994 atoms/Å³) with |r| ≤ R; the
  lattice origin is shifted by a seeded random vector inside the conventional cell, so each seed
  cuts a different surface. Cube axes are along x, y, z.
- Core "amorphous": round(n·4πR³/3) Si at `core_density_g_cm3` (default 2.28 g/cm³) by seeded
  random packing in the ball (Si–Si ≥ 1.9 Å), no relaxation.
- Shell: round(n_C · 4π((R+t)³ − R³)/3) C at `shell_density_g_cm3` (default 2.1 g/cm³, 0.1053
  atoms/Å³) by seeded random packing in the spherical shell (C–C ≥ 1.3 Å, Si–C ≥ 1.7 Å), no
  relaxation: a starting structure to anneal.

Tags: 1 = core Si, 2 = shell C (`atoms.get_tags()`), for core-vs-envelope expansion analysis.
Packing uses scipy cKDTree in batches: ~3e5 atoms in tens of seconds on one core.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from ase import Atoms

from .amorphous import A_C_DENSITY_G_CM3, A_SI_DENSITY_G_CM3, AMU_A3_PER_G_CM3, mass_amu
from .crystalline import A_SI_A
from .packing import pack_open

SI_DIAMOND_ATOMS_PER_A3 = 8 / A_SI_A**3  # 0.04994
_DIAMOND_BASIS = np.array([(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0),
                           (0.25, 0.25, 0.25), (0.25, 0.75, 0.75), (0.75, 0.25, 0.75), (0.75, 0.75, 0.25)])
#: `atoms.get_tags()` of the core Si and the shell C (the expansion task imports them from here).
CORE_TAG, SHELL_TAG = 1, 2


def number_density_per_a3(symbol: str, density_g_cm3: float) -> float:
    """Atoms per Å³ of a one-species material at `density_g_cm3`."""
    if not density_g_cm3 > 0:
        raise ValueError(f"density must be > 0 g/cm³, got {density_g_cm3}")
    return density_g_cm3 * AMU_A3_PER_G_CM3 / mass_amu([symbol])


def shell_sampler(r_in_a: float, r_out_a: float) -> Callable[[np.random.Generator, int], np.ndarray]:
    """`sampler(rng, m)`: m points uniform in the spherical shell r_in ≤ |r| ≤ r_out (Å, origin-centred)."""
    def sample(rng: np.random.Generator, m: int) -> np.ndarray:
        u = rng.random(m)
        radius = np.cbrt(r_in_a**3 + u * (r_out_a**3 - r_in_a**3))
        direction = rng.normal(size=(m, 3))
        direction /= np.linalg.norm(direction, axis=1)[:, None]
        return direction * radius[:, None]
    return sample


def diamond_sphere(radius_a: float, origin_a: np.ndarray, a_a: float = A_SI_A) -> np.ndarray:
    """Positions (Å, origin-centred) of diamond-lattice sites within `radius_a`; the lattice is shifted
    by `origin_a` (Å)."""
    n = int(np.ceil(radius_a / a_a)) + 1
    grid = np.arange(-n, n + 1)
    cells = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 1, 3)
    pos = ((cells + _DIAMOND_BASIS[None, :, :]).reshape(-1, 3)) * a_a + origin_a
    return pos[np.einsum("ij,ij->i", pos, pos) <= radius_a**2]


def crystalline_core_a(radius_a: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-Si sites (Å, origin-centred) within `radius_a`, the lattice shifted by a random vector
    inside the conventional cell: the builder's first draw from `rng`."""
    return diamond_sphere(radius_a, rng.random(3) * A_SI_A)


def amorphous_core_count(radius_a: float, density_g_cm3: float = A_SI_DENSITY_G_CM3) -> int:
    """Number of Si an amorphous core of `radius_a` (Å) holds at `density_g_cm3`: round(n·4πR³/3)."""
    return int(round(number_density_per_a3("Si", density_g_cm3) * 4 / 3 * np.pi * radius_a**3))


def core_si_count(core_radius_nm: float, seed: int, core: str = "crystalline",
                  core_density_g_cm3: float = A_SI_DENSITY_G_CM3) -> int:
    """Number of core Si `core_shell_particle` builds for (core_radius_nm, seed, core), without packing
    anything: a crystalline core's count varies with the seed's lattice shift (23–30 Si at
    0.5 nm over seeds 1–8), an amorphous core's does not."""
    r_core = 10.0 * core_radius_nm
    if core == "crystalline":
        return len(crystalline_core_a(r_core, np.random.default_rng(seed)))
    if core == "amorphous":
        return amorphous_core_count(r_core, core_density_g_cm3)
    raise ValueError(f"core must be 'crystalline' or 'amorphous', got {core!r}")


def core_shell_particle(core_radius_nm: float, shell_thickness_nm: float, vacuum_nm: float, seed: int,
                        core: str = "crystalline", shell_density_g_cm3: float = A_C_DENSITY_G_CM3,
                        core_density_g_cm3: float = A_SI_DENSITY_G_CM3, periodic: bool = False) -> Atoms:
    """Si@C core–shell particle (see module docstring).

    Args:
        core_radius_nm: Si core radius R, nm.
        shell_thickness_nm: carbon shell thickness t, nm (0 gives a bare core).
        vacuum_nm: empty space between the shell's outer radius and each box face, nm.
        seed: seeds the lattice shift (crystalline core) and all packings.
        core: "crystalline" or "amorphous".
        shell_density_g_cm3: a-C shell density, g/cm³.
        core_density_g_cm3: amorphous-core density, g/cm³ (ignored for a crystalline core).
        periodic: pbc flag of the returned box (the vacuum keeps images apart either way).

    Returns:
        Atoms (core Si first, tag 1; then shell C, tag 2) centred in the box; `info` records
        core_radius_a, outer_radius_a, n_core, n_shell.
    """
    if core not in ("crystalline", "amorphous"):
        raise ValueError(f"core must be 'crystalline' or 'amorphous', got {core!r}")
    if not (core_radius_nm > 0 and shell_thickness_nm >= 0 and vacuum_nm >= 0):
        raise ValueError("need core_radius_nm > 0, shell_thickness_nm ≥ 0 and vacuum_nm ≥ 0")
    r_core, r_out = 10.0 * core_radius_nm, 10.0 * (core_radius_nm + shell_thickness_nm)
    rng = np.random.default_rng(seed)
    if core == "crystalline":
        core_pos = crystalline_core_a(r_core, rng)
    else:
        core_pos = pack_open("Si", amorphous_core_count(r_core, core_density_g_cm3), shell_sampler(0.0, r_core), rng)
    shell_volume_a3 = 4 / 3 * np.pi * (r_out**3 - r_core**3)
    n_shell = int(round(number_density_per_a3("C", shell_density_g_cm3) * shell_volume_a3))
    shell_pos = np.empty((0, 3))
    if n_shell:
        shell_pos = pack_open("C", n_shell, shell_sampler(r_core, r_out), rng,
                              fixed_positions=core_pos, fixed_symbols=["Si"] * len(core_pos))
    side = 2.0 * (r_out + 10.0 * vacuum_nm)
    positions = np.vstack([core_pos, shell_pos]) + side / 2
    atoms = Atoms(["Si"] * len(core_pos) + ["C"] * len(shell_pos), positions=positions,
                  cell=np.eye(3) * side, pbc=periodic)
    atoms.set_tags([CORE_TAG] * len(core_pos) + [SHELL_TAG] * len(shell_pos))
    atoms.info.update(core_radius_a=r_core, outer_radius_a=r_out,
                      n_core=len(core_pos), n_shell=len(shell_pos))
    return atoms
