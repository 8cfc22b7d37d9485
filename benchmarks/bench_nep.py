"""Speed of NEP: single points and MD steps on the CPU backends, MD on GPUMD where there is a GPU.

Cells: jittered cubic Li/Si/C lattices (2.6 Å spacing, 0.057 atoms/Å³) of 64, 512 and 4096 atoms.
Times are seconds per call (asv's unit); atom·step/s = n_atoms / time.
"""

from __future__ import annotations

from .common import BACKENDS, default_model_path, lattice_cell, nep_engine

SIZES = [64, 512, 4096]


class NepSinglePoint:
    """Energy + forces of one cell (s per evaluation), per CPU backend and size."""

    params = (BACKENDS, SIZES)
    param_names = ["backend", "n_atoms"]

    def setup(self, backend: str, n_atoms: int) -> None:
        from ase.calculators.calculator import all_changes

        self.all_changes = all_changes
        self.atoms = lattice_cell(n_atoms)
        self.calc = nep_engine(backend).calculator()
        self.calc.calculate(self.atoms, ["energy", "forces"], all_changes)  # warm-up

    def time_single_point(self, backend: str, n_atoms: int) -> None:
        self.calc.calculate(self.atoms, ["energy", "forces"], self.all_changes)


class NepMDStep:
    """One NVE velocity-Verlet step through ASE (s per step: force call + integrator), per backend
    and size; velocities Maxwell–Boltzmann at 600 K (seed 1)."""

    params = (BACKENDS, SIZES)
    param_names = ["backend", "n_atoms"]

    def setup(self, backend: str, n_atoms: int) -> None:
        import numpy as np
        from ase import units
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
        from ase.md.verlet import VelocityVerlet

        atoms = lattice_cell(n_atoms)
        atoms.calc = nep_engine(backend).calculator()
        MaxwellBoltzmannDistribution(atoms, temperature_K=600.0, rng=np.random.default_rng(1))
        Stationary(atoms)
        self.dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
        self.dyn.step()  # warm-up: the first step evaluates forces twice

    def time_md_step(self, backend: str, n_atoms: int) -> None:
        self.dyn.step()


class GpumdMD:
    """GPUMD NVT throughput, tracked as ns per atom·step from GPUMD's own timer for the production
    run (process start, model read and warm-up excluded; thermo only, since GPUMD times its dumps
    inside the run loop); skipped without a GPU or the gpumd binary. A `track_` benchmark is one
    sample per commit (asv's number/repeat apply to `time_` ones)."""

    params = [4096, 32768]
    param_names = ["n_atoms"]
    timeout = 300

    def setup(self, n_atoms: int) -> None:
        from nepbench.engines.base import MDProtocol
        from nepbench.engines.gpumd import GpumdEngine

        self.engine = GpumdEngine(default_model_path(), timeout_s=240, record_frames=False)
        ok, reason = self.engine.available()
        if not ok:
            raise NotImplementedError(f"GPUMD unavailable: {reason}")
        self.atoms = lattice_cell(n_atoms)
        steps = max(1000, 20_000_000 // n_atoms)  # ~1 s of MD at 2e7 atom·step/s
        self.protocol = MDProtocol("nvt", 600.0, 1.0, steps=steps, sample_interval=steps, seed=1,
                                   warmup_steps=100)

    def track_ns_per_atom_step(self, n_atoms: int) -> float:
        """GPUMD's time per atom·step (ns), the inverse of its atom·step/s: asv reads a larger number
        as worse for every benchmark, so a speed would show a slow-down as an improvement."""
        return 1e9 / self.engine.md(self.atoms, self.protocol).timing.atom_steps_per_s

    track_ns_per_atom_step.unit = "ns/(atom*step)"
