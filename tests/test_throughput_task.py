"""The throughput task: its shared CP2K timing (once per invocation, reused by every model), and its
ratios, fits and notes with stand-in engines."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
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
    shared: dict = {}
    first = cp2k_timing_shared(engine, atoms, _protocol(), shared)
    again = cp2k_timing_shared(engine, atoms, _protocol(), shared)
    assert engine.calls == 1
    assert again == first and first["median"] == 10.0
    assert first["scf_iterations_per_step"] == 11.0  # kept beside the time, for comparison with long runs
    # another invocation (a rerun, --force, an array task on another node) measures again
    assert cp2k_timing_shared(engine, atoms, _protocol(), {})["median"] == 20.0


def test_other_cell_or_protocol_is_measured_again(tmp_path):
    engine = _CountingCP2K()
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    shared: dict = {}
    cp2k_timing_shared(engine, atoms, _protocol(), shared)
    moved = atoms.copy()
    moved.positions[0, 0] += 0.01
    cp2k_timing_shared(engine, moved, _protocol(), shared)
    cp2k_timing_shared(engine, atoms, _protocol(steps=3), shared)
    assert engine.calls == 3


# ------------------------------------------------------------ the GPU sweep, with stand-in engines

class _FakeNep:
    """Stands in for NepCpuEngine / GpumdEngine: s/step = per_atom_step_s × N."""

    backend = "nep-adapters"

    def __init__(self, per_atom_step_s: float, gpu: str | None = None, threads: int | None = None) -> None:
        self.per_atom_step_s = per_atom_step_s
        self.gpu = gpu
        self.threads = threads

    def effective_threads(self) -> int | None:
        return self.threads

    def available(self):
        return (True, f"/opt/gpumd on {self.gpu}") if self.gpu else (False, "no 'gpumd' executable on PATH")

    def version(self) -> str:
        return "GPUMD 5.6" if self.gpu else "calorine 4.1"

    def md(self, atoms, protocol):
        s = self.per_atom_step_s * len(atoms)
        return SimpleNamespace(timing=SimpleNamespace(s_per_step=s, atom_steps_per_s=1.0 / self.per_atom_step_s))


def _run_sweep(tmp_path, monkeypatch, gpu: str | None):
    from nepbench.spec import TaskSpec
    from nepbench.engines import cp2k, gpumd, nep_cpu
    from nepbench.errors import EngineNotAvailable
    from nepbench.tasks import TaskContext
    from nepbench.tasks import throughput as tt

    def no_cp2k(*args, **kwargs):
        raise EngineNotAvailable("cp2k.psmp not found")

    monkeypatch.setattr(cp2k, "CP2KEngine", no_cp2k)
    monkeypatch.setattr(nep_cpu, "NepCpuEngine", lambda *a, **k: _FakeNep(1e-4, threads=k.get("threads")))
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
    assert all("CP2K" in reason for reason in out.metric_reasons.values())  # none about the GPU
    assert len(out.series["scaling"]["gpumd"]["n_atoms"]) == 2
    # no CP2K here, so no GPU-vs-CP2K ratio: a ratio is only stated from one run's measurements
    assert "speedup_gpu_vs_cp2k_per_atom_step" not in out.metrics


def test_no_gpu_gives_the_reason(tmp_path, monkeypatch):
    out = _run_sweep(tmp_path, monkeypatch, gpu=None)
    assert "gpumd_atom_steps_per_s_max" not in out.metrics
    assert "GPU not measured: no 'gpumd' executable on PATH" in out.method
    assert out.metric_reasons["gpumd_atom_steps_per_s_max"].startswith("not measured: no 'gpumd'")


# ------------------------------------------------------------ ratios, with stand-in CP2K and GPU

@dataclass(frozen=True)
class _Settings2:
    cutoff_ry: float = 250.0


class _CubicCP2K:
    """Stands in for CP2KEngine: s/step = 1e-3 × N³ (AIMD-like), each call counted."""

    settings = _Settings2()
    calls: list[int] = []

    def __init__(self, settings=None, ranks: int = 2) -> None:
        self.ranks = ranks

    def version(self) -> str:
        return "fake CP2K 2023.1"

    def md(self, atoms, protocol):
        _CubicCP2K.calls.append(len(atoms))
        return SimpleNamespace(timing=SimpleNamespace(s_per_step=1e-3 * len(atoms) ** 3),
                               extra={"scf_iterations_per_timed_step": 9.0})


class _SaturatingGpu:
    """Stands in for GpumdEngine: s/step = 1e-4 s + 1e-9 s × N, so throughput grows with N."""

    def available(self):
        return True, "/opt/gpumd on Fake H100"

    def version(self) -> str:
        return "GPUMD 5.6"

    def md(self, atoms, protocol):
        s = 1e-4 + 1e-9 * len(atoms)
        return SimpleNamespace(timing=SimpleNamespace(s_per_step=s, atom_steps_per_s=len(atoms) / s))


def _run_ratios(tmp_path, monkeypatch, identical_sizes, shared=None, load=0.1):
    from nepbench.spec import TaskSpec
    from nepbench.engines import cp2k, gpumd, nep_cpu
    from nepbench.tasks import TaskContext, cp2k_timing
    from nepbench.tasks import throughput as tt

    monkeypatch.setattr(cp2k, "CP2KEngine", _CubicCP2K)
    monkeypatch.setattr(nep_cpu, "NepCpuEngine", lambda *a, **k: _FakeNep(1e-4, threads=k.get("threads")))
    monkeypatch.setattr(gpumd, "GpumdEngine", lambda *a, **k: _SaturatingGpu())
    monkeypatch.setattr(tt, "hardware_info", lambda: {"cpu_model": "Fake CPU", "logical_cores": 2,
                                                      "gpus": ["Fake H100"]})
    monkeypatch.setattr(cp2k_timing, "other_cores_busy_while", lambda run: (run(), load))
    monkeypatch.setattr(tt, "usable_cores", lambda: 2)
    spec = TaskSpec(id="throughput-x", type="throughput", title="t",
                    params={"identical_sizes": identical_sizes, "nep_sizes": [64, 512, 4096],
                            "gpu_sizes": [4096, 262144], "repeats": 1, "cp2k_ranks": 2,
                            "extrapolate_to_n": 1000})
    context = TaskContext(work_dir=tmp_path / "work", reference_dir=tmp_path, model_path=tmp_path / "nep.txt",
                          shared={} if shared is None else shared)
    return tt.run_throughput(spec, context)


def test_gpu_ratio_uses_cp2ks_cheapest_cell_per_atom_step_whatever_the_order(tmp_path, monkeypatch):
    """CP2K's cost per atom·step grows with N (here N²): its largest cell would raise the ratio
    (264 atoms: 64× the 33-atom cell's), so the ratio takes the cell least favourable to it."""
    forward = _run_ratios(tmp_path, monkeypatch, [0, 256])
    backward = _run_ratios(tmp_path, monkeypatch, [256, 0])
    assert forward.metrics == backward.metrics
    rows = forward.series["identical_n"]
    small, large = rows[0]["n_atoms"], rows[1]["n_atoms"]
    assert small == forward.metrics["speedup_gpu_vs_cp2k_cp2k_n_atoms"] < large
    gpu_sizes = forward.series["scaling"]["gpumd"]["n_atoms"]
    best = max(gpu_sizes)  # the stand-in's throughput grows with N
    assert forward.metrics["speedup_gpu_vs_cp2k_gpu_n_atoms"] == best
    best_rate = best / (1e-4 + 1e-9 * best)
    assert forward.metrics["speedup_gpu_vs_cp2k_per_atom_step"] == pytest.approx(1e-3 * small ** 2 * best_rate)
    assert (f"CP2K on {small} atoms (its lowest cost per atom·step, the least favourable side), GPUMD at its "
            f"best size of the sweep, {best} atoms; with CP2K's other cells: {large} atoms "
            f"{1e-3 * large ** 2 * best_rate:,.0f}×") in forward.method
    # the GPU also runs the CP2K cells themselves: an identical-N ratio beside the throughput one
    for row in rows:
        n = row["n_atoms"]
        assert row["ratio_gpu"] == pytest.approx(1e-3 * n ** 3 / (1e-4 + 1e-9 * n))
    assert forward.metrics["speedup_gpu_identical_n"] == rows[1]["ratio_gpu"]


def test_extrapolation_names_its_sizes_and_says_two_sizes_give_no_error(tmp_path, monkeypatch):
    out = _run_ratios(tmp_path, monkeypatch, [0, 256])
    fits = out.series["fits"]
    assert fits["cp2k"]["exponent"] == pytest.approx(3.0) and fits["cp2k"]["exponent_stderr"] is None
    assert "cp2k_scaling_exponent_stderr" not in out.metrics
    assert fits["nep_cpu"]["n_atoms"][0] < 1000 < fits["nep_cpu"]["n_atoms"][1]  # the sizes around N = 1000
    assert out.metrics["speedup_cpu_extrapolated_n1000"] == pytest.approx(1e-3 * 1000 ** 3 / (1e-4 * 1000), rel=1e-6)
    assert "no error estimate from 2 sizes" in out.method


def test_sizes_that_round_to_one_cell_are_timed_once(tmp_path, monkeypatch):
    _CubicCP2K.calls = []
    out = _run_ratios(tmp_path, monkeypatch, [0, 40])  # both give the base cell
    assert len(out.series["identical_n"]) == 1 and len(_CubicCP2K.calls) == 1
    assert "cp2k" not in out.series["scaling"] and "cp2k_scaling_exponent" not in out.metrics
    assert out.metric_reasons["speedup_cpu_extrapolated_n1000"] == (
        "not measured: CP2K was timed on 1 and NEP on 3 distinct cell size(s); each scaling fit needs 2")


def test_models_of_one_invocation_share_cp2k_and_a_busy_machine_is_noted(tmp_path, monkeypatch):
    _CubicCP2K.calls = []
    shared: dict = {}
    quiet = _run_ratios(tmp_path, monkeypatch, [0], shared=shared)
    again = _run_ratios(tmp_path, monkeypatch, [0], shared=shared, load=3.0)
    assert len(_CubicCP2K.calls) == 1 and again.metrics == quiet.metrics
    assert "busy" not in quiet.method and quiet.series["identical_n"][0]["cp2k_other_cores_busy_during"] == 0.1
    busy = _run_ratios(tmp_path, monkeypatch, [0], load=1.2)  # a new invocation, 1.2 + 2 ranks > 2 cores
    assert ("machine was busy when CP2K was timed (other processes used 1.20 of the 2 cores this process may "
            "use while CP2K ran") in busy.method
    # nor in the series, nor in the method's GPU note: the plot and a reader would take it from there
    busy_two = _run_ratios(tmp_path, monkeypatch, [0, 256], load=1.2)
    assert not any({"ratio", "ratio_gpu"} & set(row) for row in busy_two.series["identical_n"])
    assert "with CP2K's other cells" not in busy_two.method
    assert "with CP2K's other cells" in _run_ratios(tmp_path, monkeypatch, [0, 256]).method
    # an inflated CP2K time inflates every ratio: none is stated, each with the reason; timings stay
    ratios = [k for k in quiet.metrics if k.startswith("speedup_") and not k.endswith("_n_atoms")]
    assert {"speedup_cpu_identical_n", "speedup_gpu_vs_cp2k_per_atom_step", "speedup_gpu_identical_n"} <= set(ratios)
    assert not any(k in busy.metrics for k in ratios)
    assert busy.metrics["speedup_cpu_identical_n_atoms"] == 33.0  # a cell size, not a ratio: kept
    for key in ratios:
        assert busy.metric_reasons[key].startswith("not measured: the machine was busy when CP2K was timed")
    assert busy.series["identical_n"][0]["cp2k_s_per_step"] == quiet.series["identical_n"][0]["cp2k_s_per_step"]
    assert busy.metrics["gpumd_atom_steps_per_s_max"] == quiet.metrics["gpumd_atom_steps_per_s_max"]


def test_nep_runs_on_as_many_threads_as_cp2k_has_ranks_and_both_are_recorded(tmp_path, monkeypatch):
    out = _run_ratios(tmp_path, monkeypatch, [0])
    row = out.series["identical_n"][0]
    assert (row["cp2k_ranks"], row["cp2k_omp_threads"], row["nep_threads"]) == (2, 1, 2)
    assert "CP2K 2 MPI rank(s) × 1 OpenMP thread(s), NEP_CPU 2 thread(s)" in out.method
    assert row["hardware"].endswith("CP2K 2 MPI rank(s) × 1 OpenMP thread(s), NEP_CPU 2 thread(s)")
    assert "NEP_CPU on" not in out.method  # matched: no note


def test_cp2k_ranks_are_capped_at_the_cores_this_process_may_use(tmp_path, monkeypatch):
    from nepbench.tasks import cp2k_timing
    from nepbench.tasks import throughput as tt

    seen: list[int] = []

    class _RankCP2K(_CubicCP2K):
        def __init__(self, settings=None, ranks: int = 2) -> None:
            super().__init__(settings, ranks)
            seen.append(ranks)

    monkeypatch.setattr(tt, "usable_cores", lambda: 1)
    monkeypatch.setattr("nepbench.engines.cp2k.CP2KEngine", _RankCP2K)
    from nepbench.spec import TaskSpec
    from nepbench.engines import gpumd, nep_cpu
    from nepbench.tasks import TaskContext

    monkeypatch.setattr(nep_cpu, "NepCpuEngine", lambda *a, **k: _FakeNep(1e-4, threads=k.get("threads")))
    monkeypatch.setattr(gpumd, "GpumdEngine", lambda *a, **k: _FakeNep(5e-8, None))
    monkeypatch.setattr(cp2k_timing, "other_cores_busy_while", lambda run: (run(), 0.0))
    spec = TaskSpec(id="throughput-x", type="throughput", title="t",
                    params={"identical_sizes": [0], "nep_sizes": [64], "repeats": 1, "cp2k_ranks": 16})
    out = tt.run_throughput(spec, TaskContext(work_dir=tmp_path, reference_dir=tmp_path,
                                              model_path=tmp_path / "nep.txt"))
    assert seen == [1]
    assert "CP2K on 1 ranks, not the suite's 16: this process may use 1 cores" in out.method


def test_other_cores_busy_sees_a_busy_process():
    """A child process spinning on one core counts: it is another process while it runs (a
    1-minute load average would also count this process's own work of the minute before). The
    rise over an idle reading is asserted: on a machine already busy an absolute bound holds anyway."""
    import os
    import subprocess
    import sys
    import time

    from nepbench.cpu_load import other_cores_busy

    idle = other_cores_busy(window_s=1.0)
    assert idle is not None
    if idle > (os.cpu_count() or 1) - 1.2:
        pytest.skip(f"other processes already keep {idle:.1f} of {os.cpu_count()} cores busy: "
                    "no free core for the spinner to show on")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = other_cores_busy(window_s=1.0)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and busy - idle >= 0.6  # the spinner's core, less what others left idle


def test_the_busy_meter_sees_work_that_starts_while_cp2k_runs():
    """The old check sampled one second before CP2K started: work that began later was never seen.
    An orphaned spinner (not a child, so not this process's own time) starts inside the run."""
    import os
    import subprocess
    import sys
    import time

    from nepbench.cpu_load import other_cores_busy, other_cores_busy_while

    idle = other_cores_busy(window_s=0.5)
    if idle is None or idle > len(os.sched_getaffinity(0)) - 1.2:
        pytest.skip(f"no free core for the spinner to show on (other processes use {idle} cores)")
    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass\n"

    def run():
        subprocess.run([sys.executable, "-c", f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {spin!r}])"],
                       check=True)  # the intermediate exits at once: the spinner is nobody's child here
        time.sleep(1.2)
        return "done"

    result, busy = other_cores_busy_while(run)
    assert result == "done" and busy is not None and busy - idle >= 0.5


