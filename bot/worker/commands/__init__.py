"""Slash commands: a comment is parsed (`bot.commands`), each command authorised by the policy,
then answered by its handler from `HANDLERS`, one function per command. All replies to one
comment go back in one comment."""

from __future__ import annotations

from collections.abc import Callable

from bot.commands import USAGE, BadCommand, Command, parse_comment
from bot.events import CommentEvent
from bot.forges.base import Role
from bot.worker.commands.base import CommandContext
from bot.worker.commands.environments import deploy, destroy, rollback, unlock
from bot.worker.commands.inspect import diff, lineage, test
from bot.worker.commands.review import approve, help_, plan
from bot.worker.context import JobContext
from bot.worker.keys import env_lock, holder
from bot.worker.text import MARKER, quote
from runner.checkout import redact
from runner.errors import SluiceError, is_transient

Handler = Callable[[CommandContext], str]

HANDLERS: dict[str, Handler] = {
    "plan": plan, "test": test, "deploy": deploy, "unlock": unlock, "destroy": destroy,
    "diff": diff, "lineage": lineage, "approve": approve, "rollback": rollback, "help": help_,
}
ENVIRONMENT_COMMANDS = ("deploy", "unlock", "rollback")  # their one argument is an environment


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
    """A command's reply; the user's own errors (no such environment, nothing to roll back, a
    bad predicate) are the reply, not a failed job."""
    try:
        return run_command(ctx, event, command, role, event_id)
    except SluiceError as exc:
        if is_transient(exc):
            raise
        return f"`{quote(command.line)}`: {quote(redact(str(exc)))}"


def run_command(ctx: JobContext, event: CommentEvent, command: Command | BadCommand, role: Role,
                event_id: int) -> str:
    if isinstance(command, BadCommand):
        return f"`{quote(command.line)}`: {command.reason}.\n\n{USAGE}"
    repository, number = event.repository, event.number
    governed = ctx.governed(repository)
    env = command.args[0] if command.name in ENVIRONMENT_COMMANDS else None
    own = True
    if command.name == "unlock" and env is not None:
        current = ctx.locks.held_by(env_lock(repository, env))
        own = current is None or current.holder == holder(repository, number)
    rule = command.args[0] if command.name == "approve" and command.args else None
    refusal = ctx.governance.refusal(governed, command.name, env, role, rule=rule, own=own)
    if refusal is not None:
        return f"`{quote(command.line)}`: refused — {refusal.message}."
    return HANDLERS[command.name](CommandContext(ctx, event, command, role, governed, event_id))
