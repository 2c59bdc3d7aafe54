"""Hostile webhook bodies, signed as the forges sign them: ids out of range or of the wrong kind
and repository paths that would take a fetch elsewhere answer 400 with one line naming the
field, and nothing is stored; the clone URL a payload names is never fetched from."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.broker import DramatiqDispatcher, declare_actor, make_broker, queue_name
from bot.config import RepositoryConfig, ServerConfig
from bot.events import Repository
from bot.forges.base import ForgeError, WebhookError, repository_path
from bot.forges.github import GitHub, GitHubConfig
from bot.forges.gitlab import GitLab, GitLabConfig
from bot.records.schema import events
from bot.web.app import create_app
from runner.state.store import StateStore
from tests.support.paths import FORGE_FIXTURES

GITHUB_SECRET, GITLAB_SECRET = "gh-secret", "gl-secret"
GITHUB_REPO, GITLAB_REPO = "Codertocat/Hello-World", "demoaccount2-commits-group/test_ci_tmp"
GITLAB_NOTE_REPO = "lkysow-test/subgroup/sub-subgroup/atlantis-example"

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: object) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value
    return edit


# (forge, fixture, event header, edit, the field the answer names)
HOSTILE: list[tuple[str, str, str, Edit, str]] = [
    ("github", "github_pull_request_opened", "pull_request", _set("pull_request.number", 2**63),
     "pull_request.number"),
    ("github", "github_pull_request_opened", "pull_request", _set("pull_request.number", 2**31),
     "pull_request.number"),
    ("github", "github_pull_request_opened", "pull_request", _set("pull_request.number", -2),
     "pull_request.number"),
    ("github", "github_pull_request_opened", "pull_request", _set("pull_request.number", 0),
     "pull_request.number"),
    ("github", "github_pull_request_opened", "pull_request", _set("pull_request.number", 10**400),
     "pull_request.number"),
    ("github", "github_pull_request_opened", "pull_request", _set("pull_request.number", 2.5),
     "pull_request.number"),
    ("github", "github_pull_request_opened", "pull_request", _set("pull_request.number", True),
     "pull_request.number"),
    ("github", "github_issue_comment_created", "issue_comment", _set("comment.id", 2**64),
     "comment.id"),
    ("github", "github_issue_comment_created", "issue_comment", _set("comment.id", -1), "comment.id"),
    ("github", "github_issue_comment_created", "issue_comment", _set("issue.number", "4"),
     "issue.number"),
    ("github", "github_pull_request_opened", "pull_request",
     _set("repository.full_name", "Codertocat/../../etc"), "Codertocat/../../etc"),
    ("gitlab", "gitlab_merge_request_open", "Merge Request Hook", _set("object_attributes.iid", 2**63),
     "object_attributes.iid"),
    ("gitlab", "gitlab_merge_request_open", "Merge Request Hook", _set("object_attributes.iid", -7),
     "object_attributes.iid"),
    ("gitlab", "gitlab_merge_request_open", "Merge Request Hook", _set("project.id", 2**63),
     "project.id"),
    ("gitlab", "gitlab_merge_request_open", "Merge Request Hook", _set("project.id", "12"), "project.id"),
    ("gitlab", "gitlab_note_merge_request", "Note Hook", _set("object_attributes.id", 2**70),
     "object_attributes.id"),
    ("gitlab", "gitlab_note_merge_request", "Note Hook", _set("merge_request.iid", -1),
     "merge_request.iid"),
    ("gitlab", "gitlab_merge_request_open", "Merge Request Hook",
     _set("project.path_with_namespace", "group/@evil.example.com:80/x"), "@evil.example.com"),
]


def delivery(forge: str, fixture: str, kind: str, edit: Edit | None = None) -> tuple[bytes, dict[str, str]]:
    data = json.loads((FORGE_FIXTURES / f"{forge}_webhooks" / f"{fixture}.json").read_text())
    if edit is not None:
        edit(data)
    body = json.dumps(data).encode()
    if forge == "github":
        signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return body, {"X-GitHub-Event": kind, "X-GitHub-Delivery": str(uuid.uuid4()),
                      "X-Hub-Signature-256": signature, "Content-Type": "application/json"}
    return body, {"X-Gitlab-Event": kind, "Idempotency-Key": str(uuid.uuid4()),
                  "X-Gitlab-Token": GITLAB_SECRET, "Content-Type": "application/json"}


@pytest.fixture
def state(tmp_path: Path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def client(state: StateStore) -> Any:
    config = ServerConfig(
        state_url=state.url, broker_url="stub://",
        forges={"gitlab": GitLabConfig(token="t", webhook_secret=GITLAB_SECRET),
                "github": GitHubConfig(token="t", webhook_secret=GITHUB_SECRET)},
        repositories=(RepositoryConfig("github", GITHUB_REPO), RepositoryConfig("gitlab", GITLAB_REPO),
                      RepositoryConfig("gitlab", GITLAB_NOTE_REPO)))
    broker = make_broker("stub://")
    dispatcher = DramatiqDispatcher(broker, declare_actor(broker, lambda event_id: None, queue_name("t")))
    return create_app(config, state=state, dispatcher=dispatcher).test_client()


def stored(state: StateStore) -> int:
    with state.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() or 0)


@pytest.mark.parametrize(("forge", "fixture", "kind", "edit", "named"), HOSTILE)
def test_an_out_of_range_or_hostile_field_is_a_400_naming_it(client: Any, state: StateStore, forge: str,
                                                             fixture: str, kind: str, edit: Edit,
                                                             named: str) -> None:
    body, headers = delivery(forge, fixture, kind, edit)
    response = client.post(f"/webhooks/{forge}", data=body, headers=headers)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert named in error and "\n" not in error and len(error) < 300
    assert stored(state) == 0


@pytest.mark.parametrize(("forge", "fixture", "kind"), [
    ("github", "github_pull_request_opened", "pull_request"),
    ("gitlab", "gitlab_merge_request_open", "Merge Request Hook"),
    ("gitlab", "gitlab_note_merge_request", "Note Hook"),
])
def test_ids_at_the_edge_of_their_range_are_accepted(client: Any, state: StateStore, forge: str,
                                                     fixture: str, kind: str) -> None:
    big = {"github": _set("pull_request.number", 2**31 - 1),
           "gitlab": _set("object_attributes.id" if kind == "Note Hook" else "object_attributes.iid",
                          2**63 - 1 if kind == "Note Hook" else 2**31 - 1)}[forge]
    body, headers = delivery(forge, fixture, kind, big)
    assert client.post(f"/webhooks/{forge}", data=body, headers=headers).status_code == 202
    assert stored(state) == 1


@pytest.mark.parametrize("path", ["a/..", "../b", "a/b?x=1", "a/b#c", "a b/c", "a/b%2f..", "a//b",
                                  "https://evil/x", "a/b.git/../c", "a/./b", "a", "a/b\n", "a/b@c:d",
                                  "/a/b", "a/b/", "a\\b/c"])
def test_repository_paths_that_would_leave_the_forge_are_refused(path: str) -> None:
    with pytest.raises(WebhookError, match="is not a repository path"):
        repository_path(path)


@pytest.mark.parametrize("path", ["acme/.github", "user/user.github.io", "group/sub-group/my_project",
                                  "a-b/c.d-e_f"])
def test_real_repository_paths_are_accepted(path: str) -> None:
    assert repository_path(path) == path


def test_fetch_urls_come_from_the_configured_forge_never_from_the_payload() -> None:
    gitlab = GitLab(GitLabConfig(url="https://gitlab.example.com/", token="glpat-x"))
    hostile = Repository("gitlab", "data/shop", clone_url="http://127.0.0.1:9/evil.git")
    assert gitlab.fetch_url(hostile.full_name) == "https://oauth2:glpat-x@gitlab.example.com/data/shop.git"
    github = GitHub(GitHubConfig(api_url="https://ghe.example.com/api/v3", token="ghp_x"))
    assert github.fetch_url("acme/analytics") == "https://x-access-token:ghp_x@ghe.example.com/acme/analytics.git"
    with pytest.raises(ForgeError, match="is not a repository path"):
        github.fetch_url("acme/../../etc/passwd")
