"""Named locks in the state store, so workers on any machine agree on who may do what.

Used for the one-writer rule of a DuckDB warehouse file, and for `/deploy staging` (an
environment held by one merge request at a time). A lock may expire, so a crashed holder does not
block everyone forever.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from runner.state.schema import locks
from runner.state.store import StateStore


@dataclass(frozen=True)
class Lock:
    name: str
    holder: str
    note: str
    since: float
    expires_at: float | None


class Locks:
    def __init__(self, state: StateStore):
        self.state = state

    def acquire(self, name: str, holder: str, note: str = "", ttl: float | None = None) -> Lock | None:
        """Take `name` for `holder` (again, if it already holds it). Returns None when taken;
        `held_by(name)` says by whom."""
        now = time.time()
        expires = now + ttl if ttl else None
        with self.state.engine.begin() as conn:
            conn.execute(locks.delete().where(locks.c.name == name, locks.c.expires_at.is_not(None),
                                              locks.c.expires_at < now))
            updated = conn.execute(locks.update().where(locks.c.name == name, locks.c.holder == holder)
                                   .values(note=note, expires_at=expires)).rowcount
            if updated:
                row = conn.execute(sa.select(locks).where(locks.c.name == name)).one()
                return _lock(row)
        try:
            with self.state.engine.begin() as conn:
                conn.execute(locks.insert().values(name=name, holder=holder, note=note, since=now,
                                                   expires_at=expires))
        except IntegrityError:
            return None
        return Lock(name, holder, note, now, expires)

    def release(self, name: str, holder: str | None = None) -> bool:
        """Release `name` (only if `holder` holds it, when given). True when something was released."""
        query = locks.delete().where(locks.c.name == name)
        if holder is not None:
            query = query.where(locks.c.holder == holder)
        with self.state.engine.begin() as conn:
            return bool(conn.execute(query).rowcount)

    def release_all(self, holder: str) -> list[str]:
        with self.state.engine.begin() as conn:
            names = list(conn.execute(sa.select(locks.c.name).where(locks.c.holder == holder)).scalars())
            conn.execute(locks.delete().where(locks.c.holder == holder))
        return names

    def held_by(self, name: str) -> Lock | None:
        with self.state.engine.connect() as conn:
            row = conn.execute(sa.select(locks).where(locks.c.name == name)).first()
        if row is None or (row.expires_at is not None and row.expires_at < time.time()):
            return None
        return _lock(row)

    @contextmanager
    def hold(self, name: str, holder: str, ttl: float, note: str = "",
             timeout: float = 0.0) -> Iterator[Lock | None]:
        """Hold `name` for the block (None when it could not be had within `timeout`), renewing
        it every third of `ttl`: a live holder keeps it however long the work takes, a dead one
        loses it `ttl` seconds after its last renewal."""
        lock = self.wait(name, holder, note, ttl, timeout=timeout) if timeout else \
            self.acquire(name, holder, note, ttl)
        if lock is None:
            yield None
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl / 3):
                with contextlib.suppress(Exception):  # a missed renewal is retried next time
                    self.acquire(name, holder, note, ttl)

        renewer = threading.Thread(target=renew, name=f"lease-{name}", daemon=True)
        renewer.start()
        try:
            yield lock
        finally:
            stop.set()
            renewer.join(timeout=5)
            self.release(name, holder)

    def wait(self, name: str, holder: str, note: str = "", ttl: float | None = None,
             timeout: float = 600.0, poll: float = 0.2) -> Lock | None:
        """Acquire, waiting up to `timeout` seconds for the holder to release it."""
        deadline = time.monotonic() + timeout
        while True:
            lock = self.acquire(name, holder, note, ttl)
            if lock is not None or time.monotonic() >= deadline:
                return lock
            time.sleep(poll)


def _lock(row: sa.Row) -> Lock:
    return Lock(row.name, row.holder, row.note, row.since, row.expires_at)
