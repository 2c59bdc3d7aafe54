"""Two installations of Sluice on one Redis and one PostgreSQL state database, each with its own
forge, repository and warehouse: each answers only its own merge requests. (Before installations
had names, they shared one queue, and one worker took the other's jobs: its `/deploy` was never
answered.)"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.broker import queue_name
from bot.forges.base import Role
from tests.support.e2e import ORDERS, Bot, Forge, path, server_config
from tests.support.fakeforge import FakeGitHub, FakeGitLab
from tests.support.repos import Origin
from tests.support.services import redis_client


@pytest.fixture(params=["gitlab", "github"])
def forges(request: pytest.FixtureRequest) -> Iterator[tuple[Forge, Forge]]:
    fake_class = FakeGitLab if request.param == "gitlab" else FakeGitHub
    with fake_class() as first, fake_class() as second:
        pair = (Forge(request.param, first, "data/shop"), Forge(request.param, second, "data/other"))
        for forge in pair:
            forge.fake.set_role(forge.repo, "alice", Role.DEVELOPER)
        yield pair


def test_two_installations_on_one_broker_and_one_state_store_each_answer_their_own(
        tmp_path: Path, forges: tuple[Forge, Forge], pg_url: str):
    redis_client("e2e").flushdb()
    bots: list[Bot] = []
    origins: list[Origin] = []
    for name, forge in zip(("a", "b"), forges, strict=True):
        root = tmp_path / name
        root.mkdir()
        origin = Origin(root)
        config = dataclasses.replace(server_config(root, forge, origin), state_url=pg_url,
                                     public_url=f"https://sluice-{name}.example.com")
        bots.append(Bot(config))
        origins.append(origin)
    first, second = bots
    assert (first.config.installation, second.config.installation) == ("sluice_a_example_com",
                                                                       "sluice_b_example_com")
    assert first.worker.actor.queue_name != second.worker.actor.queue_name == queue_name(
        "sluice_b_example_com")
    for bot in bots:
        bot.worker.start()
    try:
        for bot, forge, origin in zip(bots, forges, origins, strict=True):
            sha = origin.branch("change", ORDERS)
            assert bot.deliver(forge.open(1, sha, "change"), path(forge)) == 202
        for bot in bots:
            bot.settle()
        for bot, forge in zip(bots, forges, strict=True):
            assert bot.deliver(forge.comment(1, "/deploy staging"), path(forge)) == 202
        for bot in bots:
            bot.settle()
        for bot, forge in zip(bots, forges, strict=True):
            comments = forge.comments(1)
            assert len(forge.reports(1)) == 1, comments
            assert any("`staging` now points at this merge request's snapshots" in c for c in comments)
            assert forge.last_status(forge.fake.merge_request(forge.repo, 1).head_sha) == "success"
            # Its runs, its environments: nothing of the other's.
            runs = bot.worker.jobs.runs.for_merge_request(forge.name, forge.repo, 1)
            assert runs and all(r.repository == forge.repo for r in runs)
            assert bot.project_state(forge).environment("staging") is not None
        # One lock table, each installation's locks under its name: both hold their "staging".
        held = [name for name in _lock_names(first) if ":env:" in name]
        assert held == [f"{bot.config.installation}:env:{forge.name}:{forge.repo}:staging"
                        for bot, forge in zip(bots, forges, strict=True)]
    finally:
        for bot in bots:
            bot.worker.stop()


def _lock_names(bot: Bot) -> list[str]:
    import sqlalchemy as sa

    from runner.state.schema import locks

    with bot.worker.services.state.engine.connect() as conn:
        return sorted(conn.execute(sa.select(locks.c.name)).scalars())
