"""GPUMD engine: run.in/model.xyz writing, v5.6 output parsers, availability, orchestration.

The parsers are fed text written here in the formats GPUMD v5.6 prints (src/measure/dump_thermo.cu,
msd.cu, rdf.cu, dump_exyz.cu, dump_xyz.cu, src/main_gpumd/run.cu). The orchestration tests use a
small fake `gpumd` script that writes those formats; the real program runs only in the `gpu` test.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from nepbench.engines import gpumd as g
from nepbench.engines.gpumd import engine as gpumd_engine
from nepbench.engines.base import MDProtocol
from nepbench.errors import EngineCrashed, EngineError, EngineNotAvailable, InputError, ModelError
from random_models import write_random_model

NVT = MDProtocol(ensemble="nvt", temperature_k=900.0, timestep_fs=1.0, steps=1000,
                 sample_interval=10, seed=7, thermostat_coupling_fs=100.0, warmup_steps=50)
NVE = MDProtocol(ensemble="nve", temperature_k=300.0, timestep_fs=0.5, steps=200,
                 sample_interval=20, seed=3, warmup_steps=0)

# Keywords GPUMD v5.6 accepts in run.in (src/main_gpumd/run.cu, Run::parse_one_keyword).
GPUMD_KEYWORDS = {"potential", "velocity", "time_step", "ensemble", "dump_thermo", "dump_exyz",
                  "dump_xyz", "compute_msd", "compute_rdf", "run"}


def commands(run_in: str) -> list[list[str]]:
    """run.in as GPUMD tokenises it: comments (a token starting with #) end a line."""
    out = []
    for line in run_in.splitlines():
        tokens = []
        for tok in line.split():
            if tok.startswith("#"):
                break
            tokens.append(tok)
        if tokens:
            out.append(tokens)
    return out


# ---------------------------------------------------------------------------------------- run.in

def test_run_in_nvt_with_warmup_orders_runs_and_outputs():
    cmds = commands(g.write_run_in(NVT, n_atoms=32, rdf_cutoff=5.0, rdf_bins=100))
    assert {c[0] for c in cmds} <= GPUMD_KEYWORDS
    assert cmds[0] == ["potential", "nep.txt"]
    assert ["velocity", "871.875", "seed", "7"] in cmds  # 900 K x 31/32: GPUMD counts 3N dof
    assert ["time_step", "1"] in cmds
    runs = [i for i, c in enumerate(cmds) if c[0] == "run"]
    assert [cmds[i] for i in runs] == [["run", "50"], ["run", "1000"]]
    ensembles = [i for i, c in enumerate(cmds) if c[0] == "ensemble"]
    # one ensemble per run (GPUMD's rule), CSVR with T_coup = 100 fs / 1 fs = 100 steps
    assert len(ensembles) == 2 and ensembles[0] < runs[0] < ensembles[1] < runs[1]
    assert all(cmds[i] == ["ensemble", "nvt_bdp", "871.875", "871.875", "100"] for i in ensembles)
    # time step and velocities are set before the first run; outputs only in the production run
    assert cmds.index(["time_step", "1"]) < ensembles[0]
    outputs = [i for i, c in enumerate(cmds) if c[0].startswith(("dump_", "compute_"))]
    assert outputs and all(runs[0] < i < runs[1] for i in outputs)
    assert ["dump_thermo", "10"] in cmds
    assert ["dump_xyz", "-1", "0", "10", "dump.xyz", "unwrapped_position"] in cmds
    assert ["compute_msd", "10", "50"] in cmds  # Nc = 1000 / 10 / 2
    assert ["compute_rdf", "5.0000", "100", "10"] in cmds


def test_run_in_nve_without_warmup_has_one_run():
    cmds = commands(g.write_run_in(NVE, n_atoms=32, rdf_cutoff=None, msd=False, dump_keyword="dump_exyz"))
    assert [c for c in cmds if c[0] == "run"] == [["run", "200"]]
    assert ["ensemble", "nve"] in cmds
    assert not any(c[0] == "ensemble" and c[1].startswith("nvt") for c in cmds)
    assert ["time_step", "0.5"] in cmds
    assert ["velocity", "290.625", "seed", "3"] in cmds
    assert ["dump_exyz", "20", "0", "0"] in cmds
    assert not any(c[0] in ("compute_rdf", "compute_msd") for c in cmds)


def test_run_in_langevin_and_coupling_in_steps():
    p = MDProtocol(ensemble="nvt", temperature_k=600.0, timestep_fs=2.0, steps=100,
                   thermostat_coupling_fs=50.0)
    cmds = commands(g.write_run_in(p, n_atoms=32, thermostat="nvt_lan"))
    assert ["ensemble", "nvt_lan", "600", "600", "25"] in cmds  # Langevin thermalises the COM too
    assert ["velocity", "581.25", "seed", "0"] in cmds
    assert g.coupling_steps(p) == 25.0


def test_temperatures_convert_between_gpumds_3n_and_the_protocols_3n_minus_3():
    """E_kin = (3N − 3) k_B T / 2 at the protocol's T: GPUMD, dividing by 3N, must be given and
    reports T·(N − 1)/N. The two conversions are inverse, and large cells barely change."""
    assert g.gpumd_temperature_k(900.0, 32) == pytest.approx(900.0 * 93 / 96)
    assert g.protocol_temperature_k(np.array([871.875]), 32) == pytest.approx([900.0])
    assert g.gpumd_temperature_k(1200.0, 100_000) == pytest.approx(1200.0, rel=2e-5)
    temperatures = np.array([300.0, 1200.0])
    np.testing.assert_allclose(g.protocol_temperature_k(g.gpumd_temperature_k(temperatures, 7), 7), temperatures)
    with pytest.raises(ValueError, match="2 atoms"):
        g.gpumd_temperature_k(900.0, 1)
    with pytest.raises(ValueError, match="2 atoms"):
        g.write_run_in(NVT, n_atoms=1)


def test_run_in_rejects_what_gpumd_would_reject():
    with pytest.raises(ValueError, match="T_coup"):
        g.write_run_in(MDProtocol(ensemble="nvt", temperature_k=300, timestep_fs=2.0, steps=10,
                                  thermostat_coupling_fs=1.0), n_atoms=32)
    with pytest.raises(ValueError, match="temperature_k > 0"):
        g.write_run_in(MDProtocol(ensemble="nvt", temperature_k=0.0, timestep_fs=1.0, steps=10), n_atoms=32)
    with pytest.raises(ValueError, match="rdf_bins"):
        g.write_run_in(NVT, n_atoms=32, rdf_bins=20)
    with pytest.raises(ValueError, match="seed"):
        g.write_run_in(MDProtocol(ensemble="nve", temperature_k=300, timestep_fs=1, steps=10, seed=-1), n_atoms=32)
    with pytest.raises(ValueError, match="potential_file"):
        g.write_run_in(NVT, n_atoms=32, potential_file="my model.txt")


def test_run_in_zero_kelvin_nve_has_no_velocity_keyword():
    cmds = commands(g.write_run_in(MDProtocol(ensemble="nve", temperature_k=0.0, timestep_fs=1, steps=10), n_atoms=32))
    assert not any(c[0] == "velocity" for c in cmds)


def test_msd_correlation_steps_respects_gpumd_limit():
    assert g.msd_correlation_steps(NVT) == 50
    assert g.msd_correlation_steps(MDProtocol(ensemble="nve", temperature_k=1, timestep_fs=1,
                                              steps=30, sample_interval=10)) is None
    for steps, every in [(1000, 10), (101, 7), (40, 10)]:
        nc = g.msd_correlation_steps(MDProtocol(ensemble="nve", temperature_k=1, timestep_fs=1,
                                                steps=steps, sample_interval=every))
        assert nc is None or nc <= steps // every


def test_rdf_cutoff_follows_cell_thickness():
    cubic = np.eye(3) * 10.0
    assert g.rdf_cutoff_a(cubic, 6.0) == pytest.approx(0.999 * 4.0)  # 10 / 2.5
    assert g.rdf_cutoff_a(np.eye(3) * 30.0, 6.0) == 6.0
    assert g.rdf_cutoff_a(np.eye(3) * 2.0, 6.0) is None
    slanted = np.array([[10.0, 0, 0], [5.0, 8.0, 0], [0, 0, 20.0]])
    assert g.cell_thicknesses_a(slanted) == pytest.approx([10.0 * 8.0 / np.hypot(8.0, 5.0), 8.0, 20.0])


def test_single_point_run_in_keeps_positions_fixed():
    cmds = commands(g.write_single_point_run_in())
    assert {c[0] for c in cmds} <= GPUMD_KEYWORDS
    assert ["time_step", "0"] in cmds and ["ensemble", "nve"] in cmds
    assert ["dump_exyz", "1", "0", "1"] in cmds and cmds[-1] == ["run", "1"]
    assert not any(c[0] == "velocity" for c in cmds)


# ------------------------------------------------------------------------------------- model.xyz

def test_model_xyz_roundtrip_with_masses_and_velocities():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms[0].symbol = "Li"
    vel = np.arange(len(atoms) * 3, dtype=float).reshape(-1, 3) * 1e-3
    text = g.write_model_xyz(atoms, vel)
    lines = text.splitlines()
    assert lines[0] == str(len(atoms))
    assert 'pbc="T T T"' in lines[1] and "Properties=species:S:1:pos:R:3:mass:R:1:vel:R:3" in lines[1]
    frame = g.parse_exyz_frames(text, "model.xyz")[0]
    assert frame["symbols"] == tuple(atoms.get_chemical_symbols())
    np.testing.assert_allclose(frame["cell_a"], atoms.cell.array, atol=1e-9)
    np.testing.assert_allclose(frame["arrays"]["pos"], atoms.positions, atol=1e-9)
    np.testing.assert_allclose(frame["arrays"]["mass"][:, 0], atoms.get_masses(), atol=1e-7)
    np.testing.assert_allclose(frame["arrays"]["vel"], vel, rtol=1e-9)


def test_model_xyz_rejects_cellless_structure():
    with pytest.raises(ValueError, match="cell"):
        g.write_model_xyz(Atoms("Si2", positions=[[0, 0, 0], [2, 0, 0]]))
    with pytest.raises(ValueError, match="at least 2 atoms"):  # GPUMD's own limit (read_xyz.cu)
        g.write_model_xyz(Atoms("Si", positions=[[0, 0, 0]], cell=[5, 5, 5], pbc=True))


def test_a_particle_in_wide_vacuum_is_written_periodic_and_a_narrow_gap_is_not():
    """GPUMD searches a free direction whole (O(N²)); with vacuum wider than PERIODIC_VACUUM_A
    the images cannot interact, so the direction is written periodic. A gap narrower than that
    stays free, and a periodic direction stays periodic."""
    from nepbench.systems import core_shell_particle

    particle = core_shell_particle(seed=1, core_radius_nm=0.5, shell_thickness_nm=0.3, vacuum_nm=1.0)
    assert not any(particle.pbc)
    gaps = g.vacuum_gaps_a(particle)
    np.testing.assert_allclose(gaps, 20.0, atol=1.5)  # 1 nm each side
    assert g.gpumd_pbc(particle) == (True, True, True)
    assert 'pbc="T T T"' in g.write_model_xyz(particle).splitlines()[1]
    # 6 Å each side: 12 Å of vacuum in x only when the cell is widened there alone
    tight = particle.copy()
    tight.cell = np.diag(particle.cell.lengths() - np.array([0.0, gaps[1] - 8.0, gaps[2] - 8.0]))
    tight.positions -= [0.0, (gaps[1] - 8.0) / 2, (gaps[2] - 8.0) / 2]
    assert g.gpumd_pbc(tight) == (True, False, False)
    slab = tight.copy()
    slab.pbc = (False, True, True)  # periodic in y and z whatever their gap
    assert g.gpumd_pbc(slab) == (True, True, True)
    for model in ("nep89-lisic", "nepbench-lisic-v1"):  # the margin holds for the models shipped
        assert g.PERIODIC_VACUUM_A >= _radial_cutoff_a(model) + 1.0 + 1.0


def _radial_cutoff_a(model: str) -> float:
    """The radial cutoff of a registry model (line 'cutoff rc_r rc_a ...'); 8 Å when not on disk."""
    from nepbench.models import resolve_model

    try:
        path = Path(resolve_model(model, fetch=False).path)
    except Exception:
        return 8.0
    line = next((ln for ln in path.read_text().splitlines() if ln.startswith("cutoff")), "cutoff 8")
    return float(line.split()[1])


# ------------------------------------------------------------------------------------ parsers

def thermo_text(rows: np.ndarray, header: bool = True) -> str:
    """thermo.out as GPUMD v5.6 writes it (dump_thermo.cu): 5 `#` lines, then 18 x %20.10e."""
    out = []
    if header:
        out += ["# dump_thermo 10", "# format_version 1", "# num_atoms 64", "# dt_output 1.0000000000e+01 fs",
                "# columns T KE PE sxx syy szz syz sxz sxy ax ay az bx by bz cx cy cz"]
    out += ["".join(f"{v:20.10e}" for v in row) for row in rows]
    return "\n".join(out) + "\n"


def test_parse_thermo_v56_columns():
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(4, 18))
    parsed = g.parse_thermo(thermo_text(rows))
    np.testing.assert_allclose(parsed["temperature_k"], rows[:, 0])
    np.testing.assert_allclose(parsed["kinetic_energy_ev"], rows[:, 1])
    np.testing.assert_allclose(parsed["potential_energy_ev"], rows[:, 2])
    np.testing.assert_allclose(parsed["pressure_gpa"], rows[:, 3:9])
    np.testing.assert_allclose(parsed["cell_a"][2], rows[2, 9:18].reshape(3, 3))
    # appended second block (another run) is read too; headers are skipped wherever they are
    both = g.parse_thermo(thermo_text(rows) + thermo_text(rows[:2]))
    assert len(both["temperature_k"]) == 6


