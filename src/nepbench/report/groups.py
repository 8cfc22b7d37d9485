"""Grouping of a report's records by task template (one task run for several models) and of its
claim-matrix rows by those groups."""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

from . import overview


def model_name(record: Mapping[str, Any]) -> str | None:
    model = record.get("model")
    return str(model.get("name")) if isinstance(model, Mapping) and model.get("name") else None


def group_key(record: Mapping[str, Any]) -> str:
    """The task id with its model name replaced by {model}: records of one task template share it."""
    model = model_name(record)
    task_id = str(record["task_id"])
    if not model:
        return task_id
    matches = list(re.finditer(rf"(?<![A-Za-z0-9]){re.escape(model)}(?![A-Za-z0-9])", task_id))
    if not matches:
        return task_id
    last = matches[-1]
    return task_id[:last.start()] + "{model}" + task_id[last.end():]


def _group_title(record: Mapping[str, Any]) -> str:
    title = str(record.get("title") or record["task_id"])
    model = model_name(record)
    return title.replace(f" ({model})", "") if model else title


def task_groups(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Records grouped by task template (models of one task side by side), in suite order."""
    order = {t["id"]: i for i, t in enumerate(report["suite"].get("tasks", []))}
    records = sorted(report["records"], key=lambda r: (order.get(r["task_id"], len(order)), r["task_id"]))
    groups: dict[str, dict[str, Any]] = {}
    for record in records:
        key = group_key(record)
        group_id = f"{record['task_type']}:{key}"  # one template key may name tasks of two types
        fresh = {"id": group_id, "key": key, "title": _group_title(record), "task_type": record["task_type"],
                 "records": []}
        groups.setdefault(group_id, fresh)["records"].append(record)
    return list(groups.values())


def unique(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


def rows_by_group(report: Mapping[str, Any],
                  rows: Sequence[overview.MatrixRow]) -> dict[str | None, list[overview.MatrixRow]]:
    """Matrix rows by the group (task template) of their first task that has a record; None: no record."""
    group_of = {r["task_id"]: g["id"] for g in task_groups(report) for r in g["records"]}
    out: dict[str | None, list[overview.MatrixRow]] = {}
    for row in rows:
        group = next((group_of[v["task"]] for v in row.verdicts if v["task"] in group_of), None)
        out.setdefault(group, []).append(row)
    return out
