"""Locks in the state store explain themselves (holder, reason, since, term, how to release) and
end: released, taken over once expired, renewed by a live holder — on SQLite and PostgreSQL."""

from __future__ import annotations

import time

from runner.state.locks import Locks
from runner.state.store import StateStore


def test_a_lock_says_who_why_since_until_and_how_to_release(state_url: str):
    locks = Locks(StateStore(state_url))
    taken = locks.acquire("env:prod", "gitlab:data/shop!3", "`/deploy prod` by @maria in !3", ttl=3600,
                          release="comment `/unlock prod` in !3")
    assert taken is not None
    held = locks.held_by("env:prod")
    assert held is not None and held == taken
    assert (held.holder, held.reason, held.release) == (
        "gitlab:data/shop!3", "`/deploy prod` by @maria in !3", "comment `/unlock prod` in !3")
    assert held.expires_at is not None and 3590 < held.expires_at - held.since <= 3600
    assert locks.acquire("env:prod", "someone else") is None  # held
    assert locks.acquire("env:prod", "gitlab:data/shop!3", "again", ttl=60) is not None  # its holder renews
    assert not locks.release("env:prod", "someone else")
    assert locks.release("env:prod", "gitlab:data/shop!3") and locks.held_by("env:prod") is None


def test_an_expired_hold_is_listed_released_once_and_taken_over(state_url: str):
    locks = Locks(StateStore(state_url))
    assert locks.acquire("i:env:a", "one", "short", ttl=0.05)
    assert locks.acquire("i:env:b", "two", "long", ttl=3600)
    assert locks.acquire("other:env:c", "three", "elsewhere", ttl=0.05)
    time.sleep(0.1)  # the term passes: nothing else to wait on
    [lapsed] = locks.expired("i:env:")
    assert (lapsed.name, lapsed.holder, lapsed.reason) == ("i:env:a", "one", "short")
    assert lapsed.expired() and locks.held_by("i:env:a") is None  # expired is not held
    assert locks.release_expired(lapsed) and not locks.release_expired(lapsed)
    assert locks.expired("i:env:") == []
    assert locks.acquire("other:env:c", "four") is not None  # taken over


def test_renew_is_the_heartbeat(state_url: str):
    locks = Locks(StateStore(state_url))
    first = locks.acquire("lease", "worker", ttl=1)
    assert first is not None and first.expires_at is not None
    assert locks.renew("lease", "worker", ttl=100)
    renewed = locks.held_by("lease")
    assert renewed is not None and renewed.expires_at is not None and renewed.renewed_at is not None
    assert renewed.expires_at > first.expires_at + 50 and renewed.since == first.since
    assert not locks.renew("lease", "not the holder", ttl=100)


def test_wait_tells_once_who_holds_it(state_url: str):
    locks = Locks(StateStore(state_url))
    assert locks.acquire("w", "holder", "busy building", ttl=0.3)
    told, long = [], []
    got = locks.wait("w", "waiter", "next", ttl=10, timeout=5, poll=0.02, on_held=told.append,
                     on_long_wait=(0.1, long.append))
    assert got is not None and got.holder == "waiter"
    assert [(lock.holder, lock.reason) for lock in told] == [("holder", "busy building")]
    assert [lock.holder for lock in long] == ["holder"]  # once, however long it waited
