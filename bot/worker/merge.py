"""A merge request ends: merged into the production branch, production is promoted (what the MR
built is reused, anything merged meanwhile is built first); closed, its environment is dropped and
its locks released (waking whatever waited for them).

A promotion that finds production held (a `/deploy prod`, another promotion) says so once in the
thread and waits without holding a worker: its event is parked until the lock is free. A merge
that the promotion rules refuse leaves production behind its branch: the thread says what brings
it level.
"""

from __future__ import annotations

import logging

from bot.events import MergeRequestEvent
from bot.records.runs import RunKind, RunStatus
from bot.report.markdown import render_markdown
from bot.worker import locking
from bot.worker.context import JobContext
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
PROMOTION_LOCK_TTL = 3600.0


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
    run_id = _promotion_run(ctx, event, event_id, sha)
    ctx.runs.start(run_id)
    label = forge.mr_label(number)
    behind = (f"Production is now behind `{production_branch}`. To bring it level: satisfy the rules "
              f"above, then a maintainer comments `/deploy prod` here (it checks the same rules), or "
              f"the next merge into `{production_branch}` promotes everything merged so far.")
    try:
        governed = ctx.governed(repository)
    except SluiceError as exc:
        forge.post_comment(repository.full_name, number,
                           f"❌ **Not promoted**: {quote(str(exc))}. Production is unchanged. {behind}")
        ctx.runs.finish(run_id, RunStatus.FAILED, str(exc))
        return
    facts = ctx.governance.facts(repository, number, info,
                                 forge.role(repository.full_name, info.author), forge)
    gate = ctx.governance.promotion(governed, facts, PRODUCTION)
    if not gate.ok:
        text = ("❌ **Not promoted**: the promotion rules stop it. Production is unchanged.\n\n"
                + findings(gate.blocking) + f"\n\n{behind}")
        forge.post_comment(repository.full_name, number, text)
        ctx.audit.record("sluice", "promotion_refused", forge=repository.forge,
                         repository=repository.full_name, number=number, sha=sha,
                         environment=PRODUCTION, rules=list(gate.blocking_labels))
        ctx.runs.finish(run_id, RunStatus.FAILED, "promotion refused by policy", text)
        return
    who = holder(repository, number)
    locking.take(ctx, repository, PRODUCTION, who, f"the promotion of {label} on merge",
                 PROMOTION_LOCK_TTL, "it is released when that promotion ends", run_id,
                 (repository, number), f"The promotion of {label} to production")
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
            text = (f"❌ **Not promoted**: {reason}. Production is unchanged. {behind}\n\n"
                    + render_markdown(result, run_url=ctx.s.config.run_url(run_id)))
        forge.post_comment(repository.full_name, number, text)
        ctx.runs.finish(run_id, RunStatus.SUCCESS if promoted else RunStatus.FAILED,
                        text.splitlines()[0], render_markdown(result))
    except SluiceError as exc:
        message = redact(str(exc))
        forge.post_comment(repository.full_name, number,
                           f"❌ **Not promoted**: {message}. Production is unchanged. {behind}")
        ctx.runs.finish(run_id, RunStatus.FAILED, message)
    finally:
        locking.release(ctx, env_lock(ctx.s.config.installation, repository, PRODUCTION), who)
        locking.release_all(ctx, who)


def _promotion_run(ctx: JobContext, event: MergeRequestEvent, event_id: int, sha: str) -> int:
    """The event's promotion run when it waited before (one run page, one waiting message)."""
    for run in ctx.runs.for_event(event_id):
        if run.kind == RunKind.PROMOTE and run.status is RunStatus.WAITING:
            return run.id
    return ctx.runs.create(event.repository.forge, event.repository.full_name, event.number,
                           RunKind.PROMOTE, sha=sha, environment=PRODUCTION, event_id=event_id)


def on_closed(ctx: JobContext, event: MergeRequestEvent) -> None:
    repository, number = event.repository, event.number
    who = holder(repository, number)
    released = locking.release_all(ctx, who)
    state = ctx.s.project_state(repository)
    env = mr_environment(number)
    if state.environment(env) is None:
        return
    with ctx.warehouse(repository, None, f"close:{who}") as engine:
        drop_quietly(engine, state, env)
    log.info("closed %s: dropped %s, released %s", who, env, released)


def drop_quietly(engine: Engine, state: StateStore, env: str) -> bool:
    if state.environment(env) is None:
        return False
    environments.drop(engine, state, env)
    return True
