"""A merge request ends: merged into the production branch, production is promoted (what the MR
built is reused, anything merged meanwhile is built first); closed, its environment is dropped and
its locks released."""

from __future__ import annotations

import logging

from bot.events import MergeRequestEvent
from bot.records.runs import RunStatus
from bot.report.markdown import render_markdown
from bot.worker.context import JobContext, Transient
from bot.worker.keys import env_lock, holder, mr_environment
from bot.worker.text import findings, quote
from runner import environments
from runner.checkout import redact
from runner.engines import Engine
from runner.errors import SluiceError
from runner.naming import PRODUCTION
from runner.pipeline import run_pipeline
from runner.state.store import StateStore

log = logging.getLogger("sluice.worker")
PROMOTION_WAIT = 300  # seconds a merge waits for production's lock before it retries later
PROMOTION_LOCK_TTL = 3600


def on_merged(ctx: JobContext, event: MergeRequestEvent, event_id: int) -> None:
    """Promote what the MR built; build only what the merged commit needs beyond it."""
    repository, number = event.repository, event.number
    forge = ctx.forge(repository)
    info = forge.merge_request(repository.full_name, number)
    production_branch = ctx.production_branch(repository)
    if info.target_branch != production_branch:
        log.info("%s%s merged into %s, not %s: production unchanged", repository.full_name,
                 forge.mr_label(number), info.target_branch, production_branch)
        on_closed(ctx, event)
        return
    sha = info.merge_sha or event.merge_sha or info.head_sha
    run_id = ctx.runs.create(repository.forge, repository.full_name, number, "promote",
                             sha=sha, environment=PRODUCTION, event_id=event_id)
    ctx.runs.start(run_id)
    try:
        governed = ctx.governed(repository)
    except SluiceError as exc:
        forge.post_comment(repository.full_name, number,
                           f"❌ **Not promoted**: {quote(str(exc))}. Production is unchanged.")
        ctx.runs.finish(run_id, RunStatus.FAILED, str(exc))
        return
    facts = ctx.governance.facts(repository, number, info,
                                 forge.role(repository.full_name, info.author), forge)
    gate = ctx.governance.promotion(governed, facts, PRODUCTION)
    if not gate.ok:
        text = ("❌ **Not promoted**: the policy stops it. Production is unchanged.\n\n"
                + findings(gate.blocking))
        forge.post_comment(repository.full_name, number, text)
        ctx.audit.record("sluice", "promotion_refused", forge=repository.forge,
                         repository=repository.full_name, number=number, sha=sha,
                         environment=PRODUCTION, rules=list(gate.blocking_labels))
        ctx.runs.finish(run_id, RunStatus.FAILED, "promotion refused by policy", text)
        return
    prod_lock = env_lock(repository, PRODUCTION)
    who = holder(repository, number)
    if ctx.locks.wait(prod_lock, who, note="promotion on merge", ttl=PROMOTION_LOCK_TTL,
                      timeout=PROMOTION_WAIT) is None:
        ctx.runs.finish(run_id, RunStatus.ERROR, "production is locked; will retry")
        raise Transient("production is locked by another promotion")
    try:
        # Under the lock, production follows its branch's head, not this MR's merge commit:
        # when two merges race, the later promotion holds both, and neither undoes the other.
        head = ctx.s.mirrors.branch_head(*ctx.clone_source(repository), production_branch)
        sha = head or sha
        with ctx.workspace(repository, sha, run_id) as (project, state, engine):
            result = run_pipeline(project, state, engine, PRODUCTION)
            promoted = result.ok and not result.held_back
            dropped = drop_quietly(engine, state, mr_environment(number)) if promoted else False
        if promoted:
            moved = len(result.repoint.changed) if result.repoint else 0
            text = (f"✅ **Promoted to production** at `{sha[:8]}`: {moved} views moved, "
                    f"{result.built} rebuilt, {result.reused} reused.")
            ctx.audit.record(info.author, "promote", forge=repository.forge,
                             repository=repository.full_name, number=number, sha=sha,
                             environment=PRODUCTION, moved=moved, rebuilt=result.built,
                             overrides=[f"{o.rule} by {o.by}" for o in gate.applied])
            if dropped:
                text += f" Environment `{mr_environment(number)}` dropped."
        else:
            reason = result.held_back or "a build or test failed"
            text = (f"❌ **Not promoted**: {reason}. Production is unchanged.\n\n"
                    + render_markdown(result, run_url=ctx.s.config.run_url(run_id)))
        forge.post_comment(repository.full_name, number, text)
        ctx.runs.finish(run_id, RunStatus.SUCCESS if promoted else RunStatus.FAILED,
                        text.splitlines()[0], render_markdown(result))
    except SluiceError as exc:
        message = redact(str(exc))
        forge.post_comment(repository.full_name, number,
                           f"❌ **Not promoted**: {message}. Production is unchanged.")
        ctx.runs.finish(run_id, RunStatus.FAILED, message)
    finally:
        ctx.locks.release(prod_lock, who)
        ctx.locks.release_all(who)


def on_closed(ctx: JobContext, event: MergeRequestEvent) -> None:
    repository, number = event.repository, event.number
    who = holder(repository, number)
    released = ctx.locks.release_all(who)
    state = ctx.s.project_state(repository)
    env = mr_environment(number)
    if state.environment(env) is None:
        return
    with ctx.warehouse(repository, f"close:{who}") as engine:
        drop_quietly(engine, state, env)
    log.info("closed %s: dropped %s, released %s", who, env, released)


def drop_quietly(engine: Engine, state: StateStore, env: str) -> bool:
    if state.environment(env) is None:
        return False
    environments.drop(engine, state, env)
    return True
