"""Si|C interface supercells, periodic along z (so each cell holds two Si|C interfaces).

Two carbon variants:

- `carbon="amorphous"` (default): unreconstructed c-Si(001) slab (lateral √2×√2 R45° cell,
  7.681 × 7.681 Å, 4 Si per atomic layer; default 6 layers = 24 Si) against an a-C layer
  (default 5.0 Å thick at 2.1 g/cm³ = 31 C) packed by seeded RSA and soft-relaxed with the Si held
  fixed. No lattice mismatch: the amorphous carbon adopts the Si lateral cell. Gap: C atoms start
  `gap_a` (default 1.6 Å) above the top Si plane (and end `gap_a` below the periodic image's
  bottom Si plane); every Si–C pair keeps ≥ 1.7 Å. Default 55 atoms.
- `carbon="graphene"`: bulk-terminated c-Si(111) slab in a √3×√3 R30° cell (6.651 Å, 6 Si per
  bilayer; default 3 bilayers = 18 Si) against AB-stacked graphene (√7×√7 R19.1° cell, 14 C per
  layer; default 2 layers = 28 C, 3.35 Å apart). Mismatch: graphene's √7 cell (6.519 Å) is
  stretched biaxially by +2.03 % to the Si √3 cell; the Si is unstrained. The graphene's in-plane
  registry is a seeded random shift. Gap Si plane–graphene plane `gap_a` (default 3.0 Å). 46 atoms.

Lithiated variants add `n_li` Li (default 4), alternately at the upper and lower interface, by
seeded RSA inside a ±0.5 Å window about the mid-plane of each gap (which defaults wider: 2.6 Å
for a-C, 4.2 Å for graphene), followed by a soft relaxation of the Li (and a-C) only. Li keeps
≥ 2.0 Å from Si and Li, ≥ 1.8 Å from C.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk, make_supercell

from .amorphous import A_C_DENSITY_G_CM3, AMU_A3_PER_G_CM3, mass_amu
from .crystalline import A_GRAPHITE_A, A_SI_A, C_GRAPHITE_A
from .packing import pack_periodic, soft_relax

GRAPHITE_INTERLAYER_A = C_GRAPHITE_A / 2  # 3.355 Å
LI_WINDOW_HALF_A = 0.5
_SI111_SQRT3 = np.array([[1, 1], [-1, 2]])  # √3×√3 R30° in a 60° hexagonal basis
_GRAPHENE_SQRT7 = np.array([[2, 1], [-1, 3]])  # √7×√7 R19.1°
_DEFAULTS = {
    "amorphous": {"si_layers": 6, "gap_a": 1.6, "gap_lithiated_a": 2.6},
    "graphene": {"si_layers": 3, "gap_a": 3.0, "gap_lithiated_a": 4.2},
}


def _hex2(length_a: float) -> np.ndarray:
    return np.array([[length_a, 0.0], [length_a / 2, length_a * np.sqrt(3) / 2]])


def _supercell_frac(prim_frac: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-plane fractional coordinates, in the supercell A_i = Σ_j P_ij a_j, of every lattice copy of
    `prim_frac` (n×2) inside it; returns (frac m×2, index of the primitive site for each)."""
    inv = np.linalg.inv(p.astype(float))
    reach = int(np.abs(p).sum()) + 1
    out, src = [], []
    for n1 in range(-reach, reach + 1):
        for n2 in range(-reach, reach + 1):
            s = (prim_frac + [n1, n2]) @ inv
            s = np.where(np.abs(s) < 1e-9, 0.0, s)
            inside = np.all((s >= 0) & (s < 1 - 1e-9), axis=1)
            out.append(s[inside])
            src.append(np.nonzero(inside)[0])
    frac, index = np.vstack(out), np.concatenate(src)
    expected = len(prim_frac) * round(abs(np.linalg.det(p)))
    if len(frac) != expected:
        raise RuntimeError(f"supercell construction gave {len(frac)} sites, expected {expected}")
    return frac, index