@pytest.mark.parametrize("busy, cores, flagged", [
    (0.02, 2, False),  # an idle machine's noise
    (0.19, 2, False),
    (0.3, 2, True),    # passed under the old 0.5-core slack, yet a rank shares its core
    (1.5, 2, True),    # passed when compared with a 64-core node's logical cores, not the 2 usable
    (1.5, 4, False),
])
def test_a_busy_machine_is_judged_on_the_cores_this_process_may_use(busy, cores, flagged):
    from nepbench.cpu_load import busy_cores_note

    assert (busy_cores_note(busy, 2, cores) is not None) is flagged


def test_no_cp2k_gives_the_speed_ratios_a_reason(tmp_path, monkeypatch):
    out = _run_sweep(tmp_path, monkeypatch, gpu="Fake H100")
    for key in ("speedup_cpu_identical_n", "speedup_gpu_vs_cp2k_per_atom_step", "speedup_gpu_identical_n"):
        assert out.metric_reasons[key] == "not measured: CP2K (cp2k.psmp) is not installed here"


# ------------------------------------------------------------ the speed-up against N, from the study record

def test_speedup_against_n_reads_cp2k_cost_from_the_study_record(tmp_path, monkeypatch):
    from nepbench import cp2k_tuning, systems
    from dataclasses import replace

    from nepbench.engines.cp2k import AIMD_V1_SETTINGS
    from nepbench.provenance import hardware_info
    from nepbench.tasks import throughput

    tuned = replace(AIMD_V1_SETTINGS, eps_default=1e-9, rel_cutoff_ry=40.0)
    cpu = hardware_info()["cpu_model"]
    p = {"builder": "a-LixSi", "builder_params": {"x": 2.0}, "seed": 7, "cp2k_scaling_n_atoms": [32, 64, 96],
         "nep_steps": 20, "nep_warmup": 2, "repeats": 1, "claimed_speedup": 1000.0}
    results = {}
    for n in (32, 64):  # 96 has no entry: reported as not measured, never invented
        atoms = systems.build("a-LixSi", seed=7, x=2.0, n_atoms=n)
        for name, settings, scale in (("tuned", tuned, 1.0), ("untuned", AIMD_V1_SETTINGS, 2.0)):
            results[f"{name}|{n}"] = {"variant": name, "case": f"md:a-Li2Si-{n}", "kind": "md",
                                      "cell_key": cp2k_tuning.cell_key(atoms), "cpu_model": cpu, "ranks": 1,
                                      "settings": settings.to_dict(),
                                      "s_per_step": 99.0, "s_per_step_cpu_equivalent": scale * 1e-3 * len(atoms) ** 2}
    record = tmp_path / "study.json"
    record.write_text(__import__("json").dumps({"results": results}))
    monkeypatch.setattr(cp2k_tuning, "DEFAULT_RECORD_ABS", record)
    nep = _FakeNep(1e-5)
    params = throughput.ThroughputParams.from_params
    rows, metrics, units, reasons, text = throughput.scaling_with_n(params(p), nep, tuned, AIMD_V1_SETTINGS)
    assert [r["n_atoms"] for r in rows] == [33, 63]
    assert "96" in reasons["cp2k_cost_vs_n"] and cpu in reasons["cp2k_cost_vs_n"]
    # CP2K ∝ N², fake NEP ∝ N: exponents 2 and 1, ratio 100·N, 1000× at N = 10
    assert metrics["scaling_exponent_cp2k_1core"] == pytest.approx(2.0, abs=1e-9)
    assert metrics["scaling_exponent_nep_1core"] == pytest.approx(1.0, abs=0.05)
    assert metrics["n_atoms_at_claimed_speedup"] == pytest.approx(10.0, rel=0.1)
    assert rows[0]["ratio_untuned"] == pytest.approx(2 * rows[0]["ratio"])
    assert "1 core each" in text
    # a claim the fitted ratio reaches only below one atom is said so, not given as a number
    rows, metrics, _, reasons, _ = throughput.scaling_with_n(params({**p, "claimed_speedup": 1e7}), _FakeNep(1e-5),
                                                             tuned, AIMD_V1_SETTINGS)
    assert "n_atoms_at_claimed_speedup" in metrics  # 1e7 at N = 1e5: CP2K ∝ N², NEP ∝ N
    steep = _FakeNep(1e-5)
    steep.md = lambda atoms, protocol: SimpleNamespace(timing=SimpleNamespace(
        s_per_step=1e-7 * len(atoms) ** 3, atom_steps_per_s=1.0))
    _, metrics, _, reasons, _ = throughput.scaling_with_n(params({**p, "claimed_speedup": 1e5}), steep, tuned,
                                                          AIMD_V1_SETTINGS)  # ratio 1e4/N: 1e5 only below N = 1
    assert "n_atoms_at_claimed_speedup" not in metrics and "not reached" in reasons["n_atoms_at_claimed_speedup"]


