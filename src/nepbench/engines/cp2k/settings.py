"""CP2K settings: every DFT choice that shapes a CP2K number, the presets (labels, AIMD), and
unit conversions. The tuning study that chose the AIMD preset: docs/cp2k_settings.md."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from ase import units as ase_units

from ...cell import cell_thicknesses_a
from ...errors import InputError

HARTREE_EV: float = ase_units.Hartree


"""1 Hartree in eV."""


BOHR_A: float = ase_units.Bohr


"""1 Bohr in Å."""


HARTREE_PER_BOHR_EV_PER_A: float = ase_units.Hartree / ase_units.Bohr


"""1 Hartree/Bohr in eV/Å."""


GPA_EV_PER_A3: float = ase_units.GPa


"""1 GPa in eV/Å³."""


INSTALL_HINT = "install Debian's cp2k: apt-get install cp2k"


PROJECT = "nb"


"""CP2K project name used for every run (output files are named after it)."""


_DEFAULT_POTENTIALS: tuple[tuple[str, str], ...] = (
    ("Li", "GTH-PBE-q3"),
    ("Si", "GTH-PBE-q4"),
    ("C", "GTH-PBE-q4"),
    ("H", "GTH-PBE-q1"),
)


@dataclass(frozen=True)
class CP2KSettings:
    """Every DFT choice that shapes a CP2K number; written into the input and every result.

    Attributes:
        xc: exchange-correlation functional (&XC_FUNCTIONAL name).
        basis_set: Gaussian basis set name, same family for every element.
        potentials: (element, GTH pseudopotential name) pairs; valence charge read from "-qN".
        basis_file: basis set file name (CP2K data directory).
        potential_file: pseudopotential file name (CP2K data directory).
        cutoff_ry: plane-wave cutoff of the finest grid in Ry.
        rel_cutoff_ry: relative cutoff in Ry (which grid a Gaussian is mapped onto).
        eps_scf: SCF convergence threshold (CP2K's EPS_SCF, on the density matrix change).
        max_scf: maximum SCF iterations; exceeding it raises `SCFNotConverged`.
        electronic_temperature_k: Fermi-Dirac smearing temperature in K.
        added_mos: unoccupied orbitals added for smearing; None = max(20, 20% of occupied).
        mixing_alpha: density mixing parameter (ALPHA).
        nbroyden: mixing history length (NBROYDEN for Broyden, NBUFFER for Pulay; Kerker has none).
        eps_default: CP2K's EPS_DEFAULT (integral/screening tolerance).
        stress: compute the analytical stress tensor in single points (periodic cells only).
        extrapolation: wavefunction extrapolation between MD steps (CP2K EXTRAPOLATION).
        extrapolation_order: order of the extrapolation (ASPC order 3).
        outer_scf_max: OUTER_SCF iterations; 0 switches the outer SCF off.
        ranks: MPI ranks used by default.
        omp_threads: OpenMP threads per rank (OMP_NUM_THREADS).
        ngrids: number of multigrid levels (&MGRID NGRIDS); None = CP2K's default (4), not written.
        eps_pgf_orb: &QS EPS_PGF_ORB (Gaussian overlap screening); None = CP2K's default, derived
            from EPS_DEFAULT (its square root), not written.
        diag_library: &GLOBAL PREFERRED_DIAG_LIBRARY ("SL" ScaLAPACK, "ELPA"); None = CP2K's default.
        mixing_method: &MIXING METHOD ("BROYDEN_MIXING", "PULAY_MIXING", "KERKER_MIXING").
        kpoints: a fixed Monkhorst-Pack mesh (n_a, n_b, n_c) written as &DFT &KPOINTS; None = none
            fixed (`kpoint_length_a` or Γ only).
        kpoint_length_a: a k-point density rule instead of a fixed mesh: each cell gets the mesh
            `kpoint_mesh(cell, kpoint_length_a)` (about `kpoint_length_a` / width points along each
            cell vector, in Å); a cell whose mesh is 1×1×1 is run at Γ as without the rule. None =
            no rule. At most one of `kpoints` and `kpoint_length_a` is set.

    The optional levers (`OPTIONAL_LEVERS`) are left out of `to_dict` while they hold their
    default, so records written before they existed still compare equal.
    """

    xc: str = "PBE"
    basis_set: str = "DZVP-MOLOPT-SR-GTH"
    potentials: tuple[tuple[str, str], ...] = _DEFAULT_POTENTIALS
    basis_file: str = "BASIS_MOLOPT"
    potential_file: str = "GTH_POTENTIALS"
    cutoff_ry: float = 400.0
    rel_cutoff_ry: float = 50.0
    eps_scf: float = 1e-6
    max_scf: int = 80
    electronic_temperature_k: float = 500.0
    added_mos: int | None = None
    mixing_alpha: float = 0.3
    nbroyden: int = 8
    eps_default: float = 1e-12
    stress: bool = True
    extrapolation: str = "ASPC"
    extrapolation_order: int = 3
    outer_scf_max: int = 0
    ranks: int = 2
    omp_threads: int = 1
    ngrids: int | None = None
    eps_pgf_orb: float | None = None
    diag_library: str | None = None
    mixing_method: str = "BROYDEN_MIXING"
    kpoints: tuple[int, int, int] | None = None
    kpoint_length_a: float | None = None

    def __post_init__(self) -> None:
        # accept a mapping or pairs; store sorted pairs so equal settings compare and hash equal
        pairs = self.potentials.items() if isinstance(self.potentials, dict) else self.potentials
        object.__setattr__(self, "potentials", tuple(sorted(tuple(p) for p in pairs)))
        if self.cutoff_ry <= 0 or self.rel_cutoff_ry <= 0:
            raise ValueError("cutoff_ry and rel_cutoff_ry must be > 0")
        if not (0 < self.eps_scf < 1) or not (0 < self.eps_default < 1):
            raise ValueError("eps_scf and eps_default must be in (0, 1)")
        if self.max_scf < 1 or self.ranks < 1 or self.omp_threads < 1:
            raise ValueError("max_scf, ranks and omp_threads must be >= 1")
        if self.electronic_temperature_k < 0:
            raise ValueError("electronic_temperature_k must be >= 0")
        if self.added_mos is not None and self.added_mos < 0:
            raise ValueError("added_mos must be >= 0 or None")
        if not (0 < self.mixing_alpha <= 1) or self.nbroyden < 1:
            raise ValueError("mixing_alpha must be in (0, 1] and nbroyden >= 1")
        for element, name in self.potentials:
            _valence_from_potential(element, name)
        if self.ngrids is not None and not 1 <= self.ngrids <= 10:
            raise ValueError("ngrids must be in [1, 10] or None")
        if self.eps_pgf_orb is not None and not 0 < self.eps_pgf_orb < 1:
            raise ValueError("eps_pgf_orb must be in (0, 1) or None")
        if self.diag_library not in (None, "SL", "ELPA"):
            raise ValueError(f"diag_library must be 'SL', 'ELPA' or None, got {self.diag_library!r}")
        if self.kpoints is not None:
            try:
                mesh = tuple(int(n) for n in self.kpoints)
                exact = all(n == k for n, k in zip(mesh, self.kpoints))
            except (TypeError, ValueError):
                mesh, exact = (), False
            if len(mesh) != 3 or min(mesh) < 1 or not exact:
                raise ValueError(f"kpoints must be three integers >= 1 or None, got {self.kpoints!r}")
            object.__setattr__(self, "kpoints", mesh)
        if self.kpoint_length_a is not None and not self.kpoint_length_a > 0:
            raise ValueError(f"kpoint_length_a must be > 0 or None, got {self.kpoint_length_a!r}")
        if self.kpoints is not None and self.kpoint_length_a is not None:
            raise ValueError("set kpoints (a fixed mesh) or kpoint_length_a (a rule), not both")
        if self.mixing_method not in MIXING_METHODS:
            raise ValueError(f"mixing_method must be one of {', '.join(MIXING_METHODS)}, got {self.mixing_method!r}")

    def potential_for(self, element: str) -> str:
        """GTH potential name for `element`; InputError when none is configured."""
        for el, name in self.potentials:
            if el == element:
                return name
        known = ", ".join(el for el, _ in self.potentials)
        raise InputError("<structure>", f"element {element} has no CP2K potential (have {known})")

    def valence_electrons(self, symbols: Sequence[str]) -> int:
        """Number of valence electrons of the structure with these potentials."""
        return sum(_valence_from_potential(s, self.potential_for(s)) for s in symbols)

    def added_mos_for(self, symbols: Sequence[str]) -> int:
        """ADDED_MOS for a structure: the setting, or max(20, ceil(20% of occupied orbitals))."""
        if self.added_mos is not None:
            return self.added_mos
        occupied = math.ceil(self.valence_electrons(symbols) / 2)
        return max(20, math.ceil(0.2 * occupied))

    def mesh_for(self, cell: Any) -> tuple[int, int, int] | None:
        """The Monkhorst-Pack mesh a cell (3×3 rows in Å) is labelled with: the fixed `kpoints`, the
        rule's mesh when it is not 1×1×1, else None (Γ only)."""
        if self.kpoints is not None:
            return self.kpoints
        if self.kpoint_length_a is None:
            return None
        mesh = kpoint_mesh(cell, self.kpoint_length_a)
        return None if mesh == (1, 1, 1) else mesh

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of every setting (potentials as an element -> name mapping)."""
        data = dataclasses.asdict(self)
        data["potentials"] = dict(self.potentials)
        if data["kpoints"] is not None:
            data["kpoints"] = list(data["kpoints"])
        for key, default in OPTIONAL_LEVERS.items():
            if data[key] == default:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CP2KSettings":
        if data.get("kpoints") is not None:
            data = {**data, "kpoints": tuple(data["kpoints"])}
        return cls(**data)


#: Settings written to records only when they differ from these defaults (added after records existed).
OPTIONAL_LEVERS: dict[str, Any] = {"ngrids": None, "eps_pgf_orb": None, "diag_library": None,
                                   "mixing_method": "BROYDEN_MIXING", "kpoints": None, "kpoint_length_a": None}


def kpoint_mesh(cell: Any, length_a: float) -> tuple[int, int, int]:
    """Monkhorst-Pack mesh of a k-point density rule: n_i = max(1, ceil(length_a / w_i)), where w_i is
    the cell's width across its i-th pair of faces (`cell.cell_thicknesses_a`), in Å. Rows of `cell`
    are the cell vectors in Å; ValueError for a singular cell or length_a ≤ 0."""
    if not length_a > 0:
        raise ValueError(f"length_a must be > 0, got {length_a!r}")
    widths = cell_thicknesses_a(cell)
    return tuple(max(1, math.ceil(length_a / w - 1e-6)) for w in widths)  # type: ignore[return-value]


#: CP2K &MIXING methods the engine may write.
MIXING_METHODS = ("BROYDEN_MIXING", "PULAY_MIXING", "KERKER_MIXING")


def _valence_from_potential(element: str, name: str) -> int:
    match = re.search(r"-q(\d+)$", name)
    if not match:
        raise ValueError(f"potential {name!r} for {element} has no '-qN' valence suffix")
    return int(match.group(1))


LABEL_SETTINGS = CP2KSettings(
    cutoff_ry=400.0,
    rel_cutoff_ry=50.0,
    eps_scf=1e-6,
    max_scf=80,
    electronic_temperature_k=500.0,
    mixing_alpha=0.3,
    nbroyden=8,
    eps_default=1e-12,
    stress=True,
)


"""Single-point labels. 400 Ry: RMS force error 0.75 meV/Å vs 600 Ry on Li8Si16C8 (docs/cp2k_settings.md)."""


AIMD_V1_SETTINGS = CP2KSettings(
    cutoff_ry=400.0,
    rel_cutoff_ry=50.0,
    eps_scf=1e-5,
    max_scf=60,
    electronic_temperature_k=500.0,
    mixing_alpha=0.4,
    nbroyden=8,
    eps_default=1e-10,
    stress=False,
)


"""Ab initio MD: the labels' level of theory (400/50 Ry, 500 K smearing), looser SCF and EPS_DEFAULT,
no stress, ASPC order-3 extrapolation. A cheaper 250 Ry / 1000 K variant was 80–310 meV/Å RMS off
the labels' forces (scripts/aimd_settings_study.py, docs/cp2k_settings.md)."""


AIMD_SETTINGS = dataclasses.replace(AIMD_V1_SETTINGS, eps_default=1e-9, rel_cutoff_ry=40.0)
"""Ab initio MD, tuned (`nepbench reference tune`, docs/cp2k_settings.md): the untuned preset
(`AIMD_V1_SETTINGS`, which the AIMD runs committed before 2026-12-07 used) with EPS_DEFAULT 1e-9 and
REL_CUTOFF 40 Ry. On the four motif frames its forces are within 0.25 meV/Å RMS and its energies
within 0.07 meV/atom of the labels; on the 32-atom AIMD cell one MD step costs 1.30× less. EPS_DEFAULT
1e-8 (1.55× on single points) moved energies by up to 0.83 meV/atom and was rejected."""


LABEL_TUNED_SETTINGS = dataclasses.replace(LABEL_SETTINGS, eps_default=1e-9, rel_cutoff_ry=40.0, diag_library="ELPA")
"""Single-point labels, tuned (`nepbench reference tune`, variant `label-e9-r40-elpa`,
docs/cp2k_settings.md): the label preset with EPS_DEFAULT 1e-9, REL_CUTOFF 40 Ry and ELPA. On the four
motif frames its forces are within 0.25 meV/Å RMS, its energies within 0.063 meV/atom and its stress
within 0.008 GPa of the labels, at 1.91× less CPU time. The v2 reference set labels with it
(spec-v2.toml); the v1 set keeps `LABEL_SETTINGS`."""


KPOINT_LENGTH_A = 20.0
"""The k-point density rule of the `-kp` presets (`kpoint_mesh`): 2 points along a cell width of
10–20 Å, 3 along 6.7–10 Å, 4 along 5–6.7 Å, Γ only across ≥20 Å (a slab's vacuum). Chosen by the
k-point study (scripts/kpoint_study.py, docs/cp2k_settings.md "k-point study"): on the 8 Å Li24Si8
AIMD cell, 2×2×2 (16 Å) was still 39 meV/Å RMS from 3×3×3 (24 Å)."""


LABEL_KP_SETTINGS = dataclasses.replace(LABEL_TUNED_SETTINGS, kpoint_length_a=KPOINT_LENGTH_A)
"""Single-point labels, k-point sampled: `label-tuned` with the Monkhorst-Pack mesh of
`KPOINT_LENGTH_A`. Γ-only labels of the v2 frames were 77–395 meV/Å RMS off a 2×2×2 mesh
(docs/cp2k_settings.md, "k-point study")."""


AIMD_KP_SETTINGS = dataclasses.replace(AIMD_SETTINGS, kpoint_length_a=KPOINT_LENGTH_A)
"""Ab initio MD, k-point sampled: `aimd` with the mesh of `KPOINT_LENGTH_A` (3×3×3 on the 8 Å
Li24Si8 cells, 4×4×4 on the 6.4 Å a-LiC cell)."""


#: The settings presets a reference spec (spec.toml `cp2k_preset`, aimd.toml `settings`) may name.
SETTINGS_PRESETS = {"label": LABEL_SETTINGS, "label-tuned": LABEL_TUNED_SETTINGS, "label-kp": LABEL_KP_SETTINGS,
                    "aimd": AIMD_SETTINGS, "aimd-v1": AIMD_V1_SETTINGS, "aimd-kp": AIMD_KP_SETTINGS}
