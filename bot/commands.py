"""Slash commands in merge-request comments: parsing only (what to do is `bot.worker.commands`').

One command per line, at the start of the line, outside fenced code blocks and quotes. Arguments
are checked here (environment names, model names, numbers), so nothing unchecked reaches SQL or a
shell later.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from policies.policy import COMMANDS
from runner.naming import is_environment_name

MODEL = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*){0,2}$")  # [schema.]model[.column]
RULE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

USAGE = """\
Sluice commands (one per line):
- `/plan` — plan, build and test this merge request again
- `/test` — run the data tests against this merge request's environment
- `/deploy <env>` — point an environment such as `staging` at this merge request's snapshots
- `/unlock <env>` — release an environment this merge request holds
- `/destroy` — drop this merge request's environment
- `/diff <model> [--columns a,b] [--where "<predicate>"] [--limit N]` — what changed in one model
- `/lineage <model>[.<column>]` — upstream and downstream of a model or column
- `/approve [rule]` — approve this merge request (or override a policy rule)
- `/rollback <env>` — point an environment back at the snapshots it had before its last change
- `/help` — this text"""


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    line: str = ""

    def option(self, key: str) -> str | None:
        for k, v in self.options:
            if k == key:
                return v
        return None


@dataclass(frozen=True)
class BadCommand:
    line: str
    reason: str


def parse_comment(body: str) -> list[Command | BadCommand]:
    """Every command line in a comment, in order; malformed ones as BadCommand with the reason."""
    found: list[Command | BadCommand] = []
    fenced = False
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced or not line.startswith("/") or line.startswith("//"):
            continue
        found.append(parse_line(line))
    return found


def parse_line(line: str) -> Command | BadCommand:
    try:
        words = shlex.split(line)
    except ValueError as exc:
        return BadCommand(line, f"cannot read the arguments: {exc}")
    name = words[0][1:].lower()
    if name not in COMMANDS:
        return BadCommand(line, f"unknown command `/{name}`")
    args: list[str] = []
    options: list[tuple[str, str]] = []
    rest = words[1:]
    i = 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("--"):
            key = word[2:]
            if "=" in key:
                key, value = key.split("=", 1)
            elif i + 1 < len(rest):
                i += 1
                value = rest[i]
            else:
                return BadCommand(line, f"option `--{key}` needs a value")
            options.append((key, value))
        else:
            args.append(word)
        i += 1
    return _check(Command(name, tuple(args), tuple(options), line))


def _check(command: Command) -> Command | BadCommand:
    name, args, line = command.name, command.args, command.line
    allowed_options = {"diff": {"columns", "where", "limit"}}.get(name, set())
    for key, _ in command.options:
        if key not in allowed_options:
            return BadCommand(line, f"`/{name}` takes no option `--{key}`")
    if name in ("plan", "test", "destroy", "help") and args:
        return BadCommand(line, f"`/{name}` takes no arguments")
    if name in ("deploy", "unlock", "rollback"):
        if len(args) != 1:
            return BadCommand(line, f"`/{name}` needs one environment name, e.g. `/{name} staging`")
        if not is_environment_name(args[0]):
            return BadCommand(line, f"{args[0]!r} is not an environment name")
    if name in ("diff", "lineage"):
        if len(args) != 1 or not MODEL.match(args[0].lower()):
            return BadCommand(line, f"`/{name}` needs one model name, e.g. `/{name} marts.orders`")
        limit = command.option("limit")
        if limit is not None and (not limit.isdigit() or not 0 < int(limit) <= 1000):
            return BadCommand(line, "--limit must be a number from 1 to 1000")
        columns = command.option("columns")
        if columns is not None and not all(MODEL.match(c.strip().lower()) for c in columns.split(",")):
            return BadCommand(line, "--columns must be column names separated by commas")
    if name == "approve" and (len(args) > 1 or (args and not RULE.match(args[0]))):
        return BadCommand(line, "`/approve` takes at most one rule id, e.g. `/approve breaking`")
    return command
