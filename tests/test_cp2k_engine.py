"""Tests of the CP2K engine: pure parsers and input writing on text, then a few small real runs.

Snippets below were captured from real CP2K 2023.1 (Debian) runs on an 8-atom Si cell.
Tests marked `cp2k` run the real program (8 atoms, 200 Ry; tens of seconds each on 2 cores).
"""

from __future__ import annotations

import dataclasses
import json
import re
import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from nepbench.engines import cp2k as cp2k_mod
from nepbench.engines.base import MDProtocol
from nepbench.engines.cp2k import (
    AIMD_SETTINGS,
    AIMD_V1_SETTINGS,
    LABEL_SETTINGS,
    CP2KEngine,
    CP2KSettings,
    MDInput,
    abort_message,
    build_input,
    extrapolation_used,
    labels_from_output,
    parse_ener,
    parse_energy_ev,
    parse_forces_ev_per_a,
    parse_stress_ev_per_a3,
    parse_version,
    parse_xyz_trajectory,
    read_md_run,
)
from cp2k_fakes import FakeCP2K as _FakeCP2K
from nepbench.errors import EngineCrashed, EngineNotAvailable, InputError, SCFNotConverged

HAVE_CP2K = shutil.which("cp2k.psmp") is not None and shutil.which("mpirun") is not None
needs_cp2k = pytest.mark.skipif(not HAVE_CP2K, reason="cp2k.psmp/mpirun not installed (apt-get install cp2k)")

# CODATA values written out, so the conversions are checked against numbers, not against themselves
# (ASE 3.29 uses CODATA 2014 for e, so GPa agrees to ~1e-8 relative).
HARTREE_EV_CODATA = 27.211386  # eV
BOHR_A_CODATA = 0.52917721  # Å
GPA_EV_PER_A3 = 1e9 / 1.602176634e-19 * 1e-30  # 1 GPa = 1e9 J/m³ in eV/Å³

# --------------------------------------------------------------------------------------------
# Captured snippets
# --------------------------------------------------------------------------------------------

ENERGY_SNIPPET = """
  Total energy:                                               -31.11545791040035

 ENERGY| Total FORCE_EVAL ( QS ) energy [a.u.]:              -31.115457910400352
"""

FORCES_SNIPPET = """
 ATOMIC FORCES in [a.u.]

 # Atom   Kind   Element          X              Y              Z
      1      1      Si         -0.01024651    -0.00000005     0.00000004
      2      1      Si         -0.00409642     0.00000000    -0.00000000
      3      1      Si         -0.00167387     0.00000000    -0.00000004
      4      1      Si         -0.00167382     0.00000002    -0.00000000
      5      1      Si          0.00464014     0.00358070     0.00358069
      6      1      Si          0.00464012    -0.00358067    -0.00358066
      7      1      Si          0.00420518    -0.00299494     0.00299490
      8      1      Si          0.00420518     0.00299494    -0.00299492
 SUM OF ATOMIC FORCES          -0.00000000     0.00000000     0.00000000     0.00000000
"""

STRESS_SNIPPET = """
 STRESS| Analytical stress tensor [GPa]
 STRESS|                        x                   y                   z
 STRESS|      x        1.05487376846E+01   2.68099747176E-06   5.06760835107E-06
 STRESS|      y        2.68099747176E-06   1.06118351481E+01   6.13309022864E-01
 STRESS|      z        5.06760835107E-06   6.13309022864E-01   1.06117257539E+01
 STRESS| 1/3 Trace                                             1.05907661955E+01
 STRESS| Determinant                                           1.18392424443E+03

 STRESS| Eigenvectors and eigenvalues of the analytical stress tensor [GPa]
 STRESS|                        1                   2                   3
 STRESS| Eigenvalues   9.99847142567E+00   1.05487376846E+01   1.12250894763E+01
"""

SCF_FAILED_SNIPPET = """
  Total energy:                                               -31.39272571210609

 *** WARNING in qs_scf.F:601 :: SCF run NOT converged ***


 ENERGY| Total FORCE_EVAL ( QS ) energy [a.u.]:              -31.102552805400894
"""

ABORT_SNIPPET = """
 *******************************************************************************
 *   ___                                                                       *
 *  /   \\                                                                      *
 * [ABORT]                                                                     *
 *  \\___/    The requested basis set <NO-SUCH-BASIS> for element <Si> was not  *
 *    |                 found in the basis set files <BASIS_MOLOPT>            *
 *  O/|                                                                        *
 * /| |                                                                        *
 * / \\                                          aobasis/basis_set_types.F:1509 *
 *******************************************************************************


 ===== Routine Calling Stack =====
"""

VERSION_SNIPPET = """ CP2K version 2023.1
 Source code revision git:b888bd8
 cp2kflags: omp libint fftw3 libxc elpa parallel scalapack spglib
"""

ENER_SNIPPET = """#     Step Nr.          Time[fs]        Kin.[a.u.]          Temp[K]            Pot.[a.u.]        Cons Qty[a.u.]        UsedTime[s]
         0            0.000000         0.019950937       600.000000000       -31.110903395       -31.090952458         0.000000000
         1            1.000000         0.019831155       596.397725514       -31.111019356       -31.090953165        45.794814282
         2            2.000000         0.020184293       607.017906098       -31.111056817       -31.090953737        12.545246834
"""

XYZ_SNIPPET = """       2
 i =        0, time =        0.000, E =       -31.1109033947
 Si         0.0812172682       -0.0305878207       -0.0264085876
 Si         1.3038515700        1.4007703800        1.2424230700
       2
 i =        1, time =        1.000, E =       -31.1110193560
 Si         0.0900000000       -0.0300000000       -0.0260000000
 Si         1.3000000000        1.4000000000        1.2400000000
"""


def _si8(rattle: float = 0.05, seed: int = 1) -> Atoms:
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(rattle, seed=seed)
    return atoms


# --------------------------------------------------------------------------------------------
# Units, settings, input writing
# --------------------------------------------------------------------------------------------


