"""The merge-request pipeline as the bot runs it: load and static checks, trust gate, plan
against production, build, test, review, policies, the merge gate, then one sticky report and two
commit statuses (`sluice` for the run, `sluice/promotion` for what merging will do). The runner
does the work (`runner.pipeline`); this module decides what the thread is told."""

from __future__ import annotations

import logging
import time
from typing import Any

from bot.events import Repository
from bot.forges.base import CommitState, MergeRequestInfo
from bot.logs import log_context
from bot.records.runs import RunKind, RunStatus, Superseded
from bot.report.gate import not_built, section
from bot.report.markdown import render_markdown
from bot.worker.context import JobContext, Transient
from bot.worker.gatekeeper import gate_for, pending, publish
from bot.worker.keys import mr_environment
from bot.worker.text import HISTORY_ROOM, MARKER, STATUS_CONTEXT, quote, summary
from policies import Evaluation, Finding, check_write_scope
from runner.artifacts import write_artifacts
from runner.checkout import redact
from runner.engines.base import Engine
from runner.environments import view_namespace
from runner.errors import SluiceError, WarehouseError, is_transient
from runner.naming import PRODUCTION
from runner.pipeline import RunResult, execute, plan_environment, written_schemas
from runner.project.nodes import Project
from runner.review.summary import review

log = logging.getLogger("sluice.worker")


def run_pipeline(ctx: JobContext, repository: Repository, number: int, event_id: int | None) -> int | None:
    """Plan, build and report the merge request's head; the run's id, or None when it is not open."""
    forge = ctx.forge(repository)
    info = forge.merge_request(repository.full_name, number)  # events arrive late and out of order
    if info.state != "open":
        log.info("%s%s is %s: nothing to build", repository.full_name, forge.mr_label(number), info.state)
        return None
    env = mr_environment(number)
    run_id = ctx.runs.create(repository.forge, repository.full_name, number, RunKind.PIPELINE,
                             sha=info.head_sha, environment=env, event_id=event_id)
    with log_context(run=run_id, sha=info.head_sha[:12]):
        log.info("planning %s at %s", env, info.head_sha[:12])
        _pipeline(ctx, repository, number, info, env, run_id)
        return run_id


def outcome(result: RunResult, rules: Evaluation) -> dict[str, Any]:
    """What the promotion rules need from a run, kept with it (`RunLog.set_policy`)."""
    breaking = sorted(n.name for n in result.plan.nodes if n.category.startswith("breaking"))
    return {"tests_passed": result.ok and not result.held_back, "breaking": bool(breaking),
            "breaking_models": breaking, "blocking": list(rules.blocking_labels)}


