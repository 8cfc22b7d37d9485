"""Models committed to this repository (source kind "local"), and registering a trained one.

A local model's `path` is relative to the folder that holds the registry's folder (the repository
root for models/registry.toml), e.g. `models/nepbench-lisic-v1/nep.txt`; it is run in place, never
downloaded or cached, after its sha256 and header are checked against the registry.
`register_local_model` copies a model there and writes its `[models.NAME]` table.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ModelError
from ..files import atomic_write_bytes
from ..provenance import sha256_bytes
from .nepfile import validate_model_file
from .records import ModelRecord
from .registry import check_model_name, registry_key, registry_path, registry_records, registry_root
from .verify import check_hash, check_header


def local_model_path(record: ModelRecord) -> Path:
    """The file of a `kind = "local"` or `"file"` record: an absolute path, or one relative to the
    folder holding the registry's folder (the repository root for models/registry.toml)."""
    path = Path(record.source["path"]).expanduser()
    if path.is_absolute():
        return path
    registry_file = Path(record.registry_file) if record.registry_file else registry_path()
    return registry_root(registry_file) / path


def verified_local(record: ModelRecord) -> Path:
    """The committed model file of `record`, checked: present, sha256 and header as registered
    (ModelError naming the file otherwise)."""
    path = local_model_path(record)
    if not path.is_file():
        raise ModelError(f"{path}: committed model file of {record.name} not found "
                         f"(registry source path {record.source['path']!r})")
    check_hash(path, record.source_sha256, f"committed model {record.name} (re-register it with "
                                           f"`nepbench train ... --register {record.name}` or restore the file)")
    check_header(path, record)
    return path


