"""Pre-relaxation of an AIMD start structure with a NEP model (positions only, fixed cell).

The builders pack atoms at random with only minimum distances enforced. For covalent carbon such
a start lies far above any bonded network (the NEP89 energy of the seeded 28-atom a-LiC cell falls
by ~1.8 eV/atom on relaxation), and CP2K AIMD started from it turns that energy into heat faster
than the thermostat removes it: the first a-LiC run reached 6,700 K after 20 fs at a 1,200 K target.
Relaxing the start to the nearest local minimum of a NEP model removes that energy before the
first DFT step. Only the start geometry depends on the model; every AIMD step is DFT.

The relaxed start is written once into the run's folder (`start.extxyz`, with the model, its
sha256 and the forces reached) and read back on every later segment, so a run's start does not
change with the machine or the model cache.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from ase import Atoms
from ase.io import read, write

from .errors import ConfigError, InputError
from .files import atomic_write_text
from .structures import check_structure

START_FILE = "start.extxyz"


@dataclass(frozen=True)
class Prerelax:
    """FIRE relaxation of positions with a NEP model, optionally followed by NEP MD equilibration.

    Attributes:
        model: registry name or path of the NEP model (nep.txt).
        fmax_ev_per_a: stop when the largest atomic force is below this (eV/Å).
        max_steps: FIRE steps allowed; not converged by then is an error.
        md_ps: NVT (CSVR) NEP MD at the AIMD run's temperature after the relaxation, in the run's
            cell (ps; 0 = none). The AIMD starts from its last frame.
        melt_k: melt at this temperature for `melt_ps` before the `md_ps` at the run's temperature
            (K; None = no melt).
        melt_ps: time at `melt_k` (ps).
        timestep_fs: NEP MD time step (fs).
    """

    model: str
    fmax_ev_per_a: float = 0.05
    max_steps: int = 3000
    md_ps: float = 0.0
    melt_k: float | None = None
    melt_ps: float = 0.0
    timestep_fs: float = 1.0

    KEYS = ("model", "fmax_ev_per_a", "max_steps", "md_ps", "melt_k", "melt_ps", "timestep_fs")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str) -> "Prerelax":
        unknown = sorted(set(raw) - set(cls.KEYS))
        if unknown or "model" not in raw:
            raise ConfigError(f"{where}: prerelax needs 'model' and takes {', '.join(cls.KEYS[1:])}"
                              + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        p = cls(str(raw["model"]), float(raw.get("fmax_ev_per_a", 0.05)), int(raw.get("max_steps", 3000)),
                float(raw.get("md_ps", 0.0)), None if raw.get("melt_k") is None else float(raw["melt_k"]),
                float(raw.get("melt_ps", 0.0)), float(raw.get("timestep_fs", 1.0)))
        if not (p.fmax_ev_per_a > 0 and p.max_steps > 0):
            raise ConfigError(f"{where}: prerelax fmax_ev_per_a and max_steps must be > 0")
        if p.md_ps < 0 or p.melt_ps < 0 or not 0 < p.timestep_fs <= 5 or (p.melt_k is not None and p.melt_ps <= 0):
            raise ConfigError(f"{where}: prerelax md_ps and melt_ps must be >= 0 (melt_ps > 0 with melt_k) "
                              "and timestep_fs in (0, 5]")
        return p

    def to_dict(self) -> dict[str, Any]:
        """The settings; the MD keys only where MD is asked for (so records of a relaxation alone
        read as before)."""
        data = asdict(self)
        if self.md_ps == 0 and self.melt_k is None:
            for key in ("md_ps", "melt_k", "melt_ps", "timestep_fs"):
                del data[key]
        return data


def equilibrate(relaxed: Atoms, prerelax: Prerelax, temperature_k: float, seed: int) -> Atoms:
    """NEP MD of a relaxed start (`relax_positions`' output) as `prerelax` asks: melt at `melt_k`,
    then `md_ps` of NVT at `temperature_k`, in the same cell; the last frame, wrapped, with the
    relaxation record and the MD's (prerelax_md_ps, prerelax_melt_k, prerelax_md_mean_t_k) in info.

    Raises:
        InputError naming the model: the MD blew up (engine check) or its mean temperature over the
        second half is more than 20 % off `temperature_k`.
    """
    from .engines.base import MDProtocol
    from .engines.nep_cpu import NepCpuEngine
    from .errors import EngineError
    from .models import resolve_model

    model = resolve_model(prerelax.model)
    engine = NepCpuEngine(model.path, threads=1)
    atoms = relaxed.copy()
    stages = ([(prerelax.melt_k, prerelax.melt_ps)] if prerelax.melt_k is not None else []) + [
        (temperature_k, prerelax.md_ps)]
    mean_t = float("nan")
    for index, (t_k, ps) in enumerate(stages):
        steps = max(1, int(round(ps * 1000 / prerelax.timestep_fs)))
        protocol = MDProtocol(ensemble="nvt", temperature_k=t_k, timestep_fs=prerelax.timestep_fs, steps=steps,
                              sample_interval=max(1, steps // 100), seed=(seed + index) % (2**31 - 1),
                              thermostat_coupling_fs=100.0)
        try:
            result = engine.md(atoms, protocol, source=f"NEP pre-equilibration at {t_k:g} K")
        except EngineError as exc:
            raise InputError(model.path, str(exc)) from None
        atoms = atoms.copy()
        atoms.positions = result.trajectory.positions_a[-1]
        atoms.wrap()
        temps = np.asarray(result.thermo["temperature_k"])
        mean_t = float(temps[len(temps) // 2:].mean())
    if abs(mean_t - temperature_k) > 0.2 * temperature_k:
        raise InputError(model.path, f"NEP pre-equilibration ended at mean T {mean_t:.0f} K, target {temperature_k:g} K")
    out = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    out.info.update(relaxed.info)
    out.info.update({"prerelax_md_ps": prerelax.md_ps, "prerelax_melt_k": prerelax.melt_k or 0.0,
                     "prerelax_md_mean_t_k": round(mean_t, 1), "prerelax_md_temperature_k": temperature_k})
    return out


def relax_positions(atoms: Atoms, prerelax: Prerelax) -> Atoms:
    """A copy of `atoms` relaxed with the NEP model; its `info` holds the model, its sha256, the
    energies before and after (eV/atom), the largest force reached (eV/Å) and the FIRE steps."""
    from ase.optimize import FIRE
    from calorine.calculators import CPUNEP

    from .models import resolve_model

    model = resolve_model(prerelax.model)
    relaxed = atoms.copy()
    relaxed.calc = CPUNEP(str(model.path))
    e0 = relaxed.get_potential_energy() / len(relaxed)
    opt = FIRE(relaxed, logfile=None)
    converged = bool(opt.run(fmax=prerelax.fmax_ev_per_a, steps=prerelax.max_steps))
    fmax = float(np.linalg.norm(relaxed.get_forces(), axis=1).max())
    if not converged:
        raise InputError(model.path, f"pre-relaxation did not reach max|F| < {prerelax.fmax_ev_per_a} eV/Å "
                         f"in {prerelax.max_steps} FIRE steps (max|F| {fmax:.3f} eV/Å)")
    out = Atoms(relaxed.get_chemical_symbols(), positions=relaxed.positions, cell=relaxed.cell, pbc=relaxed.pbc)
    out.info.update({"prerelax_model": model.name, "prerelax_model_sha256": model.sha256,
                     "prerelax_energy_before_ev_per_atom": float(e0),
                     "prerelax_energy_after_ev_per_atom": float(relaxed.get_potential_energy() / len(relaxed)),
                     "prerelax_fmax_ev_per_a": fmax, "prerelax_steps": int(opt.nsteps)})
    return out


def stored_relaxation_problem(info: Mapping[str, Any], prerelax: Prerelax) -> str | None:
    """How a stored start's relaxation record (`relax_positions`' info keys) falls short of
    `prerelax`, or None: no record (never relaxed here), another model (by sha256 where the spec's
    model resolves without a download, else by name), or a largest force above the spec's fmax."""
    from .errors import ModelError
    from .models import resolve_model

    missing = [k for k in ("prerelax_model", "prerelax_model_sha256", "prerelax_fmax_ev_per_a") if k not in info]
    if missing:
        return f"start structure has no relaxation record ({', '.join(missing)}): it was not relaxed by nepbench"
    try:
        model = resolve_model(prerelax.model, fetch=False)
        same = model.sha256 == info["prerelax_model_sha256"]
        wanted = f"{model.name} (sha256 {model.sha256[:12]}…)"
    except ModelError:  # not fetched here: the name is what can be compared
        same = str(info["prerelax_model"]) == prerelax.model
        wanted = prerelax.model
    if not same:
        return (f"start structure was relaxed with {info['prerelax_model']} (sha256 "
                f"{str(info['prerelax_model_sha256'])[:12]}…), the spec's prerelax names {wanted}")
    if float(info.get("prerelax_md_ps", 0.0)) != prerelax.md_ps or (
            float(info.get("prerelax_melt_k", 0.0)) != (prerelax.melt_k or 0.0)):
        return (f"start structure had {info.get('prerelax_md_ps', 0.0)} ps of NEP MD (melt "
                f"{info.get('prerelax_melt_k', 0.0)} K), the spec's prerelax asks for {prerelax.md_ps} ps "
                f"(melt {prerelax.melt_k or 0.0} K)")
    fmax = float(info["prerelax_fmax_ev_per_a"])
    if not fmax < prerelax.fmax_ev_per_a:
        return (f"start structure was relaxed to max|F| {fmax:.3f} eV/Å, the spec's prerelax asks for "
                f"< {prerelax.fmax_ev_per_a} eV/Å")
    return None