def _pipeline(ctx: JobContext, repository: Repository, number: int, info: MergeRequestInfo, env: str,
              run_id: int) -> None:
    forge = ctx.forge(repository)
    ctx.runs.start(run_id)
    url = ctx.s.config.run_url(run_id)
    forge.set_status(repository.full_name, info.head_sha, CommitState.PENDING,
                     "Sluice is planning this change", url, STATUS_CONTEXT)
    pending(ctx, repository, info.head_sha, run_id, "waiting for this commit's build and tests")
    try:
        governed = ctx.governed(repository)
        facts = ctx.governance.facts(repository, number, info,
                                     forge.role(repository.full_name, info.author), forge)
        untrusted = ctx.governance.trust(governed, facts)
        if untrusted is not None:  # nothing from this commit runs until someone approves it
            # load → static checks → trust gate: a refused change says so (below) before anyone
            # is asked to approve it; nothing reaches a warehouse either way
            ctx.load_only(repository, info.head_sha, run_id)
            wait_for_approval(ctx, repository, number, run_id, info.head_sha, untrusted, url)
            return
        with ctx.workspace(repository, info.head_sha, run_id) as (project, state, engine):
            ctx.runs.check_current(run_id)
            clock = time.perf_counter()
            plan = plan_environment(project, state, env, against=PRODUCTION)
            outside = check_write_scope(governed.policy, written_schemas(plan, state), env,
                                        namespace=view_namespace(state, env))
            if outside:  # cannot happen by construction; refuse rather than trust that
                raise SluiceError("; ".join(f.message for f in outside))
            result = execute(plan, project, state, engine, plan_seconds=time.perf_counter() - clock,
                             commit=info.head_sha)
            if result.build.transient:  # not the change's fault: try the whole run again later
                names = ", ".join(sorted(result.build.transient))
                raise Transient(f"the warehouse connection was lost while building {names}: "
                                f"{next(iter(result.build.failed.values()))}")
            ctx.runs.append_log(run_id, summary(result))
            for name, seconds in sorted(result.build.seconds.items()):
                ctx.runs.append_log(run_id, f"built {name} in {seconds:.2f} s")
            artifacts(ctx, run_id, project, result, engine)
            ctx.runs.check_current(run_id)
            the_review = (review(result.plan, project, state, engine,
                                 budget=ctx.s.config.limits.report_budget) if result.build.ok else None)
            rules = ctx.governance.model_rules(governed, project, facts)
        ctx.runs.check_current(run_id)  # never post over a newer run's result
        decided = outcome(result, rules)
        gate = gate_for(ctx, repository, info, governed, ctx.governance.with_outcome(facts, decided))
        notes = earlier_attempts(ctx, run_id)
        if result.plan.base is None:
            notes.append(f"Production has not been built yet, so this plans against an empty warehouse. "
                         f"A push to `{ctx.production_branch(repository)}` builds it (or an operator "
                         "runs `sluice bootstrap`, see the README's first day).")
        full = render_markdown(result, run_url=url, review=the_review, policy=rules, notes=notes, gate=gate)
        report = render_markdown(result, run_url=url, review=the_review, policy=rules, notes=notes,
                                 gate=gate, limit=forge.comment_limit - HISTORY_ROOM)
        ok = result.ok and not result.held_back and rules.ok
        line = summary(result) + ("" if rules.ok else "; blocked by policy")
        ctx.post_report(repository, number, run_id, info.head_sha, report, line)
        forge.set_status(repository.full_name, info.head_sha,
                         CommitState.SUCCESS if ok else CommitState.FAILURE, line[:140], url, STATUS_CONTEXT)
        publish(ctx, repository, info.head_sha, gate, run_id)
        ctx.runs.append_log(run_id, f"merge gate: {gate.line}")
        ctx.runs.set_policy(run_id, {"policy": governed.policy.describe(), "evaluation": rules.describe(),
                                     **decided})
        ctx.runs.finish(run_id, RunStatus.SUCCESS if ok else RunStatus.FAILED, line, full)
    except Superseded as exc:
        ctx.runs.append_log(run_id, str(exc))
        ctx.runs.finish(run_id, RunStatus.SUPERSEDED, "superseded by a newer commit")
    except SluiceError as exc:  # the user's own error: say it in the thread, do not retry
        if is_transient(exc):
            ctx.runs.finish(run_id, RunStatus.ERROR, "fetch failed; will retry")
            raise
        message = redact(str(exc))
        gate = not_built(PRODUCTION, "this commit does not plan (see the error above)")
        report = (f"{MARKER}\n### ❌ Sluice · `{env}` · cannot plan this change\n\n"
                  f"```\n{message}\n```\n\n{section(gate)}\n[run #{run_id}]({url})\n")
        ctx.runs.append_log(run_id, message)
        ctx.post_report(repository, number, run_id, info.head_sha, report, "error: " + message[:80])
        forge.set_status(repository.full_name, info.head_sha, CommitState.FAILURE, message[:140],
                         url, STATUS_CONTEXT)
        publish(ctx, repository, info.head_sha, gate, run_id)
        ctx.runs.finish(run_id, RunStatus.FAILED, message, report)
    except Exception as exc:
        ctx.runs.append_log(run_id, f"{type(exc).__name__}: {redact(str(exc))}")
        ctx.runs.finish(run_id, RunStatus.ERROR, f"{redact(str(exc)) or type(exc).__name__}; will retry")
        raise


def artifacts(ctx: JobContext, run_id: int, project: Project, result: RunResult, engine: Engine) -> None:
    """The environment's manifest, run results and catalog in the run's folder (the run page links
    them). A disk or catalog failure costs the files, not the run."""
    folder = ctx.s.config.run_folder(run_id) / result.plan.environment
    try:
        write_artifacts(folder, project, result, engine)
    except (OSError, WarehouseError) as exc:
        log.warning("run %s: no dbt artifacts: %s", run_id, redact(str(exc)))
        ctx.runs.append_log(run_id, f"dbt artifacts not written: {redact(str(exc))}")


def earlier_attempts(ctx: JobContext, run_id: int) -> list[str]:
    """What stopped the earlier attempts at this run's event (the report says it retried)."""
    run = ctx.runs.get(run_id)
    if run is None or run.event_id is None:
        return []
    failed = [r for r in ctx.runs.for_event(run.event_id)
              if r.id != run_id and r.status is RunStatus.ERROR]
    return [f"Attempt {i + 2}: attempt {i + 1} stopped — {quote(r.summary)}"
            for i, r in enumerate(failed)]


def wait_for_approval(ctx: JobContext, repository: Repository, number: int, run_id: int, sha: str,
                      finding: Finding, url: str) -> None:
    forge = ctx.forge(repository)
    gate = not_built(PRODUCTION, "nothing is built until a maintainer trusts this commit")
    report = (f"{MARKER}\n### ⏸ Sluice · `{mr_environment(number)}` · waiting for approval\n\n"
              f"{quote(finding.message)}.\n\n**To build it:** {quote(finding.fix)} An approval of "
              f"commit `{sha[:12]}` on {forge.title} counts too; a later push needs a new one. "
              "`/plan`, `/test`, `/diff`, `/lineage` and `/deploy` wait for it as well.\n\n"
              f"{section(gate)}")
    ctx.post_report(repository, number, run_id, sha, report, "waiting for /approve")
    forge.set_status(repository.full_name, sha, CommitState.PENDING,
                     "waiting for a maintainer's /approve", url, STATUS_CONTEXT)
    publish(ctx, repository, sha, gate, run_id)
    ctx.runs.wait(run_id, f"a maintainer's `/approve` of commit `{sha[:12]}` ({quote(finding.message)})")
    ctx.runs.finish(run_id, RunStatus.WAITING, "waiting for /approve", report)
