"""Validation helpers every loader of a TOML file or record shares: numbers, integers, unknown keys
and names, and the wording of their errors."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any


def real_number(value: Any) -> float | None:
    """`value` as a float, or None for bools (numpy's too), strings and other non-numbers."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def integer(value: Any) -> int | None:
    """`value` as an int when it is an integer (numpy's too), else None: bools, floats such as 2.0
    and strings are not integers here (a TOML `steps = true` must not run 1 step)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def unknown_keys(table: Mapping[str, Any], known: Iterable[str]) -> str | None:
    """"unknown key(s) a, b (known: …)" for the keys of `table` not in `known`, else None: the one
    wording every loader of a TOML table uses (a misspelt key would otherwise be ignored)."""
    known = sorted(known)
    unknown = sorted(set(table) - set(known))
    return f"unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})" if unknown else None


def unknown_name(value: Any, known: Iterable[str], what: str) -> str | None:
    """"unknown <what> 'x' (known: …)" when `value` is not a string among `known` (a builder, a CP2K
    settings preset), else None: the one check and wording for a name a TOML file picks from a list."""
    known = list(known)
    if isinstance(value, str) and value in known:
        return None
    return f"unknown {what} {value!r} (known: {', '.join(known)})"


def finite_number(value: Any) -> float | None:
    """`real_number(value)` when it is finite, else None (a criterion bound, a gate value)."""
    number = real_number(value)
    return number if number is not None and math.isfinite(number) else None


def params_difference(old_params: Any, new_params: Any) -> str | None:
    """"key: old → new; …" over the keys whose values differ between two tasks' parameters, or None
    when they agree (also None where either side records none, as in old records). The report
    compares a record with its suite task, the gate a run with its baseline."""
    if not isinstance(old_params, Mapping) or not isinstance(new_params, Mapping):
        return None
    keys = sorted(k for k in set(old_params) | set(new_params) if old_params.get(k) != new_params.get(k))
    return "; ".join(f"{k}: {old_params.get(k)!r} → {new_params.get(k)!r}" for k in keys) or None
