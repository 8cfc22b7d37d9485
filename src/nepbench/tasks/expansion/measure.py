"""Measuring one particle: its centre, core and shell surfaces (Å), its volumes by each method, and the
comparison of a lithiated state with its reference (ΔV/V0, shell strain, radial profiles).

Which volume and why: docs/metrics.md, "Which volume: measured, then chosen".
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from ...metrics import expansion as ex
from ...systems.core_shell import CORE_TAG, SHELL_TAG
from .params import ExpansionParams

#: Fewer shell atoms than this count as no shell (t = 0, or a shell too thin to fit two surfaces).
MIN_SHELL_ATOMS = 40


def host_centre_a(atoms: Atoms, n_host: int) -> np.ndarray:
    """Centre of mass (Å) of the first `n_host` atoms (the Si and C the particle was built with)."""
    return ex.centre_of_mass_a(atoms.positions[:n_host], atoms.get_masses()[:n_host])


def core_radius_a(atoms: Atoms, centre_a: np.ndarray) -> float:
    """Equimolar outer radius (Å) of the core: core Si plus Li inside the shell's inner surface (the
    insertion region's radius before `core_margin_a`; the radial core volume fits the core Si alone)."""
    mask = core_atoms(atoms, centre_a)
    return ex.equimolar_radii_a(ex.radii_a(atoms.positions[mask], centre_a)).outer_a


def shell_fit_a(atoms: Atoms, centre_a: np.ndarray) -> ex.ShellRadii | None:
    """Equimolar inner and outer radii (Å) of the carbon shell about `centre_a`, or None without a
    shell (fewer than MIN_SHELL_ATOMS shell-tagged atoms: t = 0, or a shell too thin to fit).

    The one place the task decides whether there is a shell and where its surfaces are (every
    consumer reads it). The tags say the atoms are a shell (`known_shell=True`); where the fit finds
    no inner surface, the core Si's equimolar outer radius stands in for inner_a.
    """
    tags = atoms.get_tags()
    shell = tags == SHELL_TAG
    if shell.sum() < MIN_SHELL_ATOMS:
        return None
    r = ex.radii_a(atoms.positions[shell], centre_a)
    try:
        return ex.shell_radii_a(r, known_shell=True)
    except ex.NoInnerSurfaceError:
        interface_a = ex.equimolar_radii_a(ex.radii_a(atoms.positions[tags == CORE_TAG], centre_a)).outer_a
        return ex.ShellRadii(interface_a, ex.equimolar_radii_a(r, ex.SHELL_OUTER_WINDOW).outer_a)


def shell_inner_radius_a(atoms: Atoms, centre_a: np.ndarray) -> float | None:
    """Inner radius (Å) of the carbon shell (`shell_fit_a`), or None without a shell."""
    fit = shell_fit_a(atoms, centre_a)
    return None if fit is None else fit.inner_a


def core_atoms(atoms: Atoms, centre_a: np.ndarray) -> np.ndarray:
    """Mask of the core: core-tagged Si plus Li inside the shell's inner surface."""
    r = ex.radii_a(atoms.positions, centre_a)
    return ex.core_mask(atoms.get_tags(), np.array(atoms.get_chemical_symbols()), r,
                        shell_inner_radius_a(atoms, centre_a), core_tag=CORE_TAG)


