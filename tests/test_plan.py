"""`nepbench run --dry-run`: each task's planned work and its predicted wall time (nepbench.plan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nepbench import cli, plan
from nepbench.suite import load_suite
from nepbench.tasks.expansion import ExpansionParams, planned_cost

REPO = Path(__file__).resolve().parents[1]
RATES = plan.Rates(nep_atom_steps_per_s=1e4, cp2k_s_per_step_n=40.0, cp2k_n_atoms=32, source="test")


def test_the_quick_suite_plans_cp2k_once_and_every_tasks_work():
    suite = load_suite(REPO / "suites" / "quick.toml", ("a", "b"))
    plans = {p.task_id: p for p in plan.plan_suite(suite, REPO / "reference_data")}
    tp_a, tp_b = plans["throughput-a"], plans["throughput-b"]
    params = suite.task("throughput-a").params
    steps = (params.get("cp2k_warmup", 1) + params.get("cp2k_steps", 2)) * (2 if params.get("cp2k_untuned") else 1)
    assert sum(tp_a.cp2k_steps.values()) == steps and tp_a.cp2k_ranks == params.get("cp2k_ranks", 2)
    assert tp_b.cp2k_steps == {} and "shared with throughput-a" in tp_b.notes[0]
    assert tp_a.nep_atom_steps == tp_b.nep_atom_steps > 0
    expansion = plans["expansion-a"]
    p = ExpansionParams.from_params(suite.task("expansion-a").params)
    assert expansion.nep_atom_steps == planned_cost(p)["atom_steps"]
    assert plans["md-a"].nep_atom_steps > 0 and plans["parity-a"].nep_atom_steps > 0


def test_the_prediction_adds_cp2k_steps_at_their_size_and_nep_work():
    task = plan.TaskPlan("t", "throughput", cp2k_steps={32: 3, 64: 1}, cp2k_ranks=1, nep_atom_steps=2e4)
    expected = 3 * 40.0 + 40.0 * 2 ** plan.CP2K_EXPONENT + 2.0
    assert task.predicted_wall_s(RATES) == pytest.approx(expected)
    assert RATES.cp2k_s_per_step(32, ranks=2) == pytest.approx(40.0 / plan.TWO_RANK_SPEEDUP)
    line = task.line(RATES)
    assert line.startswith("t (throughput): CP2K 4 MD steps (3×32 atoms, 1×64 atoms, 1 rank(s)); NEP 2e+04")


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plan, "measured_rates", lambda reference_dir, **kwargs: RATES)
    out = tmp_path / "out"
    code = cli.main(["run", str(REPO / "suites" / "quick.toml"), "--model", "nep89-lisic", "--out", str(out),
                     "--dry-run"])
    printed = capsys.readouterr().out
    assert code == 0 and not out.exists()
    assert "4 task(s)" in printed and "throughput-nep89-lisic (throughput): CP2K" in printed
    assert "predicted total: ~" in printed and "nothing was run" in printed


def test_a_model_timed_on_its_own_is_predicted_at_its_own_rate():
    rates = plan.Rates(1e4, 40.0, 32, "test", model_atom_steps_per_s={"slow-mlip": 100.0})
    slow = plan.TaskPlan("md-slow", "md_accuracy", model="slow-mlip", nep_atom_steps=2e4)
    nep = plan.TaskPlan("md-nep", "md_accuracy", model="nep89-lisic", nep_atom_steps=2e4)
    assert slow.predicted_wall_s(rates) == pytest.approx(200.0) and nep.predicted_wall_s(rates) == pytest.approx(2.0)
    assert "slow-mlip 2e+04 atom·steps" in slow.line(rates) and "NEP 2e+04 atom·steps" in nep.line(rates)


def test_the_comparators_suite_plans_no_gpu_work_for_ase_models():
    suite = load_suite(REPO / "suites" / "comparators.toml")
    plans = {p.task_id: p for p in plan.plan_suite(suite, REPO / "reference_data")}
    throughput = plans["throughput-chgnet-0.3.0"]
    assert throughput.model == "chgnet-0.3.0" and throughput.gpu_atom_steps == 0.0
    assert any("GPUMD not applicable" in n for n in throughput.notes)


def test_timed_rate_leaves_the_warm_up_out():
    class Counting:
        def __init__(self):
            self.runs = []

        def md(self, atoms, protocol):
            self.runs.append(protocol.steps)

    engine = Counting()
    from ase.build import bulk

    rate = plan.timed_rate(engine, bulk("Si", "diamond", a=5.43, cubic=True), steps=5, warmup=2)
    assert engine.runs == [2, 5] and rate > 0
