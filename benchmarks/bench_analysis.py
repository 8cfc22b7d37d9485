"""Speed of the analysis metrics on large inputs: partial RDFs of one frame, MSD and D(Li).

Inputs are synthetic and seeded, so the numbers track the metric code alone: the RDF frame is a
jittered Li/Si/C lattice; the MSD trajectory a Gaussian random walk (0.05 Å per axis per frame,
frames 10 fs apart).
"""

from __future__ import annotations

from .common import lattice_cell


class RDFLargeFrame:
    """Partial g(r) of every species pair in one frame, r_max 6 Å, 200 bins (s per frame)."""

    params = [4096, 32768]
    param_names = ["n_atoms"]

    def setup(self, n_atoms: int) -> None:
        atoms = lattice_cell(n_atoms)
        self.args = (atoms.positions, atoms.cell.array, atoms.get_chemical_symbols())

    def time_rdf_frame(self, n_atoms: int) -> None:
        from nepbench.metrics.rdf import rdf_frame

        rdf_frame(*self.args, r_max_a=6.0, n_bins=200)


class MSDTrajectory:
    """Multiple-origin MSD and the diffusivity fit with block errors on a 2000-frame walk."""

    params = [500, 2000]
    param_names = ["n_atoms"]
    n_frames = 2000

    def setup(self, n_atoms: int) -> None:
        import numpy as np

        rng = np.random.default_rng(0)
        self.positions_a = np.cumsum(rng.normal(0.0, 0.05, (self.n_frames, n_atoms, 3)), axis=0)
        self.times_ps = np.arange(self.n_frames) * 0.01

    def time_msd_multiple_origins(self, n_atoms: int) -> None:
        from nepbench.metrics.diffusion import msd_multiple_origins

        msd_multiple_origins(self.positions_a, self.times_ps)

    def time_diffusivity(self, n_atoms: int) -> None:
        from nepbench.metrics.diffusion import diffusivity

        diffusivity(self.positions_a, self.times_ps, n_blocks=5)
