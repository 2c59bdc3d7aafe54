"""Changes to an environment as a recoverable protocol: the state store records the change as
*pending* (what the environment pointed at, what it will point at), the warehouse moves its views
in its own transaction, and the store then marks the change *done* and the environment as moved.

A crash, a lost COMMIT answer or a lost state connection between those steps leaves the change
pending. Whoever changes that environment next first reads the warehouse's actual views and
settles the pending change to what they show (`runner.environments.settle`), so the state store
never goes on claiming what the warehouse does not hold. A change the warehouse refused outright
is marked *abandoned*. `history` shows only done changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from runner.errors import EnvError
from runner.state.records import HistoryEntry
from runner.state.schema import (
    environment_history,
    environment_models,
    environment_tests,
    environments,
    snapshots,
)

PENDING, DONE, ABANDONED = "pending", "done", "abandoned"


class EnvironmentChanges:
    """The environment tables of one state store, changed only through this protocol."""

    def __init__(self, engine: sa.Engine, namespace: str = ""):
        self.engine = engine
        self.namespace = namespace  # what an environment made from now on records as its own

    def begin(self, name: str, after: Mapping[str, str], action: str, source: str | None = None,
              rolls_back: int | None = None, commit: str | None = None,
              cause: str | None = None) -> HistoryEntry:
        """Record a pending change of `name` to `after`; `before` is what the store says now.
        `cause`: what asked for it, when it is to happen once (see `caused`)."""
        with self.engine.begin() as conn:
            if action == "drop" and _exists(conn, name) is None:
                raise EnvError(f"there is no environment {name!r}; `sluice env list` shows them")
            before = _models(conn, name)
            result = conn.execute(environment_history.insert().values(
                environment=name, action=action, source=source, created_at=time.time(),
                before=json.dumps(before, sort_keys=True), after=json.dumps(dict(after), sort_keys=True),
                rolled_back=False, status=PENDING, rolls_back=rolls_back, commit=commit,
                cause=cause))
            key = result.inserted_primary_key
            change_id = int(key[0]) if key else 0
            row = conn.execute(sa.select(environment_history)
                               .where(environment_history.c.id == change_id)).one()
        return _entry(row)

    def finish(self, change_id: int, models: Mapping[str, str] | None = None) -> None:
        """The warehouse holds the change: move the environment's record (to `models` when the
        warehouse showed something else than the change's `after`) and mark the change done."""
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(environment_history)
                               .where(environment_history.c.id == change_id)).one()
            if row.status != PENDING:
                return  # settled already
            entry = _entry(row)
            target = dict(entry.after if models is None else models)
            if entry.action == "drop" and not target:
                conn.execute(environments.delete().where(environments.c.name == entry.environment))
                conn.execute(environment_tests.delete()
                             .where(environment_tests.c.environment == entry.environment))
            elif _exists(conn, entry.environment) is None:
                conn.execute(environments.insert().values(name=entry.environment, created_at=now,
                                                          updated_at=now, expires_at=None,
                                                          namespace=self.namespace or None))
            else:
                conn.execute(environments.update().where(environments.c.name == entry.environment)
                             .values(updated_at=now, expires_at=None))
            before = _models(conn, entry.environment)
            conn.execute(environment_models.delete()
                         .where(environment_models.c.environment == entry.environment))
            if target:
                conn.execute(environment_models.insert(), [
                    {"environment": entry.environment, "name": model, "fingerprint": fp}
                    for model, fp in target.items()])
            conn.execute(environment_history.update().where(environment_history.c.id == change_id)
                         .values(status=DONE, finished_at=now, before=json.dumps(before, sort_keys=True),
                                 after=json.dumps(target, sort_keys=True)))
            if entry.rolls_back is not None:
                conn.execute(environment_history.update()
                             .where(environment_history.c.id == entry.rolls_back).values(rolled_back=True))
            touched = set(before.values()) | set(target.values())
            if touched:
                conn.execute(snapshots.update().where(snapshots.c.fingerprint.in_(list(touched)))
                             .values(last_referenced_at=now))

    def abandon(self, change_id: int) -> None:
        """The warehouse refused the change (its transaction rolled back): nothing moved."""
        with self.engine.begin() as conn:
            conn.execute(environment_history.update()
                         .where(environment_history.c.id == change_id,
                                environment_history.c.status == PENDING)
                         .values(status=ABANDONED, finished_at=time.time()))

    def pending(self, name: str | None = None) -> list[HistoryEntry]:
        """Changes begun and not settled (of `name`, or of every environment), oldest first."""
        query = sa.select(environment_history).where(environment_history.c.status == PENDING)
        if name is not None:
            query = query.where(environment_history.c.environment == name)
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(query.order_by(environment_history.c.id))]

    def caused(self, name: str, cause: str) -> HistoryEntry | None:
        """The done change of `name` that `cause` asked for, if one is: asked again (its job
        died after the warehouse moved, or its answer was lost), the change is not made twice.
        Settle `name` first, so a change left pending counts once the warehouse shows it."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(environment_history)
                               .where(environment_history.c.environment == name,
                                      environment_history.c.cause == cause,
                                      environment_history.c.status == DONE)
                               .order_by(environment_history.c.id.desc())).first()
        return _entry(row) if row is not None else None

    def history(self, name: str) -> list[HistoryEntry]:
        """The environment's done changes, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(environment_history)
                                .where(environment_history.c.environment == name,
                                       sa.or_(environment_history.c.status.is_(None),
                                              environment_history.c.status == DONE))
                                .order_by(environment_history.c.id.desc())).all()
        return [_entry(r) for r in rows]


def _exists(conn: Connection, name: str) -> Row | None:
    return conn.execute(sa.select(environments.c.name).where(environments.c.name == name)).first()


def _models(conn: Connection, name: str) -> dict[str, str]:
    return dict(conn.execute(sa.select(environment_models.c.name, environment_models.c.fingerprint)
                             .where(environment_models.c.environment == name)).all())


def _entry(row: Row) -> HistoryEntry:
    return HistoryEntry(row.id, row.environment, row.action, row.source, row.created_at,
                        json.loads(row.before), json.loads(row.after), bool(row.rolled_back),
                        row.status or DONE, row.rolls_back, row.commit, row.cause)