def test_unit_constants_match_codata() -> None:
    assert cp2k_mod.HARTREE_EV == pytest.approx(HARTREE_EV_CODATA, rel=1e-6)
    assert cp2k_mod.BOHR_A == pytest.approx(BOHR_A_CODATA, rel=1e-6)
    assert cp2k_mod.HARTREE_PER_BOHR_EV_PER_A == pytest.approx(51.42208, rel=1e-6)
    assert cp2k_mod.GPA_EV_PER_A3 == pytest.approx(GPA_EV_PER_A3, rel=1e-7)
    assert cp2k_mod.GPA_EV_PER_A3 == pytest.approx(1 / 160.21766, rel=1e-6)


def test_presets_hold_the_agreed_values() -> None:
    # AIMD is the labels' level of theory: same functional, basis, cutoff and smearing; the tuning
    # study (docs/cp2k_settings.md) loosened only numerics that kept the labels within its limits
    same = ("xc", "basis_set", "potentials", "cutoff_ry", "electronic_temperature_k")
    assert {k: getattr(AIMD_SETTINGS, k) for k in same} == {k: getattr(LABEL_SETTINGS, k) for k in same}
    assert AIMD_SETTINGS.eps_scf == 1e-5 and AIMD_SETTINGS.eps_default == 1e-9
    assert AIMD_SETTINGS.rel_cutoff_ry == 40.0 and AIMD_V1_SETTINGS.eps_default == 1e-10
    assert {k: getattr(AIMD_V1_SETTINGS, k) for k in same + ("rel_cutoff_ry",)} == \
        {k: getattr(LABEL_SETTINGS, k) for k in same + ("rel_cutoff_ry",)}
    assert (AIMD_SETTINGS.mixing_alpha, AIMD_SETTINGS.nbroyden) == (0.4, 8)
    assert LABEL_SETTINGS.eps_scf == 1e-6 and LABEL_SETTINGS.electronic_temperature_k == 500.0
    assert LABEL_SETTINGS.stress and not AIMD_SETTINGS.stress
    for settings in (LABEL_SETTINGS, AIMD_SETTINGS):
        assert settings.xc == "PBE" and settings.basis_set == "DZVP-MOLOPT-SR-GTH"
        assert settings.potential_for("Li") == "GTH-PBE-q3"
        assert settings.potential_for("Si") == "GTH-PBE-q4"
        assert settings.potential_for("C") == "GTH-PBE-q4"


def test_settings_round_trip_through_json() -> None:
    data = json.loads(json.dumps(LABEL_SETTINGS.to_dict()))
    assert data["potentials"] == {"Li": "GTH-PBE-q3", "Si": "GTH-PBE-q4", "C": "GTH-PBE-q4", "H": "GTH-PBE-q1"}
    assert CP2KSettings.from_dict(data) == LABEL_SETTINGS
    assert hash(CP2KSettings.from_dict(data)) == hash(LABEL_SETTINGS)


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="cutoff"):
        CP2KSettings(cutoff_ry=0)
    with pytest.raises(ValueError, match="-qN"):
        CP2KSettings(potentials=(("Si", "GTH-PBE"),))


def test_kpoint_mesh_setting_is_checked_written_and_round_trips() -> None:
    """`kpoints` is left out of records while None (older records compare equal), written as a
    Monkhorst-Pack &KPOINTS section when set, and refused for bad meshes or a non-periodic cell."""
    assert "kpoints" not in LABEL_SETTINGS.to_dict() and "KPOINTS" not in build_input(_si8(), LABEL_SETTINGS)
    meshed = dataclasses.replace(LABEL_SETTINGS, kpoints=(2, 3, 1))
    data = json.loads(json.dumps(meshed.to_dict()))
    assert data["kpoints"] == [2, 3, 1] and CP2KSettings.from_dict(data) == meshed
    text = build_input(_si8(), meshed)
    assert "    &KPOINTS\n      SCHEME MONKHORST-PACK 2 3 1\n    &END KPOINTS" in text
    assert text.index("&KPOINTS") < text.index("&SCF")  # inside &DFT
    for bad in ((2, 2), (0, 1, 1), (2.5, 2, 2), ("a", 2, 2), 3):
        with pytest.raises(ValueError, match="kpoints"):
            dataclasses.replace(LABEL_SETTINGS, kpoints=bad)
    molecule = Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]], cell=[8, 8, 8], pbc=False)
    with pytest.raises(InputError, match="periodic"):
        build_input(molecule, meshed)


def test_kpoint_length_rule_gives_each_cell_its_mesh() -> None:
    """n_i = ceil(length / width_i): the width is across faces, so a sheared cell's is less than its
    vector's length; a cell wide enough gets Γ only (no &KPOINTS), and a non-periodic one too."""
    assert cp2k_mod.kpoint_mesh(np.diag([7.0, 8.04, 20.3]), 16.0) == (3, 2, 1)
    assert cp2k_mod.kpoint_mesh(np.diag([8.0, 8.0, 8.0]), 16.0) == (2, 2, 2)  # exactly 2 widths: no third point
    sheared = np.array([[8.0, 0.0, 0.0], [6.0, 6.0, 0.0], [0.0, 0.0, 20.0]])  # b at 45° to a: width 8·sin 45°
    width_a = 1.0 / np.linalg.norm(np.linalg.inv(sheared).T[0])
    assert width_a == pytest.approx(8.0 * 6.0 / np.hypot(6.0, 6.0))
    assert cp2k_mod.kpoint_mesh(sheared, 16.0)[0] == 3  # 16 / 5.66 → 3, although |a| = 8
    with pytest.raises(ValueError):
        cp2k_mod.kpoint_mesh(np.zeros((3, 3)), 16.0)
    rule = dataclasses.replace(LABEL_SETTINGS, kpoint_length_a=16.0)
    assert rule.mesh_for(np.diag([30.0, 30.0, 30.0])) is None
    assert "SCHEME MONKHORST-PACK 3 3 3" in build_input(_si8(), rule)  # 5.43 Å cube
    wide = Atoms("Si", positions=[[0, 0, 0]], cell=[17.0, 17.0, 17.0], pbc=True)
    assert "KPOINTS" not in build_input(wide, rule)
    molecule = Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]], cell=[8, 8, 8], pbc=False)
    assert "KPOINTS" not in build_input(molecule, rule)
    with pytest.raises(ValueError, match="not both"):
        dataclasses.replace(rule, kpoints=(2, 2, 2))
    with pytest.raises(ValueError, match="kpoint_length_a"):
        dataclasses.replace(LABEL_SETTINGS, kpoint_length_a=0.0)
    assert CP2KSettings.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    # the -kp presets are their Γ presets plus the rule: 3×3×3 on the 8.04 Å AIMD cell
    kp = cp2k_mod.SETTINGS_PRESETS
    assert dataclasses.replace(kp["label-kp"], kpoint_length_a=None) == kp["label-tuned"]
    assert dataclasses.replace(kp["aimd-kp"], kpoint_length_a=None) == kp["aimd"]
    assert kp["aimd-kp"].mesh_for(np.diag([8.04] * 3)) == (3, 3, 3)


