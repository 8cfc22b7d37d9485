"""CPU NEP engine: NEP_CPU through calorine's CPUNEP (reference) or nep-adapters (OpenMP).

Both bindings wrap the same NEP_CPU code. nep-adapters is faster (OpenMP, no Python lists), so
`backend="auto"` picks it, but only where it is installed *and* reproduces CPUNEP's energy and
forces to 1e-8 (eV, eV/Å) on a check cell of the model's species; the verdict is computed once per
model file (by sha256) and kept in memory. Threads: nep-adapters uses OMP_NUM_THREADS (or all
cores) unless the engine's `threads` sets a count (through the libgomp its wheel bundles);
calorine's default build is single-threaded. On a busy machine or a small cell, 1 thread can be
faster than 2 (spinning OpenMP workers compete with other jobs): set `threads` for timings.

MD runs through ASE (VelocityVerlet for NVE, Bussi CSVR or Langevin for NVT; the driver in
engines/ase_md.py, shared with the ASE-calculator comparators) with a thin calculator, so the Python
work per step is the integrator plus one array hand-over; frames are copied into preallocated arrays
every `sample_interval` steps, positions unwrapped.
"""

from __future__ import annotations

import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ..errors import EngineError, InputError, ModelError
from ..models import ModelInfo, check_species, read_nep_cutoff_a, read_nep_header, resolve_model
from .ase_md import Thermostat, integrator, run_ase_md
from .base import Engine, Labels, MDProtocol, MDResult

Backend = Literal["auto", "calorine", "nep-adapters"]

#: Largest |ΔE| (eV) and max |ΔF| (eV/Å) between nep-adapters and CPUNEP that "auto" accepts.
PARITY_TOL = 1e-8
_PARITY_VERDICTS: dict[str, tuple[bool, str]] = {}


def adapters_installed() -> bool:
    """True if the nep-adapters package (module `nep_adapters`) can be imported."""
    try:
        import nep_adapters  # noqa: F401
    except ImportError:
        return False
    return True


def _adapters_omp() -> tuple[Any, int] | None:
    """(omp_set_num_threads, default thread count) of the OpenMP runtime nep-adapters runs on,
    or None where it cannot be found.

    Its wheel bundles libgomp under a hashed soname (auditwheel). Another wheel may bundle the
    same soname (scikit-learn does) and load it first; the dynamic linker then binds nep-adapters
    to that copy. Opening by soname, not by path, returns whichever copy is bound.
    """
    global _OMP
    if _OMP is None:
        import ctypes
        import glob

        import nep_adapters  # loads nep_cpu and with it its libgomp

        root = Path(nep_adapters.__file__).resolve().parent
        candidates = sorted(glob.glob(str(root.parent / "nep_adapters.libs" / "libgomp*.so*")))
        try:
            lib = ctypes.CDLL(Path(candidates[0]).name if candidates else "libgomp.so.1")
            _OMP = (lib.omp_set_num_threads, int(lib.omp_get_max_threads()))
        except (OSError, AttributeError):
            _OMP = False
    return _OMP or None


_OMP: Any = None


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- calculators

class _ExactStateCheck:
    """Replaces ASE's `check_state` (np.isclose on every per-atom array, ~0.1 ms a call) with exact
    comparisons of what NEP depends on: atomic numbers, positions, cell and pbc."""

    atoms: Atoms | None

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        old = self.atoms
        if old is None:
            return list(all_changes)
        changes = []
        if len(old) != len(atoms) or not np.array_equal(old.numbers, atoms.numbers):
            changes += ["numbers", "positions"]
        elif not np.array_equal(old.positions, atoms.positions):
            changes.append("positions")
        if not np.array_equal(old.cell.array, atoms.cell.array):
            changes.append("cell")
        if not np.array_equal(old.pbc, atoms.pbc):
            changes.append("pbc")
        return changes


def _cpunep_class() -> type:
    from calorine.calculators import CPUNEP

    class FastStateCPUNEP(_ExactStateCheck, CPUNEP):
        """calorine's CPUNEP with the exact state check (results are CPUNEP's own)."""

    return FastStateCPUNEP


