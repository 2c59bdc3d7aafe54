"""Policies through the webhook path: untrusted code waits for a maintainer, promotion
requirements and freeze windows hold production back, overrides land in the audit log, and
hostile model files or comments never reach the warehouse."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.forges.base import Role
from bot.records.audit import AuditLog
from tests.support.e2e import ORDERS, Bot, Forge, build_production, server_config
from tests.support.fakeforge import FakeGitLab
from tests.support.repos import Origin
from tests.support.services import redis_client

PATH = "/webhooks/gitlab"


@pytest.fixture
def forge() -> Iterator[Forge]:
    with FakeGitLab() as fake:
        repo = "data/shop"
        for user, role in (("alice", Role.DEVELOPER), ("bob", Role.DEVELOPER), ("maria", Role.MAINTAINER),
                           ("olga", Role.OWNER), ("outsider", Role.READ)):
            fake.set_role(repo, user, role)
        yield Forge("gitlab", fake, repo)


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path)


def start_bot(tmp_path: Path, forge: Forge, origin: Origin, policy: str | None = None) -> Bot:
    config = server_config(tmp_path, forge, origin)
    if policy is not None:
        (tmp_path / "policy.yml").write_text(policy)
        config = dataclasses.replace(config, policy_file=tmp_path / "policy.yml")
    bot = Bot(config)
    bot.worker.start()
    return bot


@pytest.fixture
def bot(tmp_path: Path, forge: Forge, origin: Origin) -> Iterator[Bot]:
    redis_client().flushdb()
    instance = start_bot(tmp_path, forge, origin)
    yield instance
    instance.worker.stop()


def test_a_fork_waits_for_a_maintainer_and_each_new_commit_needs_a_new_approval(forge: Forge, origin: Origin,
                                                                               bot: Bot):
    sha1 = origin.branch("from-fork", ORDERS)
    forge.fake.add_merge_request(forge.repo, 1, head_sha=sha1, source_branch="from-fork",
                                 author="outsider", from_fork=True)
    assert bot.deliver(forge.hook(1, "opened"), PATH) == 202
    bot.settle()
    [report] = forge.reports(1)
    assert "waiting for approval" in report and "comes from a fork" in report
    assert forge.last_status(sha1) == "pending"
    assert forge.last_status(sha1, "sluice/promotion") == "failure"  # merging would promote nothing
    assert bot.project_state(forge).environment("mr_1") is None  # nothing built

    assert bot.deliver(forge.comment(1, "/approve", author="bob"), PATH) == 202  # a developer: not enough
    bot.settle()
    assert bot.project_state(forge).environment("mr_1") is None

    assert bot.deliver(forge.comment(1, "/approve", author="maria"), PATH) == 202
    bot.settle()
    assert bot.project_state(forge).environment("mr_1") is not None
    assert "ready" in forge.reports(1)[0]

    edit = {"models/marts/orders.sql": ("o.status,", "upper(o.status) as status,")}
    sha2 = origin.commit("from-fork", edit)
    assert bot.deliver(forge.push(1, sha1, sha2), PATH) == 202
    bot.settle()
    assert "waiting for approval" in forge.reports(1)[0]
    assert "do not cover new commits" in forge.reports(1)[0]


def test_merge_with_failing_tests_is_not_promoted(forge: Forge, origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    before = bot.project_state(forge).environment("prod")
    sha = origin.branch("negative", {"models/marts/orders.sql": ("p.total_amount as amount",
                                                                 "-p.total_amount as amount")})
    assert bot.deliver(forge.open(2, sha, "negative"), PATH) == 202
    bot.settle()
    assert "tests failing" in forge.reports(2)[0]
    assert bot.deliver(forge.comment(2, "/approve\n/approve breaking", author="maria"), PATH) == 202
    bot.settle()
    forge.fake.merge(forge.repo, 2, origin.merge("negative"))
    assert bot.deliver(forge.hook(2, "closed"), PATH) == 202
    bot.settle()
    refused = [c for c in forge.comments(2) if "Not promoted" in c]
    assert refused and "**tests**" in refused[0]
    assert bot.project_state(forge).environment("prod").models == before.models  # type: ignore[union-attr]


def test_a_freeze_window_refuses_then_allows_and_overrides_are_audited(tmp_path: Path, forge: Forge,
                                                                       origin: Origin):
    redis_client().flushdb()
    frozen = ("rules:\n  freeze:\n    windows:\n"
              "      - {cron: '* * * * *', timezone: Europe/Berlin, reason: release freeze}\n")
    bot = start_bot(tmp_path, forge, origin, policy=frozen)
    try:
        build_production(bot, forge, origin)
        sha = origin.branch("frozen", ORDERS)
        assert bot.deliver(forge.open(3, sha, "frozen"), PATH) == 202
        bot.settle()
        assert bot.deliver(forge.comment(3, "/approve\n/approve breaking", author="maria"), PATH) == 202
        bot.settle()
        forge.fake.merge(forge.repo, 3, origin.merge("frozen"))
        assert bot.deliver(forge.hook(3, "closed"), PATH) == 202
        bot.settle()
        refused = [c for c in forge.comments(3) if "Not promoted" in c]
        assert refused and "**freeze**" in refused[0] and "release freeze" in refused[0]
        state = bot.project_state(forge)
        prod_before = state.environment("prod").models  # type: ignore[union-attr]
        assert state.environment("mr_3") is not None  # kept, for a deploy once the freeze is over
    finally:
        bot.worker.stop()

    # The freeze is lifted: the maintainer deploys the merged change.
    redis_client().flushdb()
    bot = start_bot(tmp_path, forge, origin, policy="rules:\n  freeze:\n    windows: []\n")
    try:
        assert bot.deliver(forge.comment(3, "/deploy prod", author="maria"), PATH) == 202
        bot.settle()
        assert any("`/deploy prod`: `prod` now points at this merge request's snapshots" in c
                   for c in forge.comments(3))
        state = bot.project_state(forge)
        assert state.environment("prod").models != prod_before  # type: ignore[union-attr]
        log = AuditLog(bot.worker.services.state)
        overrides = log.entries(action="override", repository=forge.repo, number=3)
        assert [(e.actor, e.detail["rule"], e.sha) for e in overrides] == [("maria", "breaking", sha)]
        assert log.entries(action="promotion_refused", repository=forge.repo, number=3)
    finally:
        bot.worker.stop()


HOSTILE = {
    "ddl": "create table marts.evil as select 1 as x",
    "dml": "delete from marts.orders",
    "two statements": "select 1 as x; drop table marts.orders",
    "attach": "attach 'evil.duckdb' as evil",
    "read a file": "select * from read_csv('/etc/passwd')",
    "read a url": "select * from read_parquet('https://example.com/x.parquet')",
    "a quoted path": "select * from '/etc/passwd'",
    "quotes and semicolons": 'select 1 as "x""; drop table marts.orders; --" from raw.raw_orders',
    "pragma": "pragma database_list",
    "copy": "copy marts.orders to '/tmp/out.csv'",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_model_files_are_rejected_and_production_is_untouched(kind: str, forge: Forge,
                                                                     origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    state = bot.project_state(forge)
    prod = state.environment("prod").models  # type: ignore[union-attr]
    path = origin.work / "models" / "marts" / "evil.sql"
    path.write_text(HOSTILE[kind] + "\n")
    from tests.support.repos import git

    git(origin.work, "checkout", "-q", "-B", "evil", "main")
    git(origin.work, "add", ".")
    git(origin.work, "commit", "-q", "-m", "evil")
    git(origin.work, "push", "-q", "-f", "origin", "evil")
    sha = git(origin.work, "rev-parse", "HEAD")
    assert bot.deliver(forge.open(9, sha, "evil"), PATH) == 202
    bot.settle()
    report = forge.reports(9)[0]
    assert "cannot plan this change" in report and "models/marts/evil.sql" in report
    assert state.environment("prod").models == prod
    from runner.engines.duckdb import DuckDBEngine

    with bot.worker.jobs.warehouse_lock(bot.config.warehouses["default"], "test"):
        engine = DuckDBEngine(Path(bot.config.warehouses["default"].removeprefix("duckdb:///")))
        try:
            names = {f"{o.schema}.{o.name}" for o in engine.objects()}
        finally:
            engine.close()
    assert "marts.evil" not in names and "marts.orders" in names
    assert not Path("/tmp/out.csv").exists() or kind != "copy"


@pytest.mark.parametrize("body", [
    "/deploy staging; rm -rf /", "/deploy $(touch /tmp/sluice-pwned)",
    "/diff orders --where \"1; drop table x\"",
    "/diff orders --where \"amount > 0 or (select count(*) from marts.orders) > 0\"", "/lineage `id`",
    "/approve '; DROP TABLE sluice_audit; --",
])
def test_hostile_comments_are_refused(body: str, forge: Forge, origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    sha = origin.branch("c", ORDERS)
    assert bot.deliver(forge.open(10, sha, "c"), PATH) == 202
    bot.settle()
    assert bot.deliver(forge.comment(10, body), PATH) == 202
    bot.settle()
    answer = forge.comments(10)[-1]
    assert any(word in answer for word in ("not", "refused", "needs", "Sluice commands", "takes"))
    assert not Path("/tmp/sluice-pwned").exists()
    assert bot.project_state(forge).environment("staging") is None
    assert AuditLog(bot.worker.services.state).entries(action="override") == []


def test_rollback_prod_is_for_maintainers_and_instant(forge: Forge, origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    state = bot.project_state(forge)
    first = dict(state.environment("prod").models)  # type: ignore[union-attr]
    sha = origin.branch("r", ORDERS)
    assert bot.deliver(forge.open(11, sha, "r"), PATH) == 202
    bot.settle()
    assert bot.deliver(forge.comment(11, "/approve\n/approve breaking", author="maria"), PATH) == 202
    bot.settle()
    forge.fake.merge(forge.repo, 11, origin.merge("r"))
    assert bot.deliver(forge.hook(11, "closed"), PATH) == 202
    bot.settle()
    assert dict(state.environment("prod").models) != first, forge.comments(11)  # type: ignore[union-attr]

    assert bot.deliver(forge.comment(11, "/rollback prod", author="alice"), PATH) == 202
    bot.settle()
    assert "needs maintainer access" in forge.comments(11)[-1]
    assert bot.deliver(forge.comment(11, "/rollback prod", author="maria"), PATH) == 202
    bot.settle()
    assert "`prod` points at its previous snapshots again" in forge.comments(11)[-1]
    assert dict(state.environment("prod").models) == first  # type: ignore[union-attr]
    [entry] = AuditLog(bot.worker.services.state).entries(action="rollback")
    assert entry.actor == "maria" and entry.environment == "prod" and entry.detail["after"] == first
    assert bot.deliver(forge.comment(11, "/rollback staging", author="maria"), PATH) == 202
    bot.settle()
    assert "`staging` has no change to roll back (it does not exist" in forge.comments(11)[-1]
