"""Typed task parameters: `TaskParams`, the base of the parity, md_accuracy and throughput tasks'
frozen `Params` dataclasses, built from a suite's `[[task]]` table by `from_params`.

A subclass declares its fields with their defaults (the one place a default lives) and, in
`problem`, its checks of the raw values (the one-line errors the suite loader shows); `from_params`
runs the checks, then converts each value given to its field's annotation (int, float, bool, str,
`X | None`, `tuple[X, ...]`; anything else is kept as given). Keys that are not fields are left to
the suite loader, which refuses them naming the file and the task. (The expansion task's
`ExpansionParams` checks types itself.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from ..checks import finite_number, integer
from ..errors import ConfigError

P = TypeVar("P", bound="TaskParams")

#: Field annotation → (conversion, what one value must be, what a list's values must be).
_SCALARS = {"int": (int, "an integer", "integers"), "float": (float, "a number", "numbers"),
            "bool": (bool, "true or false", "true or false"), "str": (str, "a string", "strings")}


@dataclass(frozen=True)
class TaskParams:
    """Base of a task's typed parameters (no fields of its own)."""

    #: The task type, named in errors ("throughput task: ...").
    TASK: ClassVar[str] = "task"

    @classmethod
    def problem(cls, params: Mapping[str, Any]) -> str | None:
        """What is wrong with the raw values of `params` (one line), or None: the subclass's checks."""
        return None

    @classmethod
    def from_params(cls: type[P], params: Mapping[str, Any]) -> P:
        """The typed parameters of a task table; ConfigError ("<task> task: <problem>") on the first
        bad value."""
        problem = cls.problem(params)
        if problem:
            raise ConfigError(f"{cls.TASK} task: {problem}")
        return cls(**cls.converted(params))

    @classmethod
    def converted(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of `params` that are fields, each converted to its field's annotation."""
        out = {}
        for f in fields(cls):
            if f.name in params:
                try:
                    out[f.name] = _convert(params[f.name], str(f.type))
                except (TypeError, ValueError, OverflowError):
                    raise ConfigError(f"{cls.TASK} task: {f.name} must be {_what(str(f.type))}, "
                                      f"got {params[f.name]!r}") from None
        return out

    @classmethod
    def check(cls, params: Mapping[str, Any]) -> str | None:
        """`from_params`'s error without its "<task> task: " prefix, or None (a task's `check_params`)."""
        try:
            cls.from_params(params)
        except ConfigError as exc:
            return str(exc).removeprefix(f"{cls.TASK} task: ")
        return None

    @classmethod
    def names(cls) -> frozenset[str]:
        """The suite keys this task reads: its field names (a task module's `TASK_PARAMS`)."""
        return frozenset(f.name for f in fields(cls))


def _convert(value: Any, annotation: str) -> Any:
    """`value` as `annotation` says; TypeError or ValueError where it cannot be."""
    if annotation.endswith(" | None"):
        if value is None:
            return None
        annotation = annotation.removesuffix(" | None")
    if annotation.startswith("tuple[") and annotation.endswith(", ...]"):
        if isinstance(value, (str, Mapping)):
            raise TypeError(f"not a list: {value!r}")
        return tuple(_convert(item, annotation[len("tuple["):-len(", ...]")]) for item in value)
    if annotation in _SCALARS:
        return _SCALARS[annotation][0](value)
    return value


def _what(annotation: str) -> str:
    """What a value of `annotation` must be, in words ("a list of integers")."""
    base = annotation.removesuffix(" | None")
    unset = " (or unset)" if base != annotation else ""
    if base.startswith("tuple["):
        return f"a list of {_SCALARS.get(base[len('tuple['):-len(', ...]')], (None, '', 'values'))[2]}{unset}"
    return f"{_SCALARS.get(base, (None, 'a value', ''))[1]}{unset}"


def positive_int(value: Any) -> bool:
    """Whether `value` is an integer (`config.integer`: no bool, no float) >= 1."""
    number = integer(value)
    return number is not None and number >= 1


def positive_number(value: Any) -> bool:
    """Whether `value` is a finite number (`config.finite_number`) > 0."""
    number = finite_number(value)
    return number is not None and number > 0
