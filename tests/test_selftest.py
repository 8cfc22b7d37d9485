"""`nepbench selftest`: the table logic with fake engines and models, and (marked cp2k) the real run.

The fakes stand in for nepbench.models and the engines through sys.modules, so what is tested is the
selftest's own logic: hash verification, physical sanity of labels, skip vs fail, exit status.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import types
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from nepbench.cli import main
from nepbench.commands import selftest
from nepbench.commands.selftest import CheckResult, Context, Skip, exit_code, run_checks


@dataclass(frozen=True)
class FakeLabels:
    energy_ev: float
    forces_ev_per_a: np.ndarray
    stress_ev_per_a3: np.ndarray | None = None
    wall_s: float = 0.0


@dataclass(frozen=True)
class FakeModelInfo:
    name: str
    path: Path
    sha256: str
    species: tuple[str, ...] = ("Li", "C", "Si")


def balanced_labels(n_atoms: int, ev_per_atom: float = -5.3, seed: int = 0) -> FakeLabels:
    """Physically plausible labels: forces that sum to zero."""
    forces = np.random.default_rng(seed).normal(size=(n_atoms, 3))
    forces -= forces.mean(axis=0)
    return FakeLabels(ev_per_atom * n_atoms, forces)


@pytest.fixture()
def fake_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Fake model registry and engines; no GPU, no gpumd, outside the container by default."""
    model_file = tmp_path / "nep.txt"
    model_file.write_text("nep4_zbl 3 Li C Si\n")
    sha = hashlib.sha256(model_file.read_bytes()).hexdigest()
    world = types.SimpleNamespace(model_file=model_file, sha=sha, nep=None, cp2k=None, gpumd=None,
                                  species=("Li", "C", "Si"), cp2k_available=True,
                                  cp2k_version="CP2K version 2023.1", gpu_labels=None)
    world.nep = lambda atoms: balanced_labels(len(atoms))
    world.cp2k = lambda atoms: balanced_labels(len(atoms), ev_per_atom=-105.8)

    models = types.ModuleType("nepbench.models")
    models.resolve_model = lambda name, fetch=True: FakeModelInfo(name, model_file, world.sha, world.species)

    nep_cpu = types.ModuleType("nepbench.engines.nep_cpu")

    class NepCpuEngine:
        def __init__(self, model_path: Path) -> None:
            assert Path(model_path) == model_file

        def single_point(self, atoms):  # noqa: ANN001
            return world.nep(atoms)

    nep_cpu.NepCpuEngine = NepCpuEngine

    cp2k = types.ModuleType("nepbench.engines.cp2k")

    @dataclass(frozen=True)
    class CP2KSettings:
        cutoff_ry: float = 400.0
        rel_cutoff_ry: float = 50.0
        eps_scf: float = 1e-6
        eps_default: float = 1e-12
        stress: bool = True

    class CP2KEngine:
        cp2k_binary = "cp2k.psmp"

        def __init__(self, settings: CP2KSettings, ranks: int = 2, timeout_s: float | None = None) -> None:
            assert settings.cutoff_ry == 150.0 and not settings.stress  # the cheap copy
            self.settings = settings

        def available(self) -> bool:
            return world.cp2k_available

        def version(self) -> str:
            return world.cp2k_version

        def single_point(self, atoms):  # noqa: ANN001
            return world.cp2k(atoms)

    cp2k.CP2KSettings, cp2k.CP2KEngine, cp2k.LABEL_SETTINGS = CP2KSettings, CP2KEngine, CP2KSettings()

    gpumd = types.ModuleType("nepbench.engines.gpumd")

    class GpumdEngine:
        def __init__(self, model_path: Path) -> None:
            self.model_path = model_path

        def available(self) -> tuple[bool, str]:
            return True, "gpumd on Fake GPU"

        def single_point(self, atoms):  # noqa: ANN001
            return world.gpu_labels(atoms) if world.gpu_labels else world.nep(atoms)

    gpumd.GpumdEngine = GpumdEngine

    for name, module in (("nepbench.models", models), ("nepbench.engines.nep_cpu", nep_cpu),
                         ("nepbench.engines.cp2k", cp2k), ("nepbench.engines.gpumd", gpumd)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(selftest.provenance, "gpu_models", lambda: [])
    monkeypatch.setattr(selftest.shutil, "which", lambda name: None)
    monkeypatch.delenv("NEPBENCH_IN_CONTAINER", raising=False)
    monkeypatch.setattr(selftest, "PINS_PATH", tmp_path / "pins.toml")
    (tmp_path / "pins.toml").write_text(
        f'[model]\nname = "nep89-lisic"\nsha256 = "{sha}"\n[cp2k]\nversion = "2023.1"\n')
    return world


def rows(capsys: pytest.CaptureFixture[str]) -> dict[str, tuple[str, str]]:
    """name -> (status, detail) from the printed table."""
    out = capsys.readouterr().out
    table = {}
    for line in out.splitlines():
        parts = line.split(None, 4)
        if len(parts) == 5 and parts[1] in ("pass", "fail", "skip"):
            table[parts[0]] = (parts[1], parts[4])
    return table


# ------------------------------------------------------------------------ run_checks / exit_code


def test_exception_becomes_a_failed_row_and_exit_1() -> None:
    def boom(ctx: Context) -> str:
        raise RuntimeError("engine exploded\nsecond line")

    results = run_checks([("ok", lambda ctx: "fine"), ("boom", boom)], Context("m"))
    assert [r.status for r in results] == ["pass", "fail"]
    assert results[1].detail == "RuntimeError: engine exploded"  # one line
    assert exit_code(results) == 1


def test_skips_alone_exit_0() -> None:
    def no_gpu(ctx: Context) -> str:
        raise Skip("no NVIDIA GPU visible")

    results = run_checks([("ok", lambda ctx: "fine"), ("gpumd", no_gpu)], Context("m"))
    assert [(r.status, r.detail) for r in results] == [("pass", "fine"), ("skip", "no NVIDIA GPU visible")]
    assert exit_code(results) == 0
    assert exit_code([CheckResult("a", "skip", "x")]) == 0


def test_keyboard_interrupt_is_not_swallowed() -> None:
    def interrupted(ctx: Context) -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_checks([("x", interrupted)], Context("m"))


def test_test_cells_are_deterministic_and_sane() -> None:
    a, b = selftest.lisic_cell(), selftest.lisic_cell()
    assert np.array_equal(a.positions, b.positions) and a.get_chemical_formula() == "C8Li8Si208"
    distances = a.get_all_distances(mic=True)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() > 1.8  # no overlapping atoms
    assert min(a.cell.lengths()) > 12.0  # more than twice the NEP89 cutoff of 6 Å
    assert len(selftest.si8_cell()) == 8


# ------------------------------------------------------------------------ whole command, fakes


def test_all_good_without_gpu_exits_0(fake_world, capsys) -> None:
    assert main(["selftest"]) == 0
    table = rows(capsys)
    assert table["model"][0] == "pass" and "pins.toml" in table["model"][1]
    assert table["nep-cpu"][0] == "pass" and "224 atoms" in table["nep-cpu"][1]
    assert table["cp2k"][0] == "pass" and "2023.1" in table["cp2k"][1]
    assert table["gpumd"] == ("skip", "gpumd and nep not on PATH")


def test_model_file_not_matching_its_hash_fails(fake_world, capsys) -> None:
    fake_world.model_file.write_text("tampered\n")
    assert main(["selftest", "--skip-cp2k"]) == 1
    table = rows(capsys)
    assert table["model"][0] == "fail" and "differs from the registry" in table["model"][1]
    assert table["nep-cpu"] == ("skip", "needs the model check to pass")
    assert table["cp2k"] == ("skip", "--skip-cp2k")


def test_registry_and_pins_disagreeing_fails(fake_world, capsys, tmp_path) -> None:
    (tmp_path / "pins.toml").write_text('[model]\nname = "nep89-lisic"\nsha256 = "' + "0" * 64 + '"\n')
    assert main(["selftest", "--skip-cp2k"]) == 1
    assert "pins.toml" in rows(capsys)["model"][1]


@pytest.mark.parametrize("text, problem", [
    ('[model]\nname = "nep89-lisic\n', "malformed TOML"),  # was an unexpected TOMLDecodeError, file unnamed
    ('model = "nep89-lisic"\n', "'model' must be a table ([model]), got str"),  # was an AttributeError
    ('[cp2k]\nversion = 2023.1\n', "[cp2k] version must be text"),
])
def test_a_bad_pins_file_is_one_line_naming_it(fake_world, capsys, tmp_path, text, problem) -> None:
    (tmp_path / "pins.toml").write_text(text)
    assert main(["selftest", "--skip-cp2k"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'pins.toml'}: " in err[0] and problem in err[0], err


def test_model_lacking_a_species_fails(fake_world, capsys) -> None:
    fake_world.species = ("Li", "Si")
    assert main(["selftest", "--skip-cp2k"]) == 1
    assert "lacks Li, Si or C" in rows(capsys)["model"][1]


def test_nan_energy_fails(fake_world, capsys) -> None:
    fake_world.nep = lambda atoms: replace(balanced_labels(len(atoms)), energy_ev=float("nan"))
    assert main(["selftest", "--skip-cp2k"]) == 1
    assert rows(capsys)["nep-cpu"] == ("fail", "NEP (CPU): energy is nan")


def test_unbalanced_forces_fail(fake_world, capsys) -> None:
    def unbalanced(atoms):  # noqa: ANN001
        labels = balanced_labels(len(atoms))
        return replace(labels, forces_ev_per_a=labels.forces_ev_per_a + 0.01)

    fake_world.nep = unbalanced
    assert main(["selftest", "--skip-cp2k"]) == 1
    assert "forces sum to" in rows(capsys)["nep-cpu"][1]


def test_cp2k_energy_in_hartree_fails(fake_world, capsys) -> None:
    fake_world.cp2k = lambda atoms: balanced_labels(len(atoms), ev_per_atom=-3.96)  # Hartree, not eV
    assert main(["selftest", "--skip-model"]) == 1
    table = rows(capsys)
    assert table["cp2k"][0] == "fail" and "eV/atom is outside" in table["cp2k"][1]
    assert table["model"] == ("skip", "--skip-model")


def test_missing_cp2k_is_a_skip_outside_and_a_failure_inside_the_image(fake_world, capsys,
                                                                       monkeypatch) -> None:
    fake_world.cp2k_available = False
    assert main(["selftest", "--skip-model"]) == 0
    assert rows(capsys)["cp2k"][0] == "skip"
    monkeypatch.setenv("NEPBENCH_IN_CONTAINER", "1")
    assert main(["selftest", "--skip-model"]) == 1
    table = rows(capsys)
    assert table["cp2k"][0] == "fail" and "the image must provide it" in table["cp2k"][1]
    assert table["gpumd"][0] == "fail"  # gpumd/nep are not on PATH either


def test_wrong_cp2k_version_fails_only_inside_the_image(fake_world, capsys, monkeypatch) -> None:
    fake_world.cp2k_version = "CP2K version 9.1"
    assert main(["selftest", "--skip-model"]) == 0
    assert "pins.toml expects 2023.1" in rows(capsys)["cp2k"][1]
    monkeypatch.setenv("NEPBENCH_IN_CONTAINER", "1")
    monkeypatch.setattr(selftest.shutil, "which", lambda name: f"/opt/gpumd/bin/{name}")
    monkeypatch.setattr(selftest, "unresolved_libraries", lambda binaries: [])
    assert main(["selftest", "--skip-model"]) == 1
    table = rows(capsys)
    assert table["cp2k"] == ("fail", "CP2K version 9.1 is not the pinned CP2K 2023.1")
    assert table["gpumd"][0] == "skip"  # no GPU: a skip even inside the image


def test_gpumd_with_unresolved_libraries_fails(fake_world, capsys, monkeypatch) -> None:
    monkeypatch.setattr(selftest.shutil, "which", lambda name: f"/opt/gpumd/bin/{name}")
    monkeypatch.setattr(selftest, "unresolved_libraries", lambda binaries: ["libcufft.so.11"])
    assert main(["selftest", "--skip-cp2k"]) == 1
    assert rows(capsys)["gpumd"] == ("fail", "gpumd/nep cannot load libcufft.so.11")


def test_gpu_run_agreeing_with_cpu_passes_and_disagreeing_fails(fake_world, capsys, monkeypatch) -> None:
    monkeypatch.setattr(selftest.shutil, "which", lambda name: f"/opt/gpumd/bin/{name}")
    monkeypatch.setattr(selftest, "unresolved_libraries", lambda binaries: [])
    monkeypatch.setattr(selftest.provenance, "gpu_models", lambda: ["NVIDIA H100 80GB HBM3, 81559 MiB"])
    assert main(["selftest", "--skip-cp2k"]) == 0
    status, detail = rows(capsys)["gpumd"]
    assert status == "pass" and "vs CPU dE 0.0e+00" in detail
    fake_world.gpu_labels = lambda atoms: balanced_labels(len(atoms), ev_per_atom=-5.2)  # 0.1 eV/atom off
    assert main(["selftest", "--skip-cp2k"]) == 1
    assert "GPUMD and CPU NEP disagree" in rows(capsys)["gpumd"][1]


def test_missing_engine_module_is_one_failed_row(fake_world, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "nepbench.engines.nep_cpu", None)  # import raises ImportError
    assert main(["selftest", "--skip-cp2k"]) == 1
    table = rows(capsys)
    assert table["nep-cpu"][0] == "fail" and "cannot import NepCpuEngine" in table["nep-cpu"][1]
    assert table["model"][0] == "pass"


def test_unresolved_libraries_reads_ldd(tmp_path) -> None:
    if shutil.which("ldd") is None:
        pytest.skip("no ldd")
    assert selftest.unresolved_libraries([sys.executable]) == []


def test_selftest_is_registered_with_its_options() -> None:
    from nepbench.cli import build_parser

    args = build_parser().parse_args(["selftest", "--skip-cp2k", "--skip-model"])
    assert args.skip_cp2k and args.skip_model and args.func is selftest._selftest


# ------------------------------------------------------------------------ real run


@pytest.mark.cp2k
def test_real_selftest_with_cp2k(capsys) -> None:
    """The real CP2K single point (cheap settings) and, when nepbench.models can resolve the default
    model without the network, the real model and NEP checks."""
    if shutil.which("cp2k.psmp") is None:
        pytest.skip("cp2k.psmp not installed")
    code = main(["selftest"])
    table = rows(capsys)
    assert table["cp2k"][0] == "pass", table["cp2k"]
    if table["model"][0] == "fail" and "download" in table["model"][1]:
        pytest.skip(f"model could not be fetched here: {table['model'][1]}")
    assert table["model"][0] == "pass" and table["nep-cpu"][0] == "pass", table
    assert code == 0
