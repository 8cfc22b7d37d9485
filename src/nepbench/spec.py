"""What a suite holds, as frozen dataclasses: tasks (`TaskSpec`), criteria (`Criterion`: a claim as
good/bad bounds on one metric, with unit and source) and the `Suite`. Loading: `nepbench.suite`.

Lower is better when good < bad, higher is better when good > bad.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .checks import finite_number, unknown_keys
from .errors import ConfigError


@dataclass(frozen=True)
class TaskSpec:
    """One task of a suite: `type` picks the task function; `params` are its arguments."""

    id: str
    type: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "title": self.title,
                "params": dict(self.params), "models": list(self.models)}


@dataclass(frozen=True)
class Criterion:
    """A claim turned into a bound on one metric of one task.

    `floor` (optional) names a metric of the same task that measures the reference's own sampling
    noise in the metric's unit (e.g. the AIMD g(r) between its two halves); the report says when
    that noise alone is beyond the pass bound.
    """

    id: str
    claim: str
    task: str
    metric: str
    good: float
    bad: float
    unit: str
    source: str
    floor: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    tasks: tuple[TaskSpec, ...]
    criteria: tuple[Criterion, ...]
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "path": self.path,
                "tasks": [t.to_dict() for t in self.tasks],
                "criteria": [c.to_dict() for c in self.criteria]}

    def task(self, task_id: str) -> TaskSpec:
        for spec in self.tasks:
            if spec.id == task_id:
                return spec
        raise ConfigError(f"{self.path}: no task {task_id!r} (have {', '.join(t.id for t in self.tasks)})")


CRITERION_FIELDS = ("id", "claim", "task", "metric", "good", "bad", "unit", "source")


def criterion_from_mapping(raw: Any, where: str) -> Criterion:
    """A checked `Criterion` from a suite table or a suite.json entry; `where` starts each error.

    Raises:
        ConfigError: not a table, an unknown field, a field missing, good or bad not a finite
            number, or good == bad.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table of fields, got {type(raw).__name__}")
    problem = unknown_keys(raw, (*CRITERION_FIELDS, "floor"))  # a misspelt `flor` must not vanish
    if problem:
        raise ConfigError(f"{where}: {problem}")
    missing = [key for key in CRITERION_FIELDS if key not in raw]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(missing)}")
    good, bad = finite_number(raw["good"]), finite_number(raw["bad"])
    if good is None or bad is None:
        raise ConfigError(f"{where}: good and bad must be finite numbers "
                          f"(got good={raw['good']!r}, bad={raw['bad']!r})")
    if good == bad:
        raise ConfigError(f"{where}: good and bad must differ (both {good:g})")
    return Criterion(str(raw["id"]), str(raw["claim"]), str(raw["task"]), str(raw["metric"]),
                     good, bad, str(raw["unit"]), str(raw["source"]), str(raw.get("floor") or ""))
