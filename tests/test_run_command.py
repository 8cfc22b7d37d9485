"""`nepbench run`: its exit status follows the task records, and --force recomputes finished tasks.

The tasks are stand-ins (the `calls` fixture of tests/conftest.py): each records
its call and returns "done", "failed", "skipped" (a missing program) or "not_applicable".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nepbench import runner
from nepbench.cli import main
from nepbench.commands import run as run_command
from nepbench.spec import Suite, TaskSpec


def use_suite(monkeypatch, *kinds: str) -> Suite:
    """`nepbench run SUITE` loads this suite, one task per kind (ids = the kinds)."""
    tasks = tuple(TaskSpec(kind, "parity", kind.title(), {"kind": kind}) for kind in kinds)
    suite = Suite("t", "", tasks, (), "t.toml")
    monkeypatch.setattr(run_command, "load_suite", lambda path, models=None: suite)
    monkeypatch.setattr(runner, "task_data_sha256", lambda task_type, reference_dir, params=None: "fixed")  # live data may change
    return suite


def run(out, *extra: str) -> int:
    return main(["run", "t.toml", "--out", str(out), "--no-report", *extra])


def test_a_failed_task_makes_run_exit_1_and_names_it(tmp_path, calls, monkeypatch, capsys):
    use_suite(monkeypatch, "done", "failed", "skipped")
    assert run(tmp_path / "out") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 task(s) failed: failed" in err[0], err
    assert json.loads((tmp_path / "out" / "tasks" / "failed.json").read_text())["status"] == "failed"
    assert calls == ["done", "failed", "skipped"]  # the other tasks still ran


def test_skipped_and_not_applicable_tasks_exit_0(tmp_path, calls, monkeypatch, capsys):
    """A missing GPU or program is a stated skip, not a failure: `make demo` on a CPU machine exits 0."""
    use_suite(monkeypatch, "done", "skipped", "not_applicable")
    assert run(tmp_path / "out") == 0
    assert capsys.readouterr().err == ""
    statuses = {p.stem: json.loads(p.read_text())["status"] for p in (tmp_path / "out" / "tasks").glob("*.json")}
    assert statuses == {"done": "done", "skipped": "skipped", "not_applicable": "not_applicable"}


def test_a_failed_task_still_exits_1_with_the_report_written(tmp_path, calls, monkeypatch, capsys):
    use_suite(monkeypatch, "done", "failed")
    out = tmp_path / "out"
    assert main(["run", "t.toml", "--out", str(out)]) == 1
    assert (out / "report.html").is_file() and (out / "results.json").is_file()
    assert "failed: failed" in capsys.readouterr().err


def test_only_this_runs_records_count(tmp_path, calls, monkeypatch):
    """--task runs one task: a failed record of another task in the folder does not set the exit status."""
    use_suite(monkeypatch, "done", "failed")
    out = tmp_path / "out"
    assert run(out) == 1
    assert run(out, "--task", "done") == 0


def test_force_recomputes_a_finished_task(tmp_path, calls, monkeypatch, capsys):
    use_suite(monkeypatch, "done")
    out = tmp_path / "out"
    assert run(out) == 0
    first = json.loads((out / "tasks" / "done.json").read_text())["provenance"]["created_utc"]
    assert run(out) == 0
    assert calls == ["done"]  # kept: a finished record with the same inputs
    assert "cached" in capsys.readouterr().out
    assert run(out, "--force") == 0
    assert calls == ["done", "done"]  # --force ran it again
    out_text = capsys.readouterr().out
    assert "cached" not in out_text
    assert json.loads((out / "tasks" / "done.json").read_text())["provenance"]["created_utc"] >= first


def test_an_unknown_model_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "out"
    for model, problem in (("nosuch-model", "unknown model 'nosuch-model'"),
                           (str(tmp_path / "none" / "nep.txt"), "nep.txt: model file not found")):
        quick = Path(__file__).resolve().parents[1] / "suites" / "quick.toml"
        assert main(["run", str(quick), "--model", model, "--out", str(out), "--no-report"]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and problem in err[0], err
        assert not out.exists()


def test_an_unknown_task_id_prints_nothing_but_the_error(tmp_path, monkeypatch, capsys):
    use_suite(monkeypatch, "done")
    assert run(tmp_path / "out", "--task", "nosuch") == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no task 'nosuch'" in captured.err
    assert not (tmp_path / "out").exists()


def test_a_model_that_cannot_be_fetched_stops_the_run_before_anything_is_written(tmp_path, monkeypatch, capsys):
    """An empty cache and no PyPI: one line naming the download, a non-zero exit, no records or report
    (before, each of its tasks became a failed record and the run went on for the other model)."""
    monkeypatch.setenv("NEPBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    quick = Path(__file__).resolve().parents[1] / "suites" / "quick.toml"
    out = tmp_path / "out"
    assert main(["run", str(quick), "--out", str(out)]) != 0
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "could not download neptrainkit" in err[0], err
    assert captured.out == "" and not out.exists()
    # --list-tasks fetches nothing, so it still works offline
    assert main(["run", str(quick), "--list-tasks"]) == 0
    assert "parity" in capsys.readouterr().out
