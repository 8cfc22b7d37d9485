"""The CPU NEP engine: backend parity, physical conventions (forces, stress), MD behaviour.

Uses small random NEP4 models (seeded, written to tmp_path): the checks here are about the engine,
not the potential, and must not depend on a download.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes

from nepbench.engines import nep_cpu
from nepbench.engines.base import MDProtocol
from nepbench.engines.nep_cpu import NepCpuEngine, check_cell
from nepbench.errors import EngineError, InputError, ModelError
from random_models import write_random_model

BACKENDS = ["calorine", pytest.param("nep-adapters", marks=pytest.mark.skipif(
    not nep_cpu.adapters_installed(), reason="nep-adapters not installed"))]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_random_model(tmp_path_factory.mktemp("model") / "nep.txt", seed=1)


@pytest.fixture(scope="module")
def cell() -> Atoms:
    """64 atoms of Li, Si and C on a jittered 2.6 Å lattice with a slightly triclinic cell."""
    atoms = check_cell(("Li", "Si", "C"), n_side=4, seed=3)
    atoms.set_cell(atoms.cell.array + [[0, 0, 0], [0.5, 0, 0], [0.2, -0.3, 0]], scale_atoms=True)
    return atoms


@pytest.fixture(scope="module")
def engine(model):
    return NepCpuEngine(model, backend="calorine")


# --------------------------------------------------------------------------- single points

@pytest.mark.skipif(not nep_cpu.adapters_installed(), reason="nep-adapters not installed")
def test_backend_parity_calorine_vs_nep_adapters(model, cell):
    a = NepCpuEngine(model, backend="calorine").single_point(cell)
    b = NepCpuEngine(model, backend="nep-adapters").single_point(cell)
    assert abs(a.energy_ev - b.energy_ev) <= 1e-8
    assert np.abs(a.forces_ev_per_a - b.forces_ev_per_a).max() <= 1e-8
    assert np.abs(a.stress_ev_per_a3 - b.stress_ev_per_a3).max() <= 1e-10
    assert np.abs(a.forces_ev_per_a).max() > 0.05  # a check on non-trivial numbers


@pytest.mark.parametrize("backend", BACKENDS)
def test_forces_are_minus_energy_gradient(model, cell, backend):
    eng = NepCpuEngine(model, backend=backend)
    forces = eng.single_point(cell).forces_ev_per_a
    h = 1e-4
    for atom, axis in [(0, 0), (17, 1), (40, 2)]:
        plus, minus = cell.copy(), cell.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        numeric = -(eng.single_point(plus).energy_ev - eng.single_point(minus).energy_ev) / (2 * h)
        assert forces[atom, axis] == pytest.approx(numeric, abs=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stress_is_ase_convention(model, cell, backend):
    """ASE stress σ_ij = (1/V) ∂E/∂ε_ij (positive = tensile); checked by straining the cell."""
    eng = NepCpuEngine(model, backend=backend)
    stress = eng.single_point(cell).stress_ev_per_a3
    h = 1e-5
    for voigt, (i, j) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[i, j] += sign * h / (1 if i == j else 2)
            strain[j, i] += 0 if i == j else sign * h / 2
            strained = cell.copy()
            strained.set_cell(cell.cell.array @ strain, scale_atoms=True)
            energies.append(eng.single_point(strained).energy_ev)
        numeric = (energies[0] - energies[1]) / (2 * h) / cell.get_volume()
        assert stress[voigt] == pytest.approx(numeric, abs=1e-7), f"component {voigt}"


def test_labels_shapes_and_input_untouched(engine, cell):
    before = cell.positions.copy()
    labels = engine.single_point(cell)
    assert labels.forces_ev_per_a.shape == (64, 3) and labels.stress_ev_per_a3.shape == (6,)
    assert labels.wall_s > 0 and np.array_equal(cell.positions, before) and cell.calc is None


def test_energy_independent_of_periodic_images(engine, cell):
    shifted = cell.copy()
    shifted.positions += cell.cell.array.sum(axis=0) * 2 + [0.0, -31.0, 0.0]
    assert engine.single_point(shifted).energy_ev == pytest.approx(
        engine.single_point(cell).energy_ev, abs=1e-9)


# --------------------------------------------------------------------------- errors

def test_species_not_in_model(engine):
    atoms = Atoms("LiOSi", positions=[[0, 0, 0], [2, 0, 0], [0, 2, 0]], cell=[9, 9, 9], pbc=True)
    with pytest.raises(ModelError) as exc:
        engine.single_point(atoms, source="cells/oxide.extxyz")
    assert str(exc.value).startswith("cells/oxide.extxyz: species O not in model nep.txt")


def test_bad_structures_and_protocols(engine, cell):
    nan = cell.copy()
    nan.positions[3, 1] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        engine.single_point(nan, source="x.extxyz")
    with pytest.raises(InputError, match="3D cell"):
        engine.single_point(Atoms("Li2", positions=[[0, 0, 0], [2, 0, 0]]))
    with pytest.raises(InputError, match="0 K"):
        engine.md(cell, MDProtocol("nvt", 0.0, 1.0, 5))


def test_missing_or_malformed_model(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        NepCpuEngine(tmp_path / "none.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("nep4 3 Li Si C\ncutoff 5 4 200 100\n")
    with pytest.raises(ModelError, match="bad.txt"):
        NepCpuEngine(bad)


# --------------------------------------------------------------------------- backend choice

@pytest.mark.skipif(not nep_cpu.adapters_installed(), reason="nep-adapters not installed")
def test_auto_prefers_matching_nep_adapters_and_caches_verdict(model, monkeypatch):
    monkeypatch.setattr(nep_cpu, "_PARITY_VERDICTS", {})
    built = []
    real = nep_cpu.make_calculator
    monkeypatch.setattr(nep_cpu, "make_calculator", lambda p, b: built.append(b) or real(p, b))
    first = NepCpuEngine(model)
    assert first.backend == "nep-adapters" and "within 1e-08" in first.backend_reason
    assert sorted(built) == ["calorine", "nep-adapters"]
    NepCpuEngine(model)
    assert len(built) == 2  # the verdict is cached per model file
    assert first.version().startswith("nep-adapters 1.") and "OpenMP" in first.version()
    assert first.describe()["backend"] == "nep-adapters"


@pytest.mark.skipif(not nep_cpu.adapters_installed(), reason="nep-adapters not installed")
def test_thread_count_is_set_and_results_agree(model, cell):
    one = NepCpuEngine(model, backend="nep-adapters", threads=1)
    two = NepCpuEngine(model, backend="nep-adapters", threads=2)
    default = NepCpuEngine(model, backend="nep-adapters")
    assert one.describe()["threads"] == 1 and two.describe()["threads"] == 2
    assert default.effective_threads() >= 1
    a, b, c = (e.single_point(cell) for e in (one, two, default))
    assert np.abs(a.forces_ev_per_a - b.forces_ev_per_a).max() <= 1e-12
    assert abs(a.energy_ev - c.energy_ev) <= 1e-10


@pytest.mark.skipif(not nep_cpu.adapters_installed(), reason="nep-adapters not installed")
def test_threads_reach_the_openmp_runtime_nep_adapters_uses(model, cell):
    """The OpenMP runtime that actually serves nep-adapters (calorine pulls in scikit-learn, whose
    wheel bundles a libgomp of the same soname) sees the engine's thread count."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import nep_adapters  # noqa: F401

    def openmp_threads() -> set[int]:
        return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp"}

    NepCpuEngine(model, backend="nep-adapters", threads=1).single_point(cell)
    assert openmp_threads() == {1}
    NepCpuEngine(model, backend="nep-adapters", threads=2).single_point(cell)
    assert 2 in openmp_threads()


