"""Errors a user can cause, each carrying a message that says what is wrong, where, and what to do."""

from __future__ import annotations

from pathlib import Path


class SluiceError(Exception):
    """Base of every error shown to a user; caught once at the edge (CLI, job runner)."""

    def __init__(self, message: str, *, file: Path | str | None = None, line: int | None = None,
                 transient: bool = False):
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.transient = transient  # not the user's doing: trying again later may work
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class ProjectError(SluiceError):
    """The project on disk is invalid: bad YAML, bad SQL, unknown reference, cycle, duplicate."""


class PlanError(SluiceError):
    """The plan cannot be carried out, e.g. a downstream model reads a column the change removes."""


class WarehouseError(SluiceError):
    """The warehouse refused a statement (bad SQL at run time, a missing table, a lost connection).
    `transient`: the connection failed, not the statement; trying again later may work."""


class BuildError(WarehouseError):
    """A model failed to build in the warehouse."""


class EnvError(SluiceError):
    """An environment operation is not possible (unknown environment, nothing to roll back to)."""


class StateError(SluiceError):
    """The state store is unreachable or holds a schema this version cannot read."""


def is_transient(exc: BaseException) -> bool:
    """The one answer to "is this worth retrying later?": the connection, the forge or the network
    failed, not the user's change. Errors that can be either carry a `transient` flag."""
    return bool(getattr(exc, "transient", False))
