"""Slash commands: a comment is parsed (`bot.commands`), each command authorised by the policy,
then held at the trust gate when it reads or runs the merge request's code, then answered by its
handler from `HANDLERS`, one function per command. Each command is a run of its own (its page
holds the answer and the log); all replies to one comment go back in one comment. A command held
at the gate waits, parked, for an approval of the head commit, and is answered when it arrives."""

from __future__ import annotations

from collections.abc import Callable

from bot.commands import USAGE, BadCommand, Command, parse_comment, parse_line
from bot.events import CommentEvent, Repository, from_json
from bot.forges.base import Role
from bot.records.runs import Run, RunKind, RunStatus
from bot.worker.commands.base import CommandContext
from bot.worker.commands.environments import deploy, destroy, rollback, unlock
from bot.worker.commands.inspect import diff, lineage, test
from bot.worker.commands.review import approve, help_, plan
from bot.worker.context import JobContext
from bot.worker.keys import env_lock, holder, mr_environment
from bot.worker.text import MARKER, answer_marker, quote
from runner.checkout import redact
from runner.errors import SluiceError, is_transient

Handler = Callable[[CommandContext], str]

HANDLERS: dict[str, Handler] = {
    "plan": plan, "test": test, "deploy": deploy, "unlock": unlock, "destroy": destroy,
    "diff": diff, "lineage": lineage, "approve": approve, "rollback": rollback, "help": help_,
}
ENVIRONMENT_COMMANDS = ("deploy", "unlock", "rollback")  # their one argument is an environment
KINDS = {"deploy": RunKind.DEPLOY, "rollback": RunKind.ROLLBACK, "approve": RunKind.APPROVE}
# Commands that read or run the merge request's code (or move an environment to what it built):
# they wait at the trust gate for an approval of the head commit.
GATED = ("plan", "test", "diff", "lineage", "deploy")
# A command run that ended with its reply recorded (a WAITING one recorded why it waits).
ANSWERED = frozenset({RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.WAITING})


def on_comment(ctx: JobContext, event: CommentEvent, event_id: int, attempts: int = 1) -> None:
    """Answer a comment's commands in one comment. `attempts`: how many times a worker took the
    event up, this one included (more than one: an earlier attempt may have answered already)."""
    if event.author_is_bot or MARKER in event.body:
        return
    commands = parse_comment(event.body)
    if not commands:
        return
    forge = ctx.forge(event.repository)
    repo, marker = event.repository.full_name, answer_marker(event_id)
    # A job that ran before (its worker died, or the forge's answer to the comment was lost)
    # answers from what it recorded: commands run once, the thread gets one answer.
    earlier = [r for r in ctx.runs.for_event(event_id) if r.command and r.status in ANSWERED]
    if (earlier or attempts > 1) and forge.find_comment(repo, event.number, marker) is not None:
        return
    forge.react(repo, event.number, event.comment_id, "eyes")
    role = forge.role(repo, event.author)
    replies = [answer(ctx, event, command, role, event_id, earlier=earlier) for command in commands]
    text = "\n\n---\n\n".join(r for r in replies if r)
    if text:
        forge.post_comment(repo, event.number, f"{text}\n\n{marker}")
    if any(isinstance(c, Command) and c.name == "approve" for c in commands):
        resume_trusted(ctx, event.repository, event.number)


def answer(ctx: JobContext, event: CommentEvent, command: Command | BadCommand, role: Role,
           event_id: int, run_id: int | None = None, earlier: list[Run] | None = None) -> str:
    """A command's reply, kept on its run's page; the user's own errors (no such environment,
    nothing to roll back, a bad predicate) are the reply, not a failed job. `run_id`: the run of
    a command answered again after it waited. `earlier`: the runs an earlier attempt at the same
    event finished; a command among them is not run again (its recorded reply is taken, once)."""
    if isinstance(command, BadCommand):
        return f"`{quote(command.line)}`: {command.reason}.\n\n{USAGE}"
    done = next((r for r in earlier or () if r.command == command.line), None)
    if done is not None and earlier is not None:
        earlier.remove(done)
        return done.report.rstrip("\n")
    if run_id is None:
        env = command.args[0] if command.name in ENVIRONMENT_COMMANDS else mr_environment(event.number)
        run_id = ctx.runs.create(event.repository.forge, event.repository.full_name, event.number,
                                 KINDS.get(command.name, RunKind.COMMAND), environment=env,
                                 event_id=event_id, command=command.line)
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
    if run is not None and run.status not in (RunStatus.FAILED, RunStatus.SUCCESS, RunStatus.WAITING):
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
    cc = CommandContext(ctx, event, command, role, governed, event_id, run_id)
    if command.name in GATED:
        waits = trust_gate(cc)
        if waits is not None:
            return waits
    return HANDLERS[command.name](cc)