@pytest.mark.skipif(not nep_cpu.adapters_installed(), reason="nep-adapters not installed")
def test_auto_falls_back_to_calorine_on_mismatch(model, monkeypatch):
    monkeypatch.setattr(nep_cpu, "_PARITY_VERDICTS", {})
    calculate = nep_cpu.NepAdaptersCalculator.calculate

    def off_by_a_little(self, *args, **kwargs):
        calculate(self, *args, **kwargs)
        self.results["forces"] = self.results["forces"] + 1e-6

    monkeypatch.setattr(nep_cpu.NepAdaptersCalculator, "calculate", off_by_a_little)
    eng = NepCpuEngine(model)
    assert eng.backend == "calorine" and "beyond 1e-08" in eng.backend_reason
    assert eng.version().startswith("calorine 4.")


def test_auto_without_nep_adapters(model, monkeypatch):
    monkeypatch.setattr(nep_cpu, "_PARITY_VERDICTS", {})
    monkeypatch.setattr(nep_cpu, "adapters_installed", lambda: False)
    eng = NepCpuEngine(model)
    assert eng.backend == "calorine" and eng.backend_reason == "nep-adapters not installed"
    with pytest.raises(EngineError, match="not installed"):
        NepCpuEngine(model, backend="nep-adapters")


