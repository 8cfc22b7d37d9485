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
