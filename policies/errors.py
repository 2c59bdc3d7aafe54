"""The one error a policy can raise: an invalid policy file or `policies:` section."""

from __future__ import annotations


class PolicyError(Exception):
    """A policy setting is invalid or tries to loosen what the server decides.

    Carries the file, the dotted key and (when known) the line, like the project's other
    user-facing errors, so the edge that catches it can show `file:line: key: message`.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 line: int | None = None):
        self.message = message
        self.file = file
        self.key = key
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [p for p in (where, self.key) if p]
        return ": ".join([*parts, self.message])
