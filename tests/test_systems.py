"""Structure builders: counts, geometry, minimum distances, densities, seeds, strain, core–shell."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ase.neighborlist import neighbor_list
from scipy.spatial import cKDTree

from nepbench.structures import extxyz_bytes, min_interatomic_distance_a
from nepbench.systems import (
    BUILDERS, PAIR_MIN_A, STRAIN_MODES, build, core_shell_particle, density_g_cm3, lixsi_counts,
    lixsi_volume_per_si_a3, pair_min_distances_a, strain,
)
from nepbench.systems.amorphous import V_LI_IN_LIC_A3
from nepbench.systems.core_shell import SI_DIAMOND_ATOMS_PER_A3

EXPECTED_FORMULA = {
    "c-Si": "Si64", "graphite": "C36", "LiC6": "C24Li4", "Li-in-c-Si": "Li4Si64", "Li15Si4": "Li30Si8",
    "a-Si": "Si64", "a-C": "C64", "a-LixSi": "Li22Si11", "a-LiC": "C36Li6",
    "Si|C": "C31Si24", "Si|C-lithiated": "C31Li4Si24",
}


def _neighbours(atoms, cutoff):
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    return i, j, d


@pytest.mark.parametrize("name", sorted(EXPECTED_FORMULA))
def test_registry_defaults_give_documented_cells(name):
    atoms = build(name, seed=5)
    assert atoms.get_chemical_formula() == EXPECTED_FORMULA[name]
    assert 24 <= len(atoms) <= 70
    assert atoms.info["builder"] == name and atoms.info["seed"] == 5
    assert atoms.info["motif"] == BUILDERS[name].motif
    assert min_interatomic_distance_a(atoms, 3.0) >= BUILDERS[name].min_distance_a - 1e-6
    assert np.all(atoms.pbc)


def test_registry_records_params_and_rejects_bad_input():
    atoms = build("a-LixSi", seed=2, x=3.0)
    assert atoms.info["x"] == 3.0 and atoms.get_chemical_formula() == "Li24Si8"
    atoms = build("c-Si", seed=0, repeat=(1, 1, 2))
    assert len(atoms) == 16 and list(atoms.info["repeat"]) == [1, 1, 2]
    text = extxyz_bytes([atoms]).decode()  # info must survive the extxyz writer
    assert "builder=c-Si" in text and "motif=crystalline" in text
    with pytest.raises(ValueError, match="unknown builder"):
        build("b-Si", seed=0)
    with pytest.raises(ValueError, match="no parameter"):
        build("a-Si", seed=0, x=2.0)


def test_the_seed_and_core_shell_sizes_are_checked_as_parameters():
    """`seed` in a spec's params passed the check and failed later as a TypeError; core-shell's
    sizes, whose defaults sit in the registry, took any value (True built a 1 nm core)."""
    from nepbench.systems import param_problem

    assert "takes no parameter(s) seed" in param_problem("a-Si", {"n_atoms": 16, "seed": 3})
    assert param_problem("core-shell", {"core_radius_nm": True}) == (
        "builder 'core-shell': parameter core_radius_nm must be a finite number, got True")
    assert "must be a finite number, got '2'" in param_problem("core-shell", {"shell_thickness_nm": "2"})
    assert param_problem("core-shell", {"core_radius_nm": 1.5}) is None


def test_a_parameter_left_to_the_builder_records_the_value_it_chose():
    chosen = build("Si|C-lithiated", seed=0)
    assert build("Si|C-lithiated", seed=0, gap_a=None).info["gap_a"] == chosen.info["gap_a"] is not None


# --------------------------------------------------------------------------- crystalline

def test_c_si_density_and_tetrahedral_bonds():
    atoms = build("c-Si", seed=0)
    assert density_g_cm3(atoms) == pytest.approx(2.329, abs=0.002)
    i, _, d = _neighbours(atoms, 2.5)
    assert np.all(np.bincount(i) == 4)
    assert np.allclose(d, 5.431 * np.sqrt(3) / 4)


def test_graphite_layers_and_bonds():
    atoms = build("graphite", seed=0)
    i, _, d = _neighbours(atoms, 1.6)
    assert np.all(np.bincount(i) == 3) and np.allclose(d, 2.464 / np.sqrt(3))
    assert sorted(set(np.round(atoms.positions[:, 2], 4))) == pytest.approx([6.71 / 4, 3 * 6.71 / 4])


def test_lic6_geometry():
    atoms = build("LiC6", seed=0)
    symbols = np.array(atoms.get_chemical_symbols())
    i, j, d = _neighbours(atoms, 2.5)
    li_c = d[(symbols[i] == "Li") & (symbols[j] == "C")]
    assert len(li_c) == 4 * 12  # each Li sits between two hexagons: 12 C at one distance
    assert np.allclose(li_c, np.hypot(4.305 / 3, 3.706 / 2))
    c_c = d[(symbols[i] == "C") & (symbols[j] == "C") & (d < 2.0)]
    assert len(c_c) == 24 * 3 and np.allclose(c_c, 4.305 / 3)


def test_li_in_c_si_uses_tetrahedral_sites():
    atoms = build("Li-in-c-Si", seed=11, n_li=6)
    symbols = np.array(atoms.get_chemical_symbols())
    assert (symbols == "Li").sum() == 6 and (symbols == "Si").sum() == 64
    i, j, d = _neighbours(atoms, 2.5)
    from_li = symbols[i] == "Li"
    assert np.all(symbols[j][from_li] == "Si")
    assert np.all(np.bincount(i[from_li], minlength=len(atoms))[symbols == "Li"] == 4)
    assert np.allclose(d[from_li], 5.431 * np.sqrt(3) / 4)
    li = atoms[symbols == "Li"]
    assert min_interatomic_distance_a(li, 4.0) >= 3.8
    with pytest.raises(ValueError, match="random order of the tetrahedral sites placed only"):
        build("Li-in-c-Si", seed=0, n_li=40)


def test_li15si4_primitive_and_conventional_agree():
    prim, conv = build("Li15Si4", seed=0), build("Li15Si4", seed=0, primitive=False)
    assert conv.get_chemical_formula() == "Li60Si16"
    assert prim.get_volume() == pytest.approx(conv.get_volume() / 2)
    assert density_g_cm3(prim) == pytest.approx(1.178, abs=0.002)
    pairs = pair_min_distances_a(prim, 3.0)
    assert frozenset({"Si"}) not in pairs  # Si atoms are isolated in Li15Si4
    assert pairs[frozenset({"Li", "Si"})] == pytest.approx(2.635, abs=0.002)


# --------------------------------------------------------------------------- amorphous

@pytest.mark.parametrize("name,params", [
    ("a-Si", {}), ("a-C", {}), ("a-LixSi", {"x": 0.5}), ("a-LixSi", {"x": 3.75}), ("a-LiC", {"li_per_c": 0.25}),
])
def test_amorphous_pair_minima_and_cubic_cell(name, params):
    atoms = build(name, seed=3, **params)
    assert np.allclose(atoms.cell.array, np.eye(3) * atoms.cell.array[0, 0])
    for pair, dmin in pair_min_distances_a(atoms).items():
        assert dmin >= PAIR_MIN_A[pair] - 1e-9, pair


def test_amorphous_densities():
    assert density_g_cm3(build("a-Si", seed=1)) == pytest.approx(2.28, rel=1e-9)
    assert density_g_cm3(build("a-C", seed=1, density_g_cm3=2.0)) == pytest.approx(2.0, rel=1e-9)
    a_lic = build("a-LiC", seed=1)
    carbon_volume = 36 * 12.011 / (2.1 / 1.66053906660)
    assert a_lic.get_volume() == pytest.approx(carbon_volume + 6 * V_LI_IN_LIC_A3, rel=1e-4)
    assert V_LI_IN_LIC_A3 == pytest.approx(6.56, abs=0.01)


def test_lixsi_volume_rule_is_anchored_on_c_si_and_li15si4():
    assert lixsi_volume_per_si_a3(0.0) == pytest.approx(5.431**3 / 8)
    assert lixsi_volume_per_si_a3(3.75) == pytest.approx(10.685**3 / 16)
    a = build("a-LixSi", seed=4, x=3.75)
    assert a.get_chemical_formula() == "Li30Si8"
    assert density_g_cm3(a) == pytest.approx(density_g_cm3(build("Li15Si4", seed=0)), rel=1e-6)
    assert a.get_volume() / 8 == pytest.approx(76.24, abs=0.01)


@pytest.mark.parametrize("x,expected", [(0.5, (11, 22)), (1.0, (16, 16)), (2.0, (22, 11)),
                                        (3.0, (24, 8)), (3.75, (30, 8))])
def test_lixsi_counts(x, expected):
    assert lixsi_counts(x, 32) == expected


def test_a_lixsi_explicit_n_si():
    atoms = build("a-LixSi", seed=0, x=1.5, n_si=16)
    assert atoms.get_chemical_formula() == "Li24Si16"


@pytest.mark.parametrize("name,params", [
    ("a-Si", {}), ("a-LixSi", {"x": 2.0}), ("a-LiC", {}), ("Li-in-c-Si", {}),
    ("Si|C", {}), ("Si|C-lithiated", {}), ("Si|C", {"carbon": "graphene"}),
    ("Si|C-lithiated", {"carbon": "graphene"}),
])
def test_seed_determinism(name, params):
    a, b, c = build(name, seed=7, **params), build(name, seed=7, **params), build(name, seed=8, **params)
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.numbers, b.numbers)
    assert np.array_equal(a.cell.array, b.cell.array)
    assert not np.allclose(a.positions, c.positions)


# --------------------------------------------------------------------------- interfacial

def test_si_c_amorphous_interface_layout():
    atoms = build("Si|C", seed=2)
    symbols = np.array(atoms.get_chemical_symbols())
    assert atoms.cell.array[0, 0] == pytest.approx(5.431 * np.sqrt(2))
    si_z = atoms.positions[symbols == "Si", 2]
    assert sorted(set(np.round(si_z, 3))) == pytest.approx(np.arange(6) * 5.431 / 4, abs=1e-3)
    assert atoms.info["carbon_strain"] == 0.0
    pairs = pair_min_distances_a(atoms)
    assert pairs[frozenset({"C"})] >= 1.3 and pairs.get(frozenset({"Si", "C"}), 9.9) >= 1.7


def test_si_c_graphene_interface_strain_and_bonds():
    atoms = build("Si|C", seed=2, carbon="graphene")
    assert atoms.get_chemical_formula() == "C28Si18"
    strain_c = np.sqrt(3) * 5.431 / np.sqrt(2) / (np.sqrt(7) * 2.464) - 1
    assert atoms.info["carbon_strain"] == pytest.approx(strain_c) and 0.019 < strain_c < 0.021
    symbols = np.array(atoms.get_chemical_symbols())
    i, j, d = _neighbours(atoms, 1.7)
    assert np.allclose(d, 2.464 / np.sqrt(3) * (1 + strain_c))
    assert np.all(np.bincount(i)[symbols == "C"] == 3)
    c_z = atoms.positions[symbols == "C", 2]
    si_top = atoms.positions[symbols == "Si", 2].max()
    assert c_z.min() - si_top == pytest.approx(3.0)


@pytest.mark.parametrize("carbon", ["amorphous", "graphene"])
def test_lithiated_interface_puts_li_at_both_interfaces(carbon):
    atoms = build("Si|C-lithiated", seed=4, carbon=carbon, n_li=6)
    symbols = np.array(atoms.get_chemical_symbols())
    lz = atoms.cell.array[2, 2]
    si_z = atoms.positions[symbols == "Si", 2]
    li_z = atoms.positions[symbols == "Li", 2]
    top, gap = si_z.max(), atoms.info["gap_a"]

    def off(target):  # periodic z offset
        return np.abs((li_z - target + lz / 2) % lz - lz / 2)

    upper, lower = off(top + gap / 2) < 1.5, off(lz - gap / 2) < 1.5
    assert upper.sum() == 3 and lower.sum() == 3
    for pair, dmin in pair_min_distances_a(atoms).items():
        assert dmin >= PAIR_MIN_A.get(pair, 1.4) - 1e-9, pair


# --------------------------------------------------------------------------- strain

def test_isotropic_strain_scales_cell_exactly():
    base = build("a-LixSi", seed=1, x=2.0)
    out = strain(base, -0.07, seed=3, rattle_a=0.0, mode="isotropic")
    assert np.allclose(out.cell.array, 0.93 * base.cell.array, rtol=0, atol=1e-12)
    assert out.get_volume() == pytest.approx(0.93**3 * base.get_volume())
    assert np.allclose(out.get_scaled_positions(), base.get_scaled_positions())
    assert out.info["strain_mode"] == "isotropic" and out.info["strain_eps"] == -0.07
    assert np.array_equal(base.positions, build("a-LixSi", seed=1, x=2.0).positions)  # input untouched


def test_uniaxial_and_shear_strain():
    base = build("graphite", seed=0)
    out = strain(base, 0.08, seed=0, mode="uniaxial-z")
    assert np.allclose(out.cell.array[:2], base.cell.array[:2])
    assert out.cell.array[2, 2] == pytest.approx(1.08 * base.cell.array[2, 2])
    cubic = build("c-Si", seed=0)
    sheared = strain(cubic, 0.1, seed=0, mode="shear-xy")
    side = cubic.cell.array[0, 0]
    assert np.allclose(sheared.cell.array, [[side, 0.05 * side, 0], [0.05 * side, side, 0], [0, 0, side]])


def test_strain_rattle_and_random_mode_are_seeded():
    base = build("c-Si", seed=0)
    a = strain(base, 0.05, seed=9, rattle_a=0.1)
    b = strain(base, 0.05, seed=9, rattle_a=0.1)
    assert np.array_equal(a.positions, b.positions) and a.info["strain_mode"] == b.info["strain_mode"]
    assert a.info["strain_mode"] in STRAIN_MODES
    modes = {strain(base, 0.05, seed=s).info["strain_mode"] for s in range(40)}
    assert len(modes) >= 5
    clean = strain(base, 0.05, seed=9, rattle_a=0.0, mode=a.info["strain_mode"])
    displacement = a.positions - clean.positions
    assert displacement.std() == pytest.approx(0.1, rel=0.15)
    assert abs(displacement.mean()) < 0.03


def test_strain_rejects_bad_input():
    base = build("c-Si", seed=0)
    with pytest.raises(ValueError):
        strain(base, 0.6, seed=0)
    with pytest.raises(ValueError):
        strain(base, 0.05, seed=0, mode="twist")
    with pytest.raises(ValueError):
        strain(base, 0.05, seed=0, rattle_a=-1.0)


# --------------------------------------------------------------------------- core–shell

def _radial(atoms):
    return np.linalg.norm(atoms.positions - np.diag(atoms.cell.array) / 2, axis=1)


@pytest.mark.parametrize("core", ["crystalline", "amorphous"])
def test_core_shell_counts_radii_and_overlaps(core):
    r_core, t, vac = 1.5, 0.6, 1.0
    atoms = core_shell_particle(r_core, t, vac, seed=3, core=core)
    tags, symbols = atoms.get_tags(), np.array(atoms.get_chemical_symbols())
    assert np.all(symbols[tags == 1] == "Si") and np.all(symbols[tags == 2] == "C")
    r_a, t_a = 10 * r_core, 10 * t
    core_volume = 4 / 3 * np.pi * r_a**3
    expected_core = core_volume * (SI_DIAMOND_ATOMS_PER_A3 if core == "crystalline" else 0.04889)
    assert (tags == 1).sum() == pytest.approx(expected_core, rel=0.03)
    shell_volume = 4 / 3 * np.pi * ((r_a + t_a) ** 3 - r_a**3)
    assert (tags == 2).sum() == round(shell_volume * 2.1 / 1.66053906660 / 12.011)
    radius = _radial(atoms)
    assert radius[tags == 1].max() <= r_a + 1e-9
    assert radius[tags == 2].min() >= r_a - 1e-9 and radius[tags == 2].max() <= r_a + t_a + 1e-9
    assert atoms.cell.array[0, 0] == pytest.approx(2 * (r_a + t_a + 10 * vac))
    distance, _ = cKDTree(atoms.positions).query(atoms.positions, k=2)
    assert distance[:, 1].min() >= 1.3 - 1e-9
    si_c, _ = cKDTree(atoms.positions[tags == 1]).query(atoms.positions[tags == 2], k=1)
    assert si_c.min() >= 1.7 - 1e-9


def test_core_shell_seeds_and_crystalline_core():
    a = core_shell_particle(1.0, 0.4, 0.5, seed=1)
    b = core_shell_particle(1.0, 0.4, 0.5, seed=1)
    c = core_shell_particle(1.0, 0.4, 0.5, seed=2)
    assert np.array_equal(a.positions, b.positions)
    assert len(a) != len(c) or not np.allclose(a.positions, c.positions)
    core = a[a.get_tags() == 1]
    core.pbc = False
    i, _, d = _neighbours(core, 2.5)
    assert np.allclose(d, 5.431 * np.sqrt(3) / 4)  # a cut crystal: only diamond bonds
    assert np.bincount(i).max() == 4


@pytest.mark.parametrize("core", ["crystalline", "amorphous"])
def test_core_si_count_is_the_builders_count_without_building(core):
    """The expansion task refuses a core too small for its fits by this count when the suite loads,
    so it must be the count the builder later builds, seed by seed (a crystalline core's varies)."""
    from nepbench.systems.core_shell import core_si_count

    counts = []
    for seed in (1, 2, 3, 4):
        atoms = core_shell_particle(0.55, 0.0, 0.5, seed=seed, core=core)
        counts.append(core_si_count(0.55, seed, core))
        assert counts[-1] == atoms.info["n_core"] == (atoms.get_tags() == 1).sum()
    # the lattice shift changes a small crystalline core's count (36, 33, 35, 30 here); density does not
    assert (len(set(counts)) == 1) == (core == "amorphous")
    with pytest.raises(ValueError, match="core"):
        core_si_count(1.0, 1, "glassy")


def test_core_shell_rejects_bad_input():
    with pytest.raises(ValueError):
        core_shell_particle(0.0, 0.5, 1.0, seed=0)
    with pytest.raises(ValueError):
        core_shell_particle(1.0, 0.5, 1.0, seed=0, core="glassy")


def test_a_builder_that_builds_no_atoms_is_refused(monkeypatch):
    """The last guard before an empty cell is written or labelled, whatever parameters led to it."""
    from ase import Atoms

    from nepbench import systems

    def empty(repeat: tuple[int, int, int] = (2, 2, 2), a_a: float = 5.43) -> Atoms:
        return Atoms()

    monkeypatch.setitem(systems.BUILDERS, "c-Si", dataclasses.replace(systems.BUILDERS["c-Si"], func=empty))
    with pytest.raises(ValueError, match="builder 'c-Si' with its defaults builds no atoms"):
        systems.build("c-Si", seed=0)