def test_parse_thermo_rejects_wrong_width_and_empty():
    with pytest.raises(InputError, match="12 columns, expected 18"):
        g.parse_thermo(thermo_text(np.ones((2, 12))))
    with pytest.raises(InputError, match="no data rows"):
        g.parse_thermo("# only a header\n")


MSD_TEXT = """\
# compute_msd 10 3
# format_version 1
# num_atoms 64
# num_groups 1
# num_atoms_per_group 64
# cell 1.0000000000e+01 0.0000000000e+00 0.0000000000e+00 0.0000000000e+00 1.0000000000e+01 0.0000000000e+00 0.0000000000e+00 0.0000000000e+00 1.0000000000e+01
# dt_output 1.0000000000e-02 ps
# columns time_ps msdx msdy msdz sdcx sdcy sdcz
0 0 0 0 0 0 0
0.01 0.1 0.2 0.3 5 10 15
0.02 0.2 0.4 0.6 5 10 15
"""


def test_parse_msd_units_and_last_block():
    parsed = g.parse_msd(MSD_TEXT)
    np.testing.assert_allclose(parsed["time_ps"], [0, 0.01, 0.02])
    np.testing.assert_allclose(parsed["msd_a2"][2], [0.2, 0.4, 0.6])
    np.testing.assert_allclose(parsed["sdc_a2_per_ps"][1], [5, 10, 15])
    second = MSD_TEXT.replace("0.02 0.2 0.4 0.6", "0.02 9.0 9.0 9.0")
    assert g.parse_msd(MSD_TEXT + second)["msd_a2"][2, 0] == 9.0
    with pytest.raises(InputError, match="7-column"):
        g.parse_msd("# compute_msd 10 2 all_groups 1\n0 " + "0 " * 12 + "\n")