def test_added_mos_from_valence_electrons() -> None:
    # Li8Si16C8: 8*3 + 16*4 + 8*4 = 120 electrons, 60 occupied -> max(20, 12) = 20
    assert LABEL_SETTINGS.valence_electrons(["Li"] * 8 + ["Si"] * 16 + ["C"] * 8) == 120
    assert LABEL_SETTINGS.added_mos_for(["Li"] * 8 + ["Si"] * 16 + ["C"] * 8) == 20
    # Si216: 864 electrons, 432 occupied -> ceil(86.4) = 87
    assert LABEL_SETTINGS.added_mos_for(["Si"] * 216) == 87
    assert dataclasses.replace(LABEL_SETTINGS, added_mos=7).added_mos_for(["Si"] * 216) == 7


def test_single_point_input_has_every_setting() -> None:
    atoms = Atoms("LiSiC", positions=[[0, 0, 0], [2, 0, 0], [0, 2, 0]], cell=[6, 6.5, 7], pbc=True)
    text = build_input(atoms, LABEL_SETTINGS)
    assert "RUN_TYPE ENERGY_FORCE" in text and "STRESS_TENSOR ANALYTICAL" in text
    assert "CUTOFF 400.0" in text and "REL_CUTOFF 50.0" in text
    assert "EPS_SCF 1.000E-06" in text and "ELECTRONIC_TEMPERATURE 500.0" in text
    assert "METHOD FERMI_DIRAC" in text and "METHOD BROYDEN_MIXING" in text
    assert "ADDED_MOS 20" in text and "EXTRAPOLATION ASPC" in text and "EXTRAPOLATION_ORDER 3" in text
    assert "PERIODIC XYZ" in text and "B 0.0000000000 6.5000000000 0.0000000000" in text
    assert "      Si 2.0000000000 0.0000000000 0.0000000000" in text
    for element, pot in (("Li", "GTH-PBE-q3"), ("Si", "GTH-PBE-q4"), ("C", "GTH-PBE-q4")):
        assert f"&KIND {element}\n      BASIS_SET DZVP-MOLOPT-SR-GTH\n      POTENTIAL {pot}" in text
    assert "&KIND H" not in text and "&MOTION" not in text and "OUTER_SCF" not in text
    settings_line = text.splitlines()[0]
    assert settings_line.startswith("# nepbench CP2KSettings ")
    assert json.loads(settings_line.split(" ", 3)[3]) == LABEL_SETTINGS.to_dict()


def test_md_input_nvt_nve_and_restart() -> None:
    atoms = _si8()
    nvt = MDInput("nvt", steps=7, timestep_fs=0.5, temperature_k=900.0, thermostat_coupling_fs=50.0, seed=4)
    text = build_input(atoms, AIMD_SETTINGS, md=nvt)
    assert "RUN_TYPE MD" in text and "SEED 5" in text and "ENSEMBLE NVT" in text
    assert "STEPS 7" in text and "TIMESTEP 0.5" in text and "TEMPERATURE 900.0" in text
    assert "TYPE CSVR" in text and "TIMECON 50.0" in text
    assert "STRESS_TENSOR" not in text and "EXT_RESTART" not in text
    nve = build_input(atoms, AIMD_SETTINGS, md=dataclasses.replace(nvt, ensemble="nve", restart_file="/r/x.restart"))
    assert "ENSEMBLE NVE" in nve and "CSVR" not in nve
    assert "RESTART_FILE_NAME /r/x.restart" in nve and "RESTART_COUNTERS T" in nve
    assert "RESTART_THERMOSTAT T" in nve and "RESTART_VEL T" in nve


def test_a_fresh_nvt_run_seeds_its_thermostat_noise_and_a_restart_carries_it_on() -> None:
    """CP2K 2023.1 starts every CSVR stream from 12345 whatever SEED says: without an explicit
    RNG_INIT record every run drew the same noise. A restart must not reset the stream."""
    atoms = _si8()
    nvt = MDInput("nvt", steps=7, timestep_fs=0.5, temperature_k=900.0, thermostat_coupling_fs=50.0, seed=4)
    text = build_input(atoms, AIMD_SETTINGS, md=nvt)
    block = text[text.index("&CSVR"):text.index("&END CSVR")]
    assert f"&RNG_INIT\n{cp2k_mod.csvr_rng_record(4)}\n        &END RNG_INIT" in block
    restarted = build_input(atoms, AIMD_SETTINGS, md=dataclasses.replace(nvt, restart_file="/r/x.restart"))
    assert "RNG_INIT" not in restarted and "RESTART_RANDOMG T" in restarted
    assert "RNG_INIT" not in build_input(atoms, AIMD_SETTINGS, md=dataclasses.replace(nvt, ensemble="nve"))


