"""Structure reading and checks: one InputError naming the file and the problem."""

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from nepbench.errors import InputError
from nepbench.structures import check_structure, read_structures, with_labels, write_structures

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
