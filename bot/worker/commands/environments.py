"""`/deploy`, `/unlock`, `/rollback` and `/destroy`: commands that move or drop environments."""

from __future__ import annotations

import time
from contextlib import nullcontext

from bot.worker.commands.base import CommandContext
from bot.worker.keys import env_lock, holder, mr_environment
from bot.worker.merge import PROMOTION_WAIT
from bot.worker.text import findings
from runner import environments
from runner.naming import PRODUCTION


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
    lock_name = env_lock(repository, env)
    who = holder(repository, number)
    lock = ctx.locks.acquire(lock_name, who, note=f"/deploy by @{cc.event.author}")
    if lock is None:
        current = ctx.locks.held_by(lock_name)
        if current is not None:
            since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(current.since))
            other = current.holder.rsplit("!", 1)[-1]
            label = cc.forge.mr_label(int(other)) if other.isdigit() else other
            return (f"`/deploy {env}`: `{env}` is held by {label} since {since}. Ask there for "
                    f"`/unlock {env}`, or a maintainer can `/unlock {env}` here.")
        return f"`/deploy {env}`: `{env}` is busy; try again."
    with ctx.warehouse(repository, f"deploy:{who}") as engine:
        result = environments.promote(engine, state, source, env)
    ctx.audit.record(cc.event.author, "deploy", forge=repository.forge, repository=repository.full_name,
                     number=number, environment=env, source=source, moved=len(result.changed))
    return (f"`/deploy {env}`: `{env}` now points at this merge request's snapshots "
            f"({len(result.changed)} views moved, 0 rebuilt). `/unlock {env}` releases it.")


def unlock(cc: CommandContext) -> str:
    """Who may release whose lock is the policy's call (checked before this runs)."""
    env = cc.command.args[0]
    lock_name = env_lock(cc.repository, env)
    current = cc.jobs.locks.held_by(lock_name)
    if current is None:
        return f"`/unlock {env}`: `{env}` is not locked."
    cc.jobs.locks.release(lock_name)
    cc.jobs.audit.record(cc.event.author, "unlock", forge=cc.repository.forge,
                         repository=cc.repository.full_name, number=cc.number, environment=env,
                         held_by=current.holder)
    return f"`/unlock {env}`: released."


def rollback(cc: CommandContext) -> str:
    """Instant: the previous snapshots are still there until the janitor's TTL."""
    env = cc.command.args[0]
    ctx, repository, number = cc.jobs, cc.repository, cc.number
    state = ctx.s.project_state(repository)
    who = holder(repository, number)
    # Production's lock, as promotions hold it: a rollback waits for the promotions in flight and
    # then undoes exactly the last one.
    turn = (ctx.locks.hold(env_lock(repository, env), who, ctx.s.config.job_lease, note="rollback",
                           timeout=PROMOTION_WAIT) if env == PRODUCTION else nullcontext(True))
    with turn as held:
        if not held:
            return (f"`/rollback {env}`: a promotion of `{env}` has held it for over "
                    f"{PROMOTION_WAIT:.0f} s; try again when it is done.")
        before = state.environment(env)
        with ctx.warehouse(repository, f"rollback:{who}") as engine:
            result = environments.rollback(engine, state, env)
        after = state.environment(env)
    ctx.audit.record(cc.event.author, "rollback", forge=repository.forge, repository=repository.full_name,
                     number=number, environment=env,
                     before=dict(before.models) if before else {},
                     after=dict(after.models) if after else {}, moved=list(result.changed))
    moved = ", ".join(f"`{name}`" for name in result.changed) or "no view"
    return (f"`/rollback {env}`: `{env}` points at its previous snapshots again "
            f"({len(result.changed)} views moved back, 0 rebuilt: {moved}).")


def destroy(cc: CommandContext) -> str:
    state = cc.jobs.s.project_state(cc.repository)
    env = mr_environment(cc.number)
    if state.environment(env) is None:
        return f"`/destroy`: there is no environment `{env}`."
    with cc.jobs.warehouse(cc.repository, f"destroy:{holder(cc.repository, cc.number)}") as engine:
        environments.drop(engine, state, env)
    return f"`/destroy`: environment `{env}` dropped; its tables go when the janitor's TTL passes."
