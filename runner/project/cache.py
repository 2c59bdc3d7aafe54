"""The parse cache: canonical SQL and table references by file-content hash, so an unchanged
model file is not parsed again, and the safety check's passes, so an unchanged body is not checked
again against the same allowlist and project names. It lives in the server's (or the user's)
cache folder only, never in a repository: an entry says what a file parses to and that it is
safe, so whoever can write it can change a model."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import sqlglot

from runner.project.parsing import ParsedQuery, TableRef, parse_query

# Entries made by another parser version may hold another canonical text: they never match.
_VERSION = f"sluice-parse-2:sqlglot-{sqlglot.__version__}"
_PASSED = "passed"
Finding = TypeVar("Finding")


class ParseCache:
    """Canonical SQL and table references by file-content hash, so an unchanged file is not parsed.

    The cache is JSON (never pickle): it may sit next to untrusted checkouts.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, Any] = {}
        self.dirty = False
        if path is not None and path.is_file():
            try:
                entries = json.loads(path.read_text())
            except (OSError, ValueError):
                entries = {}
            self.entries = entries if isinstance(entries, dict) else {}

    def parse(self, sql: str, dialect: str, file: str) -> ParsedQuery:
        key = hashlib.sha256(f"{_VERSION}\0{dialect}\0{sql}".encode()).hexdigest()
        hit = self.entries.get(key)
        if hit is not None:
            return ParsedQuery(hit[0], tuple(TableRef(tuple(p), line) for p, line in hit[1]))
        parsed = parse_query(sql, dialect, file)
        self.entries[key] = [parsed.canonical, [[list(r.parts), r.line] for r in parsed.refs]]
        self.dirty = True
        return parsed

    def verdict(self, parts: Iterable[str], check: Callable[[], list[Finding]]) -> list[Finding]:
        """What `check` finds, or nothing without running it when it found nothing before for the
        same `parts` (everything its answer depends on: the text, the allowlist's and the
        names' fingerprints). Only passes are kept: a refusal is worked out again, with its lines."""
        key = hashlib.sha256("\0".join((_VERSION, "verdict", *parts)).encode()).hexdigest()
        if self.entries.get(key) == _PASSED:
            return []
        found = check()
        if not found:
            self.entries[key] = _PASSED
            self.dirty = True
        return found

    def save(self) -> None:
        """Write the cache atomically: a temporary file of this writer's own (threads and processes
        share the cache), renamed over the old one."""
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w") as out:
                json.dump(self.entries, out)
            os.replace(name, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise
        self.dirty = False
