"""What the AIMD sizing study looks at: the candidate runs (`SizingCase`) and what each must reach
(`SizingTargets`, its bounds taken from a suite file).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SizingCase:
    """One candidate AIMD run, studied at several cell sizes with NEP MD.

    Attributes:
        id: the run's name, as it would appear in reference_data/aimd.toml ("a-Li3Si-1200K").
        builder: a `nepbench.systems` builder name; `params` its composition parameters.
        size_param: the builder parameter that sets the cell size ("n_atoms", "n_c").
        sizes: values of `size_param` studied, smallest first.
        temperature_k: the run's thermostat temperature (K).
        timestep_fs: MD time step (fs), the AIMD's own.
        sample_interval: steps between recorded frames, the AIMD's own (frame spacing in fs is
            timestep_fs × sample_interval).
        thermostat_coupling_fs: CSVR time constant of the production (fs), the AIMD's own.
        melt_k, melt_ps: NVT melt of the packing before the quench (K, ps).
        quench_ps, quench_stages: linear quench from melt_k to temperature_k in equal NVT stages.
        equilibration_ps: total NEP equilibration (melt + quench + NVT at temperature_k), ps.
        npt_ps: NEP NPT (isotropic MTK, P = 0) at temperature_k on the largest cell, after the same
            melt–quench; the mean volume of its second half sets every size's density.
        production_ps: NEP NVT production analysed (ps), cut into windows of candidate lengths.
        seed: base seed of builders and velocities.
    """

    id: str
    builder: str
    params: Mapping[str, Any]
    size_param: str
    sizes: tuple[int, ...]
    temperature_k: float
    timestep_fs: float
    sample_interval: int
    thermostat_coupling_fs: float
    melt_k: float
    melt_ps: float
    quench_ps: float
    quench_stages: int = 4
    equilibration_ps: float = 20.0
    npt_ps: float = 10.0
    production_ps: float = 24.0
    seed: int = 26

    def __post_init__(self) -> None:
        if not self.sizes or list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError(f"{self.id}: sizes must be distinct and ascending, got {self.sizes}")
        if self.equilibration_ps < self.melt_ps + self.quench_ps:
            raise ValueError(f"{self.id}: equilibration_ps must cover melt_ps + quench_ps")
        for name in ("temperature_k", "timestep_fs", "melt_k", "production_ps", "npt_ps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{self.id}: {name} must be > 0")
        if self.sample_interval < 1 or self.quench_stages < 1:
            raise ValueError(f"{self.id}: sample_interval and quench_stages must be >= 1")

    @property
    def frame_ps(self) -> float:
        """Spacing of recorded frames (ps)."""
        return self.timestep_fs * self.sample_interval / 1000.0

    @property
    def nvt_ps(self) -> float:
        """NVT at temperature_k after the melt–quench (ps)."""
        return self.equilibration_ps - self.melt_ps - self.quench_ps

    def build_params(self, size: int) -> dict[str, Any]:
        return {**dict(self.params), self.size_param: int(size)}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["params"] = dict(self.params)
        out["sizes"] = list(self.sizes)
        return out


#: The runs issue 26 expects: Li-rich LixSi at two temperatures where it is liquid and Li mobile,
#: and Li in a-C at 1200 K. Time steps, frame spacing and coupling are the committed AIMD runs'
#: (reference_data/aimd.toml): x = 3 keeps the committed a-Li3Si runs' composition (one Arrhenius
#: series with 900 K), and a-LiC keeps the builder's LiC6 composition.
DEFAULT_CASES: tuple[SizingCase, ...] = (
    SizingCase("a-Li3Si-1200K", "a-LixSi", {"x": 3.0}, "n_atoms", (32, 64, 96, 128), 1200.0, 2.0, 5, 50.0,
               melt_k=2000.0, melt_ps=2.0, quench_ps=2.0),
    SizingCase("a-Li3Si-1500K", "a-LixSi", {"x": 3.0}, "n_atoms", (32, 64, 96, 128), 1500.0, 2.0, 5, 50.0,
               melt_k=2000.0, melt_ps=2.0, quench_ps=2.0),
    SizingCase("a-LiC-1200K", "a-LiC", {}, "n_c", (24, 48, 72, 96), 1200.0, 1.0, 5, 50.0,
               melt_k=5000.0, melt_ps=3.0, quench_ps=3.0),
)


@dataclass(frozen=True)
class SizingTargets:
    """What an AIMD run must reach, and how the windows are judged.

    Attributes:
        rdf_l1_bound: largest g(r) halves L1 allowed for every pair (the suites' RDF `good`).
        n_bins, r_max_a: g(r) grid as md_accuracy compares it (r_max cut to the cell,
            `tasks.md_accuracy.rdf_r_max_a`).
        min_loglog_slope: least log-log slope of the Li MSD over the diffusive window.
        diffusive_window_ps, window_start_min_ps: the window is lags [start, start + width] (ps):
            past the ballistic and cage-rattling times, and as early as that allows, where the
            MSD averages the most independent displacements (a late window of a short run is
            noise: 24 Li at 3–4 ps lag gave slopes 0.63 and 1.25 in two 8 ps windows). It must
            end by half the run (each lag then averages ≥ L/2 of time origins), so it exists only
            for L ≥ 2 (start + width).
        max_d_rel_stderr: largest block standard error of D over D (md_accuracy's 3 blocks).
        min_pass_fraction: a length is met when at least this fraction of its disjoint windows
            pass (≈ the chance one AIMD run of that length passes).
        lengths_ps: candidate production lengths (ps).
        min_production_ps: the issue's floor on every run's production (ps).
        aimd_warmup_ps: AIMD warm-up before production (ps), priced with it.
    """

    rdf_l1_bound: float
    n_bins: int
    r_max_a: float = 6.0
    min_loglog_slope: float = 0.9
    diffusive_window_ps: float = 1.0
    window_start_min_ps: float = 0.2
    max_d_rel_stderr: float = 0.30
    min_pass_fraction: float = 0.8
    lengths_ps: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
    min_production_ps: float = 2.0
    aimd_warmup_ps: float = 0.3


def targets_from_suite(path: str | Path, **overrides: Any) -> SizingTargets:
    """`SizingTargets` whose RDF bound is the suite's `rdf` criterion `good` and whose g(r) bins
    are its md_accuracy task's `n_bins` (default 80), so the study judges by the suite's numbers."""
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    bound = next((c["good"] for c in data.get("criterion", []) if c.get("id") == "rdf"), None)
    if bound is None:
        raise ValueError(f"{path}: no [[criterion]] with id 'rdf'")
    n_bins = next((t.get("n_bins", 80) for t in data.get("task", []) if t.get("type") == "md_accuracy"), 80)
    return SizingTargets(rdf_l1_bound=float(bound), n_bins=int(n_bins), **overrides)
