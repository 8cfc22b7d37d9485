"""GPUMD (GPU NEP molecular dynamics), pinned to release v5.6.

`GpumdEngine` turns one `MDProtocol` into a GPUMD run directory (`model.xyz`, `run.in`, `nep.txt`),
runs the `gpumd` executable there (it reads `run.in` from its working directory), and parses what it
writes. Everything that touches text is a pure function so it can be tested without a GPU.

Package layout (one job per module): `inputs` (model.xyz and run.in writers, pinned version,
temperature and RDF limits), `outputs` (parsers of thermo.out, msd.out, rdf.out, dumps and stdout),
`engine` (`GpumdEngine`: binary and GPU discovery, the run directory, the subprocess). Everything
is importable from `nepbench.engines.gpumd`.

Formats were read from GPUMD v5.6's sources (commit 5fad844f…, see docs/gpumd.md for the files):

* Positions in `dump_exyz` (and the `pos` column of `dump_xyz`) are WRAPPED into the box: GPUMD
  applies periodic boundaries to the positions in every force call. Trajectories need unwrapped
  positions, so MD dumps with `dump_xyz -1 0 <interval> dump.xyz unwrapped_position` (exact
  unwrapped coordinates, accumulated from the start of the production run). `parse_dump_exyz` uses
  the `unwrapped_position` column when present and otherwise unwraps by the minimum image between
  consecutive frames (exact only while no atom moves more than half a cell between frames).
* `Time=` in dumped frames is GPUMD's global time in fs, counted from the first `run` (warm-up
  included); we shift it so trajectories start their clock at the end of the warm-up.
* `velocity T seed S` seeds the initial velocities (uniform random, zero momentum, rescaled to T:
  not Maxwell-Boltzmann). The `nvt_bdp` thermostat's noise is seeded from the wall clock unless
  GPUMD was compiled with -DDEBUG, so NVT trajectories are not bit-reproducible run to run.
* `ensemble nvt_bdp T1 T2 T_coup`: T_coup is the coupling time in units of the time step (>= 1).
* GPUMD counts 3N degrees of freedom where the protocol (and CP2K) count the 3N − 3 that carry
  kinetic energy at zero total momentum: `velocity` rescales to 2 E_kin / (3N k_B) (Velocity::scale),
  `nvt_bdp` targets E_kin = 3N k_B T / 2 (Ensemble_BDP, ndeg = 3N) and thermo.out's T divides by
  3N (Ensemble::find_thermo, DIM * N). Left alone, a 32-atom cell would run 3.2 % hotter than the
  same protocol in CP2K. So GPUMD is given T·(N − 1)/N and its T is reported × N/(N − 1)
  (`gpumd_temperature_k`, `protocol_temperature_k`); `nvt_lan` thermalises every atom, the centre
  of mass too, so its target is given as is.
"""

from __future__ import annotations

from ...cell import cell_thicknesses_a
from .inputs import (  # noqa: F401
    PINNED_VERSION,
    PINNED_COMMIT,
    Thermostat,
    DumpKeyword,
    RDF_MIN_BINS,
    RDF_MAX_BINS,
    RDF_THICKNESS_FACTOR,
    PERIODIC_VACUUM_A,
    vacuum_gaps_a,
    gpumd_pbc,
    write_model_xyz,
    coupling_steps,
    msd_correlation_steps,
    rdf_cutoff_a,
    gpumd_temperature_k,
    write_run_in,
    write_single_point_run_in,
)
from .outputs import (  # noqa: F401
    THERMO_COLUMNS,
    protocol_temperature_k,
    parse_thermo,
    parse_msd,
    parse_rdf,
    parse_exyz_frames,
    unwrap_minimum_image,
    parse_dump_exyz,
    parse_speed,
    parse_run_wall_s,
    parse_version,
    stress_from_virial,
)
from .engine import GpumdEngine  # noqa: F401

__all__ = [
    "GpumdEngine", "PERIODIC_VACUUM_A", "PINNED_COMMIT", "PINNED_VERSION", "THERMO_COLUMNS", "cell_thicknesses_a",
    "gpumd_pbc", "vacuum_gaps_a",
    "coupling_steps", "msd_correlation_steps", "parse_dump_exyz", "parse_exyz_frames",
    "parse_msd", "parse_rdf", "parse_run_wall_s", "parse_speed", "parse_thermo", "parse_version",
    "gpumd_temperature_k", "protocol_temperature_k", "rdf_cutoff_a", "stress_from_virial",
    "unwrap_minimum_image", "write_model_xyz", "write_run_in",
    "write_single_point_run_in",
]
