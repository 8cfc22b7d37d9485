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
