"""Structure reading and checks: one InputError naming the file and the problem."""

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from nepbench.errors import InputError
from nepbench.structures import (check_structure, labels_of, min_interatomic_distance_a, read_structures,
                                  with_labels, write_structures)

GOOD = """2
Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3 pbc="T T T"
Si 0.0 0.0 0.0
Si 1.3 1.3 1.3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "in.extxyz"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, phrase", [
    (GOOD.replace("Si 1.3", "Xx 1.3"), "malformed extxyz"),
    (GOOD.replace("1.3 1.3 1.3", "0.2 0.2 0.1"), "closer than 0.5 Å"),
    (GOOD.replace("1.3 1.3 1.3", "nan 1.3 1.3"), "non-finite"),
    (GOOD.replace("2\n", "3\n", 1), "malformed extxyz"),
    ("", "no frames"),
])
def test_bad_files_name_file_and_problem(tmp_path, text, phrase):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_structures(path)
    assert str(path) in str(info.value) and phrase in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_structures(tmp_path / "nope.extxyz")


def test_species_not_in_model(tmp_path):
    with pytest.raises(InputError, match="species Si .*not in the model"):
        read_structures(write(tmp_path, GOOD), allowed_species=("Li", "C"))


def test_unknown_element_in_memory():
    atoms = Atoms("Si2", positions=[[0, 0, 0], [2, 2, 2]], cell=[5, 5, 5], pbc=True)
    atoms.numbers[1] = 0  # "X", not an element
    with pytest.raises(InputError, match="unknown element"):
        check_structure(atoms, "mem")


def test_labels_round_trip_compressed(tmp_path):
    atoms = read_structures(write(tmp_path, GOOD))[0]
    forces = np.array([[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]])
    labelled = with_labels(atoms, -12.5, forces, np.arange(6) * 1e-3)
    for suffix in (".extxyz.xz", ".extxyz.gz", ".extxyz"):
        path = tmp_path / f"out{suffix}"
        write_structures(path, [labelled])
        back = read_structures(path, require_labels=True)[0]
        assert back.get_potential_energy() == -12.5
        assert np.allclose(back.get_forces(), forces)
        assert np.allclose(back.get_stress(), np.arange(6) * 1e-3)
    with pytest.raises(InputError, match="no energy/forces"):
        read_structures(write(tmp_path, GOOD), require_labels=True)


def _ase_min_distance_a(atoms: Atoms, cutoff_a: float) -> float:
    from ase.neighborlist import neighbor_list

    _, _, d = neighbor_list("ijd", atoms, cutoff_a)
    return float(d.min()) if len(d) else float("inf")


def test_min_distance_matches_ase_neighbour_list_on_random_cells():
    """The k-d tree search gives ASE's minimum-image answer: skewed and thin cells (images of an
    atom itself count), mixed periodicity, atoms outside the cell, cutoffs above the cell width."""
    rng = np.random.default_rng(0)
    checked = 0
    for t in range(150):
        n = int(rng.integers(1, 30))
        cell = np.diag(rng.uniform(1.5, 8.0, 3)) + rng.uniform(-2.0, 2.0, (3, 3)) * (t % 2)
        atoms = Atoms(f"Si{n}", positions=rng.uniform(-3.0, 10.0, (n, 3)), cell=cell,
                      pbc=rng.random(3) < 0.7)
        widths = atoms.cell.volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
        if widths.min() < 1.0:
            continue
        for cutoff in (0.5, 2.0, 5.0):
            expected = _ase_min_distance_a(atoms, cutoff)
            assert min_interatomic_distance_a(atoms, cutoff) == pytest.approx(expected, abs=1e-9), (t, cutoff)
            checked += 1
    assert checked > 200


def test_min_distance_of_a_repeated_cell_is_that_of_the_cell():
    base = Atoms("Si2", positions=[[0, 0, 0], [1.1, 1.2, 1.3]], cell=[4.0, 4.5, 5.0], pbc=True)
    big = base.repeat((40, 40, 40))
    assert min_interatomic_distance_a(big, 3.0) == pytest.approx(min_interatomic_distance_a(base, 3.0))
    assert min_interatomic_distance_a(base, 3.0) == pytest.approx(np.sqrt(1.1**2 + 1.2**2 + 1.3**2))
    assert min_interatomic_distance_a(big, 2.0) == float("inf")


def test_min_distance_refuses_a_cell_too_thin_for_the_cutoff():
    atoms = Atoms("Si", positions=[[0, 0, 0]], cell=[0.001, 5.0, 5.0], pbc=True)
    with pytest.raises(ValueError, match="too thin"):
        min_interatomic_distance_a(atoms, 2.0)


def test_a_compression_these_files_do_not_use_is_refused_naming_the_file(tmp_path):
    """`systems build c-Si --out cell.extxyz.bz2` wrote plain text under that name, which the
    project's own reader then refused as a corrupt archive."""
    from ase.build import bulk

    from nepbench.structures import write_structures

    path = tmp_path / "cell.extxyz.bz2"
    with pytest.raises(InputError, match=r"cell\.extxyz\.bz2: compression \.bz2 is not supported"):
        write_structures(path, [bulk("Si")])
    assert not path.exists()
    write_structures(tmp_path / "cell.extxyz.gz", [bulk("Si")])
    assert (tmp_path / "cell.extxyz.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_gpumd_training_names_read_as_labels(tmp_path):
    """A GPUMD training file names forces `force` and carries `virial` (eV, −σ·V) instead of a
    stress: both are read, the stress as −virial / volume in ASE's Voigt order, on a skewed cell."""
    from ase.stress import full_3x3_to_voigt_6_stress

    cell = np.array([[5.0, 0.0, 0.0], [0.7, 5.2, 0.0], [0.3, -0.4, 5.5]])
    virial_ev = np.array([[1.2, 0.3, -0.5], [0.3, -2.0, 0.8], [-0.5, 0.8, 0.4]])
    forces = np.array([[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]])
    lines = ["2", 'Lattice="' + " ".join(f"{x}" for x in cell.ravel()) + '" Properties=species:S:1:pos:R:3:force:R:3 '
             'energy=-7.25 virial="' + " ".join(f"{x}" for x in virial_ev.ravel()) + '" pbc="T T T"']
    lines += [f"Si 0.0 0.0 0.0 {' '.join(map(str, forces[0]))}", f"Si 1.3 1.3 1.3 {' '.join(map(str, forces[1]))}"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    frame = read_structures(path, require_labels=True)[0]
    energy, got_forces, stress = labels_of(frame)
    assert energy == -7.25
    np.testing.assert_allclose(got_forces, forces)
    np.testing.assert_allclose(stress, full_3x3_to_voigt_6_stress(-virial_ev / abs(np.linalg.det(cell))))
    assert stress[3] != stress[4]  # yz and xz taken from the right places, not a symmetric guess
    frame.pbc = (True, True, False)  # no volume to divide by: no stress rather than a wrong one
    assert labels_of(frame)[2] is None
    frame.pbc = True
    frame.info["virial"] = np.arange(8.0)  # 8 numbers are not a 3×3 virial
    with pytest.raises(ValueError):
        labels_of(frame)