@pytest.mark.parametrize("seed", [0, 4, 7, 2**31 - 1, 2**40])
def test_the_csvr_record_has_cp2ks_layout_and_valid_mrg32k3a_seeds(seed) -> None:
    record = cp2k_mod.csvr_rng_record(seed)
    assert len(record) == 433  # CP2K's rng_record_length, as its own restart records
    assert record[:40].rstrip() == "Wiener process for Thermostat # 1" and record[40:50] == " 1 F F F  "
    fields = record[40:].split()
    assert float(fields[4]) == 0.0 and len(fields) == 5 + 18
    seeds = [float(v) for v in fields[5:]]
    assert seeds[0:6] == seeds[6:12] == seeds[12:18] == [float(v) for v in cp2k_mod.csvr_rng_seeds(seed)]
    assert all(1 <= v < cp2k_mod.MRG32K3A_M1 for v in seeds[:3]) and all(1 <= v < cp2k_mod.MRG32K3A_M2 for v in seeds[3:6])
    assert cp2k_mod.csvr_rng_seeds(seed) == cp2k_mod.csvr_rng_seeds(seed)
    assert cp2k_mod.csvr_rng_seeds(seed) != cp2k_mod.csvr_rng_seeds(seed + 1)


def test_outer_scf_and_cluster() -> None:
    atoms = Atoms("Si2", positions=[[4, 4, 4], [6.3, 4, 4]], cell=[10, 10, 10], pbc=False)
    text = build_input(atoms, dataclasses.replace(LABEL_SETTINGS, outer_scf_max=10))
    assert "PERIODIC NONE" in text and "POISSON_SOLVER MT" in text
    assert "&OUTER_SCF ON\n        MAX_SCF 10" in text
    assert "STRESS_TENSOR" not in text  # no stress for a non-periodic cell


def test_bad_structures_are_refused() -> None:
    with pytest.raises(InputError, match="element Fe has no CP2K potential"):
        build_input(Atoms("Fe", cell=[5, 5, 5], pbc=True), LABEL_SETTINGS)
    with pytest.raises(InputError, match="pbc all True or all False"):
        build_input(Atoms("Si", cell=[5, 5, 5], pbc=[True, True, False]), LABEL_SETTINGS)
    with pytest.raises(InputError, match="non-zero volume"):
        build_input(Atoms("Si", pbc=False), LABEL_SETTINGS)
    bad = _si8()
    bad.positions[0, 0] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        build_input(bad, LABEL_SETTINGS)


# --------------------------------------------------------------------------------------------
# Parsers on captured text
# --------------------------------------------------------------------------------------------


def test_parse_energy_in_ev() -> None:
    assert parse_energy_ev(ENERGY_SNIPPET) == pytest.approx(-31.115457910400352 * HARTREE_EV_CODATA, rel=1e-7)
    assert parse_energy_ev(ENERGY_SNIPPET) == pytest.approx(-846.6948, abs=1e-3)
    with pytest.raises(EngineCrashed, match="ENERGY"):
        parse_energy_ev("no energy here")


def test_parse_forces_in_ev_per_a() -> None:
    forces = parse_forces_ev_per_a(FORCES_SNIPPET, 8)
    assert forces.shape == (8, 3)
    assert forces[0, 0] == pytest.approx(-0.01024651 * HARTREE_EV_CODATA / BOHR_A_CODATA, rel=1e-6)
    assert forces[0, 0] == pytest.approx(-0.526896, abs=1e-5)  # eV/Å
    assert forces[4, 1] == pytest.approx(0.00358070 * 51.422086, rel=1e-6)
    assert np.abs(forces.sum(axis=0)).max() < 1e-5
    with pytest.raises(EngineCrashed, match="7 rows, expected 8"):
        parse_forces_ev_per_a(FORCES_SNIPPET.replace("      8      1      Si", "x"), 8)


def test_parse_stress_ase_sign_and_voigt_order() -> None:
    voigt = parse_stress_ev_per_a3(STRESS_SNIPPET)
    # CP2K prints positive (compressive) pressure; ASE stress is its negative, in eV/Å³
    assert voigt[0] == pytest.approx(-10.5487376846 * GPA_EV_PER_A3, rel=1e-7)
    assert voigt[0] == pytest.approx(-0.0658403, rel=1e-5)
    assert voigt[1] == pytest.approx(-10.6118351481 * GPA_EV_PER_A3, rel=1e-7)
    assert voigt[3] == pytest.approx(-0.613309022864 * GPA_EV_PER_A3, rel=1e-7)  # yz
    assert abs(voigt[4]) < 1e-6 and abs(voigt[5]) < 1e-6  # xz, xy
    with pytest.raises(EngineCrashed, match="stress"):
        parse_stress_ev_per_a3(ENERGY_SNIPPET)


def test_unconverged_scf_raises_even_with_an_energy() -> None:
    text = SCF_FAILED_SNIPPET + FORCES_SNIPPET
    assert parse_energy_ev(text) < 0  # CP2K carried on and printed numbers ...
    with pytest.raises(SCFNotConverged):  # ... which must never be returned
        labels_from_output(text, 8, want_stress=False)
    with pytest.raises(SCFNotConverged, match="SCF not converged"):
        cp2k_mod._raise_for_failure(text + "PROGRAM ENDED AT", 0, Path("/tmp/x"))
    with pytest.raises(SCFNotConverged):
        cp2k_mod._raise_for_failure("  *** SCF run NOT converged ***\n", 0, Path("/tmp/x"))


def test_converged_output_gives_labels() -> None:
    labels = labels_from_output(ENERGY_SNIPPET + FORCES_SNIPPET + STRESS_SNIPPET, 8, want_stress=True, wall_s=2.0)
    assert labels.energy_ev == pytest.approx(-846.6948, abs=1e-3)
    assert labels.stress_ev_per_a3 is not None and labels.stress_ev_per_a3.shape == (6,)
    assert labels.wall_s == 2.0


ABORT_ON_ITS_LINE = """
 *******************************************************************************
 *   ___                                                                       *
 *  /   \\                                                                      *
 * [ABORT] The specified integer number <2147483648> exceeds the allowed range *
 *  \\___/    of a 32-bit integer number., File: 'in.inp', Line: 5, Column: 1,  *
 *    |     Chunk: <2147483648>                                                *
 *  O/|                                                                        *
 * /| |                                                                        *
 * / \\                                       input/cp_parser_methods.F:1010 *
 *******************************************************************************
"""


