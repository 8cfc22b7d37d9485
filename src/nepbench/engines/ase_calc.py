"""Any ASE calculator as an engine: the universal-MLIP comparators (CHGNet, SevenNet) beside NEP.

A registry model of source kind "ase" (nepbench.models) names an importable factory (`module:attribute`),
its keyword arguments and a weights file inside an installed package, checked by sha256. This engine
builds the calculator once (loading a GNN's weights takes seconds), then runs single points and MD
through the same ASE driver as the CPU NEP engine (engines/ase_md.py), under the same `MDProtocol`:
same integrator, thermostat, seeded velocities, degrees of freedom, sampling and timing window.

Threads: a torch-based calculator runs on torch's intra-op threads; `threads` sets them
(`torch.set_num_threads`, process-wide) before every evaluation, and `version()` (recorded in every
result's provenance) and `describe()` state the count used. A calculator without torch (ASE's
LennardJones, EMT) runs in the calling thread (numpy).

Units follow ASE (eV, Å, eV/Å, eV/Å³ with ASE's stress sign). The calculators' reference energies
differ from CP2K's by a constant per element: the parity task compares energies after the same
per-element offset fit as for the NEPs (tasks/parity.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from ..errors import EngineError, InputError, ModelError
from ..models import ASE_KIND, ModelInfo, check_species, import_object, installed_version, resolve_model
from .ase_md import Thermostat, run_ase_md
from .base import Engine, Labels, MDProtocol, MDResult
from .nep_cpu import open_boundary_problem


@dataclass(frozen=True)
class AseCalculatorSpec:
    """How to build one ASE calculator, as a registry record of kind "ase" says.

    Attributes:
        name: model name (registry name), for messages and provenance.
        factory: `module:attribute[.attribute]` of a callable returning an ASE Calculator, e.g.
            "sevenn.calculator:SevenNetCalculator" or "chgnet.model.dynamics:CHGNetCalculator.from_file".
        arguments: keyword arguments of the factory (e.g. {"device": "cpu"}).
        species: element symbols the model covers (structures with others are refused).
        weights_path: the checked weights file, or None for a calculator without one.
        weights_argument: the factory's keyword that takes `weights_path` (None: the file is only
            checked, not passed, e.g. a calculator that loads its own packaged parameters).
        weights_sha256: sha256 of `weights_path` as checked, recorded in provenance.
        package: the distribution providing the calculator (its version goes in `version()`).
        cutoff_a: interaction range (Å) over which the calculator sees periodic images whatever
            the pbc (CHGNet builds a periodic pymatgen Structure): a non-periodic direction then
            needs more vacuum than this. None for a calculator that honours pbc.
        memory_mb_per_atom: measured growth of the calculator's peak memory with the atom count
            (MB per atom; CHGNet's bond graph); a structure whose predicted need exceeds the memory
            available is refused before it is evaluated. None: no check.
    """

    name: str
    factory: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    species: tuple[str, ...] = ()
    weights_path: Path | None = None
    weights_argument: str | None = None
    weights_sha256: str | None = None
    package: str | None = None
    cutoff_a: float | None = None
    memory_mb_per_atom: float | None = None

    @classmethod
    def from_model(cls, model: ModelInfo) -> "AseCalculatorSpec":
        """The spec of an ASE-calculator `model` (ModelError for a NEP model: it runs on nep_cpu)."""
        if model.kind != ASE_KIND:
            raise ModelError(f"{model.path}: model {model.name} is a NEP potential, not an ASE-calculator "
                             "model (it runs on the nep_cpu engine)")
        source = model.source
        cutoff, memory = source.get("cutoff_a"), source.get("memory_mb_per_atom")
        return cls(name=model.name, factory=str(source["factory"]), arguments=dict(source.get("arguments", {})),
                   species=tuple(model.species), weights_path=Path(model.path),
                   weights_argument=source.get("weights_argument"), weights_sha256=model.sha256,
                   package=source.get("package"), cutoff_a=float(cutoff) if cutoff is not None else None,
                   memory_mb_per_atom=float(memory) if memory is not None else None)


#: Share of the available memory a calculator may be predicted to use before a structure is refused.
MEMORY_HEADROOM = 0.8


def available_memory_mb(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """MemAvailable of /proc/meminfo in MB; None where it cannot be read (no check is made then)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_problem(n_atoms: int, mb_per_atom: float, available_mb: float | None, name: str) -> str | None:
    """Why `n_atoms` atoms are refused: their predicted peak (n × `mb_per_atom`, MB) exceeds
    MEMORY_HEADROOM of `available_mb`; None where it fits or the available memory is unknown."""
    need = n_atoms * mb_per_atom
    if available_mb is None or need <= MEMORY_HEADROOM * available_mb:
        return None
    return (f"{name} would need ~{need / 1024:.1f} GB for {n_atoms} atoms ({mb_per_atom:g} MB per atom, "
            f"measured; docs/comparators.md) and {available_mb / 1024:.1f} GB is available here: refused "
            "before it runs the machine out of memory")


def _torch() -> Any:
    """The torch module where a calculator has imported it, else None (never imports it)."""
    return sys.modules.get("torch")


def runs_on_torch(calc: Any) -> bool:
    """Whether ASE calculator `calc` holds a torch module (CHGNet's and SevenNet's `model`): its
    evaluations then run on torch's intra-op threads."""
    torch = _torch()
    if torch is None:
        return False
    return any(isinstance(value, torch.nn.Module) for value in vars(calc).values())


class AseCalcEngine(Engine):
    """An ASE calculator (from an "ase" registry model) as an engine: single points and ASE MD.

    Args:
        model: an ASE-calculator ModelInfo, a registry name, or an `AseCalculatorSpec`.
        threads: torch intra-op threads for every evaluation (None: torch's default, one per core);
            ignored by calculators that do not use torch.
        thermostat: NVT thermostat, "bussi" (CSVR, the protocol's default) or "langevin".

    Raises:
        ModelError: the model is a NEP, or its factory cannot be imported or fails to build.
        ModelUnavailable: its package is not installed here (from `resolve_model`).
    """

    name = "ase_calc"
    backend = "ase"

    def __init__(self, model: ModelInfo | AseCalculatorSpec | str, threads: int | None = None,
                 thermostat: Thermostat = "bussi") -> None:
        if thermostat not in ("bussi", "langevin"):
            raise ValueError(f"thermostat must be 'bussi' or 'langevin', got {thermostat!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if isinstance(model, str):
            model = resolve_model(model)
        self.spec = model if isinstance(model, AseCalculatorSpec) else AseCalculatorSpec.from_model(model)
        self.threads = threads
        self.thermostat = thermostat
        self.load_s: float | None = None
        self.load_warnings: list[str] = []
        self._calc: Calculator | None = None

    # ---- the calculator
    def calculator(self) -> Calculator:
        """The engine's ASE calculator, built on first use and reused (its results are cached per
        structure by ASE's state check, so one instance serves any number of structures in turn).

        The factory's stdout (CHGNet prints its parameter count) is swallowed; its warnings are kept
        in `load_warnings` and recorded by `describe()`.
        """
        if self._calc is None:
            where = f"model {self.spec.name}"
            factory = import_object(self.spec.factory, where)
            kwargs = dict(self.spec.arguments)
            if self.spec.weights_argument and self.spec.weights_path is not None:
                kwargs[self.spec.weights_argument] = str(self.spec.weights_path)
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("always")
                try:
                    calc = factory(**kwargs)
                except Exception as exc:  # the factory's own error, in one line
                    text = " ".join(str(exc).split())[:200]
                    raise ModelError(f"{self.spec.weights_path or where}: calculator {self.spec.factory} of "
                                     f"model {self.spec.name} failed to build ({type(exc).__name__}: {text})") from None
            self.load_s = time.perf_counter() - start
            self.load_warnings = sorted({" ".join(str(w.message).split())[:160] for w in caught})
            if not isinstance(calc, Calculator) and not hasattr(calc, "get_potential_energy"):
                raise ModelError(f"{where}: {self.spec.factory} returned {type(calc).__name__}, not an ASE calculator")
            self._calc = calc
        self._apply_threads()
        return self._calc

    def _apply_threads(self) -> None:
        torch = _torch()
        if (self.threads is not None and self._calc is not None and runs_on_torch(self._calc)
                and torch.get_num_threads() != self.threads):
            torch.set_num_threads(self.threads)

    def effective_threads(self) -> int | None:
        """Threads an evaluation uses: torch's intra-op count where the calculator runs on torch
        (after `threads` is applied), else None (a numpy calculator: the calling thread, plus
        whatever its BLAS does). Builds the calculator first (that is what imports torch)."""
        calc = self.calculator()  # applies `threads`
        return int(_torch().get_num_threads()) if runs_on_torch(calc) else None

    def check_structure(self, atoms: Atoms, source: str) -> None:
        """InputError (naming `source`) for a structure this engine cannot evaluate as given:
        species the model lacks, non-finite coordinates, or, for a calculator that treats every
        cell vector as periodic (`cutoff_a` set), no 3D cell or a non-periodic direction whose
        vacuum does not keep the periodic images beyond `cutoff_a`, and a structure too large for
        the memory available (`memory_problem`)."""
        if self.spec.species:
            check_species(self.spec.species, atoms, source)
        if not np.all(np.isfinite(atoms.positions)):
            raise InputError(source, "non-finite (NaN/inf) coordinates")
        if self.spec.memory_mb_per_atom is not None:
            problem = memory_problem(len(atoms), self.spec.memory_mb_per_atom, available_memory_mb(), self.spec.name)
            if problem:
                raise InputError(source, problem)
        if self.spec.cutoff_a is not None:
            if atoms.cell.rank < 3 or abs(atoms.cell.volume) < 1e-6:
                raise InputError(source, f"{self.spec.name} needs a 3D cell (the structure has none or a flat one)")
            problem = open_boundary_problem(atoms, self.spec.cutoff_a, code=self.spec.name)
            if problem:
                raise InputError(source, problem)

    # ---- Engine interface
    def single_point(self, atoms: Atoms, source: str = "<structure>") -> Labels:
        """Energy (eV), forces (eV/Å) and, where the calculator gives one for a periodic 3D cell,
        Voigt stress (eV/Å³, ASE sign) of `atoms`.

        Raises:
            InputError: `check_structure` refuses the structure.
            EngineError: the calculator returned a non-finite energy, force or stress.
        """
        self.check_structure(atoms, source)
        calc = self.calculator()
        properties = ["energy", "forces"]
        periodic = bool(np.all(atoms.pbc)) and atoms.cell.rank == 3
        if periodic and "stress" in getattr(calc, "implemented_properties", ()):
            properties.append("stress")
        work = atoms.copy()
        start = time.perf_counter()
        calc.calculate(work, properties, all_changes)
        wall = time.perf_counter() - start
        energy = float(np.asarray(calc.results["energy"]).reshape(()))
        forces = np.array(calc.results["forces"], dtype=float).reshape(len(atoms), 3)
        stress = np.array(calc.results["stress"], dtype=float).reshape(-1) if "stress" in properties else None
        if stress is not None and stress.shape == (9,):
            from ase.stress import full_3x3_to_voigt_6_stress

            stress = full_3x3_to_voigt_6_stress(stress.reshape(3, 3))
        if not (np.isfinite(energy) and np.all(np.isfinite(forces))
                and (stress is None or np.all(np.isfinite(stress)))):
            raise EngineError(f"{source}: {self.spec.name} returned a non-finite energy, force or stress")
        return Labels(energy_ev=energy, forces_ev_per_a=forces, stress_ev_per_a3=stress, wall_s=wall)

    def md(self, atoms: Atoms, protocol: MDProtocol, source: str = "<structure>") -> MDResult:
        """Run `protocol` from `atoms` (not modified) by the shared ASE driver (engines.ase_md:
        same velocities, FixCom and 3N − 3 degrees of freedom, sampling and timing as nep_cpu);
        EngineError on a blown-up frame, InputError for a structure `check_structure` refuses."""
        self.check_structure(atoms, source)
        calc = self.calculator()
        return run_ase_md(atoms, calc, protocol, self.name, self.thermostat, source,
                          extra={"calculator": self.spec.factory, "model": self.spec.name,
                                 "threads": self.effective_threads(), "thermostat": self.thermostat})

    def version(self) -> str:
        """Package, version and factory, plus torch's version and thread count where it runs on
        torch (so every record's provenance states the threads), e.g.
        "chgnet 0.4.2 (chgnet.model.dynamics:CHGNetCalculator.from_file; torch 2.13.0+cpu, 2 threads)"."""
        package = self.spec.package or self.spec.factory.split(":")[0].split(".")[0]
        version = installed_version(package) or "unknown"
        threads = self.effective_threads()
        extra = f"; torch {_torch().__version__}, {threads} threads" if threads is not None else ""
        return f"{package} {version} ({self.spec.factory}{extra})"

    def describe(self) -> dict[str, Any]:
        """Engine, version, factory and arguments, threads, model and weights, for provenance."""
        return {"engine": self.name, "version": self.version(), "factory": self.spec.factory,
                "arguments": dict(self.spec.arguments), "thermostat": self.thermostat,
                "threads": self.effective_threads(), "threads_requested": self.threads,
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_s": self.load_s,
                "load_warnings": list(self.load_warnings),
                "model": {"name": self.spec.name, "sha256": self.spec.weights_sha256,
                          "path": str(self.spec.weights_path) if self.spec.weights_path else None}}


def cpu_engine(model: ModelInfo, threads: int | None = None) -> Engine:
    """The CPU engine that runs `model`: AseCalcEngine for an ASE-calculator model, else NepCpuEngine
    (looked up on its module at call time, so a test's stand-in takes its place)."""
    if model.kind == ASE_KIND:
        return AseCalcEngine(model, threads=threads)
    from . import nep_cpu

    return nep_cpu.NepCpuEngine(model.path, threads=threads) if threads is not None else \
        nep_cpu.NepCpuEngine(model.path)
