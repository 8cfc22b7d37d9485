"""Gate tolerances: how much worse than the baseline a metric may get, in its own unit, read from a
suite's `[gate]` table or a baseline's `tolerances` block."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..checks import unknown_keys
from ..errors import ConfigError

DEFAULT_REL = 0.05
DEFAULT_ABS = 0.0


@dataclass(frozen=True)
class Tolerance:
    """How much worse than the baseline a metric may get, in the metric's own unit.

    Attributes:
        rel: allowed worsening as a fraction of |baseline| (0.05 = 5 %).
        abs: allowed worsening in the metric's unit (e.g. meV/Å for a force RMSE).
        better: "lower" or "higher" for a metric no criterion judges; None to take the
            direction from the criterion (good < bad: lower is better).
    """

    rel: float = DEFAULT_REL
    abs: float = DEFAULT_ABS
    better: str | None = None

    def allowed(self, baseline: float) -> float:
        """Largest allowed worsening for `baseline`: max(abs, rel × |baseline|)."""
        return max(self.abs, self.rel * abs(baseline))

    def describe(self, unit: str = "") -> str:
        """E.g. "max(2 meV/Å, 5 % of baseline)"."""
        unit = f" {unit}" if unit else ""
        return f"max({self.abs:g}{unit}, {100 * self.rel:g} % of baseline)"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rel": self.rel, "abs": self.abs}
        if self.better:
            out["better"] = self.better
        return out


@dataclass(frozen=True)
class Tolerances:
    """Per-metric tolerances with a default for criterion metrics not listed."""

    default: Tolerance = field(default_factory=Tolerance)
    per_metric: Mapping[str, Tolerance] = field(default_factory=dict)

    def for_metric(self, metric: str) -> Tolerance:
        return self.per_metric.get(metric, self.default)

    def to_dict(self) -> dict[str, Any]:
        return {"default_rel": self.default.rel, "default_abs": self.default.abs,
                "tolerance": [{"metric": m, **t.to_dict()} for m, t in sorted(self.per_metric.items())]}


def _finite_nonneg(table: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: {key} must be a finite number >= 0, got {value!r}")
    return float(value)


def parse_tolerances(table: Mapping[str, Any] | None, where: str = "[gate]") -> Tolerances:
    """Tolerances from a suite's `[gate]` table or a baseline's `tolerances` block.

    Format: `default_rel`, `default_abs` and a list `tolerance` of {metric, rel, abs, better}.
    A missing table gives the defaults (5 % relative, 0 absolute). ConfigError names the entry.
    """
    if table is None:
        return Tolerances()
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    problem = unknown_keys(table, ("default_rel", "default_abs", "tolerance"))
    if problem:
        raise ConfigError(f"{where}: {problem}")
    default = Tolerance(_finite_nonneg(table, "default_rel", DEFAULT_REL, where),
                        _finite_nonneg(table, "default_abs", DEFAULT_ABS, where))
    per_metric: dict[str, Tolerance] = {}
    entries = table.get("tolerance", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: 'tolerance' must be a list of tables")
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("metric"), str):
            raise ConfigError(f"{where}: tolerance #{index} needs a 'metric' name")
        here = f"{where} tolerance {entry['metric']!r}"
        problem = unknown_keys(entry, ("metric", "rel", "abs", "better"))
        if problem:
            raise ConfigError(f"{here}: {problem}")
        better = entry.get("better")
        if better not in (None, "lower", "higher"):
            raise ConfigError(f"{here}: better must be 'lower' or 'higher', got {better!r}")
        if entry["metric"] in per_metric:
            raise ConfigError(f"{here} is listed twice")
        per_metric[entry["metric"]] = Tolerance(_finite_nonneg(entry, "rel", default.rel, here),
                                                _finite_nonneg(entry, "abs", default.abs, here), better)
    return Tolerances(default, per_metric)
