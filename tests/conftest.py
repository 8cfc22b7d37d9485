"""Fixtures shared by test files."""

from __future__ import annotations

import pytest

from nepbench import runner
from nepbench.errors import EngineNotAvailable, NepbenchError
from nepbench.tasks import TaskOutcome


@pytest.fixture
def calls(monkeypatch):
    """Stand-in task functions for the runner; returns the task ids run, in order.

    A task's params choose what it does: `interrupt` raises KeyboardInterrupt, `gpu` (or
    kind = "skipped") raises EngineNotAvailable, kind = "failed" raises NepbenchError, kind =
    "not_applicable" returns that status; otherwise it is done with metric x = `value` (default 1).
    """
    seen: list[str] = []

    def fake_function(task_type):
        def run(spec, ctx):
            seen.append(spec.id)
            kind = spec.params.get("kind", "done")
            if spec.params.get("interrupt"):
                raise KeyboardInterrupt
            if spec.params.get("gpu") or kind == "skipped":
                raise EngineNotAvailable("gpumd not found on PATH")
            if kind == "failed":
                raise NepbenchError("the stand-in task broke")
            if kind == "not_applicable":
                return TaskOutcome("not_applicable", reason="the model lacks a species")
            return TaskOutcome("done", metrics={"x": float(spec.params.get("value", 1.0))}, seed=1)
        return run

    monkeypatch.setattr(runner, "task_function", fake_function)
    return seen
