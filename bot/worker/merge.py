"""A merge request ends: merged into the production branch, production is promoted (what the MR
built is reused, anything merged meanwhile is built first); closed, its environment is dropped and
its locks released (waking whatever waited for them).

A promotion that finds production held (a `/deploy prod`, another promotion) says so once in the
thread and waits without holding a worker: its event is parked until the lock is free. Holding
it, the promotion renews the lock while it runs, so a dead worker's hold lapses in seconds. A merge
that the promotion rules refuse leaves production behind its branch: the thread says what brings
it level.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bot.events import MergeRequestEvent, Repository
from bot.forges.base import MergeRequestInfo
from bot.records.audit import moved_views
from bot.records.runs import RunKind, RunStatus
from bot.report.markdown import render_markdown
from bot.worker import locking
from bot.worker.context import JobContext, Transient
from bot.worker.keys import env_lock, holder, mr_environment
from bot.worker.text import findings
from runner import environments
from runner.checkout import redact
from runner.engines import Engine
from runner.environments import shown_commit
from runner.errors import SluiceError, is_transient
from runner.naming import PRODUCTION
from runner.pipeline import run_pipeline
from runner.state.store import StateStore

log = logging.getLogger("sluice.worker")
CATCH_UP = 20  # commits of the production branch promoted one by one, at most


def on_merged(ctx: JobContext, event: MergeRequestEvent, event_id: int) -> None:
    """Promote what the MR built; build only what the merged commit needs beyond it. Transient
    failures are retried (raised as Transient); the thread is told "promoted" or "unchanged" only
    once the warehouse's views and the state store agree on it."""
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
    behind = (f"Production is now behind `{production_branch}`. To bring it level: satisfy the rules "
              f"above, then a maintainer comments `/deploy prod` here (it checks the same rules), or "
              f"the next merge into `{production_branch}` promotes everything merged so far.")
    try:
        text, status = _promote(ctx, event, info, sha, run_id)
    except (Transient, SluiceError) as exc:
        if isinstance(exc, SluiceError) and not is_transient(exc):
            text = f"❌ **Not promoted**: {redact(str(exc))}. Production is unchanged. {behind}"
            status = RunStatus.FAILED
        else:
            ctx.runs.append_log(run_id, f"will retry: {redact(str(exc))}")
            ctx.runs.finish(run_id, RunStatus.ERROR, f"{redact(str(exc))}; will retry")
            raise Transient(redact(str(exc))) from exc
    # Done (a Waiting promotion keeps what it holds: it comes back for production's lock).
    locking.release_all(ctx, holder(repository, number))
    if status is RunStatus.FAILED and "Production is unchanged" in text and behind not in text:
        text = text.replace("Production is unchanged.", f"Production is unchanged. {behind}", 1)
    forge.post_comment(repository.full_name, number, text)
    ctx.runs.finish(run_id, status, text.splitlines()[0], text)