def test_abort_message_keeps_text_on_the_abort_line() -> None:
    """CP2K 2023.1 often starts its message on the [ABORT] line; it was dropped."""
    message = abort_message(ABORT_ON_ITS_LINE)
    assert message is not None and message.startswith("The specified integer number <2147483648> exceeds")
    assert "of a 32-bit integer number." in message


@pytest.mark.parametrize("seed", [-1, 2**31 - 1, 2**31, 1.5])
def test_a_seed_cp2k_cannot_take_is_refused_by_the_protocol(seed) -> None:
    """SEED was seed % 2**31 + 1: 2**31 - 1 and -1 gave 2**31 (CP2K aborts), 2**31 gave seed 0's SEED 1."""
    with pytest.raises(ValueError, match="seed must be an integer"):
        MDProtocol("nvt", 300.0, 1.0, 2, seed=seed)
    with pytest.raises(ValueError, match="seed must be an integer"):
        MDInput("nvt", steps=2, timestep_fs=1.0, temperature_k=300.0, thermostat_coupling_fs=50.0, seed=seed)
    largest = MDInput("nvt", steps=2, timestep_fs=1.0, temperature_k=300.0, thermostat_coupling_fs=50.0,
                      seed=2**31 - 2)
    assert "SEED 2147483647\n" in build_input(_si8(), AIMD_SETTINGS, md=largest)


def test_extrapolation_used_reads_what_cp2k_did_after_the_first_step() -> None:
    """The first SCF run is always `initial_guess`; the rest say what CP2K did (with &KPOINTS,
    CP2K 2023.1 keeps `initial_guess` whatever EXTRAPOLATION asks)."""
    block = "\n Extrapolation method: {}\n  *** SCF run converged in 9 steps ***\n"
    gamma = "".join(block.format(m) for m in ("initial_guess", "ASPC", "ASPC", "ASPC"))
    kpoints = "".join(block.format("initial_guess") for _ in range(4))
    assert extrapolation_used(gamma) == ["ASPC"]
    assert extrapolation_used(kpoints) == ["initial_guess"]
    assert extrapolation_used(block.format("initial_guess")) == []  # a single point: nothing after it
    assert extrapolation_used(ENERGY_SNIPPET) == []


def test_abort_message_is_one_line() -> None:
    message = abort_message(ABORT_SNIPPET)
    assert message is not None and "\n" not in message
    assert message.startswith("The requested basis set <NO-SUCH-BASIS> for element <Si> was not found")
    assert message.endswith("aobasis/basis_set_types.F:1509")
    assert abort_message(ENERGY_SNIPPET) is None
    with pytest.raises(EngineCrashed, match="cp2k aborted: The requested basis set"):
        cp2k_mod._raise_for_failure(ABORT_SNIPPET, 1, Path("/tmp/x"))


def test_crash_without_output_or_with_truncated_output(tmp_path: Path) -> None:
    (tmp_path / "mpi.log").write_text("line 1\nORTE was unable to start\n")
    with pytest.raises(EngineCrashed, match="no output .*exit code 134.*ORTE was unable"):
        cp2k_mod._raise_for_failure("", 134, tmp_path)
    with pytest.raises(EngineCrashed, match="exited with code 9"):
        cp2k_mod._raise_for_failure(ENERGY_SNIPPET, 9, tmp_path)
    with pytest.raises(EngineCrashed, match="truncated"):
        cp2k_mod._raise_for_failure(ENERGY_SNIPPET, 0, tmp_path)


def test_parse_version() -> None:
    assert parse_version(VERSION_SNIPPET) == "CP2K version 2023.1"
    with pytest.raises(EngineCrashed):
        parse_version("something else")


def test_parse_ener_and_trajectory() -> None:
    ener = parse_ener(ENER_SNIPPET)
    assert ener["step"].tolist() == [0, 1, 2]
    assert ener["temperature_k"][1] == pytest.approx(596.397725514)
    assert ener["used_time_s"][2] == pytest.approx(12.545246834)
    frames = parse_xyz_trajectory(XYZ_SNIPPET)
    assert [f.step for f in frames] == [0, 1] and frames[1].time_fs == 1.0
    assert frames[0].symbols == ("Si", "Si") and frames[0].positions_a[0, 1] == pytest.approx(-0.0305878207)


# --------------------------------------------------------------------------------------------
# Availability
# --------------------------------------------------------------------------------------------


def test_missing_binary_is_engine_not_available() -> None:
    engine = CP2KEngine(cp2k_binary="cp2k-not-installed.psmp")
    assert not engine.available()
    with pytest.raises(EngineNotAvailable) as info:
        engine.single_point(_si8())
    message = str(info.value)
    assert message == "cp2k-not-installed.psmp not found; install Debian's cp2k: apt-get install cp2k"
    with pytest.raises(EngineNotAvailable):
        engine.version()


def test_missing_mpirun_is_engine_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(cp2k_mod.engine.shutil, "which", lambda n: None if n == "mpirun" else real_which(n) or "/x/cp2k")
    assert not CP2KEngine(ranks=2).available()
    assert CP2KEngine(ranks=1).available()  # one rank runs without mpirun


# --------------------------------------------------------------------------------------------
# Segments without CP2K: a fake run writes CP2K-shaped files
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> CP2KEngine:
    engine = CP2KEngine(AIMD_SETTINGS)
    monkeypatch.setattr(engine, "version", lambda: "CP2K version fake")
    monkeypatch.setattr(engine, "_execute", _FakeCP2K())
    return engine


PROTO = MDProtocol("nvt", 600.0, 1.0, steps=10, sample_interval=2, seed=3, thermostat_coupling_fs=50.0)


