"""The audit log: every promotion, rollback, approval, override, deploy and unlock — who, when,
which merge request and commit, and what changed. Append-only."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bot.records.schema import RECORDS, audit
from runner.environments import Move
from runner.state.store import StateStore


def moved_views(moves: Iterable[Move]) -> list[dict[str, str | None]]:
    """What actually moved, as the audit log keeps it: each view as the warehouse names it, and
    the snapshot object it read before and reads now (None: it did not exist, or exists no more)."""
    return [{"view": m.view, "from": m.before, "to": m.after} for m in moves]


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    action: str
    forge: str | None
    repository: str | None
    number: int | None
    sha: str | None
    environment: str | None
    detail: dict[str, Any]


class AuditLog:
    def __init__(self, state: StateStore):
        state.ensure(RECORDS)
        self.state = state

    def record(self, actor: str, action: str, *, forge: str | None = None, repository: str | None = None,
               number: int | None = None, sha: str | None = None, environment: str | None = None,
               **detail: Any) -> int:
        with self.state.engine.begin() as conn:
            result = conn.execute(audit.insert().values(
                at=time.time(), actor=actor, action=action, forge=forge, repository=repository,
                number=number, sha=sha, environment=environment,
                detail=json.dumps(detail, sort_keys=True, default=str)))
            key = result.inserted_primary_key
            return int(key[0]) if key else 0

    def entries(self, *, environment: str | None = None, action: str | None = None,
                forge: str | None = None, repository: str | None = None, number: int | None = None,
                limit: int = 200) -> list[AuditEntry]:
        query = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
        for column, value in (("environment", environment), ("action", action), ("forge", forge),
                              ("repository", repository), ("number", number)):
            if value is not None:
                query = query.where(audit.c[column] == value)
        with self.state.engine.connect() as conn:
            return [AuditEntry(r.id, r.at, r.actor, r.action, r.forge, r.repository, r.number, r.sha,
                               r.environment, json.loads(r.detail)) for r in conn.execute(query)]