# --------------------------------------------------------------------------- MD

def total_energy(result) -> np.ndarray:
    return result.thermo["potential_energy_ev"] + result.thermo["kinetic_energy_ev"]


def test_nve_conserves_energy_with_second_order_error(engine, cell):
    """Velocity Verlet: total energy stays flat while E_pot and E_kin trade several eV, and the
    fluctuation shrinks ~4× when the time step is halved (wrong forces would break both)."""
    coarse = engine.md(cell, MDProtocol("nve", 300.0, 1.0, 150, sample_interval=5, seed=4))
    fine = engine.md(cell, MDProtocol("nve", 300.0, 0.5, 300, sample_interval=10, seed=4))
    exchanged = np.ptp(coarse.thermo["potential_energy_ev"])
    assert exchanged > 1.0
    assert np.ptp(total_energy(coarse)) < 2e-3 * exchanged
    assert np.ptp(total_energy(coarse)) / np.ptp(total_energy(fine)) > 2.5


@pytest.mark.parametrize("thermostat", ["bussi", "langevin"])
def test_nvt_mean_temperature(model, cell, thermostat):
    eng = NepCpuEngine(model, thermostat=thermostat, threads=1)
    protocol = MDProtocol("nvt", 500.0, 1.0, 2000, sample_interval=10, seed=8,
                          thermostat_coupling_fs=20.0, warmup_steps=300)
    temperature = eng.md(cell, protocol).thermo["temperature_k"]
    assert temperature.mean() == pytest.approx(500.0, rel=0.07)
    assert temperature.std() > 10.0  # canonical fluctuations, not a rescaled constant


@pytest.mark.parametrize("thermostat", ["bussi", "langevin"])
def test_nvt_temperature_counts_3n_minus_3_degrees_of_freedom(model, thermostat):
    """The protocol's T is that of the 3N − 3 degrees of freedom left at zero momentum (CP2K's count).
    In an 8-atom cell a thermostat counting 3N would hold E_kin 8/7 too high: +14 %, 5 standard
    deviations of this run's mean (measured over 8 seeds: 14 K for Bussi, 6 K for Langevin)."""
    small = check_cell(("Li", "Si", "C"), n_side=2, seed=3)
    n = len(small)
    eng = NepCpuEngine(model, thermostat=thermostat, threads=1)
    protocol = MDProtocol("nvt", 500.0, 1.0, 16000, sample_interval=10, seed=8,
                          thermostat_coupling_fs=20.0, warmup_steps=300)
    thermo = eng.md(small, protocol).thermo
    internal_k = 2.0 * thermo["kinetic_energy_ev"] / ((3 * n - 3) * units.kB)
    np.testing.assert_allclose(thermo["temperature_k"], internal_k, rtol=1e-12)
    assert internal_k.mean() == pytest.approx(500.0, rel=0.06)


