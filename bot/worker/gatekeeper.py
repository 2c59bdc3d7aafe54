"""The merge gate of a merge request, kept true: computed when a pipeline ends, and again when an
approval, an unapproval or an override arrives; published as the report's gate line and as the
`sluice/promotion` commit status on the head commit (green exactly when merging promotes)."""

from __future__ import annotations

from bot.events import Repository
from bot.forges.base import CommitState, MergeRequestInfo
from bot.records.runs import RunKind, RunStatus
from bot.report.gate import PROMOTION_CONTEXT, MergeGate, elsewhere, gate_from, replace_section
from bot.worker.context import JobContext
from bot.worker.governance import Governed
from policies import MergeRequestFacts
from runner.errors import SluiceError
from runner.naming import PRODUCTION


def gate_for(ctx: JobContext, repository: Repository, info: MergeRequestInfo, governed: Governed,
             facts: MergeRequestFacts) -> MergeGate:
    """What merging would do now, by the same rules the merge itself applies."""
    production_branch = ctx.production_branch(repository)
    if info.target_branch != production_branch:
        return elsewhere(info.target_branch, production_branch, PRODUCTION)
    return gate_from(ctx.governance.promotion(governed, facts, PRODUCTION), PRODUCTION)


def publish(ctx: JobContext, repository: Repository, sha: str, gate: MergeGate, run_id: int) -> None:
    """The `sluice/promotion` status: the check a team makes required before merging."""
    ctx.forge(repository).set_status(repository.full_name, sha,
                                     CommitState.SUCCESS if gate.green else CommitState.FAILURE,
                                     gate.status, ctx.s.config.run_url(run_id), PROMOTION_CONTEXT)


def pending(ctx: JobContext, repository: Repository, sha: str, run_id: int, why: str) -> None:
    """Merging cannot promote until the run ends (a required check that is pending blocks it)."""
    ctx.forge(repository).set_status(repository.full_name, sha, CommitState.PENDING, why,
                                     ctx.s.config.run_url(run_id), PROMOTION_CONTEXT)


def recompute(ctx: JobContext, repository: Repository, number: int, run_id: int,
              why: str) -> MergeGate | None:
    """The gate again after `why` (an approval, an override): the report's gate line is
    rewritten in place and the status set. None when the merge request is not open."""
    forge = ctx.forge(repository)
    info = forge.merge_request(repository.full_name, number)
    if info.state != "open":
        return None
    governed = ctx.governed(repository)
    facts = ctx.governance.facts(repository, number, info, forge.role(repository.full_name, info.author),
                                 forge)
    gate = gate_for(ctx, repository, info, governed, facts)
    saved = ctx.comments.get(repository.forge, repository.full_name, number)
    if saved is not None and saved.report:
        updated = replace_section(saved.report, gate)
        if updated != saved.report:
            ctx.post_report(repository, number, run_id, info.head_sha, updated, f"{why}: {gate.line}")
    publish(ctx, repository, info.head_sha, gate, run_id)
    ctx.runs.append_log(run_id, f"merge gate: {gate.line}")
    return gate


def on_review(ctx: JobContext, repository: Repository, number: int, event_id: int, why: str) -> None:
    """An approval or unapproval on the forge: a run of its own, with the gate it leaves."""
    run_id = ctx.runs.create(repository.forge, repository.full_name, number, RunKind.APPROVE,
                             environment=PRODUCTION, event_id=event_id)
    ctx.runs.start(run_id)
    try:
        gate = recompute(ctx, repository, number, run_id, why)
    except SluiceError as exc:  # the policy itself is broken: say so on the run page
        ctx.runs.finish(run_id, RunStatus.FAILED, str(exc))
        return
    line = gate.line if gate is not None else "the merge request is not open: nothing to recompute"
    ctx.runs.finish(run_id, RunStatus.SUCCESS, f"{why}: {line}", f"{why}: {line}.\n")