def start_structure(run_dir: Path, built: Atoms, prerelax: Prerelax, started: bool,
                    temperature_k: float = 0.0, seed: int = 0) -> Atoms:
    """The run's pre-relaxed start: read from `run_dir/start.extxyz`, or relaxed and written there.

    Args:
        run_dir: the AIMD run's folder.
        built: the builder's structure (species, order and cell must match a stored start).
        prerelax: the relaxation settings.
        started: the run already has committed steps; then the start must exist (a run begun from
            an unrelaxed structure cannot be given a relaxed start afterwards).
        temperature_k, seed: the AIMD run's temperature and seed, for the NEP MD equilibration
            (`equilibrate`) when `prerelax.md_ps` or `melt_k` asks for one.
    """
    path = run_dir / START_FILE
    if path.is_file():
        try:
            stored = read(path, format="extxyz")
        except Exception as exc:  # ase raises many types on a malformed file
            raise InputError(path, f"unreadable start structure ({exc})") from None
        if stored.get_chemical_symbols() != built.get_chemical_symbols() or not np.allclose(
                stored.cell.array, built.cell.array, atol=1e-6):
            raise InputError(path, "start structure differs in species, order or cell from the run's builder")
        problem = stored_relaxation_problem(stored.info, prerelax)
        if problem:
            raise InputError(path, f"{problem}; remove the run's folder to start it again from a start "
                             "relaxed as the spec says, or restore the spec's prerelax")
        check_structure(stored, path)
        return stored
    if started:
        raise InputError(run_dir / "state.json", "this run began without pre-relaxation; remove its folder "
                         "to restart it from a pre-relaxed start, or drop 'prerelax' from the spec")
    relaxed = relax_positions(built, prerelax)
    if prerelax.md_ps > 0 or prerelax.melt_k is not None:
        relaxed = equilibrate(relaxed, prerelax, temperature_k, seed)
    check_structure(relaxed, f"{path} (pre-relaxed)")
    buf = io.StringIO()
    write(buf, relaxed, format="extxyz")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())
    return relaxed
