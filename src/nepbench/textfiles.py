"""Reading the project's JSON and TOML files, with one error line that names the file and the problem.

Every loader (suite files, the model registry, result records, gate inputs) needs the same three
outcomes: text that is not there or cannot be read, bytes that are not UTF-8, and text that does not
parse. Each raises its own error type, so the caller passes `error`: a function of (path, problem)
that makes the exception to raise. `InputError` is such a function; `prefixed(ConfigError)` makes one
for error types that take a single message.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Callable

ErrorFactory = Callable[[Path, str], Exception]


def prefixed(error_type: Callable[[str], Exception]) -> ErrorFactory:
    """An ErrorFactory for an error type that takes one message: error_type("<path>: <problem>")."""
    return lambda path, problem: error_type(f"{path}: {problem}")


def read_utf8(path: str | Path, error: ErrorFactory) -> str:
    """The text of `path` decoded as UTF-8; raises error(path, problem) when it cannot be had."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(path, "not found") from None
    except UnicodeDecodeError as exc:
        raise error(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise error(path, f"cannot read ({exc.strerror or exc})") from None


def load_json(path: str | Path, error: ErrorFactory) -> Any:
    """The parsed JSON of `path`; raises error(path, problem) for unreadable or malformed text."""
    path = Path(path)
    text = read_utf8(path, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(path, f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def load_toml(path: str | Path, error: ErrorFactory) -> dict[str, Any]:
    """The parsed TOML of `path`; raises error(path, problem) for unreadable or malformed text."""
    path = Path(path)
    text = read_utf8(path, error)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(path, f"malformed TOML ({exc})") from None
