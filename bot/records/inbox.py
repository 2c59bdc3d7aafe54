"""The inbox: every webhook delivery Sluice accepted, stored before it is answered.

The broker only carries "go look at event N"; this table is the truth. A delivery seen twice
(same forge and delivery id) is stored once, and so is one event delivered twice under different
delivery ids (same `content_key`, see `bot.events.identity`). Events stored but never handed to
the broker (it was down) are found again by the sweeper.

Each installation (`ServerConfig.installation`) sees only its own events, so two installations
may share one state database. An event whose work waits for a lock is parked (`park`): neither
sent again nor counted as stalled until the lock is free (`wake`, or the sweeper finds it free).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bot.records.schema import RECORDS, events
from runner.state.store import StateStore


@dataclass(frozen=True)
class StoredEvent:
    id: int
    forge: str
    delivery_id: str
    kind: str
    repository: str | None
    number: int | None
    event: str | None
    received_at: float
    dispatched_at: float | None
    done_at: float | None
    attempts: int
    installation: str | None = None
    waiting_for: str | None = None  # the lock its work waits for
    message_id: str | None = None  # the broker's own id of its message


class Inbox:
    def __init__(self, state: StateStore, installation: str | None = None):
        """`installation`: this installation's name; None sees every event (tools, tests)."""
        state.ensure(RECORDS)
        self.state = state
        self.installation = installation

    def _mine(self) -> sa.ColumnElement[bool]:
        """This installation's events (and those stored before installations had names)."""
        if self.installation is None:
            return sa.true()
        return sa.or_(events.c.installation == self.installation, events.c.installation.is_(None))

    def store(self, forge: str, delivery_id: str, kind: str, repository: str | None,
              number: int | None, event: str | None, content_key: str | None = None) -> int | None:
        """Store a delivery; None when this delivery id, or this event (`content_key`), was stored
        before (a duplicate). Both checks are the table's unique keys, so concurrent deliveries of
        one event store it once."""
        values = dict(forge=forge, delivery_id=delivery_id, kind=kind, repository=repository,
                      number=number, event=event, received_at=time.time(), attempts=0,
                      done_at=None if event is not None else time.time(),
                      installation=self.installation, content_key=content_key)
        try:
            with self.state.engine.begin() as conn:
                result = conn.execute(events.insert().values(**values))
                key = result.inserted_primary_key
                return int(key[0]) if key else None
        except IntegrityError:
            return None

    def mark_dispatched(self, event_id: int, message_id: str | None = None) -> None:
        with self.state.engine.begin() as conn:
            conn.execute(events.update().where(events.c.id == event_id)
                         .values(dispatched_at=time.time(), message_id=message_id))

    def start(self, event_id: int) -> StoredEvent | None:
        """A worker picks the event up (holding its lease); None when it is already done (a
        redelivered message) or another installation's. Counting the attempt and checking
        `done_at` are one statement."""
        with self.state.engine.begin() as conn:
            taken = conn.execute(events.update()
                                 .where(events.c.id == event_id, events.c.done_at.is_(None), self._mine())
                                 .values(attempts=events.c.attempts + 1, waiting_for=None)).rowcount
            row = conn.execute(sa.select(events).where(events.c.id == event_id)).first() if taken else None
        return _event(row) if row is not None else None

    def park(self, event_id: int, lock: str) -> None:
        """The event's work waits for `lock`: it is not sent again until the lock is free."""
        with self.state.engine.begin() as conn:
            conn.execute(events.update().where(events.c.id == event_id)
                         .values(waiting_for=lock, dispatched_at=None))

    def waiting(self, limit: int = 100) -> list[StoredEvent]:
        """Parked events, oldest first."""
        return self._not_done(events.c.waiting_for.is_not(None), limit=limit)

    def wake(self, lock: str) -> int:
        """Every event parked on `lock` is ready again: the sweeper sends it on its next round.
        Returns how many."""
        with self.state.engine.begin() as conn:
            return int(conn.execute(events.update().where(events.c.waiting_for == lock, self._mine(),
                                                          events.c.done_at.is_(None))
                                    .values(waiting_for=None, dispatched_at=None)).rowcount)

    def finish(self, event_id: int) -> None:
        with self.state.engine.begin() as conn:
            conn.execute(events.update().where(events.c.id == event_id).values(done_at=time.time()))

    def get(self, event_id: int) -> StoredEvent | None:
        with self.state.engine.connect() as conn:
            row = conn.execute(sa.select(events).where(events.c.id == event_id)).first()
        return _event(row) if row is not None else None

    def undispatched(self, older_than: float, limit: int = 100) -> list[StoredEvent]:
        """Events to act on that never reached the broker, received before `older_than`."""
        return self._not_done(events.c.dispatched_at.is_(None), events.c.received_at < older_than,
                              events.c.waiting_for.is_(None), limit=limit)

    def stalled(self, dispatched_before: float, limit: int = 100) -> list[StoredEvent]:
        """Events handed to the broker before `dispatched_before` and still not done: their worker
        may have died mid-job (its lease on the event tells whether someone still works on it)."""
        return self._not_done(events.c.dispatched_at.is_not(None),
                              events.c.dispatched_at < dispatched_before, events.c.waiting_for.is_(None),
                              limit=limit)

    def _not_done(self, *conditions: sa.ColumnElement[bool], limit: int) -> list[StoredEvent]:
        query = (sa.select(events).where(events.c.done_at.is_(None), self._mine(), *conditions)
                 .order_by(events.c.id).limit(limit))
        with self.state.engine.connect() as conn:
            return [_event(row) for row in conn.execute(query)]

    def requeue_unfinished(self) -> int:
        """After a restart with an in-process broker: every event not done goes back to the
        sweeper, since its message died with the process."""
        with self.state.engine.begin() as conn:
            return int(conn.execute(events.update().where(events.c.done_at.is_(None), self._mine(),
                                                          events.c.dispatched_at.is_not(None))
                                    .values(dispatched_at=None)).rowcount)

    def prune(self, done_before: float) -> int:
        """Forget events finished before `done_before` (their runs stay); returns how many.
        A redelivery of one of them afterwards would be stored again, so keep this well beyond
        the forges' redelivery window (days, not minutes)."""
        with self.state.engine.begin() as conn:
            return int(conn.execute(events.delete().where(events.c.done_at.is_not(None), self._mine(),
                                                          events.c.done_at < done_before)).rowcount)

    def pending_count(self) -> int:
        with self.state.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events)
                                    .where(events.c.done_at.is_(None), self._mine())).scalar() or 0)


def _event(row: sa.Row) -> StoredEvent:
    return StoredEvent(row.id, row.forge, row.delivery_id, row.kind, row.repository, row.number,
                       row.event, row.received_at, row.dispatched_at, row.done_at, row.attempts,
                       row.installation, row.waiting_for, row.message_id)
