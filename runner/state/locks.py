"""Named locks in the state store, so workers on any machine agree on who may do what.

Used for the one-writer rule of a DuckDB warehouse file, for `/deploy staging` (an environment
held by one merge request at a time), for promotions, and for event leases. Every lock explains
itself: who holds it, why, since when, until when, and what to do to release it. Every lock may
expire, so a crashed holder does not block everyone forever; a live holder renews it (`renew`, or
`hold`, which renews in the background), the heartbeat a short lease needs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from runner.state.schema import locks
from runner.state.store import StateStore


@dataclass(frozen=True)
class Lock:
    """One held lock, as the state store records it."""

    name: str
    holder: str  # who holds it: a merge request (`gitlab:group/shop!42`), a worker thread, a run
    reason: str  # why, in a user's words: "`/deploy staging` by @maria"
    since: float  # when it was taken
    expires_at: float | None  # when it lapses unless renewed (None: only a release ends it)
    release: str = ""  # what to do to release it early: "comment `/unlock staging`"
    renewed_at: float | None = None  # the holder's last renewal (its heartbeat)

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at < (time.time() if now is None else now)


class Locks:
    def __init__(self, state: StateStore):
        self.state = state

    def acquire(self, name: str, holder: str, reason: str = "", ttl: float | None = None,
                release: str = "") -> Lock | None:
        """Take `name` for `holder` (again, renewing it, if it already holds it); an expired lock
        of someone else is taken over. Returns None when someone else holds it; `held_by(name)`
        says who."""
        now = time.time()
        expires = now + ttl if ttl else None
        reason, release = reason[:255], release[:255]
        with self.state.engine.begin() as conn:
            conn.execute(locks.delete().where(locks.c.name == name, locks.c.expires_at.is_not(None),
                                              locks.c.expires_at < now))
            updated = conn.execute(locks.update().where(locks.c.name == name, locks.c.holder == holder)
                                   .values(note=reason, expires_at=expires, release_hint=release,
                                           renewed_at=now)).rowcount
            if updated:
                row = conn.execute(sa.select(locks).where(locks.c.name == name)).one()
                return _lock(row)
        try:
            with self.state.engine.begin() as conn:
                conn.execute(locks.insert().values(name=name, holder=holder, note=reason, since=now,
                                                   expires_at=expires, release_hint=release, renewed_at=now))
        except IntegrityError:
            return None
        return Lock(name, holder, reason, now, expires, release, now)

    def renew(self, name: str, holder: str, ttl: float) -> bool:
        """Push the expiry of `holder`'s lock `ttl` seconds out (a heartbeat); False when
        `holder` does not hold it any more (it expired and someone else took it, or was released)."""
        now = time.time()
        with self.state.engine.begin() as conn:
            return bool(conn.execute(locks.update().where(locks.c.name == name, locks.c.holder == holder)
                                     .values(expires_at=now + ttl, renewed_at=now)).rowcount)

    def release(self, name: str, holder: str | None = None) -> bool:
        """Release `name` (only if `holder` holds it, when given). True when something was released."""
        query = locks.delete().where(locks.c.name == name)
        if holder is not None:
            query = query.where(locks.c.holder == holder)
        with self.state.engine.begin() as conn:
            return bool(conn.execute(query).rowcount)

    def release_all(self, holder: str) -> list[str]:
        with self.state.engine.begin() as conn:
            query = sa.select(locks.c.name).where(locks.c.holder == holder)
            names: list[str] = list(conn.execute(query).scalars())
            conn.execute(locks.delete().where(locks.c.holder == holder))
        return names

    def held_by(self, name: str) -> Lock | None:
        """The lock as it stands, or None when nobody holds it (an expired lock is not held)."""
        with self.state.engine.connect() as conn:
            row = conn.execute(sa.select(locks).where(locks.c.name == name)).first()
        if row is None or (row.expires_at is not None and row.expires_at < time.time()):
            return None
        return _lock(row)

    def expired(self, prefix: str = "", now: float | None = None) -> list[Lock]:
        """Locks past their expiry that nobody has taken over or released yet."""
        now = time.time() if now is None else now
        query = sa.select(locks).where(locks.c.expires_at.is_not(None), locks.c.expires_at < now)
        if prefix:
            query = query.where(locks.c.name.startswith(prefix, autoescape=True))
        with self.state.engine.connect() as conn:
            return [_lock(row) for row in conn.execute(query.order_by(locks.c.name))]

    def release_expired(self, lock: Lock) -> bool:
        """Release `lock` if it is still the same expired hold (not renewed or taken over since)."""
        with self.state.engine.begin() as conn:
            return bool(conn.execute(locks.delete().where(
                locks.c.name == lock.name, locks.c.holder == lock.holder, locks.c.since == lock.since,
                locks.c.expires_at.is_not(None), locks.c.expires_at < time.time())).rowcount)

    @contextmanager
    def hold(self, name: str, holder: str, ttl: float, reason: str = "", timeout: float = 0.0,
             release: str = "", on_held: Callable[[Lock], None] | None = None,
             on_long_wait: tuple[float, Callable[[Lock], None]] | None = None) -> Iterator[Lock | None]:
        """Hold `name` for the block (None when it could not be had within `timeout`), renewing
        it every third of `ttl`: a live holder keeps it however long the work takes, a dead one
        loses it `ttl` seconds after its last renewal. `on_held` and `on_long_wait` as for `wait`."""
        lock = (self.wait(name, holder, reason, ttl, timeout=timeout, release=release, on_held=on_held,
                          on_long_wait=on_long_wait)
                if timeout else self.acquire(name, holder, reason, ttl, release))
        if lock is None:
            yield None
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl / 3):
                with contextlib.suppress(Exception):  # a missed renewal is retried next time
                    if not self.renew(name, holder, ttl):
                        self.acquire(name, holder, reason, ttl, release)

        renewer = threading.Thread(target=renew, name=f"lease-{name}", daemon=True)
        renewer.start()
        try:
            yield lock
        finally:
            stop.set()
            renewer.join(timeout=5)
            self.release(name, holder)

    def wait(self, name: str, holder: str, reason: str = "", ttl: float | None = None,
             timeout: float = 600.0, poll: float = 0.2, release: str = "",
             on_held: Callable[[Lock], None] | None = None,
             on_long_wait: tuple[float, Callable[[Lock], None]] | None = None) -> Lock | None:
        """Acquire, waiting up to `timeout` seconds for the holder to release it. `on_held` is
        called once, with the lock as someone else holds it, when the first attempt fails;
        `on_long_wait` (seconds, callback) once when the wait has lasted that long."""
        started = time.monotonic()
        deadline = started + timeout
        told = told_long = False
        while True:
            lock = self.acquire(name, holder, reason, ttl, release)
            if lock is not None or time.monotonic() >= deadline:
                return lock
            current: Lock | None = None
            if on_held is not None and not told:
                current = self.held_by(name)
                if current is not None:
                    told = True
                    on_held(current)
            if on_long_wait is not None and not told_long and time.monotonic() - started >= on_long_wait[0]:
                current = current or self.held_by(name)
                if current is not None:
                    told_long = True
                    on_long_wait[1](current)
            time.sleep(poll)


def _lock(row: sa.Row) -> Lock:
    return Lock(row.name, row.holder, row.note, row.since, row.expires_at, row.release_hint or "",
                row.renewed_at)
