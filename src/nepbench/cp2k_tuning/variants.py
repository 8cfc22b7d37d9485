"""What the CP2K tuning study runs: its variants (setting overrides and core layouts) and its
cases (committed label frames as single points, AIMD-like cells as NVT MD).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ase import Atoms

from ..engines.base import MDProtocol
from ..engines.cp2k import SETTINGS_PRESETS, CP2KSettings


@dataclass(frozen=True)
class TuningVariant:
    """One candidate setting: `overrides` of the base settings, run on `ranks` MPI ranks.

    Attributes:
        name: short id used as the record key.
        overrides: CP2KSettings fields changed from the base (omp_threads among them).
        ranks: MPI ranks.
        note: what the variant tests, in a few words.
        preset: the settings preset the overrides apply to (`engines.cp2k.SETTINGS_PRESETS`):
            "aimd-v1" (the untuned AIMD preset) or "label" (the label preset, with stress).
        baseline: the variant its speed-ups are measured against (its preset unchanged).
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    ranks: int = 1
    note: str = ""
    preset: str = "aimd-v1"
    baseline: str = "baseline"

    def settings(self, base: CP2KSettings | None = None) -> CP2KSettings:
        """`base` (default: this variant's preset) with its overrides (ValueError for an invalid value)."""
        return dataclasses.replace(SETTINGS_PRESETS[self.preset] if base is None else base, **self.overrides)

    @property
    def sp_only(self) -> bool:
        """True for variants of the label preset: labels are single points, so no MD case runs."""
        return self.preset == "label"


@dataclass(frozen=True)
class TuningCase:
    """One cell of the study: a committed label frame ("sp") or the AIMD cell as NVT MD ("md").

    Attributes:
        name: record key, e.g. "sp:amorphous".
        kind: "sp" or "md".
        frame_sha256: prefix of the committed label frame's sha256 ("sp").
        aimd_run: committed AIMD run whose last frame starts the MD ("md").
        temperature_k, timestep_fs: the MD's thermostat temperature (K) and time step (fs).
        warmup_steps: MD steps before timing starts (the ASPC extrapolation fills its history).
        timed_steps: MD steps timed after the warm-up.
        builder, builder_params, seed: an "md" case built by `nepbench.systems` instead of read
            from an AIMD run (the throughput task's cells, for CP2K's cost against N).
        coupling_fs: CSVR time constant (fs).
    """

    name: str
    kind: str
    frame_sha256: str = ""
    aimd_run: str = ""
    temperature_k: float = 1200.0
    timestep_fs: float = 2.0
    warmup_steps: int = 4
    timed_steps: int = 6
    builder: str = ""
    builder_params: tuple[tuple[str, Any], ...] = ()
    seed: int = 0
    coupling_fs: float = 50.0

    def protocol(self) -> MDProtocol:
        """The MD protocol of an "md" case (NVT CSVR, seed `seed`)."""
        return MDProtocol(ensemble="nvt", temperature_k=self.temperature_k, timestep_fs=self.timestep_fs,
                          steps=self.timed_steps, sample_interval=1, seed=self.seed,
                          thermostat_coupling_fs=self.coupling_fs, warmup_steps=self.warmup_steps)

    def built(self) -> Atoms:
        """The case's cell from its builder."""
        from .. import systems

        return systems.build(self.builder, seed=self.seed, **dict(self.builder_params))


#: Label frames, one per motif: the committed frame of lowest DFT force RMS (the nearest to
#: equilibrium, so the most like frames MD visits), by frame_sha256 prefix.
SP_CASES: tuple[TuningCase, ...] = (
    TuningCase("sp:amorphous", "sp", frame_sha256="a932b165b3e2"),     # a-LixSi Li30Si8, 0.45 eV/Å
    TuningCase("sp:crystalline", "sp", frame_sha256="f6b37bfece0f"),   # Li15Si4 Li30Si8, 0.22 eV/Å
    TuningCase("sp:interfacial", "sp", frame_sha256="d11fca5bef7b"),   # Si|C-lithiated C25Li6Si16, 1.40 eV/Å
    TuningCase("sp:strained", "sp", frame_sha256="5094620f368e"),      # a-LixSi Li24Si8, 0.39 eV/Å
)
#: The AIMD cell (Li24Si8, 32 atoms) from the last committed frame of a-Li3Si-1200K.
MD_CASE = TuningCase("md:Li24Si8-1200K", "md", aimd_run="a-Li3Si-1200K")
CASES: tuple[TuningCase, ...] = SP_CASES + (MD_CASE,)


def scaling_case(n_atoms: int) -> TuningCase:
    """CP2K's cost at `n_atoms`: the throughput task's cell (a-LixSi, x = 2, seed 7) built with
    `n_atoms`, NVT at 900 K with a 1 fs step, 2 warm-up and 3 timed steps (the throughput task's
    own CP2K window is 1 + 2)."""
    return TuningCase(f"md:a-Li2Si-{n_atoms}", "md", temperature_k=900.0, timestep_fs=1.0, warmup_steps=2,
                      timed_steps=3, builder="a-LixSi", builder_params=(("x", 2.0), ("n_atoms", int(n_atoms))),
                      seed=7, coupling_fs=100.0)