def test_segments_append_and_restart(fake_engine: CP2KEngine, tmp_path: Path) -> None:
    atoms = _si8()
    first = fake_engine.run_md_segment(tmp_path, atoms, PROTO, 3)
    assert (first.total_steps, first.new_steps, first.restarted) == (3, 3, False)
    assert first.s_per_step == pytest.approx(2.0)
    assert first.scf_iterations_mean == pytest.approx(7.5)  # steps 2 and 3 (FakeCP2K: 5 + step)
    second = fake_engine.run_md_segment(tmp_path, atoms, PROTO, 4)
    assert (second.total_steps, second.restarted) == (7, True)
    assert second.scf_iterations_mean == pytest.approx(11.0)  # steps 5, 6, 7, as s_per_step times them
    restart_line = [ln for ln in fake_engine._execute.inputs[1].splitlines() if "RESTART_FILE_NAME" in ln][0]
    assert restart_line.endswith("restart/step-000000003.restart")
    assert "STEPS 4" in fake_engine._execute.inputs[1]  # CP2K counts STEPS from the restart's step 3
    trajectory, thermo, total, wall = read_md_run(tmp_path)
    assert total == 7 and wall == pytest.approx(10.0)
    assert trajectory.times_ps.tolist() == pytest.approx([0.0, 0.002, 0.004, 0.006])  # every 2nd step
    assert thermo["temperature_k"].tolist() == [300.0, 302.0, 304.0, 306.0]
    assert thermo["potential_energy_ev"][1] == pytest.approx((-31.002) * HARTREE_EV_CODATA, rel=1e-6)
    assert sorted(p.name for p in (tmp_path / "restart").iterdir()) == ["step-000000007.restart"]
    assert not list(tmp_path.glob(".segment-*"))


