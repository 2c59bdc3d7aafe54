"""Production from its branch's head: the first push to the production branch (while production
does not exist yet) and `sluice bootstrap` build it through the same pipeline a merge runs, under
production's lock, and report on the commit (`sluice/production`) and the run page.

Once production exists, merges move it (through the merge gate); a push then changes nothing, or
a merge refused by the promotion rules would be undone by the push that follows it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.events import PushEvent, Repository
from bot.forges.base import CommitState
from bot.records.runs import RunKind, RunStatus
from bot.report.markdown import render_markdown
from bot.worker import locking
from bot.worker.context import JobContext
from bot.worker.keys import branch_holder, env_lock
from bot.worker.text import quote
from runner.errors import SluiceError, is_transient
from runner.naming import PRODUCTION
from runner.pipeline import run_pipeline

log = logging.getLogger("sluice.worker")
PRODUCTION_CONTEXT = "sluice/production"  # the commit status of a production build
BOOTSTRAP_LOCK_TTL = 3600.0


@dataclass(frozen=True)
class Bootstrap:
    run_id: int
    sha: str
    ok: bool
    summary: str


def on_push(ctx: JobContext, event: PushEvent, event_id: int) -> None:
    repository = event.repository
    branch = ctx.production_branch(repository)
    if event.branch != branch:
        log.info("push to %s of %s: not the production branch (%s)", event.branch,
                 repository.full_name, branch)
        return
    if ctx.s.project_state(repository).environment(PRODUCTION) is not None:
        log.info("push to %s of %s: production exists, merges move it", branch, repository.full_name)
        return
    bootstrap(ctx, repository, event_id=event_id, by=event.pusher or "a push")


def bootstrap(ctx: JobContext, repository: Repository, *, event_id: int | None = None,
              by: str = "sluice bootstrap") -> Bootstrap:
    """Build production from the production branch's head. Raises `Waiting` (the event is parked)
    while someone else holds production's lock."""
    branch = ctx.production_branch(repository)
    key, url = ctx.clone_source(repository)
    head = ctx.s.mirrors.branch_head(key, url, branch)
    if head is None:
        raise SluiceError(f"{repository.full_name} has no branch {branch!r} to build production from")
    run_id = _run(ctx, repository, head, event_id)
    ctx.runs.start(run_id)
    who = branch_holder(repository, branch)
    locking.take(ctx, repository, PRODUCTION, who, f"the build of production from `{branch}`",
                 BOOTSTRAP_LOCK_TTL, "it is released when that build ends", run_id, None,
                 f"Building production from `{branch}`")
    forge = ctx.forge(repository)
    run_url = ctx.s.config.run_url(run_id)
    try:
        head = ctx.s.mirrors.branch_head(key, url, branch) or head  # the newest, under the lock
        forge.set_status(repository.full_name, head, CommitState.PENDING,
                         f"building production from {branch}", run_url, PRODUCTION_CONTEXT)
        with ctx.workspace(repository, head, run_id) as (project, state, engine):
            result = run_pipeline(project, state, engine, PRODUCTION)
        ok = result.ok and not result.held_back
        moved = len(result.repoint.changed) if result.repoint else 0
        line = (f"production built from {branch} at {head[:8]}: {result.built} built, {result.reused} "
                f"reused, {moved} views moved" if ok else
                f"production not built from {branch} at {head[:8]}: "
                f"{result.held_back or 'a build or test failed'}")
        ctx.audit.record(by, "bootstrap", forge=repository.forge, repository=repository.full_name,
                         sha=head, environment=PRODUCTION, ok=ok, built=result.built, moved=moved)
        forge.set_status(repository.full_name, head, CommitState.SUCCESS if ok else CommitState.FAILURE,
                         line[:140], run_url, PRODUCTION_CONTEXT)
        ctx.runs.finish(run_id, RunStatus.SUCCESS if ok else RunStatus.FAILED, line,
                        render_markdown(result, run_url=run_url))
        return Bootstrap(run_id, head, ok, line)
    except SluiceError as exc:
        if is_transient(exc):
            ctx.runs.finish(run_id, RunStatus.ERROR, f"{quote(str(exc))}; will retry")
            raise
        line = f"production not built from {branch} at {head[:8]}: {ctx.s.redact(str(exc))}"
        forge.set_status(repository.full_name, head, CommitState.FAILURE, line[:140], run_url,
                         PRODUCTION_CONTEXT)
        ctx.runs.finish(run_id, RunStatus.FAILED, line, f"```\n{ctx.s.redact(str(exc))}\n```\n")
        return Bootstrap(run_id, head, False, line)
    finally:
        locking.release(ctx, env_lock(ctx.s.config.installation, repository, PRODUCTION), who)


def _run(ctx: JobContext, repository: Repository, sha: str, event_id: int | None) -> int:
    """The event's bootstrap run when it waited before (one run page per push), else a new one."""
    if event_id is not None:
        for run in ctx.runs.for_event(event_id):
            if run.kind == RunKind.BOOTSTRAP and run.status is RunStatus.WAITING:
                return run.id
    return ctx.runs.create(repository.forge, repository.full_name, 0, RunKind.BOOTSTRAP, sha=sha,
                           environment=PRODUCTION, event_id=event_id)
