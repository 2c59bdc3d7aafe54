"""Slash commands parsed from merge-request comments."""

from __future__ import annotations

import pytest

from bot.commands import BadCommand, Command, parse_comment


def test_one_command_per_line_outside_code_blocks():
    body = "Looks good.\n/plan\n```\n/destroy\n```\n  /deploy staging\nnot /test here\n"
    commands = parse_comment(body)
    assert [c.name for c in commands if isinstance(c, Command)] == ["plan", "deploy"]
    assert commands[1] == Command("deploy", ("staging",), (), "/deploy staging")


def test_diff_options():
    [command] = parse_comment('/diff marts.orders --columns amount,status --where "amount > 10" --limit 5')
    assert isinstance(command, Command)
    assert command.args == ("marts.orders",)
    assert command.option("where") == "amount > 10"
    assert command.option("limit") == "5"


@pytest.mark.parametrize(("line", "reason"), [
    ("/frobnicate", "unknown command `/frobnicate`"),
    ("/deploy", "needs one environment name"),
    ("/deploy staging; rm -rf /", "needs one environment name"),
    ("/deploy 'staging;drop'", "is not an environment name"),
    ("/deploy $(whoami)", "is not an environment name"),
    ("/plan now", "takes no arguments"),
    ("/diff orders; drop table x", "needs one model name"),
    ("/diff orders --limit 0", "--limit must be a number from 1 to 1000"),
    ("/diff orders --bogus 1", "takes no option `--bogus`"),
    ('/diff "unterminated', "cannot read the arguments"),
    ("/lineage a.b.c.d", "needs one model name"),
    ("/approve two rules", "at most one rule id"),
])
def test_malformed_commands_say_why(line: str, reason: str):
    [command] = parse_comment(line)
    assert isinstance(command, BadCommand)
    assert reason in command.reason


def test_comment_without_commands_is_nothing():
    assert parse_comment("Thanks! See https://example.com/plan for details.\n// not a command") == []