def test_md_seed_determinism(engine, cell):
    protocol = MDProtocol("nvt", 400.0, 1.0, 40, sample_interval=10, seed=21)
    a, b = engine.md(cell, protocol), engine.md(cell, protocol)
    assert np.array_equal(a.trajectory.positions_a, b.trajectory.positions_a)
    assert np.array_equal(a.thermo["temperature_k"], b.thermo["temperature_k"])
    c = engine.md(cell, MDProtocol("nvt", 400.0, 1.0, 40, sample_interval=10, seed=22))
    assert not np.allclose(a.trajectory.positions_a[-1], c.trajectory.positions_a[-1])


def test_md_frames_warmup_and_timing(engine, cell):
    protocol = MDProtocol("nvt", 600.0, 2.0, 25, sample_interval=10, seed=5, warmup_steps=15)
    before = cell.positions.copy()
    result = engine.md(cell, protocol)
    traj = result.trajectory
    assert traj.n_frames == 3  # steps 0, 10, 20 after the warm-up; 25 is not a multiple of 10
    np.testing.assert_allclose(traj.times_ps, [0.0, 0.02, 0.04])
    assert not np.allclose(traj.positions_a[0], before, atol=1e-3)  # warm-up moved the atoms
    assert np.array_equal(cell.positions, before)
    for key in ("time_ps", "temperature_k", "potential_energy_ev", "kinetic_energy_ev"):
        assert result.thermo[key].shape == (3,)
    assert result.timing.timed_steps == 25 and result.timing.warmup_steps == 15
    assert 0 < result.timing.timed_wall_s < result.timing.total_wall_s
    assert result.timing.atom_steps_per_s > 0 and result.extra["backend"] == "calorine"
    assert traj.cells_a.shape == (3, 3, 3) and traj.symbols == tuple(cell.get_chemical_symbols())


def test_md_initial_velocities_have_zero_momentum_and_the_protocols_temperature(engine, cell):
    """The first frame is at T exactly (3N - 3 dof), as CP2K and GPUMD start: a drawn Maxwell-Boltzmann
    set on a 27-atom cell ran anywhere from 660 to 1,190 K for 900 K."""
    for seed in (9, 10, 11):
        result = engine.md(cell, MDProtocol("nve", 800.0, 0.5, 1, sample_interval=1, seed=seed))
        assert result.thermo["temperature_k"][0] == pytest.approx(800.0, rel=1e-9)
    masses = cell.get_masses()[:, None]
    # momentum after one step: Σ m Δr / dt, zero when the total momentum is
    displacement = result.trajectory.positions_a[1] - result.trajectory.positions_a[0]
    assert np.abs((masses * displacement).sum(axis=0)).max() < 1e-9


def test_md_positions_are_unwrapped(engine, cell):
    """Atoms start one box vector outside the cell: frames keep them there (no wrapping) and the
    dynamics equal those of the original positions shifted by that vector."""
    shift = cell.cell.array[0] + cell.cell.array[2]
    outside = cell.copy()
    outside.positions += shift
    protocol = MDProtocol("nve", 500.0, 1.0, 30, sample_interval=10, seed=2)
    inside_run, outside_run = engine.md(cell, protocol), engine.md(outside, protocol)
    np.testing.assert_allclose(outside_run.trajectory.positions_a - shift,
                               inside_run.trajectory.positions_a, atol=1e-8)
    steps = np.diff(outside_run.trajectory.positions_a, axis=0)
    assert np.abs(steps).max() < 1.0  # no jumps by a box length