def _toml_value(value: Any) -> str:
    """A TOML literal for str, bool, int, float, list and dict (inline table) values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not np.isfinite(value):
            raise ValueError(f"TOML cannot hold {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML literal for {type(value).__name__}")


def registry_table_text(name: str, fields: Mapping[str, Any]) -> str:
    """`[models.NAME]` followed by one `key = value` line per field (NAME checked: a bare key)."""
    check_model_name(name, "registry table")
    return f"[models.{registry_key(name)}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in fields.items())


def register_local_model(name: str, model_file: str | os.PathLike[str], description: str, licence: str,
                         citation: str, extra: Mapping[str, Any] | None = None,
                         registry: str | os.PathLike[str] | None = None) -> ModelRecord:
    """Commit-ready registration of a trained model: copy it and write its registry table.

    Copies `model_file` to `<root>/models/NAME/nep.txt` (root = the folder holding the registry's
    folder) and adds or replaces the `[models.NAME]` table of the registry with a `kind = "local"`
    source, its sha256, size, species and version (read from the file), and the `extra` fields
    (e.g. training provenance). A replaced table is replaced whole, comments inside it included;
    comments and blank lines above the next table stay. The new registry text is checked before
    anything is written: it must load as `load_registry` loads it and differ from the old one in
    `[models.NAME]` alone. Both writes are atomic, and a failed registry write puts the previous
    model file back (`_write_model_and_registry`). Returns the new record.
    """
    registry_file = Path(registry) if registry is not None else registry_path()
    check_model_name(name, str(registry_file))
    version, species = validate_model_file(model_file)
    root = registry_root(registry_file)
    target = registry_file.resolve().parent / name / "nep.txt"
    relative = target.relative_to(root).as_posix()
    data = Path(model_file).read_bytes()
    fields: dict[str, Any] = {
        "description": description,
        "source": {"kind": "local", "path": relative},
        "source_sha256": sha256_bytes(data),
        "source_size_bytes": len(data),
        "species": list(species),
        "nep_version": version,
        "licence": licence,
        "citation": citation,
        **dict(extra or {}),
    }
    table = registry_table_text(name, fields)
    try:
        old = registry_file.read_text(encoding="utf-8") if registry_file.is_file() else ""
    except UnicodeDecodeError:
        raise ModelError(f"{registry_file}: model registry is not UTF-8") from None
    new = replace_registry_table(old, name, table)
    record = _checked_registry(old, new, name, table, registry_file)
    _write_model_and_registry(target, data, registry_file, new)
    return record


def _header_path(line: str) -> tuple[str, ...] | None:
    """The key path of a TOML table header line (`[models."a"]  # note` → ("models", "a")), or
    None when the line alone is not a table header (a key, a comment, part of a value)."""
    if not line.lstrip().startswith("["):
        return None
    try:
        node: Any = tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return None
    path: list[str] = []
    while node:
        if isinstance(node, list):  # [[array.of.tables]]
            node = node[-1]
            continue
        if not isinstance(node, dict) or len(node) != 1:
            return None
        ((key, node),) = node.items()
        path.append(key)
    return tuple(path)


def _is_toml(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def _table_span(lines: Sequence[str], name: str) -> tuple[int, int] | None:
    """[start, end) line indices of the `[models.NAME]` table (its sub-tables included), or None.

    A header line counts only where the text above it is complete TOML, so a line inside a
    multi-line string or array that looks like a header does not. Comment and blank lines just
    above the next table belong to that table.
    """
    headers = [(i, path) for i, line in enumerate(lines)
               if (path := _header_path(line)) is not None and _is_toml("".join(lines[:i]))]
    start = next((i for i, path in headers if path == ("models", name)), None)
    if start is None:
        return None
    end = next((i for i, path in headers if i > start and path[:2] != ("models", name)), len(lines))
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return start, end


def replace_registry_table(old: str, name: str, table: str) -> str:
    """Registry text `old` with its `[models.NAME]` table replaced by `table` (or `table` appended
    after a blank line when there is none)."""
    lines = [line for line in re.split(r"(?<=\n)", old) if line]
    span = _table_span(lines, name)
    if span is None:
        return old + ("" if not old or old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")) + table
    start, end = span
    return "".join(lines[:start]) + table + "".join(lines[end:])


def _checked_registry(old: str, new: str, name: str, table: str, registry_file: Path) -> ModelRecord:
    """NAME's record from registry text `new`, after checking that `new` loads as `load_registry`
    loads a file and equals `old` with only `[models.NAME]` replaced by `table` (ModelError else)."""
    try:
        before = tomllib.loads(old)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{registry_file}: not valid TOML ({exc}); fix it before registering {name}") from None
    corrupt = f"{registry_file}: registering {name} would corrupt the registry"
    try:
        after = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{corrupt} ({exc})") from None
    models_before = before.get("models", {})
    if not isinstance(models_before, dict):
        raise ModelError(f"{registry_file}: 'models' must be a table of [models.<name>] tables")
    expected = {**before, "models": {**models_before, name: tomllib.loads(table)["models"][name]}}
    if after != expected:
        raise ModelError(f"{corrupt} (other tables or keys would change; edit the file by hand)")
    return registry_records(after, registry_file)[name]


def _write_model_and_registry(target: Path, data: bytes, registry_file: Path, text: str) -> None:
    """Write the model file, then the registry; if the registry write fails, restore the previous
    model file (or remove the new one), so the file and its registered sha256 stay a pair.

    The previous file is kept as a hard link, so restoring it is a rename that needs no free disk
    space (its bytes are held in memory where links are not supported).
    """
    backup = target.with_name(f".{target.name}.{os.getpid()}.previous")
    previous: bytes | None = None
    existed, new_folder = target.is_file(), not target.parent.exists()
    if existed:
        backup.unlink(missing_ok=True)
        try:
            os.link(target, backup)
        except OSError:
            previous = target.read_bytes()
    try:
        atomic_write_bytes(target, data)
        atomic_write_bytes(registry_file, text.encode())
    except BaseException:
        if existed and previous is None:
            os.replace(backup, target)
        elif existed:
            atomic_write_bytes(target, previous)
        else:
            target.unlink(missing_ok=True)
            if new_folder and not any(target.parent.iterdir()):
                target.parent.rmdir()
        raise
    finally:
        backup.unlink(missing_ok=True)
