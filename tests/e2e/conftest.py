"""Fixtures of the end-to-end suites: each test on GitLab and on GitHub, with a data team's
repository and a running bot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.forges.base import Role
from tests.support.e2e import Bot, Forge, server_config
from tests.support.fakeforge import FakeGitHub, FakeGitLab
from tests.support.repos import Origin
from tests.support.services import redis_client


@pytest.fixture(params=["gitlab", "github"])
def forge(request: pytest.FixtureRequest) -> Iterator[Forge]:
    fake_class = FakeGitLab if request.param == "gitlab" else FakeGitHub
    with fake_class() as fake:
        repo = "data/shop"
        fake.set_role(repo, "alice", Role.DEVELOPER)
        fake.set_role(repo, "bob", Role.DEVELOPER)
        fake.set_role(repo, "maria", Role.MAINTAINER)
        fake.set_role(repo, "guest", Role.READ)
        yield Forge(request.param, fake, repo)


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path)


@pytest.fixture
def bot(tmp_path: Path, forge: Forge, origin: Origin) -> Iterator[Bot]:
    redis_client("e2e").flushdb()
    instance = Bot(server_config(tmp_path, forge, origin))
    instance.worker.start()
    yield instance
    instance.worker.stop()