def trust_gate(cc: CommandContext) -> str | None:
    """None when the head commit is trusted; else the command's run is parked until it is, and
    the reply says which commit waits for whom."""
    info = cc.merge_request()
    if info.state != "open":
        return None  # the handlers say what a closed merge request allows
    finding = cc.jobs.governance.trust(cc.governed, cc.facts(info))
    if finding is None:
        return None
    sha = info.head_sha
    reply = (f"`{quote(cc.command.line)}` waits: {quote(finding.message)}. {quote(finding.fix)} "
             f"A forge approval of commit `{sha[:12]}` counts too; `{quote(cc.command.line)}` then "
             "runs by itself (a later push waits again).")
    cc.jobs.runs.set_sha(cc.run_id, sha)
    cc.jobs.runs.wait(cc.run_id, f"an approval of commit `{sha[:12]}` ({quote(finding.message)})")
    cc.jobs.runs.finish(cc.run_id, RunStatus.WAITING, f"waiting for an approval of {sha[:12]}",
                        reply + "\n")
    return reply


def resume_trusted(ctx: JobContext, repository: Repository, number: int) -> None:
    """Answer the commands that waited for an approval of the head commit, if it is trusted now.
    Commands that waited at an older commit stay as they are: a push after them asks again."""
    forge = ctx.forge(repository)
    info = forge.merge_request(repository.full_name, number)
    parked = [r for r in ctx.runs.for_merge_request(repository.forge, repository.full_name, number)
              if r.status is RunStatus.WAITING and r.command and r.event_id is not None
              and r.sha == info.head_sha and r.kind != RunKind.PIPELINE]
    if not parked or info.state != "open":
        return
    governed = ctx.governed(repository)
    facts = ctx.governance.facts(repository, number, info, forge.role(repository.full_name, info.author),
                                 forge)
    if ctx.governance.trust(governed, facts) is not None:
        return
    builds = [r for r in ctx.runs.for_merge_request(repository.forge, repository.full_name, number)
              if r.kind == RunKind.PIPELINE and r.sha == info.head_sha
              and r.status in (RunStatus.SUCCESS, RunStatus.FAILED)]
    replies = [reply for run in parked if (reply := _answer_again(ctx, run, builds))]
    if replies:
        forge.post_comment(repository.full_name, number,
                           f"Commit `{info.head_sha[:12]}` is approved now; what waited for it:\n\n"
                           + "\n\n---\n\n".join(replies))


def _answer_again(ctx: JobContext, run: Run, builds: list[Run]) -> str | None:
    built = next((b for b in reversed(builds) if b.id > run.id), None)
    if run.command == "/plan" and built is not None:
        # the approval itself built this commit: `/plan` would only build it once more
        if not ctx.runs.claim(run.id, f"the approval built the commit: run #{built.id}"):
            return None
        reply = f"`/plan`: done when the commit was approved, see the report above (run #{built.id})."
        ctx.runs.finish(run.id, RunStatus.SUCCESS, reply, reply + "\n")
        return reply
    stored = ctx.inbox.get(run.event_id) if run.event_id is not None else None
    event = from_json(stored.event) if stored is not None and stored.event else None
    command = parse_line(run.command or "")
    if not isinstance(event, CommentEvent) or not isinstance(command, Command):
        return None
    if not ctx.runs.claim(run.id, "the commit is approved now: answering the command"):
        return None  # another worker took it up
    role = ctx.forge(event.repository).role(event.repository.full_name, event.author)
    return answer(ctx, event, command, role, run.event_id or 0, run_id=run.id)
