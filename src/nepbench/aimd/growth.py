"""Growing the AIMD runs segment by segment, several processes side by side (resumable)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from ..files import LockHeld, exclusive_lock
from .manifest import write_manifest
from .runs import committed_steps, run_dir_of, start_atoms
from .spec import AimdRun, AimdSpec, reload_aimd_spec


def grow(spec: AimdSpec, engine: Any, run_ids: list[str] | None = None, max_wall_s: float | None = None,
         on_segment: Callable[[AimdRun, Any], None] | None = None, poll_s: float = 10.0,
         stop_requested: Callable[[], bool] | None = None) -> dict[str, int]:
    """Extend the runs round-robin by `segment_steps` until each reaches its target (or time is up).

    Each segment continues from the run's restart file; the manifest is rewritten after each one.
    Several processes may grow one spec side by side (e.g. one CP2K rank each on a 2-core machine):
    a run is locked while a segment grows it (`<run>/.lock`), and a process skips runs that another
    one holds, waiting `poll_s` s when every unfinished run is busy. `stop_requested`, when it
    returns True, stops the growth before the next segment (the running one is finished and
    committed). Returns the committed steps per run.
    """
    start = time.perf_counter()
    runs = [spec.run(r) for r in run_ids] if run_ids else list(spec.runs)
    # one engine for every run, or a callable giving each run its engine (its settings preset)
    engine_for = (lambda run: engine) if hasattr(engine, "run_md_segment") else engine

    def committed() -> dict[str, int]:
        return {r.id: committed_steps(spec, r) for r in runs}

    def must_stop() -> bool:
        timed_out = max_wall_s is not None and time.perf_counter() - start > max_wall_s
        return timed_out or (stop_requested is not None and stop_requested())

    while True:
        pending = [r for r in runs if committed_steps(spec, r) < r.target_steps]
        if not pending:
            return committed()
        progressed = False
        for run in pending:
            if must_stop():
                return committed()
            try:
                with exclusive_lock(run_dir_of(spec, run) / ".lock", blocking=False):
                    steps = min(spec.segment_steps, run.target_steps - committed_steps(spec, run))
                    if steps < 1:  # another process finished it meanwhile
                        continue
                    result = engine_for(run).run_md_segment(run_dir_of(spec, run), start_atoms(spec, run),
                                                            run.protocol, steps)
            except LockHeld:
                continue
            progressed = True
            with exclusive_lock(Path(spec.path).parent / "aimd" / ".manifest.lock"):
                write_manifest(reload_aimd_spec(spec))
            if on_segment:
                on_segment(run, result)
        if not progressed:
            if must_stop() or (max_wall_s is not None and time.perf_counter() - start + poll_s > max_wall_s):
                return committed()
            time.sleep(poll_s)