def _promote(ctx: JobContext, event: MergeRequestEvent, info: MergeRequestInfo, sha: str,
             run_id: int) -> tuple[str, RunStatus]:
    """(what the thread is told, the run's status)."""
    repository, number = event.repository, event.number
    forge = ctx.forge(repository)
    earlier = _already_in_production(ctx, repository, sha)
    if earlier is not None:
        return earlier, RunStatus.SUCCESS
    governed = ctx.governed(repository)
    facts = ctx.governance.facts(repository, number, info,
                                 forge.role(repository.full_name, info.author), forge)
    gate = ctx.governance.promotion(governed, facts, PRODUCTION)
    if not gate.ok:
        ctx.audit.record("sluice", "promotion_refused", forge=repository.forge,
                         repository=repository.full_name, number=number, sha=sha,
                         environment=PRODUCTION, rules=list(gate.blocking_labels))
        return ("❌ **Not promoted**: the promotion rules stop it. Production is unchanged.\n\n"
                + findings(gate.blocking)), RunStatus.FAILED
    who, label = holder(repository, number), forge.mr_label(number)
    locking.take(ctx, repository, PRODUCTION, who, f"the promotion of {label} on merge",
                 ctx.s.config.job_lease, "it is released when that promotion ends", run_id,
                 (repository, number), f"The promotion of {label} to production")
    with locking.keeping(ctx, env_lock(ctx.s.config.installation, repository, PRODUCTION), who,
                         ctx.s.config.job_lease, f"the promotion of {label} on merge",
                         "it is released when that promotion ends"):
        earlier = _already_in_production(ctx, repository, sha)
        if earlier is not None:  # the promotion this one waited for took it along
            return earlier, RunStatus.SUCCESS
        state = ctx.s.project_state(repository)
        before = state.environment(PRODUCTION)
        steps = _steps(ctx, repository, state, sha)
        if not steps:  # production shows this commit, or one after it: never move it back
            return _already(shown_commit(state, PRODUCTION) or sha), RunStatus.SUCCESS
        ctx.runs.set_sha(run_id, steps[-1])
        for step in steps:
            with ctx.workspace(repository, step, run_id) as (project, state, engine):
                result = run_pipeline(project, state, engine, PRODUCTION, commit=step)
                if result.build.transient:
                    raise Transient(f"the warehouse connection was lost while building "
                                    f"{', '.join(sorted(result.build.transient))}")
                promoted = result.ok and not result.held_back
                last = step == steps[-1]
                dropped = drop_quietly(engine, state, mr_environment(number)) if promoted and last else False
            if not promoted:
                break
    after = state.environment(PRODUCTION)
    moved = _moved(before.models if before else {}, after.models if after else {})
    views = moved_views(environments.moves_between(state, PRODUCTION, before.models if before else {},
                                                   after.models if after else {}))
    carried = [s[:8] for s in steps[:steps.index(step)]]
    if not promoted:
        where = (f"Production moved to `{carried[-1]}` (before this merge on the production branch) "
                 f"and stopped at `{step[:8]}`" if carried else "Production is unchanged")
        reason = result.held_back or "a build or test failed"
        return (f"❌ **Not promoted**: {reason} at `{step[:8]}`. {where}.\n\n"
                + render_markdown(result, run_url=ctx.s.config.run_url(run_id))), RunStatus.FAILED
    ctx.audit.record(info.author, "promote", forge=repository.forge, repository=repository.full_name,
                     number=number, sha=step, environment=PRODUCTION, moved=moved, views=views,
                     rebuilt=result.built,
                     overrides=[f"{o.rule} by {o.by}" for o in gate.applied], carried=carried)
    text = (f"✅ **Promoted to production** at `{step[:8]}`: {moved} views moved, "
            f"{result.built} rebuilt, {result.reused} reused.")
    if carried:
        text += (f" First promoted {', '.join(f'`{c}`' for c in carried)}, which came before it on "
                 "the production branch, each as a promotion of its own.")
    if dropped:
        text += f" Environment `{mr_environment(number)}` dropped."
    return text, RunStatus.SUCCESS


def _steps(ctx: JobContext, repository: Repository, state: StateStore, sha: str) -> list[str]:
    """The commits production moves through to reach `sha`, oldest first: each commit of the
    production branch's first-parent line since the one production shows, so that every merge is
    one promotion and `/rollback` undoes exactly one. A production with no recorded commit (built
    before commits were recorded), or too far behind, moves in one step (to the branch head when
    nothing is recorded, so a racing merge is never undone). Empty when production shows `sha` or
    a commit after it on that line: a late merge event never moves production back."""
    source = ctx.clone_source(repository)
    current = shown_commit(state, PRODUCTION)
    if current is None:
        head = ctx.s.mirrors.branch_head(*source, ctx.production_branch(repository))
        return [head or sha]
    line = ctx.s.mirrors.first_parent_line(*source, current, sha)
    if line is None or len(line) > CATCH_UP:
        return [sha]
    return line  # [] when production shows `sha` or a commit after it: nothing to move


def _moved(before: Mapping[str, str], after: Mapping[str, str]) -> int:
    """Views whose snapshot differs between two states of an environment (however many attempts
    or steps it took)."""
    return sum(1 for name in set(before) | set(after) if before.get(name) != after.get(name))


def _already_in_production(ctx: JobContext, repository: Repository, sha: str) -> str | None:
    """When production already shows a commit that contains `sha`, what to tell the thread."""
    state = ctx.s.project_state(repository)
    history = state.history(PRODUCTION)
    current = history[0] if history else None
    if current is None or current.commit is None:
        return None
    if not ctx.s.mirrors.contains(*ctx.clone_source(repository), current.commit, sha):
        return None
    return _already(current.commit)


def _already(commit: str) -> str:
    return (f"✅ **Already in production**: production shows `{commit[:8]}`, which contains this "
            "merge; nothing left to do.")


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
