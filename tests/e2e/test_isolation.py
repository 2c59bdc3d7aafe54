"""Two repositories with the same models served by one Sluice on one DuckDB warehouse, through
the web app, a worker and a fake forge: each merge request builds in its repository's namespace,
closing one repository's MR !7 leaves the other's, and a merge that would write production
schemas the other repository's production writes is refused in its thread, production untouched.
(Before namespaces, the second merge repointed the first repository's production views, and the
close dropped both `marts__mr_7`.)"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import RepositoryConfig, load_server_config
from bot.forges.base import Role
from runner.errors import SluiceError
from tests.support.e2e import ORDERS, Bot, Forge, build_production, path, server_config, warehouse_tables
from tests.support.fakeforge import FakeGitLab
from tests.support.repos import Origin
from tests.support.services import redis_client

A, B = "team-a/shop", "team-b/shop"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Forge, Forge, Origin, Origin, Bot]]:
    redis_client("e2e").flushdb()
    with FakeGitLab() as fake:
        forges = (Forge("gitlab", fake, A), Forge("gitlab", fake, B))
        origins = []
        for forge, name in zip(forges, "ab", strict=True):
            for user, role in (("alice", Role.DEVELOPER), ("maria", Role.MAINTAINER)):
                fake.set_role(forge.repo, user, role)
            (tmp_path / name).mkdir()
            origins.append(Origin(tmp_path / name))
        config = server_config(tmp_path, forges[0], origins[0])
        config = dataclasses.replace(config, repositories=tuple(
            RepositoryConfig("gitlab", f.repo, ("default",), clone_url=str(o.bare))
            for f, o in zip(forges, origins, strict=True)))
        bot = Bot(config)
        bot.worker.start()
        try:
            yield forges[0], forges[1], origins[0], origins[1], bot
        finally:
            bot.worker.stop()


def test_two_repositories_on_one_warehouse_keep_to_their_own_objects(
        tmp_path: Path, pair: tuple[Forge, Forge, Origin, Origin, Bot]) -> None:
    a, b, origin_a, origin_b, bot = pair
    build_production(bot, a, origin_a)
    prod_a = bot.project_state(a).environment("prod")
    assert prod_a is not None

    for forge, origin in ((a, origin_a), (b, origin_b)):
        sha = origin.branch("change", ORDERS)
        assert bot.deliver(forge.open(7, sha, "change"), path(forge)) == 202
    bot.settle()
    tables = warehouse_tables(tmp_path, bot)
    assert {"marts__team_a_shop__mr_7.orders", "marts__team_b_shop__mr_7.orders"} <= tables
    assert any(t.startswith("sluice__team_b_shop__") for t in tables)
    assert len(a.reports(7)) == len(b.reports(7)) == 1

    # B closes !7: A's !7 is still there.
    b.fake.close(B, 7)
    assert bot.deliver(b.hook(7, "closed"), path(b)) == 202
    bot.settle()
    tables = warehouse_tables(tmp_path, bot)
    assert "marts__team_a_shop__mr_7.orders" in tables
    assert not any(t.startswith("marts__team_b_shop__mr_7.") for t in tables)
    assert bot.project_state(a).environment("mr_7") is not None

    # B merges another change: its production would write `marts`, which A's production writes.
    sha = origin_b.branch("again", ORDERS)
    assert bot.deliver(b.open(8, sha, "again"), path(b)) == 202
    bot.settle()
    assert bot.deliver(b.comment(8, "/approve\n/approve breaking", author="maria"), path(b)) == 202
    bot.settle()
    b.fake.merge(B, 8, origin_b.merge("again"))
    assert bot.deliver(b.hook(8, "closed"), path(b)) == 202
    bot.settle()
    [refusal] = [c for c in b.comments(8) if "Not promoted" in c]
    assert "production schema" in refusal and "gitlab:team-a/shop" in refusal
    assert "gitlab:team-b/shop" in refusal
    after = bot.project_state(a).environment("prod")
    assert after is not None and after.models == prod_a.models
    assert bot.project_state(b).environment("prod") is None

    # A merges !7: its production moves as always.
    assert bot.deliver(a.comment(7, "/approve\n/approve breaking", author="maria"), path(a)) == 202
    bot.settle()
    a.fake.merge(A, 7, origin_a.merge("change"))
    assert bot.deliver(a.hook(7, "closed"), path(a)) == 202
    bot.settle()
    assert any("Promoted to production" in c for c in a.comments(7))


@pytest.mark.parametrize(("entries", "message"), [
    ("  - {forge: gitlab, name: data/shop}\n  - {forge: github, name: data/shop}",
     "repositories gitlab:data/shop and github:data/shop both have the namespace 'data_shop'"),
    ("  - {forge: gitlab, name: a/shop, namespace: shop}\n  - {forge: gitlab, name: b/shop, namespace: shop}",
     "repositories gitlab:a/shop and gitlab:b/shop both have the namespace 'shop'"),
    ("  - {forge: gitlab, name: a/shop, namespace: Shop-1}", "namespace 'Shop-1' is not valid"),
    ("  - {forge: gitlab, name: a/shop, namespace: a__b}", "namespace 'a__b' is not valid"),
])
def test_two_repositories_need_two_namespaces(tmp_path: Path, entries: str, message: str) -> None:
    config = tmp_path / "server.yml"
    config.write_text(f"repositories:\n{entries}\n")
    with pytest.raises(SluiceError) as refused:
        load_server_config(config, {})
    assert message in str(refused.value) and str(config) in str(refused.value)
    assert "\n" not in str(refused.value)
