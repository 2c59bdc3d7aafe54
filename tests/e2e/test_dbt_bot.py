"""A dbt repository through the bot (issue 13): the worker compiles it without the server's
secrets, the merge request's report shows exactly the models a macro change touches, and merging
promotes what was built. One forge (GitLab) only: each dbt compile costs seconds."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from bot.forges.base import Role
from bot.records.runs import RunLog
from tests.support.e2e import Bot, Forge, build_production, path, server_config, warehouse_tables
from tests.support.fakeforge import FakeGitLab
from tests.support.paths import REPO
from tests.support.repos import Origin
from tests.support.services import redis_client

SHOP = REPO / "tests" / "fixtures" / "dbt" / "shop"
MACRO = {"macros/status_flags.sql": ("as is_{{ status }}", "as was_{{ status }}")}


@pytest.fixture
def dbt_bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Bot, Forge, Origin]]:
    monkeypatch.setenv("SHOP_REGION", "eu")  # allowlisted below: the compile may read it
    monkeypatch.setenv("SLUICE_TEST_SECRET", "not-for-dbt")
    with FakeGitLab() as fake:
        fake.set_role("data/shop", "alice", Role.DEVELOPER)
        fake.set_role("data/shop", "maria", Role.MAINTAINER)
        forge = Forge("gitlab", fake, "data/shop")
        origin = Origin(tmp_path, source=SHOP)
        # The source the project reads in place, in the warehouse the server gives it.
        with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as warehouse:
            warehouse.execute("create schema ext; create table ext.events as "
                              "select * from (values (1), (1), (2)) as t(customer_id)")
        redis_client("e2e").flushdb()
        bot = Bot(dataclasses.replace(server_config(tmp_path, forge, origin), dbt_env="SHOP_REGION"))
        bot.worker.start()
        try:
            yield bot, forge, origin
        finally:
            bot.worker.stop()


def send(bot: Bot, forge: Forge, delivery: tuple[dict[str, str], bytes]) -> None:
    assert bot.deliver(delivery, path(forge)) == 202
    bot.settle(timeout=600)


def test_a_dbt_merge_request_reports_what_a_macro_touches_and_merging_promotes_it(
        tmp_path: Path, dbt_bot: tuple[Bot, Forge, Origin]) -> None:
    bot, forge, origin = dbt_bot
    build_production(bot, forge, origin)
    built = warehouse_tables(tmp_path, bot)
    assert {"main_mart.orders", "main_mart.customers", "main.stg_app__orders"} <= built

    sha = origin.branch("flags", MACRO)
    send(bot, forge, forge.open(1, sha, "flags"))
    assert forge.last_status(sha) == "success", forge.reports(1)
    [report] = forge.reports(1)
    assert "main_mart.orders" in report
    plan = report.split("#### Plan against", 1)[1].split("Unaffected", 1)[0]  # policies may name any model
    assert "main.stg_app__orders" not in plan  # the macro is not used there

    send(bot, forge, forge.comment(1, "/approve\n/approve breaking", author="maria"))
    forge.fake.merge(forge.repo, 1, origin.merge("flags"))
    send(bot, forge, forge.hook(1, "closed"))
    assert any("Promoted to production" in c for c in forge.comments(1))
    with bot.worker.jobs.warehouse_lock(bot.config.warehouses["default"], "test"), \
            duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as warehouse:
        columns = {r[0] for r in warehouse.execute("describe main_mart.orders").fetchall()}
        region = warehouse.execute("select distinct region from main.stg_app__customers").fetchall()
    assert "was_completed" in columns and "is_completed" not in columns
    assert region == [("eu",)]  # the allowlisted variable, and only it


def test_a_forks_dbt_project_is_not_compiled_before_its_commit_is_approved(
        tmp_path: Path, dbt_bot: tuple[Bot, Forge, Origin]) -> None:
    # Compiling runs the merge request's Jinja: it waits for the trust gate like a build.
    bot, forge, origin = dbt_bot
    build_production(bot, forge, origin)
    cache = bot.config.work_dir / "cache"
    compiled = {p for p in cache.rglob("*") if p.is_file()}
    sha = origin.branch("fork", MACRO)
    forge.fake.add_merge_request(forge.repo, 2, head_sha=sha, source_branch="fork", author="outsider",
                                 from_fork=True)
    send(bot, forge, forge.hook(2, "opened"))
    [report] = forge.reports(2)
    assert "waiting for approval" in report
    [run] = RunLog(bot.worker.services.state).for_merge_request("gitlab", forge.repo, 2)
    assert "compiled and checked once its commit is trusted" in run.log
    assert {p for p in cache.rglob("*") if p.is_file()} == compiled  # dbt made nothing new