def test_failed_segment_leaves_earlier_ones_intact(
    fake_engine: CP2KEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_engine.run_md_segment(tmp_path, _si8(), PROTO, 4)
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.setattr(fake_engine, "_execute", _FakeCP2K(fail=True))
    with pytest.raises(EngineCrashed, match="137"):
        fake_engine.run_md_segment(tmp_path, _si8(), PROTO, 4)
    after = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert read_md_run(tmp_path)[2] == 4


def test_a_segment_that_runs_past_its_target_is_refused(
    fake_engine: CP2KEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its restart file would lie beyond the committed frames, so the next segment would skip steps."""
    fake_engine.run_md_segment(tmp_path, _si8(), PROTO, 3)
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.setattr(fake_engine, "_execute", _FakeCP2K(extra_steps=3))
    with pytest.raises(EngineCrashed, match="ran to step 9, past its target 6"):
        fake_engine.run_md_segment(tmp_path, _si8(), PROTO, 3)
    assert {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_orphan_rows_from_a_killed_commit_are_ignored(fake_engine: CP2KEngine, tmp_path: Path) -> None:
    fake_engine.run_md_segment(tmp_path, _si8(), PROTO, 4)
    # a commit killed after md.ener was replaced but before state.json: rows beyond step 4
    with open(tmp_path / cp2k_mod.ENER_FILE, "a") as handle:
        handle.write("6 6.0 0.01 999 -31.0 -30.99 2.0\n")
    _, thermo, total, _ = read_md_run(tmp_path)
    assert total == 4 and 999.0 not in thermo["temperature_k"]
    fake_engine.run_md_segment(tmp_path, _si8(), PROTO, 2)
    ener = parse_ener((tmp_path / cp2k_mod.ENER_FILE).read_text())
    assert ener["step"].tolist() == list(range(7))


def test_resume_with_another_protocol_is_refused(fake_engine: CP2KEngine, tmp_path: Path) -> None:
    fake_engine.run_md_segment(tmp_path, _si8(), PROTO, 2)
    with pytest.raises(InputError, match="seed"):
        fake_engine.run_md_segment(tmp_path, _si8(), dataclasses.replace(PROTO, seed=4), 2)


# --------------------------------------------------------------------------------------------
# Real CP2K runs (8-atom Si, 200 Ry)
# --------------------------------------------------------------------------------------------

TEST_SETTINGS = dataclasses.replace(
    LABEL_SETTINGS, cutoff_ry=200.0, rel_cutoff_ry=40.0, eps_scf=1e-8, electronic_temperature_k=300.0
)


@pytest.fixture(scope="module")
def si8_labels() -> tuple[Atoms, CP2KEngine, object]:
    if not HAVE_CP2K:
        pytest.skip("cp2k.psmp/mpirun not installed (apt-get install cp2k)")
    atoms = _si8(rattle=0.08, seed=2)
    engine = CP2KEngine(TEST_SETTINGS, timeout_s=300)
    return atoms, engine, engine.single_point(atoms)


@pytest.mark.cp2k
@needs_cp2k
def test_version_of_installed_cp2k() -> None:
    assert CP2KEngine().version().startswith("CP2K version 20")


@pytest.mark.cp2k
@needs_cp2k
def test_single_point_labels_are_physical(si8_labels) -> None:
    atoms, _, labels = si8_labels
    assert np.isfinite(labels.energy_ev) and labels.energy_ev < -800  # ~ -105.8 eV/atom for Si GTH-PBE
    assert labels.forces_ev_per_a.shape == (8, 3)
    assert np.abs(labels.forces_ev_per_a.sum(axis=0)).max() < 1e-3
    assert np.abs(labels.forces_ev_per_a).max() > 0.05  # a rattled cell feels forces
    assert labels.stress_ev_per_a3 is not None and labels.wall_s > 0


@pytest.mark.cp2k
@needs_cp2k
def test_force_matches_finite_difference_of_energy(si8_labels) -> None:
    atoms, engine, labels = si8_labels
    atom, axis, h = 3, 0, 0.01
    energies = []
    for sign in (+1, -1):
        displaced = atoms.copy()
        displaced.positions[atom, axis] += sign * h
        energies.append(engine.single_point(displaced).energy_ev)
    fd = -(energies[0] - energies[1]) / (2 * h)
    analytic = labels.forces_ev_per_a[atom, axis]
    print(f"force FD {fd:.5f} vs analytic {analytic:.5f} eV/Å")
    assert abs(analytic) > 0.1
    assert abs(fd - analytic) < max(0.02 * abs(analytic), 0.005), (fd, analytic)


@pytest.mark.cp2k
@needs_cp2k
def test_stress_matches_finite_difference_strain(si8_labels) -> None:
    """ASE stress_xx = (1/V) dE/d(eps_xx): checks sign, units and Voigt slot together."""
    atoms, engine, labels = si8_labels
    eps = 0.003
    energies = []
    for sign in (+1, -1):
        strained = atoms.copy()
        deformation = np.eye(3)
        deformation[0, 0] += sign * eps
        strained.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
        energies.append(engine.single_point(strained).energy_ev)
    fd = (energies[0] - energies[1]) / (2 * eps) / atoms.get_volume()
    analytic = labels.stress_ev_per_a3[0]
    print(f"stress_xx FD {fd:.6f} vs analytic {analytic:.6f} eV/Å³")
    assert abs(analytic) > 0.005  # eV/Å³ (~1 GPa): the comparison has something to bite on
    assert abs(fd - analytic) < 0.01 * abs(analytic), (fd, analytic)  # measured: 0.06 %


@pytest.mark.cp2k
@needs_cp2k
def test_a_triclinic_cell_in_any_orientation_gives_the_same_labels() -> None:
    """NEP NPT leaves the v2 frames' cells triclinic and not in CP2K's standard orientation (A along
    x, B in the xy plane); &CELL A/B/C must describe the same crystal, so a rigid rotation of cell
    and atoms together changes the energy by nothing and rotates the forces with them."""
    from ase.geometry import cellpar_to_cell

    rng = np.random.default_rng(1)
    general = _si8(rattle=0.08, seed=2)
    deformation = np.eye(3) + 0.02 * rng.standard_normal((3, 3))  # not symmetric: rotates as well as shears
    general.set_cell(general.cell.array @ deformation.T, scale_atoms=True)
    standard = general.copy()
    standard.set_cell(cellpar_to_cell(general.cell.cellpar()), scale_atoms=True)
    rotation = np.linalg.solve(general.cell.array, standard.cell.array)  # standard = general @ rotation
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
    assert np.abs(rotation - np.eye(3)).max() > 0.01  # the two really differ in orientation
    engine = CP2KEngine(TEST_SETTINGS, timeout_s=300)
    a, b = engine.single_point(general), engine.single_point(standard)
    assert abs(a.energy_ev - b.energy_ev) / len(general) < 1e-5  # eV/atom; measured 8e-7 at 400 Ry
    assert np.abs(b.forces_ev_per_a).max() > 0.1
    np.testing.assert_allclose(a.forces_ev_per_a @ rotation, b.forces_ev_per_a, atol=1e-4)  # eV/Å


@pytest.mark.cp2k
@needs_cp2k
def test_kpoint_sampling_converges_the_energy_of_a_small_cell() -> None:
    """&KPOINTS reaches CP2K: on the 8-atom Si cell Γ alone is far from converged, a 2×2×2 mesh
    moves the energy by much more than 3×3×3 moves it again, and the forces follow."""
    atoms = _si8(rattle=0.08, seed=2)
    cheap = dataclasses.replace(TEST_SETTINGS, cutoff_ry=150.0, rel_cutoff_ry=30.0, eps_scf=1e-6)
    gamma, k2, k3 = (CP2KEngine(dataclasses.replace(cheap, kpoints=mesh), timeout_s=300).single_point(atoms)
                     for mesh in (None, (2, 2, 2), (3, 3, 3)))
    first = abs(k2.energy_ev - gamma.energy_ev) / len(atoms)
    second = abs(k3.energy_ev - k2.energy_ev) / len(atoms)
    assert first > 0.05 and second < 0.2 * first, (first, second)  # eV/atom
    df_first = np.abs(k2.forces_ev_per_a - gamma.forces_ev_per_a).max()
    df_second = np.abs(k3.forces_ev_per_a - k2.forces_ev_per_a).max()
    assert df_second < df_first, (df_first, df_second)


@pytest.mark.cp2k
@needs_cp2k
def test_kpoint_md_starts_every_step_from_the_initial_guess(tmp_path: Path) -> None:
    """With &KPOINTS, CP2K 2023.1 ignores EXTRAPOLATION ASPC and starts each step's SCF from the
    initial guess; the MD result records what CP2K did, so the AIMD cost model does not assume
    an extrapolation that never ran (docs/cp2k_settings.md)."""
    settings = dataclasses.replace(AIMD_SETTINGS, cutoff_ry=150.0, rel_cutoff_ry=30.0, kpoints=(2, 2, 2))
    assert settings.extrapolation == "ASPC"
    protocol = MDProtocol("nvt", 600.0, 1.0, steps=2, sample_interval=1, seed=7, thermostat_coupling_fs=50.0)
    result = CP2KEngine(settings, workdir=tmp_path, timeout_s=400).md(_si8(), protocol)
    assert result.trajectory.n_frames == 3
    assert result.extra["extrapolation_used"] == ["initial_guess"]


@pytest.mark.cp2k
@needs_cp2k
def test_nvt_md_three_steps(tmp_path: Path) -> None:
    settings = dataclasses.replace(AIMD_SETTINGS, cutoff_ry=150.0, rel_cutoff_ry=30.0)
    engine = CP2KEngine(settings, workdir=tmp_path, timeout_s=400)
    protocol = MDProtocol("nvt", 600.0, 1.0, steps=3, sample_interval=1, seed=7, thermostat_coupling_fs=50.0)
    atoms = _si8()
    result = engine.md(atoms, protocol)
    assert result.trajectory.n_frames == 4  # steps 0..3
    assert result.trajectory.times_ps.tolist() == pytest.approx([0.0, 0.001, 0.002, 0.003])
    np.testing.assert_allclose(result.trajectory.positions_a[0], atoms.positions, atol=1e-6)
    assert not np.allclose(result.trajectory.positions_a[3], atoms.positions, atol=1e-4)
    for key in ("potential_energy_ev", "kinetic_energy_ev", "temperature_k", "conserved_energy_ev"):
        assert result.thermo[key].shape == (4,) and np.all(np.isfinite(result.thermo[key]))
    assert result.thermo["temperature_k"][0] == pytest.approx(600.0, rel=1e-6)  # seeded MB at T
    drift = np.ptp(result.thermo["conserved_energy_ev"]) / len(atoms)
    assert drift < 1e-3  # eV/atom over 3 fs
    assert result.timing.timed_steps == 2 and result.timing.timed_wall_s > 0  # step 1 carries set-up
    assert result.timing.total_wall_s > result.timing.timed_wall_s
    assert result.extra["settings"]["cutoff_ry"] == 150.0
    # SCF iterations: one SCF run per step 0..3 in CP2K's output; the timed steps are 2 and 3
    (run_dir,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    counts = cp2k_mod.scf_iterations((run_dir / "out.out").read_text())
    assert len(counts) == 4 and counts[0] > counts[3]  # step 0 starts from scratch
    assert result.extra["scf_iterations_per_timed_step"] == pytest.approx((counts[2] + counts[3]) / 2)
    assert result.extra["extrapolation_used"] == ["ASPC"]  # Γ only: CP2K extrapolates as asked


@pytest.mark.cp2k
@needs_cp2k
def test_segments_moved_to_another_folder_continue_the_one_trajectory(tmp_path: Path) -> None:
    """2 + 2 steps through a restart file, the run folder moved in between (as a fresh clone
    moves it), land where 4 uninterrupted steps land: positions, velocities via positions,
    thermostat and random-number state all carry over."""
    settings = dataclasses.replace(AIMD_SETTINGS, cutoff_ry=150.0, rel_cutoff_ry=30.0)
    protocol = MDProtocol("nvt", 600.0, 1.0, steps=4, sample_interval=1, seed=7, thermostat_coupling_fs=50.0)
    atoms = _si8()
    straight = CP2KEngine(settings, workdir=tmp_path / "straight", ranks=1, timeout_s=400).md(atoms, protocol)
    engine = CP2KEngine(settings, ranks=1, timeout_s=400)
    first = engine.run_md_segment(tmp_path / "first-home", atoms, protocol, 2)
    shutil.move(tmp_path / "first-home", tmp_path / "moved")
    second = engine.run_md_segment(tmp_path / "moved", atoms, protocol, 2)
    assert second.restarted and second.total_steps == 4
    # CP2K stopped exactly at step 4: the committed restart carries that step counter
    restart_text = (tmp_path / "moved" / "restart" / "step-000000004.restart").read_text()
    assert re.search(r"STEP_START_VAL\s+4\b", restart_text)
    # CP2K read the thermostat stream the first segment seeded: the record's initial state is
    # csvr_rng_seeds(7) (CP2K's default would be 12345 six times) and its current state moved on
    record = restart_text[restart_text.index("&RNG_INIT"):].splitlines()[1]
    states = [float(v) for v in record[40:].split()[5:]]
    assert states[12:18] == [float(v) for v in cp2k_mod.csvr_rng_seeds(7)] and states[0:6] != states[12:18]
    for segment in (first, second):  # read from CP2K's own output: one timed step each
        assert segment.scf_iterations_mean is not None and 1 <= segment.scf_iterations_mean <= settings.max_scf
    recorded = json.loads((tmp_path / "moved" / "state.json").read_text())["segments"]
    assert [s["extrapolation_used"] for s in recorded] == [["ASPC"], ["ASPC"]]  # Γ only: as asked
    trajectory, thermo, total, _ = read_md_run(tmp_path / "moved")
    assert total == 4 and trajectory.n_frames == 5
    # the SCF restarts from another guess, so agreement is to SCF precision, not bitwise
    np.testing.assert_allclose(trajectory.positions_a[-1], straight.trajectory.positions_a[-1], atol=2e-4)
    np.testing.assert_allclose(thermo["temperature_k"], straight.thermo["temperature_k"], rtol=2e-3)
    assert np.abs(trajectory.positions_a[-1] - atoms.positions).max() > 1e-3  # the atoms did move


def test_launcher_replaces_mpirun(monkeypatch, tmp_path):
    """`launcher="srun --mpi=pmix"` runs `srun --mpi=pmix -n RANKS cp2k.psmp ...` instead of mpirun."""
    from nepbench.engines.cp2k import CP2KEngine
    from nepbench.errors import EngineNotAvailable

    fake = tmp_path / "cp2k.psmp"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    srun = tmp_path / "srun"
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    engine = CP2KEngine(ranks=4, launcher="srun --mpi=pmix")
    assert engine._command() == ["srun", "--mpi=pmix", "-n", "4", str(fake), "-i", "in.inp", "-o", "out.out"]
    with pytest.raises(EngineNotAvailable, match="launcher nope not found"):
        CP2KEngine(ranks=4, launcher="nope")._command()


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed (apt-get install cp2k)")
def test_mpirun_starts_its_ranks_inside_a_slurm_job_of_one_task_with_many_cpus(monkeypatch, tmp_path):
    """`sbatch --cpus-per-task=16` (the array script) gives one Slurm task: Open MPI reads one slot
    from SLURM_* and refused `-np 2` ("not enough slots"), so the CP2K timing crashed on a GPU node."""
    fake = tmp_path / "cp2k.psmp"
    fake.write_text("#!/bin/sh\necho rank-ran\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    engine = CP2KEngine(ranks=2)
    slurm = {"SLURM_JOBID": "1", "SLURM_JOB_ID": "1", "SLURM_TASKS_PER_NODE": "1", "SLURM_CPUS_PER_TASK": "16",
             "SLURM_NNODES": "1", "SLURM_NODELIST": socket.gethostname(),
             "SLURM_JOB_NODELIST": socket.gethostname(), "SLURM_JOB_CPUS_PER_NODE": "16"}
    out = subprocess.run(engine._command(), cwd=tmp_path, env={**engine._environment(), **slurm},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.count("rank-ran") == 2, out.stdout + out.stderr