def si001_slab(n_layers: int, a_a: float = A_SI_A) -> Atoms:
    """Bulk-terminated Si(001) slab, `n_layers` atomic layers (4 Si each) in a 7.681 Å square cell.

    Lowest layer at z = 0; layer spacing a/4 = 1.358 Å; cell z is a placeholder (set by the caller).
    """
    n_conv = -(-n_layers // 4)
    sc = make_supercell(bulk("Si", "diamond", a=a_a, cubic=True), [[1, 1, 0], [-1, 1, 0], [0, 0, n_conv]])
    sc.rotate(-45, "z", rotate_cell=True)
    side = a_a * np.sqrt(2)
    frac = np.round(np.linalg.solve(sc.cell.array.T, sc.positions.T).T, 9) % 1.0
    pos = np.column_stack([frac[:, 0] * side, frac[:, 1] * side, frac[:, 2] * n_conv * a_a])
    layer = np.round(pos[:, 2] / (a_a / 4)).astype(int)
    keep = layer < n_layers
    slab = Atoms(f"Si{keep.sum()}", positions=pos[keep], cell=[side, side, n_conv * a_a], pbc=True)
    return slab[np.lexsort((slab.positions[:, 1], slab.positions[:, 0], slab.positions[:, 2]))]


def si111_slab_sqrt3(n_bilayers: int, a_a: float = A_SI_A) -> tuple[Atoms, np.ndarray]:
    """Bulk-terminated Si(111) slab of `n_bilayers` bilayers in the √3×√3 R30° cell (6 Si per bilayer).

    Returns (slab, in-plane 2×2 cell in Å). Bilayer m: lower atom on stacking site m mod 3 at
    z = m·a/√3, upper atom on site (m+1) mod 3 at z + a√3/12 (0.784 Å); one dangling bond per
    surface atom on each side.
    """
    d_fcc, d_bilayer = a_a / np.sqrt(3), a_a * np.sqrt(3) / 12
    sites = np.array([(0, 0), (1 / 3, 1 / 3), (2 / 3, 2 / 3)])
    prim, z = [], []
    for m in range(n_bilayers):
        prim += [sites[m % 3], sites[(m + 1) % 3]]
        z += [m * d_fcc, m * d_fcc + d_bilayer]
    frac, index = _supercell_frac(np.array(prim), _SI111_SQRT3)
    cell2 = _hex2(np.sqrt(3) * a_a / np.sqrt(2))
    pos = np.column_stack([frac @ cell2, np.array(z)[index]])
    cell = np.zeros((3, 3))
    cell[:2, :2] = cell2
    cell[2, 2] = 1.0
    slab = Atoms(f"Si{len(pos)}", positions=pos, cell=cell, pbc=True)
    return slab[np.argsort(slab.positions[:, 2], kind="stable")], cell2


def graphene_sqrt7_frac(n_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """In-plane fractional coordinates (in the √7×√7 cell) and layer index of AB-stacked graphene."""
    layer_a = np.array([(0, 0), (1 / 3, 1 / 3)])
    layer_b = layer_a + 1 / 3
    fracs, layers = [], []
    for k in range(n_layers):
        f, _ = _supercell_frac(layer_a if k % 2 == 0 else layer_b, _GRAPHENE_SQRT7)
        fracs.append(f)
        layers.append(np.full(len(f), k))
    return np.vstack(fracs), np.concatenate(layers)


def _with_cell_z(atoms: Atoms, lz_a: float) -> Atoms:
    out = atoms.copy()
    cell = out.cell.array.copy()
    cell[2] = [0.0, 0.0, lz_a]
    out.set_cell(cell, scale_atoms=False)
    return out


def _interface(seed: int, carbon: str, n_li: int, si_layers: int | None, carbon_thickness_a: float,
               gap_a: float | None, c_density_g_cm3: float, n_graphene_layers: int,
               relax_steps: int) -> Atoms:
    if carbon not in _DEFAULTS:
        raise ValueError(f"carbon must be one of {sorted(_DEFAULTS)}, got {carbon!r}")
    if n_li < 0:
        raise ValueError(f"n_li must be ≥ 0, got {n_li}")
    defaults = _DEFAULTS[carbon]
    si_layers = defaults["si_layers"] if si_layers is None else si_layers
    if gap_a is None:
        gap_a = defaults["gap_lithiated_a" if n_li else "gap_a"]
    rng = np.random.default_rng(seed)
    info: dict[str, object] = {"gap_a": float(gap_a)}
    if carbon == "amorphous":
        slab = si001_slab(si_layers)
        z_top = float(slab.positions[:, 2].max())
        lz = z_top + 2 * gap_a + carbon_thickness_a
        slab = _with_cell_z(slab, lz)
        area = slab.cell.array[0, 0] * slab.cell.array[1, 1]
        c_per_a3 = c_density_g_cm3 * AMU_A3_PER_G_CM3 / mass_amu(["C"])
        n_c = int(round(c_per_a3 * area * carbon_thickness_a))
        atoms = pack_periodic(slab.cell.array, ["C"] * n_c, rng, fixed=slab,
                              frac_low=(0, 0, (z_top + gap_a) / lz),
                              frac_high=(1, 1, (z_top + gap_a + carbon_thickness_a) / lz))
        info.update(interface="Si(001)|a-C", carbon_strain=0.0)
        movable_species = {"C", "Li"}
    else:
        slab, cell2 = si111_slab_sqrt3(si_layers)
        z_top = float(slab.positions[:, 2].max())
        lz = z_top + 2 * gap_a + (n_graphene_layers - 1) * GRAPHITE_INTERLAYER_A
        slab = _with_cell_z(slab, lz)
        frac, layer = graphene_sqrt7_frac(n_graphene_layers)
        frac = (frac + rng.random(2)) % 1.0
        c_pos = np.column_stack([frac @ cell2, z_top + gap_a + layer * GRAPHITE_INTERLAYER_A])
        atoms = slab + Atoms(f"C{len(c_pos)}", positions=c_pos, cell=slab.cell, pbc=True)
        strain = np.sqrt(3) * A_SI_A / np.sqrt(2) / (np.sqrt(7) * A_GRAPHITE_A) - 1.0
        info.update(interface="Si(111)|graphene", carbon_strain=float(strain))
        movable_species = {"Li"}
    if n_li:
        mids = [z_top + gap_a / 2, lz - gap_a / 2]
        for k, mid in enumerate(mids):
            count = len(range(k, n_li, 2))
            if count:
                atoms = pack_periodic(atoms.cell.array, ["Li"] * count, rng, fixed=atoms,
                                      frac_low=(0, 0, (mid - LI_WINDOW_HALF_A) / lz),
                                      frac_high=(1, 1, (mid + LI_WINDOW_HALF_A) / lz))
    movable = np.array([s in movable_species for s in atoms.get_chemical_symbols()])
    if relax_steps and movable.any():
        atoms = soft_relax(atoms, n_steps=relax_steps, movable=movable)
    atoms.wrap()
    atoms.info.update(info)
    return atoms


def si_c_interface(seed: int, carbon: str = "amorphous", si_layers: int | None = None,
                   carbon_thickness_a: float = 5.0, gap_a: float | None = None,
                   c_density_g_cm3: float = A_C_DENSITY_G_CM3, n_graphene_layers: int = 2,
                   relax_steps: int = 40) -> Atoms:
    """Si|C interface cell (see module docstring). Default: Si24C31 (a-C on Si(001)), 55 atoms.

    Args:
        seed: seeds the a-C packing (amorphous) or the graphene registry shift (graphene).
        carbon: "amorphous" (Si(001)|a-C) or "graphene" (Si(111)|AB graphene).
        si_layers: (001) atomic layers (default 6) or (111) bilayers (default 3).
        carbon_thickness_a: thickness of the a-C band in Å (amorphous only).
        gap_a: z gap in Å between the top Si plane and the carbon (default 1.6 a-C, 3.0 graphene).
        c_density_g_cm3: a-C density inside its band.
        n_graphene_layers: graphene layers (graphene only).
        relax_steps: soft-relaxation steps of the carbon (amorphous only; Si fixed).
    """
    return _interface(seed, carbon, 0, si_layers, carbon_thickness_a, gap_a, c_density_g_cm3,
                      n_graphene_layers, relax_steps)


def si_c_interface_lithiated(seed: int, n_li: int = 4, carbon: str = "amorphous", si_layers: int | None = None,
                             carbon_thickness_a: float = 5.0, gap_a: float | None = None,
                             c_density_g_cm3: float = A_C_DENSITY_G_CM3, n_graphene_layers: int = 2,
                             relax_steps: int = 40) -> Atoms:
    """Si|C interface with `n_li` Li at the two interfaces. Default: Li4Si24C31 (59 atoms).

    Same arguments as `si_c_interface`; the gap defaults wider (2.6 Å a-C, 4.2 Å graphene) so the
    Li fit, and Li are placed alternately at the upper and lower interface.
    """
    return _interface(seed, carbon, n_li, si_layers, carbon_thickness_a, gap_a, c_density_g_cm3,
                      n_graphene_layers, relax_steps)
