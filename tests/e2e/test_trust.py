"""Trust per commit, on GitLab and on GitHub, through webhooks and a real worker: an approval (the
forge's own or `/approve`) trusts the commit it was given on and no other; a fork's build and its
commands that read its code wait for it, and go on by themselves once it arrives; a push after
it waits again, and the thread names the commit and who may approve it."""

from __future__ import annotations

from bot.records.audit import AuditLog
from bot.records.runs import RunKind, RunStatus
from tests.support.e2e import ORDERS, Bot, Forge, build_production, path, runs_of
from tests.support.repos import Origin

EDIT = {"models/marts/orders.sql": ("o.status,", "upper(o.status) as status,")}


def open_fork(forge: Forge, origin: Origin, bot: Bot, number: int = 1, author: str = "outsider") -> str:
    sha = origin.branch("from-fork", ORDERS)
    forge.fake.add_merge_request(forge.repo, number, head_sha=sha, source_branch="from-fork",
                                 author=author, from_fork=True)
    assert bot.deliver(forge.hook(number, "opened"), path(forge)) == 202
    bot.settle()
    return sha


def send(bot: Bot, forge: Forge, delivery: tuple[dict[str, str], bytes]) -> None:
    assert bot.deliver(delivery, path(forge)) == 202
    bot.settle()


def built(bot: Bot, forge: Forge, number: int = 1) -> bool:
    return bot.project_state(forge).environment(f"mr_{number}") is not None


def test_a_forge_approval_trusts_its_commit_and_a_push_after_it_waits_again(forge: Forge, origin: Origin,
                                                                            bot: Bot):
    build_production(bot, forge, origin)
    sha1 = open_fork(forge, origin, bot)
    [report] = forge.reports(1)
    assert "waiting for approval" in report and sha1[:12] in report and "maintainer" in report
    assert not built(bot, forge)

    # Commands that read the fork's code wait for the same approval; nothing runs meanwhile.
    send(bot, forge, forge.comment(1, "/test\n/lineage marts.orders", author="alice"))
    answer = forge.comments(1)[-1]
    assert "`/test` waits" in answer and "`/lineage marts.orders` waits" in answer
    assert f"commit {sha1[:12]} is not built until approved" in answer and "maintainer" in answer
    parked = [r for r in runs_of(bot, forge, 1) if r.command]
    assert [r.status for r in parked] == [RunStatus.WAITING, RunStatus.WAITING]
    assert all(r.sha == sha1 and "an approval of commit" in (r.waiting_for or "") for r in parked)
    assert not built(bot, forge)

    # A developer's forge approval does not trust it; a maintainer's does, at this commit.
    send(bot, forge, forge.approve(1, "bob"))
    assert not built(bot, forge)
    send(bot, forge, forge.approve(1, "maria"))
    assert built(bot, forge)
    assert "waiting for approval" not in forge.reports(1)[0]
    answered = forge.comments(1)[-1]
    assert f"Commit `{sha1[:12]}` is approved now" in answered
    assert "passed" in answered and "Lineage of `marts.orders`" in answered
    assert all(r.status is RunStatus.SUCCESS for r in runs_of(bot, forge, 1) if r.command)
    recorded = AuditLog(bot.worker.services.state).entries(action="forge_approve")
    assert {(e.actor, e.sha) for e in recorded} >= {("maria", sha1)}

    # A push after the approval: the forge approval still stands on the forge, but it was given
    # on the older commit, so the new one waits, and the thread says which commit and who.
    sha2 = origin.commit("from-fork", EDIT)
    send(bot, forge, forge.push(1, sha1, sha2))
    report = forge.reports(1)[0]
    assert "waiting for approval" in report and sha2[:12] in report
    assert "do not cover new commits" in report and "maintainer" in report
    assert forge.last_status(sha2) == "pending"
    pipelines = runs_of(bot, forge, 1, RunKind.PIPELINE)
    assert pipelines[-1].sha == sha2 and pipelines[-1].status is RunStatus.WAITING

    send(bot, forge, forge.comment(1, "/diff marts.orders", author="alice"))
    assert "`/diff marts.orders` waits" in forge.comments(1)[-1] and sha2[:12] in forge.comments(1)[-1]

    # `/approve` by a maintainer at the new head: built, and the waiting /diff answered.
    send(bot, forge, forge.comment(1, "/approve", author="maria"))
    assert runs_of(bot, forge, 1, RunKind.PIPELINE)[-1].status in (RunStatus.SUCCESS, RunStatus.FAILED)
    assert runs_of(bot, forge, 1, RunKind.PIPELINE)[-1].sha == sha2
    assert "waiting for approval" not in forge.reports(1)[0]
    assert any(f"Commit `{sha2[:12]}` is approved now" in c and "marts.orders" in c
               for c in forge.comments(1))


def test_an_approval_of_an_older_commit_trusts_no_command_at_the_head(forge: Forge, origin: Origin,
                                                                      bot: Bot):
    """`/approve` at commit A, a push of B: `/plan` and `/deploy` wait for an approval of B."""
    build_production(bot, forge, origin)
    sha1 = open_fork(forge, origin, bot, number=2, author="guest")
    send(bot, forge, forge.comment(2, "/approve", author="maria"))
    assert built(bot, forge, 2)
    sha2 = origin.commit("from-fork", EDIT)
    send(bot, forge, forge.push(2, sha1, sha2))
    before = bot.project_state(forge).environment("mr_2")
    send(bot, forge, forge.comment(2, "/plan\n/deploy staging", author="alice"))
    answer = forge.comments(2)[-1]
    assert "`/plan` waits" in answer and "`/deploy staging` waits" in answer and sha2[:12] in answer
    assert bot.project_state(forge).environment("mr_2") == before  # nothing rebuilt
    assert bot.project_state(forge).environment("staging") is None  # nothing deployed
    assert [r.sha for r in runs_of(bot, forge, 2, RunKind.PIPELINE)][-1] == sha2

    # The approval of the head builds it once; the parked `/plan` says so, `/deploy` now deploys.
    send(bot, forge, forge.comment(2, "/approve", author="maria"))
    at_head = [r for r in runs_of(bot, forge, 2, RunKind.PIPELINE) if r.sha == sha2]
    assert at_head[0].status is RunStatus.WAITING and len(at_head) == 2
    answered = forge.comments(2)[-1]
    assert "`/plan`: done when the commit was approved" in answered and "now points at" in answered
    assert bot.project_state(forge).environment("staging") is not None


def test_a_trusted_authors_commands_run_at_once(forge: Forge, origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    sha = origin.branch("inside", ORDERS)
    send(bot, forge, forge.open(3, sha, "inside", author="alice"))
    assert built(bot, forge, 3)
    send(bot, forge, forge.comment(3, "/test", author="bob"))
    assert "`/test`:" in forge.comments(3)[-1] and "waits" not in forge.comments(3)[-1]
