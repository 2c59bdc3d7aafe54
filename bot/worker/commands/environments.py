"""`/deploy`, `/unlock`, `/rollback` and `/destroy`: commands that move or drop environments.

`/deploy <env>` holds the environment for the server's `deploy_hold` (said in the answer); the
hold lapses by itself then, and the janitor writes that in the audit log.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

from bot.records.audit import moved_views
from bot.worker import locking
from bot.worker.commands.base import CommandContext
from bot.worker.context import JobContext
from bot.worker.keys import env_lock, holder, mr_environment
from bot.worker.text import findings, held, span, stamp
from runner import environments
from runner.environments import NothingToRollBack
from runner.janitor import parse_duration
from runner.naming import PRODUCTION

ROLLBACK_WAIT = 300.0  # seconds /rollback prod waits for a promotion in flight


def deploy(cc: CommandContext) -> str:
    env = cc.command.args[0]
    ctx, repository, number = cc.jobs, cc.repository, cc.number
    source = mr_environment(number)
    state = ctx.s.project_state(repository)
    if state.environment(source) is None:
        return f"`/deploy {env}`: this merge request has no environment yet; comment `/plan` first."
    if cc.governed.protected(env):
        gate = ctx.governance.promotion(cc.governed, cc.facts(cc.merge_request()), env)
        if not gate.ok:
            return f"`/deploy {env}`: refused by the policy.\n\n" + findings(gate.blocking)
    lock_name = env_lock(ctx.s.config.installation, repository, env)
    who = holder(repository, number)
    label = cc.forge.mr_label(number)
    hold = parse_duration(ctx.s.config.deploy_hold)
    locking.expire_holds(ctx)
    lock = ctx.locks.acquire(lock_name, who, f"`/deploy {env}` by @{cc.event.author} in {label}", ttl=hold,
                             release=f"comment `/unlock {env}` in {label} (a maintainer may, anywhere)")
    if lock is None:
        current = ctx.locks.held_by(lock_name)
        if current is not None:
            return f"`/deploy {env}`: {held(current, f'`{env}`')}"
        return f"`/deploy {env}`: `{env}` is busy; try again."
    cc.log(f"holding {env} until {stamp(time.time() + hold)}")
    with ctx.warehouse(repository, cc.run_id) as engine:
        result = environments.promote(engine, state, source, env)
    ctx.audit.record(cc.event.author, "deploy", forge=repository.forge, repository=repository.full_name,
                     number=number, environment=env, source=source, moved=len(result.changed),
                     views=moved_views(result.moves), hold_until=lock.expires_at)
    until = stamp(lock.expires_at) if lock.expires_at else "it is released"
    return (f"`/deploy {env}`: `{env}` now points at this merge request's snapshots "
            f"({len(result.changed)} views moved, 0 rebuilt). This merge request holds `{env}` for "
            f"{span(hold)}, until {until}; `/unlock {env}` releases it earlier."
            + (" Merges wait for production while it is held." if env == PRODUCTION else ""))


def unlock(cc: CommandContext) -> str:
    """Who may release whose lock is the policy's call (checked before this runs)."""
    env = cc.command.args[0]
    lock_name = env_lock(cc.jobs.s.config.installation, cc.repository, env)
    current = cc.jobs.locks.held_by(lock_name)
    if current is None:
        return f"`/unlock {env}`: `{env}` is not locked."
    locking.release(cc.jobs, lock_name)
    cc.jobs.audit.record(cc.event.author, "unlock", forge=cc.repository.forge,
                         repository=cc.repository.full_name, number=cc.number, environment=env,
                         held_by=current.holder, reason=current.reason)
    return f"`/unlock {env}`: released (it was held by {current.reason or current.holder})."


def rollback(cc: CommandContext) -> str:
    """Instant: the previous snapshots are still there until the janitor's TTL."""
    env = cc.command.args[0]
    ctx, repository, number = cc.jobs, cc.repository, cc.number
    state = ctx.s.project_state(repository)
    who = holder(repository, number)
    # Production's lock, as promotions take it: a rollback waits for a promotion in flight and
    # then undoes exactly the last one.
    name = env_lock(ctx.s.config.installation, repository, env)
    reason = f"`/rollback {env}` by @{cc.event.author}"
    turn = (ctx.locks.hold(name, who, ctx.s.config.job_lease, reason=reason, timeout=ROLLBACK_WAIT)
            if env == PRODUCTION else nullcontext(True))
    with turn as taken:
        if not taken:
            current = ctx.locks.held_by(name)
            what = held(current, f"`{env}`") if current is not None else f"`{env}` is busy."
            return f"`/rollback {env}`: {what} Try again once it is free."
        before = state.environment(env)
        # Keyed by the comment's event: taken up again after its worker died (or its warehouse's
        # COMMIT answer was lost), the command does not go back a second step.
        cause = f"event:{cc.event_id}"
        try:
            with ctx.warehouse(repository, cc.run_id) as engine:
                result = environments.rollback(engine, state, env, cause=cause)
        except NothingToRollBack as exc:
            if env == PRODUCTION:
                return f"`/rollback {env}`: {exc.message}."
            if not exc.created:
                return (f"`/rollback {env}`: `{env}` has no change to roll back (it does not exist, or "
                        "was dropped).")
            return (f"`/rollback {env}`: `{env}` has no earlier version to roll back to: its only "
                    f"change created it. `/deploy {env}` from a merge request points it elsewhere.")
        after = state.environment(env)
    if env == PRODUCTION:
        ctx.inbox.wake(name)  # whatever waited for production goes on
    moved = ", ".join(f"`{view}`" for view in result.changed) or "no view"
    reply = (f"`/rollback {env}`: `{env}` points at its previous snapshots again "
             f"({len(result.changed)} views moved back, 0 rebuilt: {moved}).")
    was, now = dict(before.models) if before else {}, dict(after.models) if after else {}
    if result.earlier:  # an earlier attempt rolled back; it may have died before the audit log
        change = state.changes.caused(env, cause)
        if change is None or _audited(ctx, env, cc.event_id):
            return reply
        was, now = dict(change.before), dict(change.after)
    ctx.audit.record(cc.event.author, "rollback", forge=repository.forge, repository=repository.full_name,
                     number=number, environment=env, event=cc.event_id, before=was, after=now,
                     moved=list(result.changed),
                     views=moved_views(environments.moves_between(state, env, was, now)))
    return reply


def _audited(ctx: JobContext, env: str, event_id: int) -> bool:
    """Whether the rollback `event_id` asked for is in the audit log already (its job died after
    recording it, or before: then this records it)."""
    return any(e.detail.get("event") == event_id
               for e in ctx.audit.entries(environment=env, action="rollback", limit=50))


def destroy(cc: CommandContext) -> str:
    state = cc.jobs.s.project_state(cc.repository)
    env = mr_environment(cc.number)
    if state.environment(env) is None:
        return f"`/destroy`: there is no environment `{env}`."
    with cc.jobs.warehouse(cc.repository, cc.run_id) as engine:
        environments.drop(engine, state, env)
    return f"`/destroy`: environment `{env}` dropped; its tables go when the janitor's TTL passes."