RDF_TEXT = """\
#radius total Li-Li Li-Si Si-Si
0.01500 0.00000 0.00000 0.00000 0.00000
0.04500 0.50000 0.10000 0.20000 0.30000
0.07500 1.00000 1.10000 1.20000 1.30000
"""


def test_parse_rdf_pairs_in_header_order():
    parsed = g.parse_rdf(RDF_TEXT)
    np.testing.assert_allclose(parsed["r_a"], [0.015, 0.045, 0.075])
    np.testing.assert_allclose(parsed["total"], [0, 0.5, 1.0])
    assert list(parsed["pairs"]) == ["Li-Li", "Li-Si", "Si-Si"]
    np.testing.assert_allclose(parsed["pairs"]["Si-Si"], [0, 0.3, 1.3])
    assert g.parse_rdf(RDF_TEXT + RDF_TEXT.replace("1.30000", "7.00000"))["pairs"]["Si-Si"][2] == 7.0
    with pytest.raises(InputError, match="header"):
        g.parse_rdf("0.1 0.2\n")


def exyz_frame(time_fs: float, cell: np.ndarray, symbols, pos, extra: dict[str, np.ndarray] | None = None,
               energy: float = -10.0, virial=None) -> str:
    """One frame as GPUMD v5.6 dump_exyz.cu / dump_xyz.cu writes it."""
    virial = np.zeros((3, 3)) if virial is None else np.asarray(virial)
    props = "species:S:1:pos:R:3" + "".join(f":{k}:R:{v.shape[1]}" for k, v in (extra or {}).items())
    head = (f'Time={time_fs:.8f} pbc="T T T" Lattice="' + " ".join(f"{x:.8f}" for x in cell.reshape(-1))
            + f'" energy={energy:.8f} virial="' + " ".join(f"{x:.8f}" for x in virial.reshape(-1))
            + '" stress="' + " ".join("0.00000000" for _ in range(9)) + f'" Properties={props}')
    rows = []
    for i, s in enumerate(symbols):
        cols = list(pos[i]) + [x for v in (extra or {}).values() for x in v[i]]
        rows.append(s + "".join(f" {x:.8f}" for x in cols))
    return "\n".join([str(len(symbols)), head, *rows]) + "\n"


