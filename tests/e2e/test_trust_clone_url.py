"""A webhook naming a hostile clone URL (a loopback service) is built all the same, fetched from
the configured forge's own address plus the repository's path: on GitLab and GitHub, with a
fake forge that serves the repository over git's HTTP protocol."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import RepositoryConfig
from tests.support.e2e import ORDERS, Bot, Forge, path, server_config
from tests.support.repos import Origin
from tests.support.services import redis_client


@pytest.fixture
def bot(tmp_path: Path, forge: Forge, origin: Origin) -> Iterator[Bot]:
    """No clone_url in the server configuration, no local clones: the forge's URL is all there is."""
    redis_client("e2e").flushdb()
    forge.fake.serve_git(forge.repo, origin.bare)
    config = dataclasses.replace(server_config(tmp_path, forge, origin), allow_local_clones=False,
                                 repositories=(RepositoryConfig(forge.name, forge.repo, ("default",)),))
    instance = Bot(config)
    instance.worker.start()
    yield instance
    instance.worker.stop()


def hostile(forge: Forge, delivery: tuple[dict[str, str], bytes], url: str) -> tuple[dict[str, str], bytes]:
    """The delivery with every clone URL it carries replaced by `url`, signed again."""
    headers, body = delivery
    data = json.loads(body)
    if forge.name == "gitlab":
        attrs = data["object_attributes"]
        for project in (data["project"], attrs["source"], attrs["target"]):
            project.update(git_http_url=url, git_ssh_url=url, http_url=url)
    else:
        pr = data["pull_request"]
        for repo in (data["repository"], pr["head"]["repo"], pr["base"]["repo"]):
            repo.update(clone_url=url, git_url=url, ssh_url=url, svn_url=url)
    body = json.dumps(data).encode()
    if forge.name == "github":
        digest = hmac.new(forge.fake.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {**headers, "X-Hub-Signature-256": f"sha256={digest}"}
    return headers, body


def test_the_worker_fetches_from_the_configured_forge_not_from_the_payload(forge: Forge, origin: Origin,
                                                                          bot: Bot):
    sha = origin.branch("change", ORDERS)
    evil = f"{forge.fake.url}/evil/elsewhere.git"  # a loopback URL the worker must never fetch
    assert bot.deliver(hostile(forge, forge.open(1, sha, "change"), evil), path(forge)) == 202
    bot.settle()
    assert bot.project_state(forge).environment("mr_1") is not None  # built from the real repository
    assert forge.fake.requests_to("GET", rf"^/{forge.repo}\.git/info/refs")
    assert not forge.fake.requests_to("GET", r"^/evil")
