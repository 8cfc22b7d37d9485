"""CP2K's cost of the AIMD options: measured s/step scaled to other sizes, the tuning record's
evidence on the size exponent, and per size the production both targets need and its CP2K hours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .analysis import required_length_ps
from .cases import SizingCase, SizingTargets
from .production import md_steps

#: CP2K per-step cost grows as N^p: 2–3 is the range usually quoted for these sizes; 1 is the
#: grid-dominated limit the CP2K timing reports point to (docs/aimd_sizing.md says why, and how to
#: measure it).
COST_EXPONENTS = (1.0, 2.0, 3.0)


@dataclass(frozen=True)
class Cp2kCost:
    """Measured CP2K cost per MD step at one size: `s_per_step` (s) for `n_atoms` atoms on
    `ranks` MPI ranks, and where the number comes from."""

    n_atoms: int
    s_per_step: float
    ranks: int
    source: str

    def per_step_s(self, n_atoms: int, exponent: float, speedup: float = 1.0) -> float:
        """Seconds per step at `n_atoms`: s_per_step × (n_atoms / self.n_atoms)^exponent / speedup."""
        if n_atoms < 1 or not speedup > 0:
            raise ValueError("n_atoms must be >= 1 and speedup > 0")
        return self.s_per_step * (n_atoms / self.n_atoms) ** exponent / speedup


def cp2k_hours(cost: Cp2kCost, n_atoms: int, production_ps: float, warmup_ps: float, timestep_fs: float,
               exponent: float, speedup: float = 1.0) -> float:
    """CP2K wall hours of an AIMD run: (warm-up + production) / time step steps at
    `Cp2kCost.per_step_s`."""
    steps = md_steps(production_ps + warmup_ps, timestep_fs)
    return steps * cost.per_step_s(n_atoms, exponent, speedup) / 3600.0


def tuning_evidence(tuning: Mapping[str, Any], small: str, large: str, reference_case: str) -> dict[str, Any]:
    """What a CP2K tuning record (reference_data/studies/cp2k_tuning.json's "results": "variant|case"
    → {"s_per_step", "n_atoms", ...}) says about the cost model: the size exponent
    p = ln(s_large / s_small) / ln(N_large / N_small) of every variant that ran both MD cases
    `small` and `large`, and the speed-up of each variant's MD step on `reference_case` over the
    "baseline" variant's. Raises KeyError when the record lacks the cases."""
    results = tuning["results"]
    exponents = {}
    for key, small_rec in results.items():
        variant, case = key.split("|", 1)
        if case == small and f"{variant}|{large}" in results:
            big = results[f"{variant}|{large}"]
            exponents[variant] = float(np.log(big["s_per_step"] / small_rec["s_per_step"])
                                       / np.log(big["n_atoms"] / small_rec["n_atoms"]))
    base = results[f"baseline|{reference_case}"]["s_per_step"]
    speedups = {key.split("|", 1)[0]: base / rec["s_per_step"] for key, rec in results.items()
                if key.endswith(f"|{reference_case}") and not key.startswith("baseline|")}
    if not exponents:
        raise KeyError(f"no variant ran both {small} and {large}")
    return {"size_exponents": exponents, "small_case": small, "large_case": large,
            "reference_case": reference_case, "baseline_s_per_step": base, "speedups": speedups}


def cost_from_manifest(manifest: Mapping[str, Any], run_id: str) -> Cp2kCost:
    """The committed run's median s/step (on its current rank count) as a `Cp2kCost`."""
    runs = manifest["runs"]
    run = runs[run_id] if isinstance(runs, Mapping) else next(r for r in runs if r.get("id") == run_id)
    return Cp2kCost(int(run["n_atoms"]), float(run["s_per_step_median"]), int(run["ranks"]),
                    f"reference_data/aimd/manifest.json {run_id}: s_per_step_median, {run['ranks']} rank(s)")


@dataclass(frozen=True)
class Option:
    """One way to run a case in AIMD: a cell size, the production (ps) g(r) and D each need (None:
    not met within the lengths measured), the production both need and D alone needs (each at
    least the minimum production), and their CP2K hours per cost exponent ("N^2": hours); also
    the hours of g(r) alone (a run kept for structure where D is out of reach)."""

    size: int
    n_atoms: int
    rdf_length_ps: float | None
    d_length_ps: float | None
    production_ps: float | None
    d_production_ps: float | None = None
    rdf_production_ps: float | None = None
    hours: dict[str, float | None] = field(default_factory=dict)
    d_only_hours: dict[str, float | None] = field(default_factory=dict)
    rdf_only_hours: dict[str, float | None] = field(default_factory=dict)


def options(case: SizingCase, per_size: Mapping[int, Mapping[str, Any]], targets: SizingTargets, cost: Cp2kCost,
            speedup: float, exponents: Sequence[float] = COST_EXPONENTS) -> list[Option]:
    """Per size, the production both targets need (≥ targets.min_production_ps) and its CP2K hours;
    `d_only_hours` prices the D target alone (the run that gives a measured D first)."""
    out = []
    for size, res in sorted(per_size.items()):
        l_rdf = required_length_ps({float(k): v for k, v in res["rdf_pass_fraction"].items()},
                                   targets.min_pass_fraction)
        l_d = required_length_ps({float(k): v for k, v in res["d_pass_fraction"].items()},
                                 targets.min_pass_fraction) if res.get("d_pass_fraction") else None
        need = None if l_rdf is None or l_d is None else max(l_rdf, l_d, targets.min_production_ps)
        n = int(res["n_atoms"])

        def price(length: float | None) -> dict[str, float | None]:
            return {f"N^{p:g}": (None if length is None else
                                 cp2k_hours(cost, n, length, targets.aimd_warmup_ps, case.timestep_fs, p, speedup))
                    for p in exponents}

        d_need = None if l_d is None else max(l_d, targets.min_production_ps)
        rdf_need = None if l_rdf is None else max(l_rdf, targets.min_production_ps)
        out.append(Option(size, n, l_rdf, l_d, need, d_need, rdf_need, price(need), price(d_need), price(rdf_need)))
    return out