def test_parse_dump_prefers_unwrapped_column_and_shifts_time():
    cell = np.eye(3) * 10.0
    unwrapped = np.array([[[9.5, 1, 1], [5, 5, 5]], [[10.5, 1, 1], [5, 5, 5.2]]])
    wrapped = unwrapped % 10.0
    text = "".join(exyz_frame(60.0 + 10 * f, cell, ["Li", "Si"], wrapped[f],
                              {"unwrapped_position": unwrapped[f]}) for f in range(2))
    traj = g.parse_dump_exyz(text, time_offset_ps=0.05)
    assert traj.symbols == ("Li", "Si")
    np.testing.assert_allclose(traj.times_ps, [0.01, 0.02])
    np.testing.assert_allclose(traj.positions_a, unwrapped)
    np.testing.assert_allclose(traj.cells_a[1], cell)


def test_parse_dump_exyz_unwraps_wrapped_positions_by_minimum_image():
    cell = np.array([[10.0, 0, 0], [2.0, 10.0, 0], [0, 0, 10.0]])
    rng = np.random.default_rng(0)
    start = rng.uniform(0, 10, size=(5, 3))
    steps = rng.normal(scale=0.8, size=(6, 5, 3))
    true = np.concatenate([start[None], start[None] + np.cumsum(steps, axis=0)])
    frac = true @ np.linalg.inv(cell)
    wrapped = (frac % 1.0) @ cell
    text = "".join(exyz_frame(10.0 * (f + 1), cell, ["Si"] * 5, wrapped[f]) for f in range(len(true)))
    traj = g.parse_dump_exyz(text)
    np.testing.assert_allclose(traj.positions_a - traj.positions_a[0], true - true[0], atol=1e-6)
    # without unwrapping the displacements would be wrong (the data cross the boundary)
    assert np.abs(wrapped - wrapped[0] - (true - true[0])).max() > 1.0


