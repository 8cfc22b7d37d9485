"""Typed errors. Each carries one line for the user; the CLI prints it and exits non-zero."""

from __future__ import annotations


class NepbenchError(Exception):
    """Base class: a problem the user can act on, described in one line."""

    exit_code: int = 1


class InputError(NepbenchError):
    """A malformed or physically invalid input file (names the file and the problem)."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ModelError(NepbenchError):
    """A model that cannot be fetched, fails its hash, is malformed, or lacks species."""


class EngineError(NepbenchError):
    """An engine run that did not produce a trustworthy number."""


class EngineNotAvailable(EngineError):
    """The engine's program (or a GPU) is missing on this machine."""


class ModelUnavailable(EngineNotAvailable):
    """A registry model whose package is not installed here at its pinned version (an optional
    comparator such as CHGNet): its tasks are skipped with this reason, never failed or faked."""


class EngineCrashed(EngineError):
    """The engine's program exited with an error."""


class SCFNotConverged(EngineError):
    """The DFT self-consistent field did not converge within its step limit."""


class ConfigError(NepbenchError):
    """A malformed suite file or criterion."""
