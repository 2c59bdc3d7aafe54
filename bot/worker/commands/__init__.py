"""Slash commands: a comment is parsed (`bot.commands`), each command authorised by the policy,
then answered by its handler from `HANDLERS`, one function per command. Each command is a run
of its own (its page holds the answer and the log); all replies to one comment go back in one
comment."""

from __future__ import annotations

from collections.abc import Callable

from bot.commands import USAGE, BadCommand, Command, parse_comment
from bot.events import CommentEvent
from bot.forges.base import Role
from bot.records.runs import RunKind, RunStatus
from bot.worker.commands.base import CommandContext
from bot.worker.commands.environments import deploy, destroy, rollback, unlock
from bot.worker.commands.inspect import diff, lineage, test
from bot.worker.commands.review import approve, help_, plan
from bot.worker.context import JobContext
from bot.worker.keys import env_lock, holder, mr_environment
from bot.worker.text import MARKER, quote
from runner.checkout import redact
from runner.errors import SluiceError, is_transient

Handler = Callable[[CommandContext], str]

HANDLERS: dict[str, Handler] = {
    "plan": plan, "test": test, "deploy": deploy, "unlock": unlock, "destroy": destroy,
    "diff": diff, "lineage": lineage, "approve": approve, "rollback": rollback, "help": help_,
}
ENVIRONMENT_COMMANDS = ("deploy", "unlock", "rollback")  # their one argument is an environment
KINDS = {"deploy": RunKind.DEPLOY, "rollback": RunKind.ROLLBACK, "approve": RunKind.APPROVE}


def on_comment(ctx: JobContext, event: CommentEvent, event_id: int) -> None:
    if event.author_is_bot or MARKER in event.body:
        return
    commands = parse_comment(event.body)
    if not commands:
        return
    forge = ctx.forge(event.repository)
    forge.react(event.repository.full_name, event.number, event.comment_id, "eyes")
    role = forge.role(event.repository.full_name, event.author)
    replies = [answer(ctx, event, command, role, event_id) for command in commands]
    text = "\n\n---\n\n".join(r for r in replies if r)
    if text:
        forge.post_comment(event.repository.full_name, event.number, text)


def answer(ctx: JobContext, event: CommentEvent, command: Command | BadCommand, role: Role,
           event_id: int) -> str:
    """A command's reply, kept on its run's page; the user's own errors (no such environment,
    nothing to roll back, a bad predicate) are the reply, not a failed job."""
    if isinstance(command, BadCommand):
        return f"`{quote(command.line)}`: {command.reason}.\n\n{USAGE}"
    env = command.args[0] if command.name in ENVIRONMENT_COMMANDS else mr_environment(event.number)
    run_id = ctx.runs.create(event.repository.forge, event.repository.full_name, event.number,
                             KINDS.get(command.name, RunKind.COMMAND), environment=env, event_id=event_id)
    ctx.runs.start(run_id)
    ctx.runs.append_log(run_id, f"@{event.author} ({role.name.lower()}): {command.line}")
    try:
        reply = run_command(ctx, event, command, role, event_id, run_id)
    except SluiceError as exc:
        if is_transient(exc):
            ctx.runs.finish(run_id, RunStatus.ERROR, f"{quote(redact(str(exc)))}; will retry")
            raise
        reply = f"`{quote(command.line)}`: {quote(redact(str(exc)))}"
        ctx.runs.finish(run_id, RunStatus.FAILED, reply, reply + "\n")
        return reply
    except Exception as exc:
        ctx.runs.finish(run_id, RunStatus.ERROR, f"{type(exc).__name__}; will retry")
        raise
    run = ctx.runs.get(run_id)
    if run is not None and run.status not in (RunStatus.FAILED, RunStatus.SUCCESS):
        ctx.runs.finish(run_id, RunStatus.SUCCESS, reply.splitlines()[0][:300], reply + "\n")
    return reply


def run_command(ctx: JobContext, event: CommentEvent, command: Command, role: Role, event_id: int,
                run_id: int) -> str:
    repository, number = event.repository, event.number
    governed = ctx.governed(repository)
    env = command.args[0] if command.name in ENVIRONMENT_COMMANDS else None
    own = True
    if command.name == "unlock" and env is not None:
        current = ctx.locks.held_by(env_lock(ctx.s.config.installation, repository, env))
        own = current is None or current.holder == holder(repository, number)
    rule = command.args[0] if command.name == "approve" and command.args else None
    refusal = ctx.governance.refusal(governed, command.name, env, role, rule=rule, own=own)
    if refusal is not None:
        reply = f"`{quote(command.line)}`: refused — {refusal.message}."
        ctx.runs.finish(run_id, RunStatus.FAILED, reply, reply + "\n")
        return reply
    return HANDLERS[command.name](CommandContext(ctx, event, command, role, governed, event_id, run_id))