def test_parse_exyz_frames_forces_energy_virial():
    cell = np.eye(3) * 8.0
    forces = np.array([[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]])
    w = np.array([[1.0, 0.2, 0.3], [0.2, 2.0, 0.5], [0.3, 0.5, 3.0]])
    text = exyz_frame(0.0, cell, ["C", "C"], np.array([[0, 0, 0], [1.4, 0, 0]]), {"forces": forces},
                      energy=-12.5, virial=w)
    (frame,) = g.parse_exyz_frames(text)
    assert frame["energy_ev"] == -12.5 and frame["pbc"] == (True, True, True)
    np.testing.assert_allclose(frame["arrays"]["forces"], forces)
    np.testing.assert_allclose(frame["virial_ev"], w)
    s = g.stress_from_virial(w, 512.0)
    np.testing.assert_allclose(s, -np.array([1.0, 2.0, 3.0, 0.5, 0.3, 0.2]) / 512.0)


def test_parse_exyz_frames_reports_truncation():
    cell = np.eye(3) * 8.0
    text = exyz_frame(0.0, cell, ["C", "C"], np.zeros((2, 3)))
    with pytest.raises(InputError, match="truncated"):
        g.parse_exyz_frames(text.rsplit("\n", 2)[0] + "\n")


STDOUT = """
***************************************************************
*                 Welcome to use GPUMD                        *
*     (Graphics Processing Units Molecular Dynamics)          *
*                     version 5.6                             *
*              This is the gpumd executable                   *
***************************************************************

Run 50 steps.
    50 steps completed.
---------------------------------------------------------------
Time used for this run = 0.0512 second.
Speed of this run = 62500 atom*step/second.
---------------------------------------------------------------
Run 1000 steps.
---------------------------------------------------------------
Time used for this run = 0.214748 second.
Speed of this run = 2.98024e+07 atom*step/second.
---------------------------------------------------------------
Time used = 1.500000 s.
"""


def test_parse_speed_time_and_version():
    assert g.parse_speed(STDOUT) == [62500.0, 2.98024e7]
    assert g.parse_run_wall_s(STDOUT) == [0.0512, 0.214748]
    assert g.parse_version(STDOUT) == "5.6"
    assert g.parse_speed("no runs here") == [] and g.parse_version("nothing") is None


# --------------------------------------------------------------------------- availability

@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_random_model(tmp_path / "nep.txt", species=("Li", "Si", "C"), seed=1)


def test_missing_binary_raises_engine_not_available(model: Path):
    engine = g.GpumdEngine(model, gpumd_binary="gpumd-does-not-exist-here")
    ok, reason = engine.available()
    assert not ok and "gpumd-does-not-exist-here" in reason
    with pytest.raises(EngineNotAvailable, match="gpumd not found / no NVIDIA GPU"):
        engine.md(bulk("Si", cubic=True), NVE)
    with pytest.raises(EngineNotAvailable):
        engine.single_point(bulk("Si", cubic=True))
    with pytest.raises(EngineNotAvailable):
        engine.version()