#: CP2K's cost against N (the speed-up as a function of N): run for the baseline and the adopted preset.
SCALING_CASES: tuple[TuningCase, ...] = tuple(scaling_case(n) for n in (32, 64, 96))


E9R40 = {"eps_default": 1e-9, "rel_cutoff_ry": 40.0}
#: Variants in the order the study runs them; the first is the untuned baseline. The levers are
#: compared on one MPI rank (the other core stays free for other work; costs are CPU times, which
#: sharing the machine does not inflate); the `-2x1` / `-1x2` variants compare core layouts on both
#: cores of a quiet machine. EPS_DEFAULT 1e-8 moved energies by 0.65 meV/atom on the first frame
#: (beyond the 0.5 limit), so the other levers sit on EPS_DEFAULT 1e-9.
VARIANTS: tuple[TuningVariant, ...] = (
    TuningVariant("baseline", {}, note="untuned AIMD preset, 1 rank"),
    TuningVariant("e8", {"eps_default": 1e-8}, note="EPS_DEFAULT 1e-8"),
    TuningVariant("e9", {"eps_default": 1e-9}, note="EPS_DEFAULT 1e-9"),
    TuningVariant("e9-r40", E9R40, note="EPS_DEFAULT 1e-9, REL_CUTOFF 40"),
    TuningVariant("e3e9-r40", {**E9R40, "eps_default": 3e-9}, note="EPS_DEFAULT 3e-9, REL_CUTOFF 40"),
    TuningVariant("e9-r40-ng3", {**E9R40, "ngrids": 3}, note="… NGRIDS 3"),
    TuningVariant("e9-r40-elpa", {**E9R40, "diag_library": "ELPA"}, note="… ELPA diagonalisation"),
    TuningVariant("e9-r40-pulay", {**E9R40, "mixing_method": "PULAY_MIXING"}, note="… Pulay mixing"),
    TuningVariant("e9-r40-c350", {**E9R40, "cutoff_ry": 350.0}, note="… CUTOFF 350 Ry"),
    TuningVariant("e9-r40-nonsr", {**E9R40, "basis_set": "DZVP-MOLOPT-GTH"},
                  note="… DZVP-MOLOPT-GTH (non-SR) basis"),
    TuningVariant("e9-r40-aspc4", {**E9R40, "extrapolation_order": 4}, note="… ASPC order 4 (MD only)"),
    TuningVariant("baseline-2x1", {}, ranks=2, note="untuned AIMD preset, 2 ranks × 1 thread"),
    TuningVariant("e9-r40-2x1", E9R40, ranks=2, note="EPS_DEFAULT 1e-9, REL_CUTOFF 40, 2 ranks × 1 thread"),
    TuningVariant("e9-r40-1x2", {**E9R40, "omp_threads": 2}, note="… 1 rank × 2 OpenMP threads"),
    # The label preset (EPS_DEFAULT 1e-12, EPS_SCF 1e-6, stress) with the same levers, single points
    # only, judged on stress as well (the labels carry it).
    TuningVariant("label-baseline", {}, note="label preset, 1 rank", preset="label", baseline="label-baseline"),
    TuningVariant("label-e9-r40-elpa", {**E9R40, "diag_library": "ELPA"},
                  note="label preset, EPS_DEFAULT 1e-9, REL_CUTOFF 40, ELPA", preset="label",
                  baseline="label-baseline"),
    TuningVariant("label-e9-elpa", {"eps_default": 1e-9, "diag_library": "ELPA"},
                  note="label preset, EPS_DEFAULT 1e-9, ELPA", preset="label", baseline="label-baseline"),
    TuningVariant("label-e9-r40", E9R40, note="label preset, EPS_DEFAULT 1e-9, REL_CUTOFF 40", preset="label",
                  baseline="label-baseline"),
)
#: Variants measured on the MD case alone: extrapolation only acts in MD, and the core layouts
#: change the speed, not the numbers (same settings as a variant whose frames are measured).
MD_ONLY = {"e9-r40-aspc4", "baseline-2x1", "e9-r40-2x1", "e9-r40-1x2"}
#: Which 1-rank variant's frames stand for an MD-only variant in the verdict.
FRAMES_FROM = {"e9-r40-aspc4": "e9-r40", "baseline-2x1": "baseline", "e9-r40-2x1": "e9-r40",
               "e9-r40-1x2": "e9-r40"}


def variant_by_name(name: str) -> TuningVariant:
    """The study variant called `name`; KeyError naming the known ones otherwise."""
    for variant in VARIANTS:
        if variant.name == name:
            return variant
    raise KeyError(f"unknown tuning variant {name!r} (known: {', '.join(v.name for v in VARIANTS)})")
