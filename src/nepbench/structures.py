"""Reading, writing and checking structures (extxyz, optionally .gz/.xz compressed).

Every reader turns a malformed or unphysical file into one `InputError` naming the file and the
problem: unknown element, NaN coordinates, atoms closer than `min_distance_a`, missing labels.
"""

from __future__ import annotations

import io
import lzma
import gzip
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols
from ase.io import read, write

from .cell import cell_thicknesses_a
from .errors import InputError
from .files import atomic_write_bytes

MIN_DISTANCE_A = 0.5
_KNOWN = set(chemical_symbols[1:])


def min_interatomic_distance_a(atoms: Atoms, cutoff_a: float = 2.0) -> float:
    """Smallest interatomic distance in Å (minimum image), or `inf` if none within `cutoff_a`.

    A k-d tree over the atoms and the periodic images that lie within `cutoff_a` of the cell
    (images of an atom itself count, as in ASE's neighbour list): O(N log N), a few seconds at
    2e6 atoms, where ASE's neighbour list with a small cutoff takes minutes.
    """
    from scipy.spatial import cKDTree

    n = len(atoms)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if n == 0 or (n < 2 and not pbc.any()):
        return float("inf")
    if not cutoff_a > 0:
        raise ValueError(f"cutoff_a must be > 0, got {cutoff_a}")
    positions = np.asarray(atoms.positions, dtype=float)
    cell = np.asarray(atoms.cell.array, dtype=float)
    if pbc.any():
        # fractional coordinates along periodic axes wrapped into [0, 1)
        frac = np.linalg.solve(cell.T, positions.T).T
        frac[:, pbc] -= np.floor(frac[:, pbc])
        widths = np.where(pbc, cell_thicknesses_a(cell), np.inf)
        margin = cutoff_a / widths  # the cutoff in units of each cell width (0 along open axes)
        reach = np.ceil(margin).astype(int)
        if np.prod(2 * reach + 1) > 10_000:
            raise ValueError(f"periodic cell widths {np.round(widths, 4).tolist()} Å are too thin for a "
                             f"{cutoff_a} Å neighbour search")
        shifts = np.array(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij")).reshape(3, -1).T
        images = []
        for shift in shifts:
            shifted = frac + shift
            inside = np.all(~pbc | ((shifted >= -margin) & (shifted <= 1.0 + margin)), axis=1)
            images.append(shifted[inside])
        points = np.concatenate(images) @ cell
        originals = frac @ cell
    else:
        points = originals = positions
    distances, _ = cKDTree(points).query(originals, k=2, distance_upper_bound=cutoff_a)
    nearest = distances[:, 1]  # column 0 is the atom itself (distance 0)
    return float(nearest.min()) if np.isfinite(nearest).any() else float("inf")


def check_structure(
    atoms: Atoms,
    source: str | os.PathLike[str],
    allowed_species: Iterable[str] | None = None,
    min_distance_a: float = MIN_DISTANCE_A,
    frame: int | None = None,
) -> None:
    """Raise `InputError` if `atoms` has unknown/forbidden species, non-finite data or overlaps."""
    where = f" (frame {frame})" if frame is not None else ""
    if len(atoms) == 0:
        raise InputError(source, f"structure{where} has no atoms")
    symbols = atoms.get_chemical_symbols()
    unknown = sorted(set(symbols) - _KNOWN)
    if unknown:
        raise InputError(source, f"unknown element(s) {', '.join(unknown)}{where}")
    if allowed_species is not None:
        missing = sorted(set(symbols) - set(allowed_species))
        if missing:
            raise InputError(
                source,
                f"species {', '.join(missing)}{where} not in the model "
                f"(model has {', '.join(sorted(allowed_species))})",
            )
    if not np.all(np.isfinite(atoms.positions)):
        raise InputError(source, f"non-finite (NaN/inf) coordinates{where}")
    if any(atoms.pbc) and not np.all(np.isfinite(atoms.cell.array)):
        raise InputError(source, f"non-finite cell{where}")
    if any(atoms.pbc) and abs(atoms.cell.volume) < 1e-6:
        raise InputError(source, f"periodic structure{where} has a zero-volume cell")
    dmin = min_interatomic_distance_a(atoms, cutoff_a=max(min_distance_a, 1e-3) * 1.01)
    if dmin < min_distance_a:
        raise InputError(
            source, f"atoms closer than {min_distance_a} Å (min distance {dmin:.3f} Å){where}"
        )


def read_structures(
    path: str | os.PathLike[str],
    allowed_species: Iterable[str] | None = None,
    require_labels: bool = False,
) -> list[Atoms]:
    """Read all frames of an extxyz file (plain, .gz or .xz) and check each one.

    With `require_labels`, each frame must carry a finite energy (eV) and forces (eV/Å).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a folder, not an extxyz file")
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        frames = read(str(path), index=":", format="extxyz")
    except KeyError as exc:  # ASE's lookup of an element symbol
        raise InputError(path, f"malformed extxyz (unknown element symbol {exc.args[0]!r})") from None
    except Exception as exc:  # ASE raises many types on malformed text
        raise InputError(path, f"malformed extxyz ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not frames:
        raise InputError(path, "no frames")
    species = set(allowed_species) if allowed_species is not None else None
    for index, atoms in enumerate(frames):
        check_structure(atoms, path, species, frame=index)
        if require_labels:
            _check_labels(atoms, path, index)
    return frames


def _check_labels(atoms: Atoms, path: Path, index: int) -> None:
    """InputError naming `path` and frame `index` unless the frame has a finite energy (eV), finite
    forces (eV/Å) of shape (n_atoms, 3) and, where present, a finite 6-component stress (eV/Å³)."""
    try:
        energy, forces, stress = labels_of(atoms)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"frame {index} has unreadable labels ({str(exc)[:120]})") from None
    if energy is None or forces is None:
        raise InputError(path, f"frame {index} has no energy/forces labels")
    if forces.shape != (len(atoms), 3):
        raise InputError(path, f"frame {index}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
    if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
        raise InputError(path, f"frame {index} has non-finite energy or forces")
    if stress is not None and (stress.shape != (6,) or not np.all(np.isfinite(stress))):
        raise InputError(path, f"frame {index}: stress must be 6 (Voigt) or 3×3 finite numbers")


def labels_of(atoms: Atoms) -> tuple[float | None, np.ndarray | None, np.ndarray | None]:
    """(energy eV, forces eV/Å, Voigt stress eV/Å³) stored on a frame, None where absent.

    Reads ASE's names (`energy`, `forces`, `stress`) and, where those are absent, the names of
    GPUMD's training files: per-atom `force` and a 9-component `virial` (eV, the convention
    −σ·V that `training.gpumd_frame` writes), turned into the ASE-sign stress −virial / volume on a
    cell periodic in all three directions (symmetrised; no stress without such a cell).
    """
    calc = atoms.calc
    results = getattr(calc, "results", {}) if calc is not None else {}
    energy = results.get("energy", atoms.info.get("energy"))
    forces = results.get("forces", atoms.arrays.get("forces", atoms.arrays.get("force")))
    stress = results.get("stress", atoms.info.get("stress"))
    if stress is None and atoms.info.get("virial") is not None and all(atoms.pbc) and atoms.get_volume() > 0:
        virial_ev = np.asarray(atoms.info["virial"], dtype=float).reshape(3, 3)
        stress = -0.5 * (virial_ev + virial_ev.T) / atoms.get_volume()
    if stress is not None:
        stress = np.asarray(stress, dtype=float)
        if stress.shape == (3, 3):
            stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return (
        None if energy is None else float(energy),
        None if forces is None else np.asarray(forces, dtype=float),
        stress,
    )


def with_labels(
    atoms: Atoms, energy_ev: float, forces_ev_per_a: np.ndarray, stress_ev_per_a3: np.ndarray | None
) -> Atoms:
    """A copy of `atoms` carrying the labels as a single-point calculator (written by extxyz)."""
    out = atoms.copy()
    results = {"energy": float(energy_ev), "forces": np.asarray(forces_ev_per_a, dtype=float)}
    if stress_ev_per_a3 is not None:
        results["stress"] = np.asarray(stress_ev_per_a3, dtype=float)
    out.calc = SinglePointCalculator(out, **results)
    return out


def _compress(data: bytes, suffix: str) -> bytes:
    if suffix == ".xz":
        return lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    if suffix == ".gz":
        return gzip.compress(data, compresslevel=9, mtime=0)
    return data


def extxyz_bytes(frames: Sequence[Atoms]) -> bytes:
    """Uncompressed extxyz text of `frames`."""
    buffer = io.StringIO()
    write(buffer, list(frames), format="extxyz")
    return buffer.getvalue().encode()


#: Compression suffixes other tools use and these files do not (written as plain text under such a
#: name, they read back as a corrupt archive).
UNSUPPORTED_COMPRESSION = frozenset({".bz2", ".zst", ".lz4", ".lzma", ".zip", ".z", ".7z", ".tar", ".tgz"})


def structures_bytes(name: str | os.PathLike[str], frames: Sequence[Atoms]) -> bytes:
    """The bytes `write_structures` writes for `frames` to a file called `name`: extxyz,
    compressed by its suffix (.xz, .gz or none).

    Raises:
        InputError naming `name`: a compression suffix other than .xz or .gz (`UNSUPPORTED_COMPRESSION`).
    """
    suffix = Path(name).suffix
    if suffix.lower() in UNSUPPORTED_COMPRESSION:
        raise InputError(name, f"compression {suffix} is not supported: name the file .extxyz, .extxyz.xz or "
                         ".extxyz.gz")
    return _compress(extxyz_bytes(frames), suffix)


def write_structures(path: str | os.PathLike[str], frames: Sequence[Atoms]) -> None:
    """Write frames as extxyz atomically; compression chosen by suffix (.xz, .gz or none)."""
    atomic_write_bytes(path, structures_bytes(path, frames))
