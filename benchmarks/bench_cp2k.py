"""Speed of CP2K on a tiny cell (skipped where cp2k.psmp is not installed).

A 2-atom diamond Si primitive cell (rattled 0.03 Å) at a 100 Ry grid on one MPI rank: the time is
dominated by CP2K's start-up and the SCF of a tiny system, so it tracks the engine wrapper and the
installed CP2K, not production cost (docs/cp2k_settings.md has those numbers).
"""

from __future__ import annotations

from .common import have_cp2k, tiny_cp2k_settings, tiny_si


class Cp2kSinglePoint:
    """Energy + forces of Si2 with CP2K (s per single point, process start included)."""

    number = 1
    repeat = (1, 3, 60.0)
    warmup_time = 0.0
    timeout = 300

    def setup(self) -> None:
        if not have_cp2k():
            raise NotImplementedError("cp2k.psmp not installed")
        from nepbench.engines.cp2k import CP2KEngine

        self.engine = CP2KEngine(tiny_cp2k_settings(), ranks=1, timeout_s=240)
        self.atoms = tiny_si(2)

    def time_single_point_si2(self) -> None:
        self.engine.single_point(self.atoms)


class Cp2kMdStep:
    """Steady-state CP2K MD cost per step on the AIMD cell (Li24Si8, 32 atoms) for the tuned AIMD
    preset and the untuned one, on one MPI rank (`cp2k_tuning.run_md`: CPU-equivalent s/step, so
    other work on the machine does not inflate it). A slower CP2K, or a preset change that costs
    time, shows here nightly. About 3–8 min per preset."""

    params = ["aimd", "aimd-v1"]
    param_names = ["preset"]
    number = 1
    repeat = 1
    timeout = 1800

    def setup(self, preset: str) -> None:
        if not have_cp2k():
            raise NotImplementedError("cp2k.psmp not installed")
        from nepbench.cp2k_tuning import MD_CASE

        from .common import REFERENCE_DIR

        if not (REFERENCE_DIR / "aimd" / MD_CASE.aimd_run / "frames.extxyz.xz").is_file():
            raise NotImplementedError(f"no committed AIMD run {MD_CASE.aimd_run}")

    def track_s_per_step(self, preset: str) -> float:
        import dataclasses
        import shutil
        import tempfile
        from pathlib import Path

        from nepbench.cp2k_tuning import MD_CASE, md_start, run_md
        from nepbench.engines.cp2k import SETTINGS_PRESETS, CP2KEngine

        from .common import REFERENCE_DIR

        case = dataclasses.replace(MD_CASE, warmup_steps=3, timed_steps=3)
        workdir = Path(tempfile.mkdtemp(prefix="nepbench-bench-cp2k-"))
        try:
            engine = CP2KEngine(SETTINGS_PRESETS[preset], workdir=workdir, ranks=1)
            entry = run_md(engine, md_start(case.aimd_run, REFERENCE_DIR / "aimd"), case, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return entry["s_per_step_cpu_equivalent"]

    track_s_per_step.unit = "s/step"
