"""`/test`, `/diff` and `/lineage`: commands that read the merge request's head and environment."""

from __future__ import annotations

from bot.records.runs import RunStatus
from bot.report.answers import describe_diff, describe_lineage
from bot.worker.commands.base import CommandContext
from bot.worker.keys import mr_environment
from bot.worker.text import quote
from runner import environments
from runner.datatests import run_tests, select_tests
from runner.errors import SluiceError, is_transient


def test(cc: CommandContext) -> str:
    ctx, repository, number = cc.jobs, cc.repository, cc.number
    env = mr_environment(number)
    state = ctx.s.project_state(repository)
    if state.environment(env) is None:
        return f"`/test`: there is no environment `{env}` yet; comment `/plan` first."
    info = cc.merge_request()
    run_id = cc.run_id
    with ctx.workspace(repository, info.head_sha, run_id) as (project, st, engine):
        rows = environments.describe(st, env)
        physical = {name: (s.physical_schema, s.physical_table) for name, s in rows}
        tests = [t for t in select_tests(project, None)
                 if all(d in physical or d in project.sources for d in (t.model, *t.depends_on) if d)]
        result = run_tests(tests, project, engine, physical)
    lines = [f"`/test`: {len(result.passed)} passed, {len(result.failed)} failed in `{env}`."]
    for failed in result.failed:
        what = failed.error or f"{failed.failures} failing rows"
        lines.append(f"- ❌ {failed.test.name}: {quote(what)}")
    text = "\n".join(lines)
    ctx.runs.finish(run_id, RunStatus.SUCCESS if result.ok else RunStatus.FAILED, lines[0], text + "\n")
    return text


def diff(cc: CommandContext) -> str:
    """What the merge request changes in one model: its head against production."""
    return _inspect(cc)


def lineage(cc: CommandContext) -> str:
    return _inspect(cc)


def _inspect(cc: CommandContext) -> str:
    ctx, repository, number, command = cc.jobs, cc.repository, cc.number, cc.command
    info = cc.merge_request()
    run_id = cc.run_id
    try:
        with ctx.workspace(repository, info.head_sha, run_id) as (project, state, engine):
            if command.name == "lineage":
                text = describe_lineage(project, command.args[0].lower())
            else:
                text = describe_diff(project, state, engine, command, mr_environment(number))
    except SluiceError as exc:
        if is_transient(exc):
            raise
        reply = f"`{quote(command.line)}`: {quote(str(exc))}"
        ctx.runs.finish(run_id, RunStatus.FAILED, str(exc), reply + "\n")
        return reply
    ctx.runs.finish(run_id, RunStatus.SUCCESS, command.line, text)
    return text
