"""Approvals and unapprovals given on the forge itself: kept with the commit they were given on,
the merge gate recomputed, and what waited for an approval of the head commit (its build, its
commands) taken up once the commit is trusted."""

from __future__ import annotations

from bot.events import MergeRequestEvent, MRAction
from bot.records.runs import RunKind, RunStatus
from bot.worker.commands import resume_trusted
from bot.worker.context import JobContext
from bot.worker.gatekeeper import on_review as recompute_gate
from bot.worker.pipeline import run_pipeline


def on_review(ctx: JobContext, event: MergeRequestEvent, event_id: int) -> None:
    repository, number = event.repository, event.number
    approved = event.action is MRAction.APPROVED
    # The webhook's head is the commit the approval was given on (GitLab's API does not say);
    # a push after it is a new commit, which this approval does not cover.
    ctx.governance.record_forge_review(repository, number, event.actor, event.head_sha, approved)
    recompute_gate(ctx, repository, number, event_id,
                   "an approval" if approved else "an approval withdrawn")
    if approved:
        build_if_trusted(ctx, event, event_id)
        resume_trusted(ctx, repository, number)


def build_if_trusted(ctx: JobContext, event: MergeRequestEvent, event_id: int) -> None:
    """The head's build waited for an approval: build it now if this one trusts it."""
    repository, number = event.repository, event.number
    forge = ctx.forge(repository)
    info = forge.merge_request(repository.full_name, number)
    runs = [r for r in ctx.runs.for_merge_request(repository.forge, repository.full_name, number)
            if r.kind == RunKind.PIPELINE]
    if info.state != "open" or not runs or runs[-1].status is not RunStatus.WAITING \
            or runs[-1].sha != info.head_sha:
        return
    facts = ctx.governance.facts(repository, number, info, forge.role(repository.full_name, info.author),
                                 forge)
    if ctx.governance.trust(ctx.governed(repository), facts) is None:
        run_pipeline(ctx, repository, number, event_id)
