"""One particle, one seed: build the Si@C particle, relax it, lithiate its core stage by stage beside an
Li-free control relaxed as long, and compare the two (`measure.compare_states`).

The protocol and why it has a control: docs/metrics.md, "The lithiation protocol".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from ...metrics import expansion as ex
from ...systems.core_shell import core_shell_particle
from .insertion import lithiate
from .measure import compare_states, volumes_a3
from .params import ExpansionParams, t_key
from .relax import Relaxed, Relaxer


def build_particle(p: ExpansionParams, shell_thickness_nm: float, seed: int) -> Atoms:
    """The non-periodic Si@C particle of one (t, seed): `core_shell_particle` with the task's geometry."""
    return core_shell_particle(p.core_radius_nm, shell_thickness_nm, p.vacuum_nm, seed, core=p.core,
                               shell_density_g_cm3=p.shell_density_g_cm3, periodic=False)


def run_particle(p: ExpansionParams, t_nm: float, seed: int, relaxer: Relaxer,
                 edges_nm: np.ndarray, save_dir: Path | None = None) -> dict[str, Any]:
    """The whole protocol for one (shell thickness t_nm, seed); returns measurements and bookkeeping.

    With `save_dir`, the final reference, lithiated and control structures are written there as
    extxyz (tags kept: 1 core Si, 2 shell C, 3 inserted Li) for inspection.
    """
    start = time.perf_counter()
    atoms = build_particle(p, t_nm, seed)
    n_host = len(atoms)
    n_si = int(atoms.info["n_core"])
    steps_before = relaxer.atom_steps
    reference = relaxer(atoms, p.reference_steps, seed * 1000)
    lith_r, blank_r, stages = _lithiate_in_stages(p, seed, relaxer, reference, n_host, n_si)
    lith, blank = lith_r.atoms, blank_r.atoms
    n_li = _count_li(lith)
    if save_dir is not None:
        _save_structures(save_dir, t_nm, seed, reference.atoms, lith, blank)
    result = compare_states(lith, lith_r.frames, blank, blank_r.frames, n_host, p, edges_nm)
    result.update({
        "t_nm": t_nm, "seed": seed, "n_atoms": n_host, "n_core_si": n_si, "n_shell_c": n_host - n_si,
        "n_li": n_li, "x_reached": n_li / n_si, "stages": stages,
        "reference": reference.info, "atom_steps": relaxer.atom_steps - steps_before,
        "wall_s": time.perf_counter() - start,
    })
    return result


def _count_li(atoms: Atoms) -> int:
    return int(np.sum(np.array(atoms.get_chemical_symbols()) == "Li"))


def _lithiate_in_stages(p: ExpansionParams, seed: int, relaxer: Relaxer, reference: Relaxed, n_host: int,
                        n_si: int) -> tuple[Relaxed, Relaxed, list[dict[str, Any]]]:
    """Insert Li up to each x of `p.x_schedule` and relax, the control (with `p.control`) relaxed as
    long; returns (lithiated, control, one record per stage). Without a control, the control is the
    reference."""
    rng = np.random.default_rng([seed, 7919])
    lith_r = blank_r = reference
    m = p.volume_method

    def dv(a: Relaxed, b: Relaxed, half: bool) -> float:
        # half-way through the run: the control at its own half-way point; without a control, the
        # reference (fixed) at its end
        va = volumes_a3(a.atoms, a.half_frames if half else a.frames, n_host, p, [m])[f"particle_{m}"]
        vb = volumes_a3(b.atoms, b.half_frames if half and p.control else b.frames, n_host, p, [m])[f"particle_{m}"]
        return ex.dv_over_v0(va, vb)

    stages = []
    for k, x in enumerate(p.x_schedule, start=1):
        n_li = _count_li(lith_r.atoms)
        want = int(round(x * n_si)) - n_li
        inserted, got = lithiate(lith_r.atoms, want, p, rng, n_host)
        lith_r = relaxer(inserted, p.relax_steps, seed * 1000 + 2 * k)
        if p.control:
            blank_r = relaxer(blank_r.atoms, p.relax_steps, seed * 1000 + 2 * k + 1)
        stages.append({"x": (n_li + got) / n_si, "inserted": got, "asked": want,
                       "particle_dv_over_v0": dv(lith_r, blank_r, False),
                       "particle_dv_over_v0_half_relaxed": dv(lith_r, blank_r, True),
                       **{f"relax_{k2}": v2 for k2, v2 in lith_r.info.items()},
                       **({f"control_{k2}": v2 for k2, v2 in blank_r.info.items()} if p.control else {})})
    return lith_r, blank_r, stages


def _save_structures(save_dir: Path, t_nm: float, seed: int, reference: Atoms, lithiated: Atoms,
                     control: Atoms) -> None:
    """The three final structures as extxyz, `t{t}_seed{seed}_{name}.extxyz`."""
    from ase.io import write

    save_dir.mkdir(parents=True, exist_ok=True)
    for name, state in (("reference", reference), ("lithiated", lithiated), ("control", control)):
        write(save_dir / f"t{t_key(t_nm)}_seed{seed}_{name}.extxyz", state, format="extxyz")
