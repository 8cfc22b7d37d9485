"""The asv accuracy benchmarks' own logic (asv itself is not run here): per-run failures stay per
run, and what they track is judged as the md_accuracy task judges it."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import bench_accuracy  # noqa: E402

RUN = "a-LiC-1200K"  # committed, past its warm-up, short: its NEP run takes about a second


class _Crashing:
    def md(self, atoms, protocol):
        raise RuntimeError("model blew up")


def test_a_run_that_raises_is_that_runs_reason_not_the_whole_benchmarks():
    assert bench_accuracy.nep_vs_aimd(RUN, _Crashing()) == f"{RUN}: RuntimeError: model blew up"
    assert bench_accuracy.nep_vs_aimd("no-such-run", _Crashing()).startswith("no AIMD reference for no-such-run")


class _Replaying:
    """Gives back the AIMD run's own frames: a model run with nothing to load."""

    def __init__(self, trajectory):
        self.trajectory = trajectory

    def md(self, atoms, protocol):
        return self


def test_the_tracked_d_disagreement_is_the_tasks_comparison(monkeypatch):
    from nepbench.aimd import load_aimd, load_aimd_spec
    from nepbench.tasks import md_accuracy

    ref = load_aimd(load_aimd_spec(bench_accuracy.REFERENCE_DIR / "aimd.toml"), RUN)
    seen = []

    def compare(ref_traj, model_traj, production_ps, min_d_ps):
        seen.append((ref_traj, model_traj, production_ps, min_d_ps))
        return md_accuracy.LiDComparison("diffusive", log10_ratio=-0.3)

    monkeypatch.setattr(md_accuracy, "compare_li_d", compare)
    result = bench_accuracy.nep_vs_aimd(RUN, _Replaying(ref.trajectory))
    assert result["li_d_log10_ratio_abs"] == pytest.approx(0.3)
    assert result["rdf_l1_error_max"] == pytest.approx(0.0, abs=1e-12)  # the AIMD's own frames
    (ref_traj, model_traj, production_ps, min_d_ps), = seen
    assert model_traj is ref.trajectory and np.array_equal(ref_traj.positions_a, ref.trajectory.positions_a)
    assert (production_ps, min_d_ps) == (ref.production_ps, md_accuracy.MIN_DIFFUSION_PS)
    monkeypatch.setattr(md_accuracy, "compare_li_d", lambda *args: md_accuracy.LiDComparison("not_diffusive"))
    assert math.isnan(bench_accuracy.nep_vs_aimd(RUN, _Replaying(ref.trajectory))["li_d_log10_ratio_abs"])


def test_the_tracked_numbers_are_the_md_tasks_and_lower_is_better():
    if os.environ.get("NEPBENCH_OFFLINE") == "1":
        pytest.skip("NEPBENCH_OFFLINE=1: needs the NEP89-LiSiC model")
    from nepbench.aimd import load_aimd, load_aimd_spec
    from nepbench.tasks.md_accuracy import MIN_DIFFUSION_PS

    engine = bench_accuracy.nep_engine("calorine")
    result = bench_accuracy.nep_vs_aimd(RUN, engine)
    assert isinstance(result, dict), result
    assert 0 <= result["rdf_l1_error_max"] <= 1 and result["rdf_w1_max_a"] >= 0
    production = load_aimd(load_aimd_spec(bench_accuracy.REFERENCE_DIR / "aimd.toml"), RUN).production_ps
    if production < MIN_DIFFUSION_PS:  # the task compares no D here, so neither does the benchmark
        assert math.isnan(result["li_d_log10_ratio_abs"])
    else:
        assert math.isnan(result["li_d_log10_ratio_abs"]) or result["li_d_log10_ratio_abs"] >= 0
    cache = {RUN: result}
    agreement = bench_accuracy.TrackAimdAgreement()
    assert agreement.track_li_d_log10_ratio_abs(cache, RUN) is result["li_d_log10_ratio_abs"]
    speed = bench_accuracy.TrackSpeedRatio()
    assert speed.track_nep_over_cp2k_time({"nep_s_per_step": 0.002, "cp2k_s_per_step": 40.0}) == pytest.approx(5e-5)


def test_the_nightly_nve_check_is_the_gated_one():
    """The benchmark started NVE on the builder's packing, without the gate suite's NVT stage: a-Li2Si
    melted at ~3,600 K and the nightly drift was 20-30x the gated number. It now runs the gate suite's
    table through the md task's own `run_nve_check`."""
    if os.environ.get("NEPBENCH_OFFLINE") == "1":
        pytest.skip("NEPBENCH_OFFLINE=1: needs the NEP89-LiSiC model")
    from nepbench.suite import load_suite

    table = bench_accuracy.gated_nve_table()
    gate = load_suite(bench_accuracy.REPO_ROOT / "suites" / "gate.toml")
    assert table == next(t.params["nve"] for t in gate.tasks if t.type == "md_accuracy")
    assert table["nvt_steps"] > 0
    cache = bench_accuracy.TrackNVEStability().setup_cache()
    assert "skip" not in cache, cache
    assert abs(cache["temperature_k"] - table["temperature_k"]) < 0.15 * table["temperature_k"]
    tracker = bench_accuracy.TrackNVEStability()
    assert tracker.track_nve_drift(cache) == cache["drift"] >= 0
    assert not hasattr(bench_accuracy.TrackParity, "track_n_test_frames")  # asv reads larger as worse
