"""Deterministic structure builders for Li–Si–C anodes, and a registry of named builders.

Every builder is a pure function of its parameters and an integer seed (numpy Generator) and
returns an `ase.Atoms`. `build(name, seed, **params)` is the one entry point used by the reference
pipeline, the tasks and the CLI; it stamps `atoms.info` with
`{"builder": name, "motif": family, "seed": seed, **params}`.

| name             | motif        | default cell                                    | atoms | min dist (Å) |
|------------------|--------------|-------------------------------------------------|-------|--------------|
| "c-Si"           | crystalline  | diamond Si 2×2×2 conventional                   | 64    | 2.35         |
| "graphite"       | crystalline  | AB graphite 3×3×1                               | 36    | 1.42         |
| "LiC6"           | crystalline  | LiC6 P6/mmm 2×2×1 (Li4C24)                      | 28    | 1.43         |
| "Li-in-c-Si"     | crystalline  | Li4Si64, Li on seeded T sites                   | 68    | 2.35         |
| "Li15Si4"        | crystalline  | Li15Si4 I-43d primitive (Li30Si8)               | 38    | 2.63         |
| "a-Si"           | amorphous    | Si64 at 2.28 g/cm³                              | 64    | 1.9          |
| "a-C"            | amorphous    | C64 at 2.1 g/cm³                                | 64    | 1.3          |
| "a-LixSi"        | amorphous    | x = 2: Li22Si11 (linear volume rule)            | 33    | 1.9          |
| "a-LiC"          | amorphous    | Li6C36 (a-C 2.1 g/cm³ + 6.56 Å³/Li)             | 42    | 1.3          |
| "Si|C"           | interfacial  | Si(001) 24 + a-C 31                             | 55    | 1.3          |
| "Si|C-lithiated" | interfacial  | Si(001) 24 + a-C 31 + Li 4                      | 59    | 1.3          |
| "core-shell"     | interfacial  | R = 2 nm c-Si core, 1 nm a-C shell (registry default) | ~1.0e4 | 1.3  |

Crystalline builders without disorder ("c-Si", "graphite", "LiC6", "Li15Si4") give the same cell
for every seed; the seed still goes into `info`. Strain is applied separately by `strain`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from ase import Atoms

from ..checks import finite_number, integer
from .amorphous import a_c, a_lic, a_lixsi, a_si, density_g_cm3, lixsi_counts, lixsi_volume_per_si_a3
from .core_shell import core_shell_particle
from .crystalline import c_si, graphite, li15si4, li_in_c_si, lic6
from .interfacial import si_c_interface, si_c_interface_lithiated
from .packing import PAIR_MIN_A, pair_min_distances_a
from .strain import STRAIN_MODES, strain

MOTIFS = ("crystalline", "amorphous", "interfacial", "strained")


@dataclass(frozen=True)
class Builder:
    """A named builder: the function, its motif family and its guaranteed minimum distance (Å)."""

    func: Callable[..., Atoms]
    motif: str
    takes_seed: bool
    min_distance_a: float
    defaults: dict[str, Any] = field(default_factory=dict)


BUILDERS: dict[str, Builder] = {
    "c-Si": Builder(c_si, "crystalline", False, 2.35),
    "graphite": Builder(graphite, "crystalline", False, 1.42),
    "LiC6": Builder(lic6, "crystalline", False, 1.43),
    "Li-in-c-Si": Builder(li_in_c_si, "crystalline", True, 2.35),
    "Li15Si4": Builder(li15si4, "crystalline", False, 2.63),
    "a-Si": Builder(a_si, "amorphous", True, 1.9),
    "a-C": Builder(a_c, "amorphous", True, 1.3),
    "a-LixSi": Builder(a_lixsi, "amorphous", True, 1.9),
    "a-LiC": Builder(a_lic, "amorphous", True, 1.3),
    "Si|C": Builder(si_c_interface, "interfacial", True, 1.3),
    "Si|C-lithiated": Builder(si_c_interface_lithiated, "interfacial", True, 1.3),
    "core-shell": Builder(core_shell_particle, "interfacial", True, 1.3,
                          {"core_radius_nm": 2.0, "shell_thickness_nm": 1.0, "vacuum_nm": 1.0}),
}


def _info_value(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return np.asarray(value)
    return value


def build(name: str, seed: int, **params: Any) -> Atoms:
    """Build the structure `name` (see `BUILDERS`) with `seed` and builder `params`.

    Raises:
        ValueError: unknown name, parameters the builder does not accept, or values that leave the
            structure without atoms (e.g. repeat = [0, 0, 0]).
    """
    problem = param_problem(name, params)
    if problem:
        raise ValueError(problem)
    entry = BUILDERS[name]
    kwargs = {**entry.defaults, **params}
    if entry.takes_seed:
        kwargs["seed"] = int(seed)
    atoms = entry.func(**kwargs)
    if len(atoms) == 0:
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "its defaults"
        raise ValueError(f"builder {name!r} with {shown} builds no atoms")
    atoms.info.update({"builder": name, "motif": entry.motif, "seed": int(seed)})
    # a parameter left None (the builder's own choice) keeps the value the builder resolved into info
    atoms.info.update({k: _info_value(v) for k, v in kwargs.items()
                       if k != "seed" and not (v is None and k in atoms.info)})
    return atoms


def param_problem(name: str, params: Any) -> str | None:
    """What is wrong with builder `name` and its `params`, or None: an unknown builder, params that
    are not a table, a parameter the builder does not take, or a value of the wrong kind where the
    builder's default is a bool, int, float or tuple of ints. `build` raises it; spec and suite
    loaders call it to refuse the file before anything runs."""
    if name not in BUILDERS:
        return f"unknown builder {name!r}; known: {', '.join(BUILDERS)}"
    if not isinstance(params, dict):
        return f"builder {name!r}: params must be a table, got {params!r}"
    entry = BUILDERS[name]
    signature = inspect.signature(entry.func).parameters
    accepted = set(signature) - {"seed"}  # the seed is the run's or the family's, never a parameter
    unknown = sorted(set({**entry.defaults, **params}) - accepted)
    if unknown:
        return (f"builder {name!r} takes no parameter(s) {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(accepted))}")
    for key, value in params.items():
        try:  # the registry's default stands in where the function has none (core-shell's sizes)
            _check_param_type(name, key, value, entry.defaults.get(key, signature[key].default))
        except ValueError as exc:
            return str(exc)
    return None


def _check_param_type(builder: str, key: str, value: Any, default: Any) -> None:
    """ValueError when `value` cannot stand where the builder's default is a bool, int or float
    (None and parameters without a default are left to the builder)."""
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = integer(value) is not None, "an integer"
    elif isinstance(default, float):
        ok, kind = finite_number(value) is not None, "a finite number"
    elif isinstance(default, tuple) and default and all(integer(d) is not None for d in default):
        ok = (isinstance(value, (list, tuple)) and len(value) == len(default)
              and all(integer(v) is not None and v >= 1 for v in value))
        kind = f"a list of {len(default)} integers >= 1"
    else:
        return
    if not ok:
        raise ValueError(f"builder {builder!r}: parameter {key} must be {kind}, got {value!r}")


def available() -> list[str]:
    """Names accepted by `build`."""
    return list(BUILDERS)


__all__ = [
    "BUILDERS", "Builder", "MOTIFS", "PAIR_MIN_A", "STRAIN_MODES", "a_c", "a_lic", "a_lixsi", "a_si",
    "available", "build", "c_si", "core_shell_particle", "density_g_cm3", "graphite", "li15si4",
    "li_in_c_si", "lic6", "lixsi_counts", "lixsi_volume_per_si_a3", "pair_min_distances_a",
    "si_c_interface", "si_c_interface_lithiated", "strain",
]