def volumes_a3(atoms: Atoms, positions_frames: Sequence[np.ndarray], n_host: int, p: ExpansionParams,
               methods: Sequence[str]) -> dict[str, float]:
    """Particle and core volumes (Å³) by each method ("particle_{m}", "core_{m}"), averaged over
    `positions_frames`.

    "probe" and "hull" enclose all atoms (particle) or `core_atoms` (core). "radial" is a sphere of
    the equimolar radius of the shell's outer surface (`shell_fit_a`; without a shell, the core Si's)
    and, for the core, of the core Si's outer surface (`ex.OUTER_SURFACE_WINDOW`); Li is left out of
    the radial fits (docs/metrics.md).
    """
    out: dict[str, list[float]] = {}
    work = atoms.copy()
    core_si = atoms.get_tags() == CORE_TAG
    for pos in positions_frames:
        work.positions = pos
        c_host = host_centre_a(work, n_host)
        core = core_atoms(work, c_host)
        r = ex.radii_a(pos, c_host)
        for m in methods:
            if m == "radial":
                shell = shell_fit_a(work, c_host)
                v_core = ex.sphere_volume_a3(ex.equimolar_radii_a(r[core_si]).outer_a)
                v_particle = ex.sphere_volume_a3(shell.outer_a) if shell is not None else v_core
            else:
                v_particle = ex.particle_volume_a3(pos, m, c_host, p.probe_radius_a)
                v_core = ex.particle_volume_a3(pos[core], m, c_host, p.probe_radius_a)
            out.setdefault(f"particle_{m}", []).append(v_particle)
            out.setdefault(f"core_{m}", []).append(v_core)
    return {k: float(np.mean(v)) for k, v in out.items()}


def shape_anisotropy(positions_a: np.ndarray) -> float:
    """Relative shape anisotropy κ² of the gyration tensor (0 sphere, 1 rod)."""
    x = positions_a - positions_a.mean(axis=0)
    lam = np.linalg.eigvalsh(x.T @ x / len(x))
    return float(1.0 - 3.0 * (lam[0] * lam[1] + lam[1] * lam[2] + lam[0] * lam[2]) / lam.sum() ** 2)


def compare_states(lith: Atoms, lith_frames: Sequence[np.ndarray], ref: Atoms, ref_frames: Sequence[np.ndarray],
                   n_host: int, p: ExpansionParams, edges_nm: np.ndarray) -> dict[str, Any]:
    """ΔV/V0 (particle, core; every method; fractions), volumes (nm³), shell strain and radial profiles
    (bins `edges_nm`) of `lith` against `ref`."""
    methods = [p.volume_method] + [m for m in ex.VOLUME_METHODS if m != p.volume_method]
    v = volumes_a3(lith, lith_frames, n_host, p, methods)
    v0 = volumes_a3(ref, ref_frames, n_host, p, methods)
    out: dict[str, Any] = {
        "particle_dv_over_v0": {m: ex.dv_over_v0(v[f"particle_{m}"], v0[f"particle_{m}"]) for m in methods},
        "core_dv_over_v0": {m: ex.dv_over_v0(v[f"core_{m}"], v0[f"core_{m}"]) for m in methods},
        "particle_volume_nm3": v[f"particle_{p.volume_method}"] / 1000.0,
        "particle_volume0_nm3": v0[f"particle_{p.volume_method}"] / 1000.0,
        "core_volume_nm3": v[f"core_{p.volume_method}"] / 1000.0,
        "core_volume0_nm3": v0[f"core_{p.volume_method}"] / 1000.0,
        "shape_anisotropy": shape_anisotropy(lith.positions),
        "shape_anisotropy0": shape_anisotropy(ref.positions),
    }
    c_lith, c_ref = host_centre_a(lith, n_host), host_centre_a(ref, n_host)
    fit0, fit = shell_fit_a(ref, c_ref), shell_fit_a(lith, c_lith)
    if fit0 is not None and fit is not None:
        shell = lith.get_tags()[:n_host] == SHELL_TAG
        s = ex.shell_strain_from_fits(ex.radii_a(ref.positions[:n_host][shell], c_ref),
                                      ex.radii_a(lith.positions[:n_host][shell], c_lith), fit0, fit)
        out["shell"] = asdict(s)
    li = np.array(lith.get_chemical_symbols()) == "Li"
    c_all = ex.centre_of_mass_a(lith.positions, lith.get_masses())
    prof = ex.radial_li_profile(lith.positions, li, c_all, edges_nm)
    strain = ex.radial_strain_profile(ref.positions[:n_host], lith.positions[:n_host],
                                      np.ones(n_host, dtype=bool), c_ref, c_lith, edges_nm)
    out["radial"] = {"n_atoms": prof.n_atoms, "n_li": prof.n_li, "n_host": strain.n_atoms,
                     "radial_strain": strain.radial_strain}
    return out
