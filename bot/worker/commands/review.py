"""`/plan`, `/approve` and `/help`: running the pipeline again, approvals and overrides."""

from __future__ import annotations

from bot.commands import USAGE
from bot.records.runs import RunKind, RunStatus
from bot.worker.commands.base import CommandContext
from bot.worker.gatekeeper import recompute
from bot.worker.pipeline import run_pipeline


def plan(cc: CommandContext) -> str:
    run_id = run_pipeline(cc.jobs, cc.repository, cc.number, cc.event_id)
    if run_id:
        cc.log(f"pipeline run #{run_id}")
    return f"`/plan`: done, see the report above (run #{run_id})." if run_id else \
        "`/plan`: this merge request is not open."


def approve(cc: CommandContext) -> str:
    """`/approve` (a review; from a maintainer it lets an untrusted commit build) or
    `/approve <rule>` (an override). Both are recorded in the audit log at the head commit."""
    ctx, repository, number = cc.jobs, cc.repository, cc.number
    rule = cc.command.args[0] if cc.command.args else None
    info = cc.merge_request()
    if info.author.casefold() == cc.event.author.casefold() and rule is None:
        return "`/approve`: authors cannot approve their own merge request."
    ctx.audit.record(cc.event.author, "override" if rule else "approve", forge=repository.forge,
                     repository=repository.full_name, number=number, sha=info.head_sha,
                     role=int(cc.role), rule=rule)
    what = f"override of `{rule}`" if rule else "approval"
    text = (f"`/approve`: {what} by @{cc.event.author} at `{info.head_sha[:8]}` recorded in the "
            "audit log.")
    runs = [r for r in ctx.runs.for_merge_request(repository.forge, repository.full_name, number)
            if r.kind == RunKind.PIPELINE and r.sha == info.head_sha]
    waiting = bool(runs) and runs[-1].status is RunStatus.WAITING
    if waiting and ctx.governance.trust(cc.governed, cc.facts(info)) is None:
        run_pipeline(ctx, repository, number, cc.event_id)
        text += " The commit is trusted now: planned and built, see the report above."
        return text
    gate = recompute(ctx, repository, number, cc.run_id, f"{what} by @{cc.event.author}")
    if gate is not None:
        text += f" Now {gate.line}."
    return text


def help_(cc: CommandContext) -> str:
    return USAGE
