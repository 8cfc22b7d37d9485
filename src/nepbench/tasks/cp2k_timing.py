"""CP2K's side of the throughput task's speed ratios: its s/step, timed once per invocation and
shared by the models (`cp2k_timing_shared`, with how busy the other cores were meanwhile:
`cpu_load.other_cores_busy_while`); its settings in words (`settings_text`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
from ase import Atoms

from ..cpu_load import other_cores_busy_while
from ..engines.base import MDProtocol
from ..metrics import throughput as tp
from ..provenance import content_hash


def cp2k_timing_shared(cp2k, atoms: Atoms, protocol: MDProtocol, shared: dict[str, Any]) -> dict[str, Any]:
    """CP2K s/step for this cell and protocol, measured once per invocation and shared by its models.

    The CP2K side of a speed ratio does not depend on the NEP model, so when a suite compares
    several models their throughput tasks reuse one measurement. `shared` is the invocation's
    `TaskContext.shared`: the timing never outlives the run that measured it, so a rerun, a rerun
    with --force, or a Slurm array task on another node measures CP2K on its own machine. The key
    covers the cell, the protocol, and the CP2K settings, version and rank count.
    """
    key = content_hash({"numbers": atoms.numbers.tolist(), "positions": np.round(atoms.positions, 6).tolist(),
                        "cell": np.round(atoms.cell.array, 6).tolist(), "protocol": asdict(protocol),
                        "settings": asdict(cp2k.settings), "version": cp2k.version(),
                        "ranks": getattr(cp2k, "ranks", None)})[:24]
    cache = shared.setdefault("cp2k_timing", {})
    if key in cache:
        return cache[key]
    result, busy_during = other_cores_busy_while(lambda: cp2k.md(atoms, protocol))
    timing = tp.summarise_repeats([result.timing.s_per_step])
    # SCF iterations of the timed step(s), recorded because a fresh start has little wavefunction
    # history; on the quick cell steps 1-10 all took 10 (docs/cp2k_settings.md), so steps 2-3 are
    # steady state there
    timing["scf_iterations_per_step"] = result.extra.get("scf_iterations_per_timed_step")
    timing["other_cores_busy_during"] = busy_during
    cache[key] = timing
    return timing


def settings_text(settings: Any) -> str:
    """A CP2K settings preset in a few words for a method line."""
    extra = [f"{k} {v}" for k, v in (("NGRIDS", settings.ngrids), ("EPS_PGF_ORB", settings.eps_pgf_orb),
                                     ("diag", settings.diag_library)) if v is not None]
    if settings.mixing_method != "BROYDEN_MIXING":
        extra.append(settings.mixing_method.split("_")[0].title() + " mixing")
    return (f"{settings.xc}/{settings.basis_set}, {settings.cutoff_ry:g}/{settings.rel_cutoff_ry:g} Ry, "
            f"EPS_DEFAULT {settings.eps_default:.0e}, EPS_SCF {settings.eps_scf:.0e}, "
            f"{settings.extrapolation} {settings.extrapolation_order}" + "".join(f", {e}" for e in extra))
