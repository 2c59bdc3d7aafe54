"""Environment locks as the worker uses them: taken with a reason, a term and a way out; waited
for by parking the job's event (never by holding a worker for hours); released (waking whoever
waits); and, once expired, released by the janitor and written in the audit log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from bot.events import Repository
from bot.worker.context import JobContext, Transient, Waiting
from bot.worker.keys import env_lock, env_lock_prefix
from bot.worker.text import held
from runner.state.locks import Lock

log = logging.getLogger("sluice.worker")


def take(ctx: JobContext, repository: Repository, environment: str, who: str, reason: str,
         ttl: float | None, release: str, run_id: int, thread: tuple[Repository, int] | None,
         waiter: str) -> Lock:
    """Take `environment`'s lock for `who`, or wait for it: the run's page says what it waits
    for, the thread (`thread`: the repository and merge request to tell) is told once, with who
    holds it and how to release it, and `Waiting` parks the event until the lock is free.
    `waiter` names what waits, for that message: "The promotion of !4"."""
    expire_holds(ctx)
    name = env_lock(ctx.s.config.installation, repository, environment)
    lock = ctx.locks.acquire(name, who, reason, ttl, release)
    if lock is not None:
        run = ctx.runs.get(run_id)
        if run is not None and run.waiting_for:
            ctx.runs.resume(run_id, f"took `{environment}`'s lock")
        return lock
    current = ctx.locks.held_by(name)
    if current is None:  # released between the two reads: try again soon
        raise Transient(f"{environment}'s lock changed hands; retrying")
    text = held(current, f"`{environment}`")
    run = ctx.runs.get(run_id)
    if thread is not None and (run is None or not run.waiting_for):
        repo, number = thread
        link = f"[run #{run_id}]({ctx.s.config.run_url(run_id)})"
        ctx.forge(repo).post_comment(repo.full_name, number,
                                     f"⏳ {waiter} waits: {text} It goes on by itself once "
                                     f"`{environment}` is free ({link}).")
    ctx.runs.wait(run_id, text)
    raise Waiting(name, text)


@contextmanager
def keeping(ctx: JobContext, name: str, who: str, ttl: float, reason: str,
            release_hint: str) -> Iterator[None]:
    """Keep a lock `take` gave `who` for the block, renewing it every third of `ttl` (a
    heartbeat: should this process die, the lock lapses `ttl` after its last renewal); then
    release it and wake whoever waits."""
    with ctx.locks.hold(name, who, ttl, reason=reason, release=release_hint):
        yield
    ctx.inbox.wake(name)


def release(ctx: JobContext, name: str, who: str | None = None) -> bool:
    """Release lock `name` (only `who`'s, when given) and wake the events waiting for it."""
    released = ctx.locks.release(name, who)
    if released:
        ctx.inbox.wake(name)
    return released


def release_all(ctx: JobContext, who: str) -> list[str]:
    """Release everything `who` holds (a merge request that closed) and wake their waiters."""
    names = ctx.locks.release_all(who)
    for name in names:
        ctx.inbox.wake(name)
    return names


def expire_holds(ctx: JobContext) -> list[Lock]:
    """Release this installation's environment locks whose term passed, each written in the
    audit log (who held what, why, since when), and wake whoever waits for them."""
    gone = []
    for lock in ctx.locks.expired(env_lock_prefix(ctx.s.config.installation)):
        if not ctx.locks.release_expired(lock):
            continue  # renewed or taken over meanwhile
        gone.append(lock)
        ctx.inbox.wake(lock.name)
        forge, _, rest = lock.name.removeprefix(env_lock_prefix(ctx.s.config.installation)).partition(":")
        repository, _, environment = rest.rpartition(":")
        number = lock.holder.rsplit("!", 1)[-1]
        ctx.audit.record("sluice", "lock_expired", forge=forge, repository=repository,
                         number=int(number) if number.isdigit() else None, environment=environment,
                         held_by=lock.holder, reason=lock.reason, since=lock.since,
                         expired_at=lock.expires_at)
        log.info("released %s: %s's hold (%s) expired", lock.name, lock.holder, lock.reason)
    return gone
