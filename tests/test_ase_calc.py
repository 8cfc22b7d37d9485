"""ASE-calculator models (registry kind "ase") and their engine: the universal-MLIP comparators.

Most tests use ASE's own LennardJones as the calculator (no torch): a registry record whose "weights"
file is ase/calculators/lj.py inside the installed ase, checked by sha256 like CHGNet's .pth.tar. The
last tests run the real CHGNet 0.3.0 and SevenNet-0 on an 8-atom c-Si cell for a single point and a
few MD steps; they skip with the reason where the package is missing (requirements-comparators.txt),
except under CI, which installs it (`make setup`, unless COMPARATORS=0).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.calculator import all_changes
from ase.calculators.lj import LennardJones

from nepbench import cli, models, runner
from nepbench.spec import TaskSpec
from nepbench.engines import ase_calc
from nepbench.engines.ase_calc import AseCalcEngine, available_memory_mb, cpu_engine, memory_problem
from nepbench.engines.base import MDProtocol
from nepbench.errors import InputError, ModelError, ModelUnavailable
from nepbench.provenance import sha256_file
from random_models import write_random_model

REPO = Path(__file__).resolve().parents[1]
LJ_ARGS = {"sigma": 2.0, "epsilon": 0.02, "rc": 4.5, "smooth": True}


def lj_table(name: str = "lj-test", **change) -> str:
    """A registry table of an "ase" model on ASE's LennardJones; `change` overrides source keys
    (a value of None drops the key) or, for source_sha256/species, the record's."""
    lj_file = models.ase_weights_path(models.ModelRecord(
        "x", "", {"package": "ase", "file": "ase/calculators/lj.py"}, "0" * 64, ("Li",), "ase", "", ""))
    source = {"kind": "ase", "package": "ase", "version": models.installed_version("ase"),
              "file": "ase/calculators/lj.py", "factory": "ase.calculators.lj:LennardJones", "arguments": LJ_ARGS}
    source.update({k: v for k, v in change.items() if k not in ("source_sha256", "species")})
    source = {k: v for k, v in source.items() if v is not None}
    sha = change.get("source_sha256", sha256_file(lj_file))
    species = change.get("species", ["Li", "Si", "C"])
    return (f'[models.{models.registry_key(name)}]\ndescription = "LJ stand-in"\n'
            f"source = {models._toml_value(source)}\nsource_sha256 = {json.dumps(sha)}\n"
            f"species = {json.dumps(species)}\nlicence = \"LGPL (ase)\"\ncitation = \"none\"\n")


@pytest.fixture
def lj_registry(tmp_path, monkeypatch) -> Path:
    """The repository's registry plus lj-test (and variants), as $NEPBENCH_REGISTRY."""
    path = tmp_path / "models" / "registry.toml"
    path.parent.mkdir()
    path.write_text((REPO / "models" / "registry.toml").read_text().replace(
        'path = "models/', f'path = "{REPO}/models/') + "\n" + lj_table())
    monkeypatch.setenv(models.REGISTRY_ENV, str(path))
    return path


def add_table(registry: Path, table: str) -> None:
    registry.write_text(registry.read_text() + "\n" + table)


def lisi_cell(seed: int = 0) -> Atoms:
    """A 32-atom jittered Li–Si cell (2.7 Å spacing), seeded."""
    rng = np.random.default_rng(seed)
    grid = np.indices((4, 4, 2)).reshape(3, -1).T * 2.7
    symbols = ["Li" if i % 3 else "Si" for i in range(len(grid))]
    return Atoms(symbols, positions=grid + rng.normal(0, 0.08, grid.shape), cell=np.diag([4, 4, 2]) * 2.7, pbc=True)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- the registry