class _Turning(Calculator):
    """Zero forces for `calm` calls, then `after`: 'nan' (a NaN energy) or 'kick' (100 eV/Å forces)."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, calm: int, after: str):
        super().__init__()
        self.calls, self.calm, self.after = 0, calm, after

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        forces = np.zeros((len(atoms), 3))
        energy = 0.0
        if self.calls > self.calm:
            if self.after == "nan":
                energy = float("nan")
            else:
                forces = np.random.default_rng(self.calls).normal(0, 100.0, forces.shape)
        self.results = {"energy": energy, "forces": forces, "stress": np.zeros(6)}


@pytest.mark.parametrize(("after", "phrase"), [("nan", "E_pot nan"), ("kick", "limit 20000 K")])
def test_a_blown_up_md_run_raises_instead_of_returning_numbers(engine, cell, monkeypatch, after, phrase):
    """NEP_CPU returns a finite energy and zero force for a NaN atom, and a 10 fs step sends the
    default model's a-Li2Si past 1e7 K in 70 steps: md() used to return such runs as trajectories."""
    monkeypatch.setattr(engine, "calculator", lambda: _Turning(calm=20, after=after))
    with pytest.raises(EngineError, match=rf"cell: MD unstable at step \d+: .*{phrase}"):
        engine.md(cell, MDProtocol("nve", 300.0, 1.0, 200, sample_interval=5, seed=4), source="cell")
    monkeypatch.setattr(engine, "calculator", lambda: _Turning(calm=10**6, after=after))
    assert engine.md(cell, MDProtocol("nve", 300.0, 1.0, 200, sample_interval=5, seed=4)).thermo["time_ps"].size == 41


# --------------------------------------------------------------------------- open boundaries

def _cluster(box_a: float, pbc: bool = False) -> Atoms:
    """A 12-atom Li–Si–C cluster (about 4.5 Å across) at the centre of a cubic box of `box_a` Å."""
    rng = np.random.default_rng(5)
    grid = np.indices((3, 2, 2)).reshape(3, -1).T * 2.2 + rng.normal(0, 0.1, (12, 3))
    atoms = Atoms(["Li", "Si", "C"] * 4, positions=grid, cell=[box_a] * 3, pbc=pbc)
    atoms.center()
    return atoms


def test_a_non_periodic_structure_needs_vacuum_beyond_the_cutoff(engine):
    """NEP_CPU treats pbc=False as periodic: a cluster whose images sit within the cutoff (5 Å for
    the random model) gets another energy than the isolated cluster, so it is refused; one whose
    vacuum is beyond the cutoff gets the isolated energy and runs."""
    assert engine.cutoff_a == 5.0
    isolated = engine.single_point(_cluster(40.0)).energy_ev
    assert engine.single_point(_cluster(4.5 + 5.5)).energy_ev == pytest.approx(isolated, abs=1e-9)  # gap 5.5 Å
    tight = _cluster(4.5 + 3.0)  # the vacuum across each face: about 3 Å < 5 Å
    calc = engine.calculator()
    calc.calculate(tight, ["energy"], all_changes)
    assert abs(calc.results["energy"] - isolated) > 1e-3  # what the check prevents
    with pytest.raises(InputError, match=r"cluster\.xyz: pbc is False along cell vector 1, but NEP_CPU treats "
                                         r"the cell as periodic: the vacuum across that boundary is 2\.\d\d Å"):
        engine.single_point(tight, source="cluster.xyz")
    with pytest.raises(InputError, match="add vacuum"):
        engine.md(tight, MDProtocol("nve", 300.0, 1.0, 5), source="cluster.xyz")
    periodic = _cluster(4.5 + 3.0, pbc=True)  # a periodic cell means its images: no check
    assert engine.single_point(periodic).energy_ev == pytest.approx(calc.results["energy"], abs=1e-9)


def test_the_open_boundary_gap_is_measured_along_the_cells_normal():
    atoms = _cluster(12.0)
    extent = np.ptp(atoms.positions[:, 0])
    assert nep_cpu.open_boundary_problem(atoms, cutoff_a=12.0 - extent - 0.01) is None
    assert "vector 1" in nep_cpu.open_boundary_problem(atoms, cutoff_a=12.0 - extent + 0.01)
    atoms.pbc = [True, False, True]  # only vector 2 is open: its own gap decides
    assert "vector 2" in nep_cpu.open_boundary_problem(atoms, cutoff_a=12.0 - np.ptp(atoms.positions[:, 1]) + 0.01)
