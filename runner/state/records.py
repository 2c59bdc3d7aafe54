"""The state store's records as plain values: snapshots, environments and their history.

Planning compares with these, so they carry no SQLAlchemy and no engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SnapshotRecord:
    fingerprint: str
    name: str
    kind: str
    physical_schema: str
    physical_table: str
    materialized: str
    data_version: str
    canonical: str
    parents: Mapping[str, str]
    columns: tuple[str, ...]
    reads_physical: tuple[str, ...] = ()
    reused_from: str | None = None
    created_at: float = 0.0
    build_seconds: float = 0.0
    last_referenced_at: float = 0.0

    @property
    def physical(self) -> str:
        return f"{self.physical_schema}.{self.physical_table}"


@dataclass(frozen=True)
class EnvironmentRecord:
    name: str
    created_at: float
    updated_at: float
    expires_at: float | None
    models: Mapping[str, str] = field(default_factory=dict)  # model name -> fingerprint
    namespace: str = ""  # the namespace its views were made in ("": none)


@dataclass(frozen=True)
class Verdict:
    """How the last run that built an environment ended."""

    outcome: str  # passed | tests_failed | build_failed
    detail: str = ""  # what failed, in a user's words
    commit: str | None = None
    at: float = 0.0

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED


PASSED, TESTS_FAILED, BUILD_FAILED = "passed", "tests_failed", "build_failed"


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    environment: str
    action: str
    source: str | None
    created_at: float
    before: Mapping[str, str]
    after: Mapping[str, str]
    rolled_back: bool
    status: str = "done"  # pending | done | abandoned (see runner/state/changes.py)
    rolls_back: int | None = None  # a rollback: the change it undoes
    commit: str | None = None  # the commit whose project the environment then showed, when known
    cause: str | None = None  # what asked for it, when it is to happen once (`event:42`)