def test_the_comparators_are_registered_with_their_package_files():
    """chgnet-0.3.0 and sevenn-0 are "ase" records: pinned package, file inside it, sha256, no nep_version."""
    records = models.load_registry()
    for name, package, version in (("chgnet-0.3.0", "chgnet", "0.4.2"), ("sevenn-0", "sevenn", "0.13.0")):
        record = records[name]
        assert record.kind == "ase" and record.nep_version == "ase"
        assert (record.source["package"], record.source["version"]) == (package, version)
        assert record.source["file"].startswith(f"{package}/") and record.source["weights_argument"]
        assert {"Li", "Si", "C"} <= set(record.species) and record.source_size_bytes > 1_000_000
        if models.installed_version(package) == version:  # the installed file is the registered one
            assert sha256_file(models.ase_weights_path(record)) == record.sha256
    assert records["chgnet-0.3.0"].source["cutoff_a"] == 6.0  # pymatgen: periodic whatever the pbc


def test_an_ase_record_resolves_to_its_checked_file(lj_registry):
    info = models.resolve_model("lj-test")
    assert info.kind == "ase" and info.nep_version == "ase" and info.species == ("Li", "Si", "C")
    assert info.path.name == "lj.py" and info.sha256 == sha256_file(info.path)
    assert models.fetch_model("lj-test") == info.path  # "fetch" checks, never downloads or caches


@pytest.mark.parametrize("change, problem", [
    ({"factory": "ase.calculators.lj:NoSuchCalculator"}, "unknown calculator 'ase.calculators.lj:NoSuchCalculator'"),
    ({"factory": "nepbench_no_such_module:Calc"}, "unknown calculator 'nepbench_no_such_module:Calc': cannot import"),
    ({"file": "ase/calculators/no_such_weights.pth"}, "no_such_weights.pth: weights file of model lj-bad not found"),
    ({"source_sha256": "0" * 64}, "sha256 mismatch for the weights of model lj-bad"),
])
def test_bad_ase_models_are_one_line_naming_the_problem(lj_registry, change, problem):
    add_table(lj_registry, lj_table("lj-bad", **change))
    with pytest.raises(ModelError) as exc:
        models.resolve_model("lj-bad")
    assert problem in one_line(exc)


@pytest.mark.parametrize("change, problem", [
    ({"factory": "ase.calculators.lj"}, "factory must be 'module:attribute'"),
    ({"file": "../../etc/passwd"}, "file must be a path relative"),
    ({"arguments": {"model": "x"}, "weights_argument": "model"}, "arguments sets 'model', the weights argument"),
    ({"cutoff_a": -1.0}, "cutoff_a must be a finite number"),
    ({"memory_mb_per_atom": 0.0}, "memory_mb_per_atom must be a finite number of MB per atom > 0"),
])
def test_malformed_ase_records_are_refused_when_the_registry_loads(lj_registry, change, problem):
    add_table(lj_registry, lj_table("lj-bad", **change))
    with pytest.raises(ModelError) as exc:
        models.load_registry()
    assert "[models.lj-bad].source" in one_line(exc) and problem in one_line(exc)


def test_nep_fields_are_refused_on_an_ase_record(lj_registry):
    add_table(lj_registry, lj_table("lj-bad") + 'nep_version = "nep4"\n')
    with pytest.raises(ModelError, match="nep_version is for NEP models"):
        models.load_registry()


def test_a_dotted_name_must_be_quoted_and_says_so(lj_registry):
    add_table(lj_registry, lj_table("lj-1.0").replace('[models."lj-1.0"]', "[models.lj-1.0]"))
    with pytest.raises(ModelError) as exc:
        models.load_registry()
    assert "must be quoted" in one_line(exc)


@pytest.mark.parametrize("change, problem", [
    ({"package": "nepbench-no-such-package"}, "package nepbench-no-such-package is not installed"),
    ({"version": "0.0.1"}, "the registry pins 0.0.1"),
])
def test_a_missing_or_other_package_version_is_unavailable_not_bad(lj_registry, change, problem):
    add_table(lj_registry, lj_table("lj-missing", **change))
    with pytest.raises(ModelUnavailable) as exc:
        models.resolve_model("lj-missing")
    assert problem in one_line(exc) and "pip install" in str(exc.value)