def test_binary_without_gpu_is_not_available(model: Path, fake_gpumd: Path, monkeypatch):
    monkeypatch.setattr(gpumd_engine, "gpu_models", lambda: [])
    engine = g.GpumdEngine(model, gpumd_binary=str(fake_gpumd))
    ok, reason = engine.available()
    assert not ok and "GPU" in reason
    with pytest.raises(EngineNotAvailable, match="no NVIDIA GPU"):
        engine.md(bulk("Si", cubic=True), NVE)


# --------------------------------------------------------------- orchestration with a fake gpumd

FAKE_GPUMD = r'''
"""Fake gpumd for nepbench's tests: reads run.in/model.xyz, writes GPUMD v5.6-format outputs."""
import os
import sys
print("*                     version 5.6                             *")
blow_up_at = int(os.environ.get("FAKE_GPUMD_BLOW_UP_AT", "0"))  # from this step on: T 1e7 K, E_pot NaN
lines = open("model.xyz").read().splitlines()
n = int(lines[0])
cell = [float(x) for x in lines[1].split('Lattice="')[1].split('"')[0].split()]
rows = [l.split() for l in lines[2:2 + n]]
sym = [r[0] for r in rows]
pos = [[float(x) for x in r[1:4]] for r in rows]
dt = 0.0
t_global = 0.0
t_kelvin = 0.0  # the thermostat's (or else the velocity's) temperature: an ideal thermostat's mean
outputs = {}
for raw in open("run.in"):
    tok = raw.split("#")[0].split()
    if not tok:
        continue
    key = tok[0]
    if key == "time_step":
        dt = float(tok[1])
    elif key == "velocity" or (key == "ensemble" and tok[1].startswith("nvt")):
        t_kelvin = float(tok[1] if key == "velocity" else tok[2])
    elif key in ("dump_thermo", "dump_xyz", "dump_exyz", "compute_msd", "compute_rdf"):
        outputs[key] = tok
    elif key == "potential":
        open(tok[1]).readline()
    elif key == "run":
        steps = int(tok[1])
        wall = 0.25 if not outputs else 0.5
        for step in range(steps):
            t_global += dt
            if "dump_thermo" in outputs and (step + 1) % int(outputs["dump_thermo"][1]) == 0:
                with open("thermo.out", "a") as f:
                    row = [t_kelvin, 1.0, -100.0 - step, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6] + [cell[i] for i in range(9)]
                    if blow_up_at and step + 1 >= blow_up_at:
                        row[0], row[2] = 1e7, float("nan")
                    f.write("".join("%20.10e" % v for v in row) + "\n")
            if "dump_xyz" in outputs and (step + 1) % int(outputs["dump_xyz"][3]) == 0:
                with open("dump.xyz", "a") as f:
                    f.write("%d\nTime=%.8f pbc=\"T T T\" Lattice=\"%s\" energy=-1.0 Properties=species:S:1:pos:R:3:unwrapped_position:R:3\n"
                            % (n, t_global, " ".join("%.8f" % c for c in cell)))
                    for s, p in zip(sym, pos):
                        u = [p[0] + 0.001 * (step + 1), p[1], p[2]]
                        f.write("%s %.8f %.8f %.8f %.8f %.8f %.8f\n" % (s, u[0] % cell[0], u[1], u[2], u[0], u[1], u[2]))
            if "dump_exyz" in outputs and (step + 1) % int(outputs["dump_exyz"][1]) == 0:
                with open("dump.xyz", "a") as f:
                    f.write("%d\nTime=%.8f pbc=\"T T T\" Lattice=\"%s\" energy=%.8f virial=\"1 0 0 0 2 0 0 0 3\" "
                            "stress=\"0 0 0 0 0 0 0 0 0\" Properties=species:S:1:pos:R:3:forces:R:3\n"
                            % (n, t_global, " ".join("%.8f" % c for c in cell), -2.5 * n))
                    for s, p in zip(sym, pos):
                        f.write("%s %.8f %.8f %.8f %.8f %.8f %.8f\n" % (s, p[0], p[1], p[2], -0.1 * p[0], -0.1 * p[1], -0.1 * p[2]))
        if "compute_msd" in outputs:
            with open("msd.out", "a") as f:
                f.write("# compute_msd 1 2\n# columns time_ps msdx msdy msdz sdcx sdcy sdcz\n0 0 0 0 0 0 0\n0.01 1 1 1 50 50 50\n")
        if "compute_rdf" in outputs:
            with open("rdf.out", "a") as f:
                f.write("#radius total Li-Li Li-Si Si-Si\n0.1 0 0 0 0\n0.3 1 1 1 1\n")
        print("Time used for this run = %g second." % wall)
        print("Speed of this run = %g atom*step/second." % (n * steps / wall))
        outputs = {}
'''