def test_a_machine_without_cp2k_uses_another_cpus_record_and_says_so(tmp_path, monkeypatch):
    """A GPU node has no CP2K: the speed-up against N then divides by the record of the CPU machine,
    named in each row and unit, and GPUMD timed on the same cells gives the GPU ratio per N. A
    machine with CP2K never borrows another CPU's record."""
    from dataclasses import replace

    from nepbench import cp2k_tuning, systems
    from nepbench.engines.cp2k import AIMD_V1_SETTINGS
    from nepbench.tasks import throughput

    tuned = replace(AIMD_V1_SETTINGS, eps_default=1e-9, rel_cutoff_ry=40.0)
    atoms = systems.build("a-LixSi", seed=7, x=2.0, n_atoms=32)
    record = tmp_path / "study.json"
    record.write_text(__import__("json").dumps({"results": {"tuned|32": {
        "variant": "e9-r40", "case": "md:a-Li2Si-32", "kind": "md", "cell_key": cp2k_tuning.cell_key(atoms),
        "cpu_model": "Some Other CPU", "ranks": 1, "settings": tuned.to_dict(), "s_per_step": 50.0,
        "s_per_step_cpu_equivalent": 40.0}}}))
    monkeypatch.setattr(cp2k_tuning, "DEFAULT_RECORD_ABS", record)
    p = throughput.ThroughputParams.from_params({"builder": "a-LixSi", "builder_params": {"x": 2.0}, "seed": 7,
                                                 "cp2k_scaling_n_atoms": [32], "nep_steps": 20, "nep_warmup": 2,
                                                 "repeats": 1})
    gpu = _FakeNep(1e-6)
    rows, metrics, units, reasons, _ = throughput.scaling_with_n(p, _FakeNep(1e-5), tuned, AIMD_V1_SETTINGS, gpu,
                                                                 cp2k_here=False)
    assert len(rows) == 1 and rows[0]["cp2k_cpu_model"] == "Some Other CPU"
    assert rows[0]["cp2k_source"] == "tuning study record, e9-r40, measured on Some Other CPU, not this machine"
    n = rows[0]["n_atoms"]
    assert rows[0]["ratio_gpu"] == pytest.approx(40.0 / rows[0]["gpu_s_per_step"])
    assert metrics[f"speedup_gpu_1rank_n{n}"] == rows[0]["ratio_gpu"] and "Some Other CPU" in units[f"speedup_gpu_1rank_n{n}"]
    here, _, _, reasons, _ = throughput.scaling_with_n(p, _FakeNep(1e-5), tuned, AIMD_V1_SETTINGS, gpu)
    assert here == [] and "not in reference_data/studies/cp2k_tuning.json" in reasons["cp2k_cost_vs_n"]


