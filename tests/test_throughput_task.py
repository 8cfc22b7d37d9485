"""The throughput task's shared CP2K timing: measured once per suite run, reused by every model."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from ase.build import bulk

from nepbench.engines.base import MDProtocol
from nepbench.tasks.throughput import cp2k_timing_shared


@dataclass(frozen=True)
class _Settings:
    cutoff_ry: float = 250.0


class _CountingCP2K:
    """Stands in for CP2KEngine: each md() call takes a new (fake) time and is counted."""

    settings = _Settings()
    ranks = 2

    def __init__(self) -> None:
        self.calls = 0

    def version(self) -> str:
        return "fake 1.0"

    def md(self, atoms, protocol):
        self.calls += 1
        return SimpleNamespace(timing=SimpleNamespace(s_per_step=10.0 * self.calls),
                               extra={"scf_iterations_per_timed_step": 11.0})


def _protocol(steps: int = 2) -> MDProtocol:
    return MDProtocol(ensemble="nvt", temperature_k=900.0, timestep_fs=1.0, steps=steps, sample_interval=steps,
                      seed=7, thermostat_coupling_fs=100.0, warmup_steps=1)


def test_second_model_reuses_the_cp2k_measurement(tmp_path):
    engine = _CountingCP2K()
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    first = cp2k_timing_shared(engine, atoms, _protocol(), tmp_path)
    again = cp2k_timing_shared(engine, atoms, _protocol(), tmp_path)
    assert engine.calls == 1
    assert again == first and first["median"] == 10.0
    assert first["scf_iterations_per_step"] == 11.0  # kept beside the time, for comparison with long runs


def test_other_cell_or_protocol_is_measured_again(tmp_path):
    engine = _CountingCP2K()
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    cp2k_timing_shared(engine, atoms, _protocol(), tmp_path)
    moved = atoms.copy()
    moved.positions[0, 0] += 0.01
    cp2k_timing_shared(engine, moved, _protocol(), tmp_path)
    cp2k_timing_shared(engine, atoms, _protocol(steps=3), tmp_path)
    assert engine.calls == 3


# ------------------------------------------------------------ the GPU sweep, with stand-in engines

class _FakeNep:
    """Stands in for NepCpuEngine / GpumdEngine: s/step = per_atom_step_s × N."""

    def __init__(self, per_atom_step_s: float, gpu: str | None = None) -> None:
        self.per_atom_step_s = per_atom_step_s
        self.gpu = gpu

    def available(self):
        return (True, f"/opt/gpumd on {self.gpu}") if self.gpu else (False, "no 'gpumd' executable on PATH")

    def version(self) -> str:
        return "GPUMD 5.6" if self.gpu else "calorine 4.1"

    def md(self, atoms, protocol):
        s = self.per_atom_step_s * len(atoms)
        return SimpleNamespace(timing=SimpleNamespace(s_per_step=s, atom_steps_per_s=1.0 / self.per_atom_step_s))


def _run_sweep(tmp_path, monkeypatch, gpu: str | None):
    from nepbench.config import TaskSpec
    from nepbench.engines import cp2k, gpumd, nep_cpu
    from nepbench.errors import EngineNotAvailable
    from nepbench.tasks import TaskContext
    from nepbench.tasks import throughput as tt

    def no_cp2k(*args, **kwargs):
        raise EngineNotAvailable("cp2k.psmp not found")

    monkeypatch.setattr(cp2k, "CP2KEngine", no_cp2k)
    monkeypatch.setattr(nep_cpu, "NepCpuEngine", lambda *a, **k: _FakeNep(1e-4))
    monkeypatch.setattr(gpumd, "GpumdEngine", lambda *a, **k: _FakeNep(5e-8, gpu))
    monkeypatch.setattr(tt, "hardware_info", lambda: {"cpu_model": "Fake CPU", "logical_cores": 2,
                                                      "gpus": [gpu] if gpu else []})
    spec = TaskSpec(id="throughput-x", type="throughput", title="t",
                    params={"nep_sizes": [64, 512], "gpu_sizes": [512, 4096], "repeats": 1})
    return tt.run_throughput(spec, TaskContext(work_dir=tmp_path / "work", reference_dir=tmp_path,
                                               model_path=tmp_path / "nep.txt"))


def test_gpu_sweep_is_recorded_without_a_not_measured_note(tmp_path, monkeypatch):
    out = _run_sweep(tmp_path, monkeypatch, gpu="Fake H100")
    assert out.metrics["gpumd_atom_steps_per_s_max"] == 2e7
    assert out.engines["gpumd"] == "GPUMD 5.6"
    assert "not measured" not in out.method and "GPUMD 5.6 on Fake H100" in out.method
    assert not out.metric_reasons
    assert len(out.series["scaling"]["gpumd"]["n_atoms"]) == 2
    # no CP2K here, so no GPU-vs-CP2K ratio: a ratio is only stated from one run's measurements
    assert "speedup_gpu_vs_cp2k_per_atom_step" not in out.metrics


def test_no_gpu_gives_the_reason(tmp_path, monkeypatch):
    out = _run_sweep(tmp_path, monkeypatch, gpu=None)
    assert "gpumd_atom_steps_per_s_max" not in out.metrics
    assert "GPU not measured: no 'gpumd' executable on PATH" in out.method
    assert out.metric_reasons["gpumd_atom_steps_per_s_max"].startswith("not measured: no 'gpumd'")