@pytest.fixture
def fake_gpumd(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "gpumd"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\n" + FAKE_GPUMD)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fake_engine(model: Path, fake_gpumd: Path, tmp_path: Path, monkeypatch) -> g.GpumdEngine:
    monkeypatch.setattr(gpumd_engine, "gpu_models", lambda: ["Fake GPU, 80 GiB"])
    return g.GpumdEngine(model, gpumd_binary=str(fake_gpumd), workdir=tmp_path / "runs")


def lisi_cell() -> Atoms:
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    for i in range(0, len(atoms), 8):
        atoms[i].symbol = "Li"
    return atoms


def test_a_blown_up_gpumd_run_raises_instead_of_returning_numbers(fake_engine: g.GpumdEngine, monkeypatch):
    """As the CPU engine does (engines.base.md_frame_instability): the first unstable thermo row
    names its step (warm-up 20 + row 5 × 10) and T as the protocol counts it (1e7 K × 64/63); a calm
    run of the same protocol still returns its trajectory."""
    protocol = MDProtocol("nvt", 300.0, 1.0, 100, sample_interval=10, seed=1, warmup_steps=20)
    monkeypatch.setenv("FAKE_GPUMD_BLOW_UP_AT", "50")
    with pytest.raises(EngineError, match=r"gpumd in .*: MD unstable at step 70: T 1.02e\+07 K \(limit 20000 K\), "
                                          r"E_pot nan eV"):
        fake_engine.md(lisi_cell(), protocol)
    monkeypatch.delenv("FAKE_GPUMD_BLOW_UP_AT")
    assert fake_engine.md(lisi_cell(), protocol).thermo["time_ps"].size == 10


def test_md_orchestration_timing_excludes_warmup(fake_engine: g.GpumdEngine):
    atoms = lisi_cell()
    protocol = MDProtocol(ensemble="nvt", temperature_k=900.0, timestep_fs=1.0, steps=100,
                          sample_interval=10, seed=5, warmup_steps=20)
    res = fake_engine.md(atoms, protocol)
    assert res.engine == "gpumd" and res.protocol == protocol
    assert res.timing.timed_steps == 100 and res.timing.warmup_steps == 20
    assert res.timing.timed_wall_s == 0.5  # production run, not the 0.25 s warm-up
    assert res.timing.engine_reported_atom_steps_per_s == pytest.approx(len(atoms) * 100 / 0.5, rel=1e-5)
    assert res.timing.atom_steps_per_s == pytest.approx(len(atoms) * 100 / 0.5)
    assert res.timing.total_wall_s > 0
    assert res.trajectory.n_frames == 10 and len(res.thermo["temperature_k"]) == 10
    # GPUMD was given 900 x 63/64 (it counts 3N dof); its T comes back in the protocol's 3N - 3
    assert "ensemble nvt_bdp 885.9375 885.9375" in res.extra["run_in"]
    np.testing.assert_allclose(res.thermo["temperature_k"], 900.0)
    np.testing.assert_allclose(res.trajectory.times_ps, np.arange(1, 11) * 0.01, atol=1e-9)
    np.testing.assert_allclose(res.thermo["time_ps"], res.trajectory.times_ps)
    # unwrapped x keeps growing past the cell edge
    assert res.trajectory.positions_a[:, :, 0].max() > atoms.positions[:, 0].max()
    assert set(res.extra["rdf"]["pairs"]) == {"Li-Li", "Li-Si", "Si-Si"}
    assert res.extra["msd"]["msd_a2"].shape == (2, 3)
    assert res.extra["gpumd_version_reported"] == "5.6" and "version_warning" not in res.extra
    run_dir = Path(res.extra["run_dir"])
    assert (run_dir / "run.in").read_text() == res.extra["run_in"]
    assert "compute_rdf" in res.extra["run_in"]  # 10.86 Å cell allows a 4.3 Å cutoff
    assert fake_engine.version() == "GPUMD 5.6"


def test_a_timing_run_writes_thermo_only(model: Path, fake_gpumd: Path, tmp_path: Path, monkeypatch):
    """GPUMD times its dumps and computes inside the run loop, so the throughput task's runs
    write dump_thermo only; the result has thermo rows and timing but no frames."""
    monkeypatch.setattr(gpumd_engine, "gpu_models", lambda: ["Fake GPU, 80 GiB"])
    engine = g.GpumdEngine(model, gpumd_binary=str(fake_gpumd), workdir=tmp_path / "runs", record_frames=False)
    protocol = MDProtocol(ensemble="nvt", temperature_k=900.0, timestep_fs=1.0, steps=100,
                          sample_interval=100, seed=5, warmup_steps=10)
    res = engine.md(lisi_cell(), protocol)
    production = res.extra["run_in"].split("# production")[1]
    assert "dump_thermo 100" in production
    assert not any(k in production for k in ("dump_xyz", "dump_exyz", "compute_msd", "compute_rdf"))
    assert not (Path(res.extra["run_dir"]) / "dump.xyz").exists()
    assert res.trajectory.n_frames == 0 and len(res.thermo["temperature_k"]) == 1
    assert res.timing.timed_wall_s == 0.5 and res.timing.timed_steps == 100


def test_md_rejects_species_missing_from_model(fake_engine: g.GpumdEngine):
    atoms = lisi_cell()
    atoms[1].symbol = "O"
    with pytest.raises(InputError, match="O"):
        fake_engine.md(atoms, NVE)


def test_md_missing_model_is_model_error(fake_gpumd: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(gpumd_engine, "gpu_models", lambda: ["Fake GPU"])
    engine = g.GpumdEngine(tmp_path / "absent.txt", gpumd_binary=str(fake_gpumd))
    with pytest.raises(ModelError, match="absent.txt"):
        engine.md(lisi_cell(), NVE)


def test_md_crash_is_reported(tmp_path: Path, model: Path, monkeypatch):
    monkeypatch.setattr(gpumd_engine, "gpu_models", lambda: ["Fake GPU"])
    bad = tmp_path / "gpumd-bad"
    bad.write_text("#!/bin/sh\necho 'Input Error:' >&2\necho '    Error text: bad keyword' >&2\nexit 1\n")
    bad.chmod(0o755)
    with pytest.raises(EngineCrashed, match="code 1.*bad keyword"):
        g.GpumdEngine(model, gpumd_binary=str(bad)).md(lisi_cell(), NVE)


def test_single_point_orchestration(fake_engine: g.GpumdEngine):
    atoms = lisi_cell()
    labels = fake_engine.single_point(atoms)
    assert labels.energy_ev == pytest.approx(-2.5 * len(atoms))
    np.testing.assert_allclose(labels.forces_ev_per_a, -0.1 * atoms.positions, atol=1e-7)
    vol = atoms.cell.volume
    np.testing.assert_allclose(labels.stress_ev_per_a3, -np.array([1, 2, 3, 0, 0, 0]) / vol)
    run_dir = next(p for p in (fake_engine.workdir or Path()).iterdir() if p.name.startswith("sp-"))
    model_xyz = (run_dir / "model.xyz").read_text()
    assert ":vel:R:3" in model_xyz  # zero velocities: positions stay fixed with time_step 0


# ---------------------------------------------------------------------------- the real program

def _real_gpumd() -> tuple[bool, str]:
    return g.GpumdEngine("unused").available()


@pytest.mark.gpu
@pytest.mark.skipif(not _real_gpumd()[0], reason="no gpumd binary / no NVIDIA GPU")
def test_real_gpumd_matches_calorine_and_runs_md(model: Path, tmp_path: Path):
    from calorine.calculators import CPUNEP

    engine = g.GpumdEngine(model, workdir=tmp_path / "runs")
    assert engine.version().startswith("GPUMD ")
    atoms = lisi_cell()
    atoms.rattle(0.05, seed=3)
    labels = engine.single_point(atoms)
    ref = atoms.copy()
    ref.calc = CPUNEP(str(model))
    assert labels.energy_ev == pytest.approx(ref.get_potential_energy(), abs=1e-4 * len(atoms))
    np.testing.assert_allclose(labels.forces_ev_per_a, ref.get_forces(), atol=1e-3)
    np.testing.assert_allclose(labels.stress_ev_per_a3, ref.get_stress(), atol=1e-4)
    protocol = MDProtocol(ensemble="nvt", temperature_k=600.0, timestep_fs=1.0, steps=200,
                          sample_interval=20, seed=1, warmup_steps=20)
    res = engine.md(atoms, protocol)
    assert res.trajectory.n_frames == 10
    assert res.timing.engine_reported_atom_steps_per_s and res.timing.engine_reported_atom_steps_per_s > 0
    assert np.all(np.isfinite(res.trajectory.positions_a))
    assert os.path.isfile(Path(res.extra["run_dir"]) / "thermo.out")
