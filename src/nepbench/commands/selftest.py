"""`nepbench selftest`: does this installation (above all, the container image) work?

One row per check, each pass / fail / skip with one line of detail:

- model:   the default model (pins.toml [model] name) resolves, its file's sha256 equals the
           registry's, and the pinned one where pins.toml records it;
- nep-cpu: a NEP single point (calorine) on a 224-atom Li-Si-C cell gives finite energy and forces,
           forces that sum to zero, and an energy per atom in a physical range;
- cp2k:    a cheap CP2K single point (8 Si atoms, 150 Ry) gives finite labels in eV (not Hartree),
           and the CP2K version is the pinned one;
- gpumd:   `gpumd` and `nep` are on PATH and every library they load is found; with a GPU, a GPUMD
           single point on the same cell agrees with the CPU one.

A missing program or GPU is a skip, with the reason, on a workstation; inside the image
(NEPBENCH_IN_CONTAINER=1) a missing program is a failure, a missing GPU still a skip.
Exit status 0 when nothing failed, 1 otherwise. The engine and model modules are imported inside
the checks, so a broken one fails its own row instead of the whole command.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
from ase import Atoms
from ase.build import bulk

from .. import provenance
from ..errors import ConfigError
from ..textfiles import load_toml, prefixed

Status = Literal["pass", "fail", "skip"]
PINS_PATH = Path(__file__).resolve().parents[3] / "pins.toml"
FALLBACK_MODEL = "nep89-lisic"

# Physical sanity bounds. NEP89 energies are PBE-like totals (Li about -1.9, Si -5.4, C -9.2 eV/atom);
# CP2K's GTH-PBE total energy of Si is about -108 eV/atom (-3.96 Hartree: a unit slip fails the test).
NEP_EV_PER_ATOM_RANGE = (-12.0, 0.0)
CP2K_SI_EV_PER_ATOM_RANGE = (-130.0, -90.0)
NEP_NET_FORCE_TOL_EV_PER_A = 1e-6
CP2K_NET_FORCE_TOL_EV_PER_A = 0.1
GPU_CPU_ENERGY_TOL_EV_PER_ATOM = 1e-3  # GPUMD computes in single precision
GPU_CPU_FORCE_TOL_EV_PER_A = 1e-2
# A smoke test, not a label: coarse grid and SCF (about 30 s on 2 busy cores, seconds on a node).
CP2K_CHEAP = {"cutoff_ry": 150.0, "rel_cutoff_ry": 30.0, "eps_scf": 1e-5, "eps_default": 1e-10,
              "stress": False}


class Skip(Exception):
    """A check that cannot run here; the message is the reason."""


class CheckFailed(Exception):
    """A check that ran and found a problem; the message says which."""


@dataclass(frozen=True)
class CheckResult:
    """One row of the table: check name, status, one line of detail and wall time in s."""

    name: str
    status: Status
    detail: str
    wall_s: float = 0.0


@dataclass
class Context:
    """What the checks share: settings, and results earlier checks hand to later ones."""

    model_name: str
    pins: dict[str, Any] = field(default_factory=dict)
    in_container: bool = False
    model: Any | None = None  # ModelInfo once the model check passed
    nep_labels: Any | None = None  # CPU NEP labels of `lisic_cell()` once nep-cpu passed


Check = tuple[str, Callable[[Context], str]]


# ------------------------------------------------------------------------------------ helpers


def load_pins(path: Path | None = None) -> dict[str, Any]:
    """pins.toml (default: the repository's) as a dict; empty when absent.

    Raises:
        ConfigError naming the file: unreadable or malformed TOML, a [model] or [cp2k] that is not a
            table, or a value selftest reads there (model name and sha256, cp2k version) that is not text.
    """
    path = path or PINS_PATH
    if not path.exists():
        return {}
    pins = load_toml(path, prefixed(ConfigError))
    for table, keys in (("model", ("name", "sha256")), ("cp2k", ("version",))):
        value = pins.get(table, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: '{table}' must be a table ([{table}]), got {type(value).__name__}")
        wrong = [k for k in keys if k in value and not isinstance(value[k], str)]
        if wrong:
            raise ConfigError(f"{path}: [{table}] {', '.join(wrong)} must be text")
    return pins


def _attr(module: str, name: str) -> Any:
    """`module.name`, imported now; an import problem fails the calling check with one line."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise CheckFailed(f"cannot import {name} from {module}: {exc}") from exc


def _missing(ctx: Context, what: str) -> None:
    """A program is missing: a failure inside the image, a skip elsewhere."""
    if ctx.in_container:
        raise CheckFailed(f"{what} (the image must provide it)")
    raise Skip(what)


def lisic_cell(seed: int = 7) -> Atoms:
    """A 224-atom Li-Si-C test cell: 3x3x3 diamond Si with 8 C on Si sites and 8 Li at
    tetrahedral interstitial sites, rattled by 0.05 Å (seeded); its box (16.3 Å) exceeds twice the
    NEP89 cutoff, so every engine sees the same neighbours without small-box tricks."""
    unit = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms = unit.repeat((3, 3, 3))
    rng = np.random.default_rng(seed)
    symbols = atoms.get_chemical_symbols()
    for index in rng.choice(len(atoms), size=8, replace=False):
        symbols[int(index)] = "C"
    atoms.set_chemical_symbols(symbols)
    # The empty tetrahedral site of the conventional cell sits at (1/2, 1/2, 1/2) a.
    sites = [(i, j, k) for i in range(3) for j in range(3) for k in range(3)]
    for cell_index in rng.choice(len(sites), size=8, replace=False):
        i, j, k = sites[int(cell_index)]
        atoms.append("Li")
        atoms.positions[-1] = (np.array([i, j, k]) + 0.5) * 5.43
    atoms.rattle(stdev=0.05, seed=seed)
    return atoms


def si8_cell(seed: int = 1) -> Atoms:
    """8-atom cubic diamond Si, rattled by 0.05 Å (seeded): non-zero forces that must sum to ~0."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(stdev=0.05, seed=seed)
    return atoms


def check_labels(labels: Any, n_atoms: int, energy_range: tuple[float, float],
                 net_force_tol: float, what: str) -> tuple[float, float]:
    """Raise CheckFailed unless energy and forces are finite, shaped, balanced and in range.

    Returns (energy per atom in eV, largest force component magnitude in eV/Å).
    """
    energy = float(labels.energy_ev)
    forces = np.asarray(labels.forces_ev_per_a, dtype=float)
    if not np.isfinite(energy):
        raise CheckFailed(f"{what}: energy is {energy}")
    if forces.shape != (n_atoms, 3):
        raise CheckFailed(f"{what}: forces have shape {forces.shape}, expected ({n_atoms}, 3)")
    if not np.all(np.isfinite(forces)):
        raise CheckFailed(f"{what}: non-finite forces")
    net = float(np.abs(forces.sum(axis=0)).max())
    if net > net_force_tol:
        raise CheckFailed(f"{what}: forces sum to {net:.3g} eV/Å (limit {net_force_tol:g})")
    per_atom = energy / n_atoms
    low, high = energy_range
    if not low < per_atom < high:
        raise CheckFailed(f"{what}: {per_atom:.4f} eV/atom is outside ({low:g}, {high:g}) eV/atom")
    return per_atom, float(np.abs(forces).max())


# ------------------------------------------------------------------------------------ checks


def check_model(ctx: Context) -> str:
    """The default model resolves; file sha256 == registry sha256 (== pinned sha256 if pinned)."""
    resolve_model = _attr("nepbench.models", "resolve_model")
    info = resolve_model(ctx.model_name, fetch=True)
    path = Path(info.path)
    actual = provenance.sha256_file(path)
    if actual != info.sha256:
        raise CheckFailed(f"{path}: sha256 {actual[:16]}… differs from the registry's {info.sha256[:16]}…")
    pinned_model = ctx.pins.get("model", {})
    pinned = pinned_model.get("sha256") if pinned_model.get("name") == ctx.model_name else None
    if pinned and pinned != actual:
        raise CheckFailed(f"{path}: sha256 {actual[:16]}… differs from pins.toml's {pinned[:16]}…")
    species = getattr(info, "species", None)
    if species is not None and not {"Li", "Si", "C"} <= set(species):
        raise CheckFailed(f"{info.name} lacks Li, Si or C (has {', '.join(species)})")
    ctx.model = info
    where = "registry and pins.toml" if pinned else "registry"
    return f"{info.name}: {path.name} sha256 {actual[:16]}… matches the {where}"


def check_nep_cpu(ctx: Context) -> str:
    """A calorine NEP single point on the Li-Si-C cell is finite, balanced and physical."""
    if ctx.model is None:
        raise Skip("needs the model check to pass")
    engine_cls = _attr("nepbench.engines.nep_cpu", "NepCpuEngine")
    atoms = lisic_cell()
    labels = engine_cls(Path(ctx.model.path)).single_point(atoms)
    per_atom, fmax = check_labels(labels, len(atoms), NEP_EV_PER_ATOM_RANGE,
                                  NEP_NET_FORCE_TOL_EV_PER_A, "NEP (CPU)")
    ctx.nep_labels = labels
    return f"{len(atoms)} atoms Li8 Si208 C8 (Li-Si-C): {per_atom:.4f} eV/atom, max|F| {fmax:.3f} eV/Å"


def check_cp2k(ctx: Context) -> str:
    """A cheap CP2K single point on 8 Si atoms; the version is the pinned one inside the image."""
    engine_cls = _attr("nepbench.engines.cp2k", "CP2KEngine")
    label_settings = _attr("nepbench.engines.cp2k", "LABEL_SETTINGS")
    settings = dataclasses.replace(label_settings, **CP2K_CHEAP)
    ranks = max(1, min(2, os.cpu_count() or 1))
    engine = engine_cls(settings, ranks=ranks, timeout_s=900)
    if not engine.available():
        _missing(ctx, f"{engine.cp2k_binary} (or mpirun for {ranks} ranks) not found")
    version = engine.version()
    pinned = ctx.pins.get("cp2k", {}).get("version")
    note = ""
    if pinned and pinned not in version:
        if ctx.in_container:
            raise CheckFailed(f"{version} is not the pinned CP2K {pinned}")
        note = f" (pins.toml expects {pinned}: labels may differ from the reference data)"
    atoms = si8_cell()
    start = time.perf_counter()
    labels = engine.single_point(atoms)
    wall = time.perf_counter() - start
    per_atom, fmax = check_labels(labels, len(atoms), CP2K_SI_EV_PER_ATOM_RANGE,
                                  CP2K_NET_FORCE_TOL_EV_PER_A, "CP2K")
    return (f"{version.strip()}: Si8 at {settings.cutoff_ry:g} Ry on {ranks} rank(s), "
            f"{per_atom:.3f} eV/atom, max|F| {fmax:.3f} eV/Å, {wall:.1f} s{note}")


def unresolved_libraries(binaries: Sequence[str]) -> list[str]:
    """Shared libraries `ldd` reports as 'not found' for these binaries (empty when all resolve,
    or when ldd itself is unavailable)."""
    if shutil.which("ldd") is None:
        return []
    missing: list[str] = []
    for binary in binaries:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
        missing += [line.split()[0] for line in out.splitlines() if "not found" in line]
    return sorted(set(missing))


def check_gpumd(ctx: Context) -> str:
    """gpumd/nep link; with a GPU, a GPUMD single point agrees with the CPU NEP one."""
    paths = {name: shutil.which(name) for name in ("gpumd", "nep")}
    absent = [name for name, path in paths.items() if path is None]
    if absent:
        _missing(ctx, f"{' and '.join(absent)} not on PATH")
    unresolved = unresolved_libraries([p for p in paths.values() if p])
    if unresolved:
        raise CheckFailed(f"gpumd/nep cannot load {', '.join(unresolved)}")
    gpus = provenance.gpu_models()
    if not gpus:
        raise Skip("no NVIDIA GPU visible (apptainer run --nv / docker run --gpus all); gpumd and nep link")
    if ctx.model is None:
        raise Skip("needs the model check to pass")
    engine_cls = _attr("nepbench.engines.gpumd", "GpumdEngine")
    engine = engine_cls(Path(ctx.model.path))
    ok, reason = engine.available()
    if not ok:
        raise CheckFailed(f"GPU {gpus[0]} visible but GPUMD unavailable: {reason}")
    atoms = lisic_cell()
    labels = engine.single_point(atoms)
    per_atom, _ = check_labels(labels, len(atoms), NEP_EV_PER_ATOM_RANGE,
                               GPU_CPU_FORCE_TOL_EV_PER_A, "GPUMD")
    agreement = ""
    if ctx.nep_labels is not None:
        d_e = abs(float(labels.energy_ev) - float(ctx.nep_labels.energy_ev)) / len(atoms)
        d_f = float(np.abs(np.asarray(labels.forces_ev_per_a)
                           - np.asarray(ctx.nep_labels.forces_ev_per_a)).max())
        if d_e > GPU_CPU_ENERGY_TOL_EV_PER_ATOM or d_f > GPU_CPU_FORCE_TOL_EV_PER_A:
            raise CheckFailed(f"GPUMD and CPU NEP disagree: dE {d_e:.2e} eV/atom, max|dF| {d_f:.2e} eV/Å")
        agreement = f", vs CPU dE {d_e:.1e} eV/atom, max|dF| {d_f:.1e} eV/Å"
    return f"{gpus[0]}: {len(atoms)} atoms {per_atom:.4f} eV/atom{agreement}"


# ------------------------------------------------------------------------------------ running


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (Skip, CheckFailed)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_checks(checks: Sequence[Check], ctx: Context,
               on_result: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    """Run every check in order; an exception becomes a failed row, `Skip` a skipped one."""
    results = []
    for name, function in checks:
        start = time.perf_counter()
        try:
            status, detail = "pass", function(ctx)
        except Skip as exc:
            status, detail = "skip", _one_line(exc)
        except Exception as exc:  # any failure is one row; KeyboardInterrupt still stops the run
            status, detail = "fail", _one_line(exc)
        result = CheckResult(name, status, detail, time.perf_counter() - start)
        results.append(result)
        if on_result:
            on_result(result)
    return results


def format_row(result: CheckResult) -> str:
    return f"  {result.name:8s} {result.status:6s} {result.wall_s:7.1f} s  {result.detail}"


def summary(results: Sequence[CheckResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    return f"selftest: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 when no check failed (skips allowed), 1 otherwise."""
    return 1 if any(r.status == "fail" for r in results) else 0


def skipped(reason: str) -> Callable[[Context], str]:
    def check(ctx: Context) -> str:
        raise Skip(reason)
    return check


def build_checks(skip_model: bool, skip_cp2k: bool) -> list[Check]:
    """The checks in order; those switched off by an option become skips naming it."""
    checks: list[Check] = [
        ("model", skipped("--skip-model") if skip_model else check_model),
        ("nep-cpu", skipped("--skip-model") if skip_model else check_nep_cpu),
        ("cp2k", skipped("--skip-cp2k") if skip_cp2k else check_cp2k),
        ("gpumd", check_gpumd),
    ]
    return checks


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "selftest", help="check the model, NEP (CPU), CP2K and GPUMD of this installation",
        description="Check that this installation works: the default model and its sha256, a NEP "
                    "single point, a small CP2K single point and, with a GPU, GPUMD. Exit 0 when "
                    "nothing failed.",
        epilog="examples:\n  nepbench selftest\n  nepbench selftest --skip-cp2k\n"
               "  apptainer test nepbench.sif",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-cp2k", action="store_true", help="do not run the CP2K single point")
    parser.add_argument("--skip-model", action="store_true",
                        help="do not resolve the model (and so skip the NEP and GPUMD runs)")
    parser.add_argument("--model", default=None,
                        help="model name or nep.txt path to check (default: pins.toml [model] name)")
    parser.set_defaults(func=_selftest)


def _selftest(args: argparse.Namespace) -> int:
    pins = load_pins()
    ctx = Context(
        model_name=args.model or pins.get("model", {}).get("name", FALLBACK_MODEL),
        pins=pins,
        in_container=os.environ.get("NEPBENCH_IN_CONTAINER") == "1",
    )
    where = "inside the nepbench image" if ctx.in_container else "outside the image"
    print(f"nepbench selftest ({where})")
    print(f"  {'CHECK':8s} {'STATUS':6s} {'TIME':>9s}  DETAIL")
    results = run_checks(build_checks(args.skip_model, args.skip_cp2k), ctx,
                         on_result=lambda r: print(format_row(r), flush=True))
    print(summary(results))
    return exit_code(results)