class NepAdaptersCalculator(_ExactStateCheck, Calculator):
    """ASE calculator on nep-adapters' NEP_CPU model: energy (eV), forces (eV/Å), stress (eV/Å³).

    The type indices are cached per atom list, so a step hands over only positions and cell.
    `threads` sets the OpenMP thread count before each evaluation (None: the OpenMP default,
    i.e. OMP_NUM_THREADS or all cores).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model_path: str | os.PathLike[str], threads: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from nep_adapters import load_model

        omp = _adapters_omp()
        if threads and omp is None:
            raise EngineError("cannot set nep-adapters' OpenMP threads (its libgomp was not found); "
                              "use OMP_NUM_THREADS instead")
        # NEP_CPU in nep-adapters reads the OpenMP thread count when the model is loaded, and
        # the count is per calling thread and sticky: set it before loading and before each call
        self._set_threads = omp[0] if omp else None
        self.threads = threads or (omp[1] if omp else None)
        self.model_path = str(model_path)
        if self._set_threads is not None:
            self._set_threads(self.threads)
        self._model = load_model("cpu", self.model_path)
        self.elements = read_nep_header(self.model_path)[1]
        self._type_of = {s: i for i, s in enumerate(self.elements)}
        self._numbers: np.ndarray | None = None
        self._types: np.ndarray | None = None

    def _types_for(self, atoms: Atoms) -> np.ndarray:
        numbers = atoms.numbers
        if self._numbers is None or not np.array_equal(numbers, self._numbers):
            try:
                self._types = np.asarray([self._type_of[s] for s in atoms.get_chemical_symbols()],
                                         dtype=np.int32)
            except KeyError as exc:
                raise ModelError(f"{self.model_path}: species {exc.args[0]} not in the model "
                                 f"(model has {', '.join(self.elements)})") from None
            self._numbers = numbers.copy()
        assert self._types is not None
        return self._types

    def calculate(self, atoms: Atoms | None = None, properties: list[str] | None = None,
                  system_changes: list[str] = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if self._set_threads is not None:
            self._set_threads(self.threads)
        box = np.ascontiguousarray(atoms.cell.array.T.reshape(9))
        potentials, forces, virials = self._model.calculate(
            self._types_for(atoms), box, np.ascontiguousarray(atoms.positions, dtype=np.float64),
            np.asarray([len(atoms)], dtype=np.int32), (1, 1, 1))
        energy = float(np.sum(potentials))
        virial = np.sum(virials, axis=0).reshape(3, 3)
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": np.asarray(forces, dtype=np.float64).reshape(-1, 3),
            "stress": full_3x3_to_voigt_6_stress(-virial / atoms.get_volume()),
        }


def make_calculator(model_path: str | os.PathLike[str], backend: Literal["calorine", "nep-adapters"],
                    threads: int | None = None) -> Calculator:
    """A fresh ASE calculator for `backend` ("calorine" → CPUNEP, single-threaded build;
    "nep-adapters" with `threads` OpenMP threads, None = OpenMP default)."""
    if backend == "calorine":
        return _cpunep_class()(str(model_path))
    if backend == "nep-adapters":
        return NepAdaptersCalculator(model_path, threads=threads)
    raise ValueError(f"unknown backend {backend!r}")


# --------------------------------------------------------------------------- backend choice

def check_cell(species: tuple[str, ...], n_side: int = 5, spacing_a: float = 2.6, seed: int = 0) -> Atoms:
    """A seeded n³ jittered cubic lattice (spacing in Å) holding every species: the parity cell."""
    rng = np.random.default_rng(seed)
    grid = np.indices((n_side,) * 3).reshape(3, -1).T * spacing_a
    positions = grid + rng.normal(0.0, 0.12, grid.shape)
    symbols = [species[i % len(species)] for i in range(len(grid))]
    rng.shuffle(symbols)
    return Atoms(symbols, positions=positions, cell=[n_side * spacing_a] * 3, pbc=True)


def backend_parity(model: ModelInfo) -> tuple[bool, str]:
    """Whether nep-adapters reproduces CPUNEP on `check_cell(model.species)` within PARITY_TOL.

    Returns (ok, reason); the verdict is cached in memory per model sha256.
    """
    if model.sha256 in _PARITY_VERDICTS:
        return _PARITY_VERDICTS[model.sha256]
    if not adapters_installed():
        verdict = (False, "nep-adapters not installed")
    else:
        atoms = check_cell(model.species)
        try:
            results = []
            for backend in ("calorine", "nep-adapters"):
                calc = make_calculator(model.path, backend)
                calc.calculate(atoms, ["energy", "forces"], all_changes)
                results.append((calc.results["energy"], calc.results["forces"]))
            d_e = abs(results[0][0] - results[1][0])
            d_f = float(np.max(np.abs(results[0][1] - results[1][1])))
        except Exception as exc:  # a backend that cannot run this model is simply not used
            text = " ".join(str(exc).split())[:200]
            verdict = (False, f"nep-adapters failed on the check cell ({type(exc).__name__}: {text})")
        else:
            ok = d_e <= PARITY_TOL and d_f <= PARITY_TOL
            verdict = (ok, f"nep-adapters vs CPUNEP on {len(atoms)} atoms: |dE| {d_e:.1e} eV, "
                           f"max|dF| {d_f:.1e} eV/Å ({'within' if ok else 'beyond'} {PARITY_TOL:g})")
    _PARITY_VERDICTS[model.sha256] = verdict
    return verdict


# --------------------------------------------------------------------------- open boundaries

def open_boundary_problem(atoms: Atoms, cutoff_a: float, code: str = "NEP_CPU") -> str | None:
    """What is wrong with evaluating `atoms` as periodic along its non-periodic cell vectors, or None.

    NEP_CPU (`code`, named in the message: CHGNet's calculator does the same) ignores pbc and treats
    every cell vector as periodic. Along a vector with pbc False
    that gives the same energy and forces as an isolated structure only when the structure's
    images there stay beyond the model's cutoff: the vacuum across that boundary (the cell's width
    along the vector's normal less the structure's extent, in Å) must exceed `cutoff_a` (Å).
    """
    open_axes = [axis for axis in range(3) if not atoms.pbc[axis]]
    if not open_axes or len(atoms) == 0:
        return None
    cell = atoms.cell.array
    fractional = np.linalg.solve(cell.T, atoms.positions.T).T  # not wrapped: the structure as it sits
    for axis in open_axes:
        other = [a for a in range(3) if a != axis]
        width_a = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[other[0]], cell[other[1]]))
        gap_a = width_a * (1.0 - float(np.ptp(fractional[:, axis])))
        if gap_a <= cutoff_a:
            return (f"pbc is False along cell vector {axis + 1}, but {code} treats the cell as periodic: "
                    f"the vacuum across that boundary is {gap_a:.2f} Å, not beyond the model's {cutoff_a:g} Å "
                    "cutoff, so the structure would interact with its own image; add vacuum")
    return None


# --------------------------------------------------------------------------- engine

class NepCpuEngine(Engine):
    """NEP on CPU: single points and ASE-driven MD under an `MDProtocol`.

    Args:
        model_path: a nep.txt path or a registry name (resolved with `resolve_model`).
        backend: "calorine" (CPUNEP), "nep-adapters", or "auto" (nep-adapters if installed and
            matching CPUNEP to 1e-8 eV and eV/Å, else calorine).
        thermostat: NVT thermostat, "bussi" (CSVR, the protocol's default) or "langevin"
            (friction 1/thermostat_coupling_fs).
        threads: OpenMP threads for nep-adapters (None: OMP_NUM_THREADS or all cores). calorine's
            default build is single-threaded and ignores it.
    """

    name = "nep_cpu"

    def __init__(self, model_path: str | os.PathLike[str], backend: Backend = "auto",
                 thermostat: Thermostat = "bussi", threads: int | None = None) -> None:
        if backend not in ("auto", "calorine", "nep-adapters"):
            raise ValueError(f"backend must be 'auto', 'calorine' or 'nep-adapters', got {backend!r}")
        if thermostat not in ("bussi", "langevin"):
            raise ValueError(f"thermostat must be 'bussi' or 'langevin', got {thermostat!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.model: ModelInfo = resolve_model(str(model_path))
        self.cutoff_a = read_nep_cutoff_a(self.model.path)  # Å: the open-boundary check's distance
        self.thermostat = thermostat
        self.threads = threads
        self._single_point_calc: Calculator | None = None
        self.requested_backend = backend
        if backend == "auto":
            ok, reason = backend_parity(self.model)
            self.backend = "nep-adapters" if ok else "calorine"
            self.backend_reason = reason
        else:
            if backend == "nep-adapters" and not adapters_installed():
                raise EngineError("backend nep-adapters requested but the package is not installed "
                                  "(pip install nep-adapters)")
            self.backend = backend
            self.backend_reason = "requested"

    # ---- helpers
    def calculator(self) -> Calculator:
        """A fresh ASE calculator of the chosen backend."""
        return make_calculator(self.model.path, self.backend, self.threads)  # type: ignore[arg-type]

    def check_structure(self, atoms: Atoms, source: str) -> None:
        """InputError (naming `source`) for a structure this engine cannot evaluate as given:
        species the model lacks, non-finite coordinates, no 3D cell, or a non-periodic direction
        whose vacuum does not keep the periodic images beyond the model's cutoff
        (`open_boundary_problem`: NEP_CPU treats every cell vector as periodic)."""
        check_species(self.model, atoms, source)
        if not np.all(np.isfinite(atoms.positions)):
            raise InputError(source, "non-finite (NaN/inf) coordinates")
        if atoms.cell.rank < 3 or abs(atoms.cell.volume) < 1e-6:
            raise InputError(source, "NEP_CPU needs a 3D cell (the structure has none or a flat one)")
        problem = open_boundary_problem(atoms, self.cutoff_a)
        if problem:
            raise InputError(source, problem)

    # ---- Engine interface
    def single_point(self, atoms: Atoms, source: str = "<structure>") -> Labels:
        """Energy (eV), forces (eV/Å) and Voigt stress (eV/Å³, ASE sign) of `atoms`."""
        self.check_structure(atoms, source)
        if self._single_point_calc is None:  # reused: building CPUNEP parses the model file
            self._single_point_calc = self.calculator()
        calc = self._single_point_calc
        work = atoms.copy()
        start = time.perf_counter()
        calc.calculate(work, ["energy", "forces", "stress"], all_changes)
        wall = time.perf_counter() - start
        result = calc.results
        return Labels(energy_ev=float(result["energy"]), forces_ev_per_a=np.array(result["forces"]),
                      stress_ev_per_a3=np.array(result["stress"]), wall_s=wall)

    def md(self, atoms: Atoms, protocol: MDProtocol, source: str = "<structure>") -> MDResult:
        """Run `protocol` from `atoms` (not modified); warm-up excluded from timing and frames.

        The structure is checked (`check_structure`), then run by the shared ASE driver
        (`engines.ase_md.run_ase_md`: velocities, FixCom and 3N − 3 degrees of freedom, frames at
        steps 0, k, 2k, … ≤ steps after the warm-up, k = sample_interval).

        Raises:
            EngineError: a recorded frame with a non-finite energy or position, or a temperature
                above `unstable_temperature_limit_k` (engines.base): a blown-up
                run (time step too large, atoms the model lets collapse) is no trajectory to score,
                and NEP_CPU quietly returns a finite energy and zero force for a NaN atom.
        """
        self.check_structure(atoms, source)
        return run_ase_md(atoms, self.calculator(), protocol, self.name, self.thermostat, source,
                          extra={"backend": self.backend, "thermostat": self.thermostat})

    def _integrator(self, atoms: Atoms, protocol: MDProtocol, rng: np.random.Generator):
        return integrator(atoms, protocol, rng, self.thermostat)

    def effective_threads(self) -> int | None:
        """Threads a force evaluation uses: 1 for calorine's build, else the set or default count."""
        if self.backend == "calorine":
            return 1
        omp = _adapters_omp()
        return self.threads or (omp[1] if omp else None)

    def version(self) -> str:
        """Backend and package version, e.g. "nep-adapters 1.0.3 (NEP_CPU, OpenMP)"."""
        if self.backend == "nep-adapters":
            return f"nep-adapters {_package_version('nep-adapters')} (NEP_CPU, OpenMP)"
        return f"calorine {_package_version('calorine')} (CPUNEP, NEP_CPU)"

    def describe(self) -> dict[str, Any]:
        """Engine, backend, why it was chosen, thermostat, threads and model, for provenance."""
        return {"engine": self.name, "version": self.version(), "backend": self.backend,
                "backend_reason": self.backend_reason, "thermostat": self.thermostat,
                "threads": self.effective_threads(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "model": {"name": self.model.name, "sha256": self.model.sha256,
                          "path": str(self.model.path)}}
