"""Crystalline cells from published crystallography (no invented phases).

| builder        | structure                                   | default cell                   | atoms |
|----------------|---------------------------------------------|--------------------------------|-------|
| `c_si`         | diamond Si, a = 5.431 Å                     | 2×2×2 conventional, 10.86 Å    | 64    |
| `graphite`     | AB (Bernal) graphite, P6₃/mmc, a = 2.464 Å, c = 6.71 Å | 3×3×1 hexagonal     | 36    |
| `lic6`         | LiC6, P6/mmm (AA carbon, Li above every third hexagon), a = 4.305 Å, c = 3.706 Å | 2×2×1 | 28 |
| `li_in_c_si`   | c-Si 2×2×2 + Li on tetrahedral interstitial (T) sites | 64 Si + 4 Li        | 68    |
| `li15si4`      | Li15Si4, I-43d (Cu15Si4 type), a = 10.685 Å | bcc primitive cell             | 38    |

Sources: c-Si a = 5.431 Å (room-temperature lattice constant); graphite a = 2.464, c = 6.71 Å;
LiC6 a = 4.305, c = 3.706 Å (Guérard & Hérold, Carbon 13, 337, 1975); Li15Si4 a = 10.685 Å
(Obrovac & Christensen, Electrochem. Solid-State Lett. 7, A93, 2004) with Wyckoff positions
Li 12a (3/8, 0, 1/4), Li 48e (0.59609, 0.12693, 0.21344), Si 16c (x, x, x), x = 0.20757, from the
PBE-relaxed Materials Project entry mp-569849 (the generated 76-atom cell reproduces all 76 sites
of that entry to < 1e-3 Å after rescaling to its a = 10.566 Å).

Other LixSi crystals (LiSi I4₁/a, Li12Si7 Pnma 152 atoms, Li13Si4 Pbam, Li7Si3, Li21Si5/Li22Si5)
are not built: their Wyckoff positions are not at hand here, and a made-up "LixSi" lattice would
be no real phase.

Guaranteed minimum distances (Å): c-Si 2.35 (Si–Si bond); graphite 1.42; LiC6 1.43 (C–C);
Li in c-Si 2.35 (Li–Si at a T site) and ≥ 3.8 Li–Li; Li15Si4 2.63 (Li–Si), 2.68 (Li–Li).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.spacegroup import crystal

A_SI_A = 5.431
A_GRAPHITE_A = 2.464
C_GRAPHITE_A = 6.71
A_LIC6_A = 4.305
C_LIC6_A = 3.706
A_LI15SI4_A = 10.685
LI15SI4_WYCKOFF = {
    "Li_12a": (3 / 8, 0.0, 1 / 4),
    "Li_48e": (0.59609, 0.12693, 0.21344),
    "Si_16c": (0.20757, 0.20757, 0.20757),
}
# Li–Li distance (Å) at or above which tetrahedral sites count as not neighbouring (2nd T–T shell
# is a/√2 = 3.84 Å; the 1st, 2.35 Å, would put two Li at a Si–Si bond length).
LI_T_SITE_SEPARATION_A = 3.8


def _hexagonal_cell(a_a: float, c_a: float) -> np.ndarray:
    return np.array([[a_a, 0.0, 0.0], [-a_a / 2, a_a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, c_a]])


def c_si(repeat: tuple[int, int, int] = (2, 2, 2), a_a: float = A_SI_A) -> Atoms:
    """Diamond-cubic Si: `repeat` conventional 8-atom cells (default 2×2×2 = 64 atoms), a in Å."""
    return bulk("Si", "diamond", a=a_a, cubic=True).repeat(tuple(repeat))


def graphite(repeat: tuple[int, int, int] = (3, 3, 1), a_a: float = A_GRAPHITE_A,
             c_a: float = C_GRAPHITE_A) -> Atoms:
    """AB (Bernal) graphite, P6₃/mmc: 4-atom hexagonal cell × `repeat` (default 3×3×1 = 36 atoms).

    Sites 2b (0, 0, 1/4), (0, 0, 3/4) and 2c (1/3, 2/3, 1/4), (2/3, 1/3, 3/4); interlayer c/2.
    """
    frac = [(0, 0, 0.25), (0, 0, 0.75), (1 / 3, 2 / 3, 0.25), (2 / 3, 1 / 3, 0.75)]
    unit = Atoms("C4", scaled_positions=frac, cell=_hexagonal_cell(a_a, c_a), pbc=True)
    return unit.repeat(tuple(repeat))


def lic6(repeat: tuple[int, int, int] = (2, 2, 1), a_a: float = A_LIC6_A, c_a: float = C_LIC6_A) -> Atoms:
    """Stage-1 LiC6, P6/mmm: 7-atom cell × `repeat` (default 2×2×1 = 28 atoms, Li4C24).

    Li at 1a (0, 0, 0); C at 6k (x, 0, 1/2), x = 1/3 — AA-stacked graphene layers with Li above the
    centre of every third hexagon (√3×√3 R30° order). C–C = a/3 = 1.435 Å, Li–C = 2.34 Å.
    """
    x = 1 / 3
    carbon = [(x, 0, 0.5), (0, x, 0.5), (-x, -x, 0.5), (-x, 0, 0.5), (0, -x, 0.5), (x, x, 0.5)]
    unit = Atoms("LiC6", scaled_positions=[(0, 0, 0)] + carbon, cell=_hexagonal_cell(a_a, c_a), pbc=True)
    unit.wrap()
    return unit.repeat(tuple(repeat))


def tetrahedral_sites_frac(repeat: tuple[int, int, int]) -> np.ndarray:
    """Fractional coordinates of the tetrahedral interstitial sites of a diamond supercell.

    Per conventional cell (atoms at fcc + fcc + (¼, ¼, ¼)): (½, ½, ½) + fcc and (¾, ¾, ¾) + fcc,
    8 sites, each with 4 Si at a√3/4 = 2.35 Å and 6 Si at a/2 = 2.72 Å.
    """
    fcc = np.array([(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)])
    unit = np.vstack([fcc + 0.5, fcc + 0.75]) % 1.0
    shifts = np.array([(i, j, k) for i in range(repeat[0]) for j in range(repeat[1]) for k in range(repeat[2])])
    sites = (unit[None, :, :] + shifts[:, None, :]).reshape(-1, 3) / np.asarray(repeat, float)
    return sites


def li_in_c_si(seed: int, n_li: int = 4, repeat: tuple[int, int, int] = (2, 2, 2), a_a: float = A_SI_A) -> Atoms:
    """Dilute Li in c-Si: `n_li` Li on seeded random tetrahedral sites of a c-Si supercell.

    Default: Li4Si64 (68 atoms). Sites are taken in a seeded random order and skipped if closer
    than 3.8 Å (minimum image) to a Li already placed, so no two Li share a T–T edge.
    """
    host = c_si(repeat, a_a)
    sites = tetrahedral_sites_frac(tuple(repeat))
    rng = np.random.default_rng(seed)
    cell = host.cell.array
    chosen: list[np.ndarray] = []
    for k in rng.permutation(len(sites)):
        if len(chosen) == n_li:
            break
        site = sites[k]
        if chosen:
            d = np.array(chosen) - site
            d -= np.round(d)
            if np.min(np.linalg.norm(d @ cell, axis=1)) < LI_T_SITE_SEPARATION_A:
                continue
        chosen.append(site)
    if len(chosen) < n_li:
        raise ValueError(
            f"this seed's random order of the tetrahedral sites placed only {len(chosen)} Li "
            f"≥ {LI_T_SITE_SEPARATION_A} Å apart in a {repeat} c-Si cell; asked for {n_li} (another seed, "
            "a larger repeat or fewer Li may fit)"
        )
    li = Atoms(f"Li{n_li}", scaled_positions=np.array(chosen), cell=cell, pbc=True) if n_li else Atoms()
    return host + li


def li15si4(primitive: bool = True, a_a: float = A_LI15SI4_A) -> Atoms:
    """Crystalline Li15Si4 (I-43d): 38-atom bcc primitive cell (Li30Si8), or 76-atom conventional."""
    w = LI15SI4_WYCKOFF
    conv = crystal(["Li", "Li", "Si"], basis=[w["Li_12a"], w["Li_48e"], w["Si_16c"]], spacegroup=220,
                   cellpar=[a_a, a_a, a_a, 90, 90, 90])
    if not primitive:
        return conv
    prim_cell = 0.5 * a_a * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]], dtype=float)
    frac = np.linalg.solve(prim_cell.T, conv.positions.T).T % 1.0
    frac[np.isclose(frac, 1.0, atol=1e-6)] = 0.0
    keys = np.round(frac, 5)
    _, first = np.unique(keys, axis=0, return_index=True)
    first = np.sort(first)
    out = Atoms(np.array(conv.get_chemical_symbols())[first].tolist(),
                scaled_positions=frac[first], cell=prim_cell, pbc=True)
    if len(out) != len(conv) // 2:
        raise RuntimeError(f"Li15Si4 primitive reduction gave {len(out)} atoms, expected {len(conv) // 2}")
    return out[np.argsort(out.numbers, kind="stable")]  # Li first, then Si
