"""Progress while a suite runs: a line when a task starts, then what it is doing (CP2K's MD step k/n
read from a real CP2K input and .ener file), live on a terminal, plain lines in a log."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ase.build import bulk

from nepbench import runner
from nepbench.spec import Suite, TaskSpec
from nepbench.engines.cp2k import AIMD_SETTINGS, MDInput, build_input
from nepbench.runner import Activity, Progress, cp2k_activity, describe_cp2k
from nepbench.tasks import TaskOutcome

ENER_HEADER = ("#     Step Nr.          Time[fs]        Kin.[a.u.]          Temp[K]            Pot.[a.u.]"
               "        Cons Qty[a.u.]        UsedTime[s]\n")
ENER_ROWS = ("         1            1.000000         0.0500000000       900.0000000      -120.0000000000"
             "      -119.9500000000          52.300000000\n"
             "         2            2.000000         0.0510000000       912.0000000      -120.0010000000"
             "      -119.9500000000          35.700000000\n")


def md_input(steps: int = 3) -> str:
    """A CP2K MD input as the CP2K engine writes it."""
    md = MDInput(ensemble="nvt", steps=steps, timestep_fs=1.0, temperature_k=900.0, thermostat_coupling_fs=100.0,
                 seed=1)
    return build_input(bulk("Si", "diamond", a=5.43, cubic=True), AIMD_SETTINGS, md=md)


def test_cp2k_md_progress_is_read_from_its_input_and_ener_file():
    text = md_input(steps=3)
    assert describe_cp2k(text, ENER_HEADER + ENER_ROWS) == Activity("CP2K MD step 2/3", "35.7 s/step, ~36 s left")
    assert describe_cp2k(text, None) == Activity("CP2K MD step 0/3", "set-up and first SCF")
    assert describe_cp2k(text, ENER_HEADER) == Activity("CP2K MD step 0/3", "set-up and first SCF")
    step0 = ("         0            0.000000         0.0500000000       900.0000000      -120.0000000000"
             "      -119.9500000000           0.000000000\n")  # the start, written before step 1 ends
    assert describe_cp2k(text, ENER_HEADER + step0) == Activity("CP2K MD step 0/3", "set-up and first SCF")
    single = build_input(bulk("Si", "diamond", a=5.43, cubic=True), AIMD_SETTINGS)
    assert describe_cp2k(single, None) == Activity("CP2K single point")


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs Linux /proc")
def test_a_cp2k_process_under_this_one_is_found_through_its_working_folder(tmp_path):
    (tmp_path / "in.inp").write_text(md_input(steps=3))
    (tmp_path / "nb-1.ener").write_text(ENER_HEADER + ENER_ROWS)
    assert cp2k_activity() is None  # nothing named cp2k runs under this process yet
    # a stand-in named cp2k.psmp (argv[0]) in that folder, as mpirun's ranks run in the engine's folder
    child = subprocess.Popen(["bash", "-c", "exec -a cp2k.psmp sleep 30"], cwd=tmp_path)
    try:
        for _ in range(50):  # until exec has renamed it
            if cp2k_activity() is not None:
                break
            time.sleep(0.05)
        assert cp2k_activity() == Activity("CP2K MD step 2/3", "35.7 s/step, ~36 s left")
        assert cp2k_activity(root_pid=child.pid) is None  # not under the sleep itself
    finally:
        child.kill()
        child.wait()


def _slow_tasks(monkeypatch, seconds: float) -> None:
    def fake_function(task_type):
        def run(spec, ctx):
            time.sleep(seconds)
            return TaskOutcome("done", metrics={"x": 1.0}, seed=1)
        return run
    monkeypatch.setattr(runner, "task_function", fake_function)
    monkeypatch.setattr(runner, "task_data_sha256", lambda task_type, reference_dir, params=None: "fixed")


def test_a_log_gets_a_start_line_and_a_line_per_stage(tmp_path, monkeypatch):
    _slow_tasks(monkeypatch, 0.6)
    stages = iter([None, Activity("CP2K MD step 0/3", "set-up"), Activity("CP2K MD step 1/3", "52.3 s/step"),
                   Activity("CP2K MD step 1/3", "52.3 s/step")] + [Activity("CP2K MD step 2/3", "35.7 s/step")] * 1000)
    stream = io.StringIO()
    progress = Progress(stream, live=False, interval_s=0.02, quiet_s=100, activity=lambda: next(stages))
    suite = Suite("t", "", (TaskSpec("a", "parity", "A", {}, ("m1",)), TaskSpec("b", "parity", "B", {})), (), "t.toml")
    monkeypatch.setattr(runner, "_resolve", lambda name, cache, out: runner.ResolvedModel(name, tmp_path, "0" * 64))
    runner.run_suite(suite, tmp_path / "out", progress=progress, reference_dir=tmp_path)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/2] a: running (parity, model m1)"
    a_lines = lines[1:lines.index("[2/2] b: running (parity)")]
    stages_seen = [line.split("; ", 1)[1] for line in a_lines]
    assert stages_seen == ["CP2K MD step 0/3 (set-up)", "CP2K MD step 1/3 (52.3 s/step)",
                           "CP2K MD step 2/3 (35.7 s/step)"]
    assert all(line.startswith("  a: ") for line in a_lines)  # elapsed time, then the stage
    assert "\r" not in stream.getvalue()  # a log gets plain lines
    # a rerun keeps both records: nothing runs, nothing is reported
    again = io.StringIO()
    runner.run_suite(suite, tmp_path / "out", progress=Progress(again, live=False), reference_dir=tmp_path)
    assert again.getvalue() == ""


def test_a_task_states_its_stage_through_the_shared_state_and_the_next_task_starts_clean(tmp_path, monkeypatch):
    def fake_function(task_type):
        def run(spec, ctx):
            if spec.id == "a":
                for stage in ("relaxation 1/2 (t = 0.4 nm)", "relaxation 2/2 (t = 0.8 nm)"):
                    ctx.shared[runner.STAGE_KEY] = stage
                    time.sleep(0.25)
            else:
                time.sleep(0.25)
            return TaskOutcome("done", metrics={"x": 1.0}, seed=1)
        return run
    monkeypatch.setattr(runner, "task_function", fake_function)
    monkeypatch.setattr(runner, "task_data_sha256", lambda task_type, reference_dir, params=None: "fixed")
    stream = io.StringIO()
    progress = Progress(stream, live=False, interval_s=0.02, quiet_s=100, activity=lambda: None)
    suite = Suite("t", "", (TaskSpec("a", "expansion", "A", {}), TaskSpec("b", "parity", "B", {})), (), "t.toml")
    runner.run_suite(suite, tmp_path / "out", progress=progress, reference_dir=tmp_path)
    lines = stream.getvalue().splitlines()
    assert [line.split("; ", 1)[1] for line in lines if line.startswith("  a: ")] == [
        "relaxation 1/2 (t = 0.4 nm)", "relaxation 2/2 (t = 0.8 nm)"]
    assert not any(line.startswith("  b: ") for line in lines)  # b states nothing: no stale stage of a


def test_a_terminal_gets_one_line_rewritten_and_cleared(tmp_path, monkeypatch):
    _slow_tasks(monkeypatch, 0.3)
    stream = io.StringIO()
    progress = Progress(stream, live=True, interval_s=0.02, activity=lambda: Activity("CP2K MD step 1/3", "x"))
    runner.run_suite(Suite("t", "", (TaskSpec("a", "parity", "A", {}),), (), "t.toml"), tmp_path / "out",
                     progress=progress, reference_dir=tmp_path)
    text = stream.getvalue()
    assert text.startswith("[1/1] a: running (parity)\n")
    assert text.count("\n") == 1 and text.count("\r\x1b[K  a: ") >= 3  # rewritten in place
    assert text.endswith("\r\x1b[K")  # cleared, so the caller's result line starts clean


def test_a_broken_activity_never_breaks_the_task(tmp_path, monkeypatch):
    _slow_tasks(monkeypatch, 0.1)

    def broken():
        raise RuntimeError("boom")
    progress = Progress(io.StringIO(), live=False, interval_s=0.01, quiet_s=0.0, activity=broken)
    records = runner.run_suite(Suite("t", "", (TaskSpec("a", "parity", "A", {}),), (), "t.toml"), tmp_path / "out",
                               progress=progress, reference_dir=tmp_path)
    assert records[0]["status"] == "done"
    assert "  a: " in progress.stream.getvalue()


def test_run_suite_reports_on_stdout_by_default(tmp_path, monkeypatch, capsys):
    _slow_tasks(monkeypatch, 0.0)
    runner.run_suite(Suite("t", "", (TaskSpec("a", "parity", "A", {}),), (), "t.toml"), tmp_path / "out",
                     reference_dir=tmp_path)
    captured = capsys.readouterr()
    assert captured.out == "[1/1] a: running (parity)\n" and captured.err == ""
    runner.run_suite(Suite("t", "", (TaskSpec("a", "parity", "A", {}),), (), "t.toml"), tmp_path / "out2",
                     reference_dir=tmp_path, progress=False)
    assert capsys.readouterr().out == ""


def test_durations_read_as_people_write_them():
    assert [runner.duration(s) for s in (0.4, 42, 185, 7620)] == ["0 s", "42 s", "3m05s", "2h07m"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