def test_the_task_states_each_stage_for_the_progress_line(tmp_path, monkeypatch):
    from nepbench.tasks import throughput as tt

    stages = []
    monkeypatch.setattr(tt, "set_stage", lambda shared, text: stages.append(text))
    _run_sweep(tmp_path, monkeypatch, gpu="Fake H100")
    sweep = [s for s in stages if "size sweep" in s]  # nep_sizes [64, 512], gpu_sizes [512, 4096]: 4 stages
    assert len(sweep) == 4 and not sweep[1].startswith("GPUMD") and sweep[2].startswith("GPUMD size sweep: ")
    sizes = [int(s.split(": ")[1].split(" atoms")[0]) for s in sweep]
    assert sizes[0] < sizes[1] and sizes[2] < sizes[3] and all(s.endswith(" steps") for s in sweep)


@pytest.mark.parametrize(("busy", "cores", "expected"), [(0.05, 2, 2), (0.9, 2, 1), (1.0, 2, 1), (1.95, 2, 1),
                                                         (None, 4, 4), (2.5, 4, 1), (1.7, 4, 2)])
def test_idle_cores_counts_cores_others_leave_free(monkeypatch, busy, cores, expected):
    from nepbench import cpu_load

    monkeypatch.setattr(cpu_load, "other_cores_busy", lambda window_s=0.5: busy)
    monkeypatch.setattr(cpu_load, "usable_cores", lambda: cores)
    assert cpu_load.idle_cores() == expected


def test_nep_tasks_take_the_idle_cores_unless_omp_num_threads_says(monkeypatch, tmp_path):
    """One busy core of two: NEP gets one OpenMP thread (two would spin beside the busy core)."""
    from nepbench import cpu_load, tasks
    from nepbench.engines import nep_cpu

    monkeypatch.setattr(cpu_load, "idle_cores", lambda window_s=0.5: 1)
    monkeypatch.setattr(nep_cpu, "NepCpuEngine", lambda *a, **k: k.get("threads"))
    ctx = tasks.TaskContext(work_dir=tmp_path, reference_dir=tmp_path, model_path=tmp_path / "nep.txt")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert tasks.cpu_engine(ctx) == 1 and tasks.cpu_engine(ctx, threads=2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert tasks.cpu_engine(ctx) is None  # the engine's default: OpenMP reads the variable
