"""Micro-benchmarks of the CPU NEP engine on the default NEP89-LiSiC model (pytest-benchmark).

`make test` runs them with --benchmark-disable (pyproject addopts): each case runs once, as a smoke
test. Timed runs: `pytest tests/test_bench_nep.py --benchmark-enable`. Throughput (atom·step/s),
threads and the MD overhead ratio go into `benchmark.extra_info`; nothing here asserts a time.
Cells: jittered cubic lattices of Li, Si and C at 2.6 Å spacing (0.057 atoms/Å³).
"""

from __future__ import annotations

import os
import time

import pytest
from ase.calculators.calculator import all_changes

from nepbench.engines import nep_cpu
from nepbench.engines.base import MDProtocol
from nepbench.engines.nep_cpu import NepCpuEngine, check_cell
from nepbench.models import DEFAULT_MODEL, resolve_model

SIZES = {64: 4, 512: 8, 4096: 16}  # atoms: lattice points per side
CONFIGS = [pytest.param(("calorine", None), id="calorine")]
if nep_cpu.adapters_installed():
    CONFIGS += [pytest.param(("nep-adapters", 1), id="nep-adapters-1t"),
                pytest.param(("nep-adapters", 2), id="nep-adapters-2t")]


@pytest.fixture(scope="module")
def model_path():
    if os.environ.get("NEPBENCH_OFFLINE") == "1":
        pytest.skip("NEPBENCH_OFFLINE=1: the benchmarks need the NEP89-LiSiC model")
    return resolve_model(DEFAULT_MODEL).path


def _mean_s(benchmark, fallback_s: float) -> float:
    """Mean seconds per call from pytest-benchmark, or `fallback_s` when benchmarks are disabled."""
    stats = getattr(benchmark, "stats", None)
    return float(stats.stats.mean) if stats is not None else fallback_s


def _bare_force_call_s(calc, atoms, repeats: int = 3) -> float:
    """Fastest of `repeats` bare energy+forces evaluations in s."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces"], all_changes)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.benchmark(group="nep-single-point")
@pytest.mark.parametrize("n_atoms", list(SIZES))
@pytest.mark.parametrize("config", CONFIGS)
def test_single_point(benchmark, model_path, config, n_atoms):
    backend, threads = config
    engine = NepCpuEngine(model_path, backend=backend, threads=threads)
    atoms = check_cell(("Li", "Si", "C"), n_side=SIZES[n_atoms])
    calc = engine.calculator()
    once_s = _bare_force_call_s(calc, atoms, repeats=1)  # also the warm-up call
    benchmark(calc.calculate, atoms, ["energy", "forces"], all_changes)
    assert calc.results["forces"].shape == (n_atoms, 3)
    seconds = _mean_s(benchmark, once_s)
    benchmark.extra_info.update({
        "backend": backend, "threads": engine.effective_threads(), "n_atoms": n_atoms,
        "version": engine.version(), "atom_steps_per_s": n_atoms / seconds})


def _timing_calls(engine: NepCpuEngine) -> list[float]:
    """Make `engine`'s calculators record the wall time (s) of each force evaluation."""
    calls: list[float] = []
    make = engine.calculator

    def calculator():
        calc = make()
        inner = calc.calculate

        def calculate(*args, **kwargs):
            start = time.perf_counter()
            inner(*args, **kwargs)
            calls.append(time.perf_counter() - start)

        calc.calculate = calculate
        return calc

    engine.calculator = calculator  # type: ignore[method-assign]
    return calls


@pytest.mark.benchmark(group="nep-md-step")
@pytest.mark.parametrize("config", CONFIGS)
def test_md_step_512_atoms_and_overhead(benchmark, model_path, config):
    """NVT (Bussi) steps at 512 atoms. md_overhead_ratio = MD wall per step / force evaluation
    wall inside the same run (each step makes exactly one), so load on the machine cancels."""
    backend, threads = config
    engine = NepCpuEngine(model_path, backend=backend, threads=threads)
    atoms = check_cell(("Li", "Si", "C"), n_side=8)
    protocol = MDProtocol("nvt", 600.0, 1.0, steps=10, sample_interval=5, seed=1, warmup_steps=2)
    calls = _timing_calls(engine)
    result = benchmark.pedantic(engine.md, args=(atoms, protocol), rounds=3, warmup_rounds=1)
    timed_calls = calls[-protocol.steps:]  # the timed window's force evaluations (last run)
    assert len(calls) % (protocol.steps + protocol.warmup_steps + 1) == 0
    md_step_s = result.timing.s_per_step
    benchmark.extra_info.update({
        "backend": backend, "threads": engine.effective_threads(), "n_atoms": len(atoms),
        "md_s_per_step": md_step_s, "force_call_s": sum(timed_calls) / len(timed_calls),
        "md_overhead_ratio": result.timing.timed_wall_s / sum(timed_calls),
        "atom_steps_per_s": result.timing.atom_steps_per_s})
    assert result.trajectory.n_frames == 3 and result.timing.timed_steps == 10