def test_cli_lists_and_shows_ase_models(lj_registry, capsys):
    add_table(lj_registry, lj_table("lj-missing", package="nepbench-no-such-package"))
    assert cli.main(["models", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert " ase " in lines["lj-test"] and "installed" in lines["lj-test"]
    assert "not installed" in lines["lj-missing"]
    assert cli.main(["models", "show", "lj-test"]) == 0
    out = capsys.readouterr().out
    assert "ase.calculators.lj:LennardJones(sigma=2.0" in out and "installed   installed" in out
    assert cli.main(["models", "fetch", "lj-missing"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not installed" in err[0]


def test_a_bad_comparator_stops_nepbench_run_before_anything_is_written(lj_registry, tmp_path, capsys):
    add_table(lj_registry, lj_table("lj-bad", source_sha256="0" * 64))
    out = tmp_path / "out"
    code = cli.main(["run", str(REPO / "suites" / "quick.toml"), "--model", "lj-bad", "--out", str(out)])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "sha256 mismatch" in err[0] and "lj-bad" in err[0], err
    assert not out.exists()


# --------------------------------------------------------------------------- the engine

def test_single_point_is_the_wrapped_calculators(lj_registry):
    atoms = lisi_cell()
    engine = cpu_engine(models.resolve_model("lj-test"))
    assert isinstance(engine, AseCalcEngine)
    labels = engine.single_point(atoms)
    direct = LennardJones(**LJ_ARGS)
    direct.calculate(atoms.copy(), ["energy", "forces", "stress"], all_changes)
    assert labels.energy_ev == pytest.approx(direct.results["energy"], abs=1e-12)
    np.testing.assert_allclose(labels.forces_ev_per_a, direct.results["forces"], atol=1e-12)
    np.testing.assert_allclose(labels.stress_ev_per_a3, direct.results["stress"], atol=1e-12)
    assert np.abs(labels.forces_ev_per_a).max() > 1e-3  # a jittered cell: the comparison is not 0 == 0
    assert engine.describe()["factory"] == "ase.calculators.lj:LennardJones"
    assert engine.version().startswith(f"ase {models.installed_version('ase')} (ase.calculators.lj:LennardJones")


def test_species_the_model_lacks_and_thin_vacuum_are_named(lj_registry):
    engine = AseCalcEngine("lj-test")
    atoms = lisi_cell()
    atoms[0].symbol = "Al"
    with pytest.raises(ModelError) as exc:  # as the NEP engine says it
        engine.single_point(atoms, source="cell.extxyz")
    assert one_line(exc).startswith("cell.extxyz: species Al not in the model, which has Li, Si, C")
    add_table(lj_registry, lj_table("lj-periodic", cutoff_a=6.0))
    periodic = AseCalcEngine("lj-periodic")
    cluster = lisi_cell()
    cluster.center(vacuum=2.0)
    cluster.pbc = False
    with pytest.raises(InputError, match="lj-periodic treats the cell as periodic"):
        periodic.single_point(cluster, source="particle")
    cluster.center(vacuum=4.0)  # 8 Å across each boundary, beyond its 6 Å
    assert np.isfinite(periodic.single_point(cluster).energy_ev)


def test_a_structure_too_large_for_the_memory_is_refused_before_it_runs(lj_registry, monkeypatch, tmp_path):
    assert memory_problem(1000, 7.7, 10_000.0, "x") is None  # 7.7 GB of 10 GB: within 80 %
    problem = memory_problem(4125, 7.7, 22_000.0, "chgnet-0.3.0")
    assert problem.startswith("chgnet-0.3.0 would need ~31.0 GB for 4125 atoms (7.7 MB per atom")
    assert "21.5 GB is available here" in problem
    assert memory_problem(10**6, 7.7, None, "x") is None  # unknown memory: no refusal
    add_table(lj_registry, lj_table("lj-hungry", memory_mb_per_atom=100.0))
    engine = AseCalcEngine("lj-hungry")
    monkeypatch.setattr(ase_calc, "available_memory_mb", lambda: 1000.0)  # 8 atoms × 100 MB fit in 800
    assert np.isfinite(engine.single_point(lisi_cell()[:8]).energy_ev)
    with pytest.raises(InputError, match="cell.extxyz: lj-hungry would need ~0.9 GB for 9 atoms"):
        engine.single_point(lisi_cell()[:9], source="cell.extxyz")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:    2097152 kB\n")
    assert available_memory_mb(meminfo) == 2048.0 and available_memory_mb(tmp_path / "absent") is None


def test_md_runs_the_shared_protocol_seeded_and_conserves_energy(lj_registry):
    engine = AseCalcEngine("lj-test", threads=1)
    atoms = lisi_cell(seed=1)
    nvt = MDProtocol("nvt", 600.0, 1.0, 20, sample_interval=5, seed=4, warmup_steps=2)
    a, b = engine.md(atoms, nvt), engine.md(atoms, nvt)
    np.testing.assert_array_equal(a.trajectory.positions_a, b.trajectory.positions_a)  # one seed, one answer
    assert a.engine == "ase_calc" and a.trajectory.n_frames == 5 and a.timing.timed_steps == 20
    nve = engine.md(atoms, MDProtocol("nve", 300.0, 1.0, 200, sample_interval=10, seed=2))
    assert nve.thermo["temperature_k"][0] == pytest.approx(300.0, rel=1e-9)  # 3N - 3 dof, as CP2K counts
    total = nve.thermo["potential_energy_ev"] + nve.thermo["kinetic_energy_ev"]
    assert np.ptp(total) / len(atoms) < 2e-4 and np.ptp(nve.thermo["potential_energy_ev"]) / len(atoms) > 1e-3
    assert not np.array_equal(nve.trajectory.positions_a[0], nve.trajectory.positions_a[-1])


def test_a_nep_model_is_not_an_ase_calculator(tmp_path):
    nep = write_random_model(tmp_path / "nep.txt", seed=1)
    with pytest.raises(ModelError, match="is a NEP potential, not an ASE-calculator model"):
        AseCalcEngine(models.resolve_model(str(nep)))
    assert cpu_engine(models.resolve_model(str(nep))).name == "nep_cpu"


# --------------------------------------------------------------------------- the tasks

def test_parity_runs_a_comparator_with_the_same_offset_fit(lj_registry, tmp_path):
    spec = TaskSpec("parity-lj-test", "parity", "p", {"split": "test", "model": "lj-test"}, ("lj-test",))
    record, cached = runner.run_task(spec, tmp_path / "out", {})
    assert record["status"] == "done" and not cached, record["reason"]
    assert list(record["provenance"]["engines"]) == ["ase_calc"]
    assert record["model"]["name"] == "lj-test" and record["model"]["sha256"] == models.resolve_model("lj-test").sha256
    metrics = record["metrics"]
    assert metrics["force_rmse_mev_per_a"] > 0 and metrics["energy_rmse_mev_per_atom"] > 0
    assert set(record["series"]["energy_offsets_ev_per_atom"]) >= {"Li", "Si"}  # fitted, as for a NEP
    assert "lj-test via ase" in record["method"]
    assert (tmp_path / "out" / "models" / f"{record['model']['sha256']}.lj.py").is_file()  # the bytes it ran


def test_a_comparator_whose_package_is_missing_is_skipped_in_its_column(lj_registry, tmp_path):
    add_table(lj_registry, lj_table("lj-missing", package="nepbench-no-such-package"))
    spec = TaskSpec("parity-lj-missing", "parity", "p", {"model": "lj-missing"}, ("lj-missing",))
    record, _ = runner.run_task(spec, tmp_path / "out", {})
    assert record["status"] == "skipped" and "nepbench-no-such-package is not installed" in record["reason"]
    assert record["model"]["name"] == "lj-missing"


def test_md_accuracy_accepts_a_comparator(lj_registry, tmp_path):
    nve = {"builder": "a-LixSi", "params": {"x": 2.0}, "temperature_k": 300.0, "timestep_fs": 1.0, "steps": 40,
           "seed": 3, "nvt_steps": 20}
    spec = TaskSpec("md-lj-test", "md_accuracy", "m", {"runs": [], "length_factors": [1], "nve": nve,
                                                       "model": "lj-test"}, ("lj-test",))
    record, _ = runner.run_task(spec, tmp_path / "out", {})
    assert record["status"] == "done", record["reason"]
    assert "nve_drift_abs_ev_per_atom_per_ps" in record["metrics"]
    assert record["method"].startswith("lj-test NVT") and list(record["provenance"]["engines"]) == ["ase_calc"]


def test_gpumd_tasks_are_not_applicable_to_a_comparator(lj_registry, tmp_path):
    from nepbench.tasks import TaskContext
    from nepbench.tasks.expansion import run_expansion
    from nepbench.tasks.throughput import _gpumd_or_reason

    info = models.resolve_model("lj-test")
    ctx = TaskContext(tmp_path, REPO / "reference_data", info.path, info.name, info.sha256,
                      model_source=dict(info.source), model_species=info.species)
    engine, reason = _gpumd_or_reason(ctx)
    assert engine is None and reason.startswith("not applicable: GPUMD runs NEP potentials only; lj-test")
    spec = TaskSpec("expansion-lj-test", "expansion", "e", {"engine": "gpumd", "relax": "md"}, ("lj-test",))
    outcome = run_expansion(spec, ctx)
    assert outcome.status == "not_applicable" and "GPUMD runs NEP potentials only" in outcome.reason


# --------------------------------------------------------------------------- the real comparators

def need_package(package: str) -> None:
    """Skip, with the reason, where `package` is not installed at the registry's version; under CI
    (which installs requirements-comparators.txt unless COMPARATORS=0) fail instead."""
    record = next(r for r in models.load_registry().values() if r.source.get("package") == package)
    problem = models.ase_install_problem(record)
    if problem is None:
        return
    if os.environ.get("CI") == "true" and os.environ.get("COMPARATORS", "1") != "0":
        pytest.fail(f"CI installs the comparators (requirements-comparators.txt), yet: {problem}")
    pytest.skip(f"comparator not installed: {problem}")


@pytest.mark.parametrize("name, package", [("chgnet-0.3.0", "chgnet"), ("sevenn-0", "sevenn")])
def test_real_comparator_on_crystalline_si(name, package):
    """A universal potential trained on MPtrj (PBE) gives c-Si near its PBE energy, ~zero forces by
    symmetry, and at the experimental lattice (5.431 Å, below PBE's ~5.47 Å) a compressive stress of a
    GPa or two, negative in ASE's sign convention (checks the sign the engine hands on); a few MD
    steps conserve energy."""
    need_package(package)
    from ase.build import bulk

    engine = AseCalcEngine(name, threads=1)
    si = bulk("Si", "diamond", a=5.431, cubic=True)  # 8 atoms
    labels = engine.single_point(si)
    assert -5.6 < labels.energy_ev / len(si) < -5.2  # PBE (MP) c-Si: -5.42 eV/atom
    assert np.abs(labels.forces_ev_per_a).max() < 0.01
    stress_gpa = labels.stress_ev_per_a3 / units.GPa
    assert np.all((-4.0 < stress_gpa[:3]) & (stress_gpa[:3] < -0.3)) and np.abs(stress_gpa[3:]).max() < 0.05
    assert engine.effective_threads() == 1
    si.rattle(0.05, seed=1)
    result = engine.md(si, MDProtocol("nve", 300.0, 1.0, 4, sample_interval=2, seed=1))
    total = result.thermo["potential_energy_ev"] + result.thermo["kinetic_energy_ev"]
    assert np.all(np.isfinite(total)) and np.ptp(total) / len(si) < 5e-3
