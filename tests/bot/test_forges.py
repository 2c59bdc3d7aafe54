"""Forge adapters: every shared webhook fixture normalised (or ignored), signatures checked, and each
API action driven through the real python-gitlab and PyGithub clients against the fake servers in
`fakeforge.py`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.config import ServerConfig
from bot.configkeys import ConfigError
from bot.events import CommentEvent, MergeRequestEvent, MRAction, PushEvent, Repository, from_json, to_json
from bot.forges import FORGES, make_forge
from bot.forges.base import CommitState, Forge, ForgeApproval, ForgeError, Role, WebhookError
from bot.forges.github import GitHub, GitHubConfig
from bot.forges.gitlab import GitLab, GitLabConfig
from tests.support.fakeforge import FIXTURES, FakeForge, FakeGitHub, FakeGitLab, fixture

GITHUB_VECTOR = fixture("github_webhooks/github_webhook_headers.json")["hmac_test_vector_from_docs"]


def github_delivery(name: str, event: str, **extra: str) -> tuple[dict[str, str], bytes]:
    body = (FIXTURES / "github_webhooks" / f"{name}.json").read_bytes()
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": f"delivery-{name}",
            "Content-Type": "application/json", **extra}, body


def gitlab_delivery(name: str, event: str) -> tuple[dict[str, str], bytes]:
    body = (FIXTURES / "gitlab_webhooks" / f"{name}.json").read_bytes()
    return {"X-Gitlab-Event": event, "Idempotency-Key": f"key-{name}",
            "Content-Type": "application/json"}, body


# -- webhooks: every fixture --------------------------------------------------------------------

HELLO_WORLD = Repository("github", "Codertocat/Hello-World", "https://github.com/Codertocat/Hello-World.git",
                         "master")
CODERTOCAT_PR: dict[str, Any] = {"number": 2, "head_sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
                 "source_branch": "changes", "target_branch": "master", "author": "Codertocat",
                 "title": "Update the README with new information.", "repository": HELLO_WORLD}

GITHUB_CASES: dict[str, tuple[str, MergeRequestEvent | CommentEvent | PushEvent | None]] = {
    "github_pull_request_opened": (
        "pull_request", MergeRequestEvent(action=MRAction.OPENED, **CODERTOCAT_PR)),
    "github_pull_request_opened_with_installation": (
        "pull_request", MergeRequestEvent(action=MRAction.OPENED, **CODERTOCAT_PR)),
    "github_pull_request_synchronize": (
        "pull_request", MergeRequestEvent(action=MRAction.NEW_COMMITS, **CODERTOCAT_PR)),
    "github_pull_request_reopened": (
        "pull_request", MergeRequestEvent(action=MRAction.REOPENED, **CODERTOCAT_PR)),
    # merged=false: the merge_commit_sha GitHub still sends is a test merge, not a merge
    "github_pull_request_closed_unmerged": (
        "pull_request", MergeRequestEvent(action=MRAction.CLOSED, **CODERTOCAT_PR)),
    "github_pull_request_closed_merged": ("pull_request", MergeRequestEvent(
        repository=Repository("github", "anbraten/test-ready-release-go",
                              "https://github.com/anbraten/test-ready-release-go.git", "main"),
        number=62, action=MRAction.MERGED, head_sha="c88b9ee719285134957cbc698c9b7ef9b78007bf",
        source_branch="anbraten-patch-3", target_branch="main", author="anbraten", title="Change file",
        merge_sha="473d70eb7c50a54ae62bf9b124efa1c3eb245be8")),
    "github_pull_request_ready_for_review": ("pull_request", None),
    "github_pull_request_converted_to_draft": ("pull_request", None),
    "github_pull_request_labeled": ("pull_request", None),
    "github_pull_request_review_submitted_approved": ("pull_request_review", MergeRequestEvent(
        repository=Repository("github", "erwinmombay/github-owners-bot-test-repo",
                              "https://github.com/erwinmombay/github-owners-bot-test-repo.git", "master"),
        number=35, action=MRAction.APPROVED, head_sha="9272f18514cbd3fa935b3ced62ae1c2bf6efa76d",
        source_branch="ampprojectbot-patch-3", target_branch="master", author="ampprojectbot",
        title="Update file.txt")),
    "github_pull_request_review_dismissed": (
        "pull_request_review", MergeRequestEvent(action=MRAction.UNAPPROVED, **CODERTOCAT_PR)),
    "github_pull_request_review_submitted_commented": ("pull_request_review", None),
    "github_pull_request_review_comment_created": ("pull_request_review_comment", None),
    "github_issue_comment_created": ("issue_comment", CommentEvent(
        repository=Repository("github", "runatlantis/atlantis-tests",
                              "https://github.com/runatlantis/atlantis-tests.git", "main"),
        number=1, comment_id=396926483, author="runatlantis", body="###comment body###")),
    "github_issue_comment_created_on_issue": ("issue_comment", None),  # a plain issue, not a PR
    "github_issue_comment_edited_on_issue": ("issue_comment", None),
    "github_issue_comment_deleted_on_issue": ("issue_comment", None),
    "github_ping": ("ping", None),
    "github_ping_organization": ("ping", None),
    "github_push": ("push", PushEvent(
        repository=Repository("github", "Codertocat/Hello-World",
                              "https://github.com/Codertocat/Hello-World.git", "master"),
        branch="master", before="0" * 40, after="6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        pusher="Codertocat")),
    "github_push_tag_created": ("push", None),
    "github_push_tag_deleted": ("push", None),
    "github_check_run_created": ("check_run", None),
    "github_check_run_rerequested": ("check_run", None),
    "github_check_run_requested_action": ("check_run", None),
    "github_check_suite_requested": ("check_suite", None),
    "github_status": ("status", None),
}

WOODPECKER = Repository("gitlab", "anbraten/woodpecker", "https://gitlab.com/anbraten/woodpecker.git",
                        "main", 32059612)
WOODPECKER_TEST = Repository("gitlab", "anbraten/woodpecker-test",
                             "https://gitlab.com/anbraten/woodpecker-test.git", "main", 32059612)
TEST_CI = Repository("gitlab", "demoaccount2-commits-group/test_ci_tmp",
                     "https://gitlab.com/demoaccount2-commits-group/test_ci_tmp.git", "main", 72081820)
WOODPECKER_MR: dict[str, Any] = {"repository": WOODPECKER, "number": 3,
                 "head_sha": "c136499ec574e1034b24c5d306de9acda3005367",
                 "source_branch": "anbraten-main-patch-05373", "target_branch": "main", "author": "anbraten",
                 "title": "Update client.go 🎉"}
CLOSED_MR: dict[str, Any] = {"repository": WOODPECKER_TEST, "number": 4,
             "head_sha": "3e4db3586b65dd401de8c77b3ac343fd24cbf89b", "target_branch": "main",
             "author": "anbraten"}


def _title(name: str) -> str:
    return str(fixture(f"gitlab_webhooks/{name}.json")["object_attributes"]["title"])


def _branch(name: str) -> str:
    return str(fixture(f"gitlab_webhooks/{name}.json")["object_attributes"]["source_branch"])


GITLAB_CASES: dict[str, tuple[str, MergeRequestEvent | CommentEvent | PushEvent | None]] = {
    "gitlab_merge_request_open": ("Merge Request Hook", MergeRequestEvent(
        repository=TEST_CI, number=3, action=MRAction.OPENED,
        head_sha="2f7670508b771e7e77839402be8b34b13787aba8",
        source_branch=_branch("gitlab_merge_request_open"), target_branch="main", author="real6543",
        title=_title("gitlab_merge_request_open"))),
    "gitlab_merge_request_update_new_commit": (
        "Merge Request Hook", MergeRequestEvent(action=MRAction.NEW_COMMITS, **WOODPECKER_MR)),
    "gitlab_merge_request_update_no_code_change": ("Merge Request Hook", None),
    "gitlab_merge_request_update_title_description": ("Merge Request Hook", None),
    "gitlab_merge_request_merge": ("Merge Request Hook", MergeRequestEvent(
        action=MRAction.MERGED, merge_sha="43411b53d670203e887c4985c4e58e8e6b7c109e",
        title=_title("gitlab_merge_request_merge"), source_branch=_branch("gitlab_merge_request_merge"),
        **CLOSED_MR)),
    "gitlab_merge_request_close": ("Merge Request Hook", MergeRequestEvent(
        action=MRAction.CLOSED, title=_title("gitlab_merge_request_close"),
        source_branch=_branch("gitlab_merge_request_close"), **CLOSED_MR)),
    # the reopening user is not the author, and the author is nowhere in the payload by name
    "gitlab_merge_request_reopen": ("Merge Request Hook", MergeRequestEvent(
        repository=TEST_CI, number=1, action=MRAction.REOPENED,
        head_sha="36b5813240a9d2daa29b05046d56a53e18f39a3e",
        source_branch=_branch("gitlab_merge_request_reopen"), target_branch="main", author="",
        title=_title("gitlab_merge_request_reopen"))),
    "gitlab_merge_request_approved": (
        "Merge Request Hook", MergeRequestEvent(action=MRAction.APPROVED, **WOODPECKER_MR)),
    "gitlab_merge_request_unapproved": ("Merge Request Hook", MergeRequestEvent(
        repository=TEST_CI, number=3, action=MRAction.UNAPPROVED,
        head_sha="2f7670508b771e7e77839402be8b34b13787aba8",
        source_branch=_branch("gitlab_merge_request_unapproved"), target_branch="main", author="real6543",
        title=_title("gitlab_merge_request_unapproved"))),
    "gitlab_merge_request_unknown_action": ("Merge Request Hook", None),
    "gitlab_note_merge_request": ("Note Hook", CommentEvent(
        repository=Repository("gitlab", "lkysow-test/subgroup/sub-subgroup/atlantis-example",
                              "https://gitlab.com/lkysow-test/subgroup/sub-subgroup/atlantis-example.git",
                              "main", 7804027),
        number=2, comment_id=96056916, author="lkysow", body="atlantis plan")),
    "gitlab_push": ("Push Hook", PushEvent(
        repository=Repository("gitlab", "mike/diaspora", "http://example.com/mike/diaspora.git", "master",
                              15),
        branch="master", before="95790bf891e76fee5e1747ab589903a6a1f80f22",
        after="da1560886d4f094c3e6c9ef40349f7d38b5d27d7", pusher="jsmith")),
    "gitlab_tag_push": ("Tag Push Hook", None),
    "gitlab_pipeline": ("Pipeline Hook", None),
    "gitlab_job": ("Job Hook", None),
}


# Who acted, as each merge request payload says (for approvals: the approver, whose approval is
# kept with the commit the payload names).
ACTORS = {
    "github_pull_request_closed_merged": "anbraten", "github_pull_request_closed_unmerged": "Codertocat",
    "github_pull_request_opened": "Codertocat", "github_pull_request_opened_with_installation": "Codertocat",
    "github_pull_request_reopened": "Codertocat", "github_pull_request_review_dismissed": "Codertocat",
    "github_pull_request_review_submitted_approved": "erwinmombay",
    "github_pull_request_synchronize": "Codertocat", "gitlab_merge_request_approved": "anbraten",
    "gitlab_merge_request_close": "anbraten", "gitlab_merge_request_merge": "anbraten",
    "gitlab_merge_request_open": "real6543", "gitlab_merge_request_reopen": "real6543",
    "gitlab_merge_request_unapproved": "real6543", "gitlab_merge_request_update_new_commit": "anbraten",
}


def _acted(name: str, expected: object) -> object:
    if isinstance(expected, MergeRequestEvent):
        return dataclasses.replace(expected, actor=ACTORS.get(name, ""))
    return expected


def test_every_webhook_fixture_has_a_case() -> None:
    github = {p.stem for p in (FIXTURES / "github_webhooks").glob("*.json")} - {"github_webhook_headers"}
    gitlab = {p.stem for p in (FIXTURES / "gitlab_webhooks").glob("*.json")} - {"gitlab_webhook_headers"}
    assert github == set(GITHUB_CASES)
    assert gitlab == set(GITLAB_CASES)


@pytest.mark.parametrize("name", sorted(GITHUB_CASES))
def test_github_webhook_fixture(name: str) -> None:
    kind, expected = GITHUB_CASES[name]
    headers, body = github_delivery(name, kind)
    webhook = GitHub.parse(headers, body)
    assert (webhook.delivery_id, webhook.kind) == (f"delivery-{name}", kind)
    assert webhook.event == _acted(name, expected)
    if webhook.event is not None:
        assert from_json(to_json(webhook.event)) == webhook.event


@pytest.mark.parametrize("name", sorted(GITLAB_CASES))
def test_gitlab_webhook_fixture(name: str) -> None:
    kind, expected = GITLAB_CASES[name]
    headers, body = gitlab_delivery(name, kind)
    webhook = GitLab.parse(headers, body)
    assert (webhook.delivery_id, webhook.kind) == (f"key-{name}", kind)
    assert webhook.event == _acted(name, expected)
    if webhook.event is not None:
        assert from_json(to_json(webhook.event)) == webhook.event


def test_a_service_hook_merge_request_update_with_new_commits_is_a_push_to_the_merge_request() -> None:
    """GitLab sends integrations' deliveries as `X-Gitlab-Event: Service Hook` (the header set of
    a real capture, gitlab_webhook_headers.json): the body's object_kind says what it is."""
    headers, body = gitlab_delivery("gitlab_merge_request_update_new_commit", "Service Hook")
    webhook = GitLab.parse(headers, body)
    assert webhook.event == MergeRequestEvent(action=MRAction.NEW_COMMITS, actor="anbraten", **WOODPECKER_MR)
    headers, body = gitlab_delivery("gitlab_note_merge_request", "Service Hook")
    assert isinstance(GitLab.parse(headers, body).event, CommentEvent)
    headers, body = gitlab_delivery("gitlab_merge_request_update_no_code_change", "Service Hook")
    assert GitLab.parse(headers, body).event is None  # still no new code


def test_a_group_hook_merge_payload_without_a_project_id_is_read() -> None:
    """The project's path is what the API calls use; a payload without `project.id` is fine."""
    data = fixture("gitlab_webhooks/gitlab_merge_request_merge.json")
    del data["project"]["id"]
    headers = {"X-Gitlab-Event": "Merge Request Hook", "Idempotency-Key": "k"}
    event = GitLab.parse(headers, json.dumps(data).encode()).event
    assert isinstance(event, MergeRequestEvent) and event.action is MRAction.MERGED
    assert event.repository == dataclasses.replace(WOODPECKER_TEST, project_id=None)
    data["project"]["id"] = "not a number"  # there, it must be an id
    with pytest.raises(WebhookError, match=r"'project\.id' is not a whole number"):
        GitLab.parse(headers, json.dumps(data).encode())


def test_pushes_of_tags_and_deleted_branches_are_not_events() -> None:
    data = fixture("gitlab_webhooks/gitlab_push.json")
    data["after"] = "0" * 40
    headers = {"X-Gitlab-Event": "Push Hook", "Idempotency-Key": "k"}
    assert GitLab.parse(headers, json.dumps(data).encode()).event is None
    data = fixture("github_webhooks/github_push.json")
    data["deleted"] = True
    assert GitHub.parse({"X-GitHub-Event": "push"}, json.dumps(data).encode()).event is None


def test_github_comment_by_a_bot_and_from_a_fork() -> None:
    data = fixture("github_webhooks/github_issue_comment_created.json")
    data["comment"]["body"] = "/plan"
    data["comment"]["user"]["type"] = "Bot"
    event = GitHub.parse({"x-github-event": "issue_comment"}, json.dumps(data).encode()).event
    assert isinstance(event, CommentEvent)
    assert (event.body, event.author_is_bot) == ("/plan", True)

    pr = fixture("github_webhooks/github_pull_request_opened.json")
    pr["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    event = GitHub.parse({"X-GitHub-Event": "pull_request"}, json.dumps(pr).encode()).event
    assert isinstance(event, MergeRequestEvent) and event.from_fork
    pr["pull_request"]["head"]["repo"] = None  # the fork was deleted
    event = GitHub.parse({"X-GitHub-Event": "pull_request"}, json.dumps(pr).encode()).event
    assert isinstance(event, MergeRequestEvent) and event.from_fork


def test_github_changes_requested_may_withdraw_an_approval() -> None:
    data = fixture("github_webhooks/github_pull_request_review_submitted_approved.json")
    data["review"]["state"] = "changes_requested"
    event = GitHub.parse({"X-GitHub-Event": "pull_request_review"}, json.dumps(data).encode()).event
    assert isinstance(event, MergeRequestEvent) and event.action is MRAction.UNAPPROVED


@pytest.mark.parametrize(("user", "is_bot"), [
    ({"username": "sluice-bot"}, True),
    ({"username": "project_42_bot_0123abcd"}, True),
    ({"username": "renovate", "bot": True}, True),
    ({"username": "robot"}, False),
    ({"username": "lkysow"}, False),
])
def test_gitlab_comment_authors_that_are_bots(user: dict[str, Any], is_bot: bool) -> None:
    data = fixture("gitlab_webhooks/gitlab_note_merge_request.json")
    data["user"] = user
    event = GitLab.parse({"X-Gitlab-Event": "Note Hook"}, json.dumps(data).encode()).event
    assert isinstance(event, CommentEvent)
    assert (event.author, event.author_is_bot) == (user["username"], is_bot)


def test_gitlab_notes_that_are_not_commands() -> None:
    data = fixture("gitlab_webhooks/gitlab_note_merge_request.json")
    for patch in ({"noteable_type": "Issue"}, {"system": True}, {"action": "update"}):
        changed = json.loads(json.dumps(data))
        changed["object_attributes"].update(patch)
        assert GitLab.parse({"X-Gitlab-Event": "Note Hook"}, json.dumps(changed).encode()).event is None


def test_gitlab_fast_forward_merge() -> None:
    data = fixture("gitlab_webhooks/gitlab_merge_request_merge.json")
    data["object_attributes"]["merge_commit_sha"] = None
    event = GitLab.parse({"X-Gitlab-Event": "Merge Request Hook"}, json.dumps(data).encode()).event
    assert isinstance(event, MergeRequestEvent)
    assert event.merge_sha == event.head_sha == "3e4db3586b65dd401de8c77b3ac343fd24cbf89b"


def test_gitlab_merge_request_from_a_fork() -> None:
    data = fixture("gitlab_webhooks/gitlab_merge_request_open.json")
    data["object_attributes"]["source_project_id"] = 999
    event = GitLab.parse({"X-Gitlab-Event": "Merge Request Hook"}, json.dumps(data).encode()).event
    assert isinstance(event, MergeRequestEvent) and event.from_fork


def test_gitlab_delivery_ids() -> None:
    _, body = gitlab_delivery("gitlab_push", "Push Hook")
    both = {"X-Gitlab-Event": "Push Hook", "Idempotency-Key": "idem", "X-Gitlab-Event-UUID": "uuid"}
    assert GitLab.parse(both, body).delivery_id == "idem"
    lower_case = {"x-gitlab-event": "Push Hook", "x-gitlab-event-uuid": "uuid"}
    assert GitLab.parse(lower_case, body).delivery_id == "uuid"
    hashed = GitLab.parse({"X-Gitlab-Event": "Push Hook"}, body).delivery_id
    assert hashed == GitLab.parse({"X-Gitlab-Event": "Push Hook"}, body).delivery_id
    assert hashed == "sha256:" + hashlib.sha256(body).hexdigest()


def test_github_form_encoded_delivery() -> None:
    headers, body = github_delivery("github_pull_request_opened", "pull_request")
    form = urllib.parse.urlencode({"payload": body.decode()}).encode()
    webhook = GitHub.parse({**headers, "Content-Type": "application/x-www-form-urlencoded"}, form)
    opened = GITHUB_CASES["github_pull_request_opened"][1]
    assert webhook.event == _acted("github_pull_request_opened", opened)
    secret = "form secret"
    signature = "sha256=" + hmac.new(secret.encode(), form, hashlib.sha256).hexdigest()
    assert GitHub.verify({"X-Hub-Signature-256": signature}, form, secret)


# -- webhooks: signatures -------------------------------------------------------------------------


def test_github_signature_test_vector() -> None:
    body = GITHUB_VECTOR["payload"].encode()
    secret = GITHUB_VECTOR["secret"]
    signature = GITHUB_VECTOR["expected_X-Hub-Signature-256"]
    assert GitHub.verify({"X-Hub-Signature-256": signature}, body, secret)
    assert GitHub.verify({"x-hub-signature-256": signature}, body, secret)  # any header case
    assert not GitHub.verify({"X-Hub-Signature-256": signature}, body, "another secret")
    assert not GitHub.verify({"X-Hub-Signature-256": signature}, body + b" ", secret)
    assert not GitHub.verify({"X-Hub-Signature-256": "sha256=" + "0" * 64}, body, secret)
    legacy = {"X-Hub-Signature": "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6"}  # SHA-1 is not enough
    assert not GitHub.verify(legacy, body, secret)
    assert not GitHub.verify({}, body, secret)
    assert not GitHub.verify({"X-Hub-Signature-256": "sha256=ü"}, body, secret)


def test_gitlab_token() -> None:
    body = b"{}"
    assert GitLab.verify({"X-Gitlab-Token": "s3cret"}, body, "s3cret")
    assert GitLab.verify({"x-gitlab-token": "s3cret"}, body, "s3cret")
    assert not GitLab.verify({"X-Gitlab-Token": "s3cret "}, body, "s3cret")
    assert not GitLab.verify({"X-Gitlab-Token": "wrong"}, body, "s3cret")
    assert not GitLab.verify({}, body, "s3cret")
    assert not GitLab.verify({"X-Gitlab-Token": ""}, body, "")


# -- webhooks: malformed deliveries ---------------------------------------------------------------


@pytest.mark.parametrize(("forge", "headers", "body", "message"), [
    (GitHub, {"X-GitHub-Event": "pull_request"}, b"{not json", "not valid JSON"),
    (GitHub, {"X-GitHub-Event": "pull_request"}, b"\xff\xfe", "not valid JSON"),
    (GitHub, {"X-GitHub-Event": "pull_request"}, b"[1, 2]", "JSON list, not an object"),
    (GitHub, {"X-GitHub-Event": "pull_request", "Content-Type": "application/x-www-form-urlencoded"},
     b"other=1", "no 'payload' field"),
    (GitHub, {}, b"{}", "X-GitHub-Event"),
    (GitHub, {"X-GitHub-Event": "pull_request"}, b'{"action": "opened"}', "'pull_request'"),
    (GitHub, {"X-GitHub-Event": "issue_comment"}, b'{"action": "created"}', "'issue'"),
    (GitLab, {"X-Gitlab-Event": "Merge Request Hook"}, b"", "not valid JSON"),
    (GitLab, {"X-Gitlab-Event": "Merge Request Hook"}, b'"text"', "JSON str, not an object"),
    (GitLab, {}, b"{}", "X-Gitlab-Event"),
    (GitLab, {"X-Gitlab-Event": "Merge Request Hook"}, b'{"object_kind": "merge_request"}',
     "'object_attributes'"),
    (GitLab, {"X-Gitlab-Event": "Note Hook"}, b'{"object_attributes": {"noteable_type": "MergeRequest"}}',
     "'user'"),
])
def test_malformed_deliveries(forge: type[Forge], headers: dict[str, str], body: bytes, message: str) -> None:
    with pytest.raises(WebhookError, match=message.replace("(", r"\(")):
        forge.parse(headers, body)


@pytest.mark.parametrize(("name", "path", "field"), [
    ("github_pull_request_opened", ("pull_request", "head", "sha"), "pull_request.head.sha"),
    ("github_pull_request_synchronize", ("repository", "full_name"), "repository.full_name"),
    ("github_issue_comment_created", ("comment", "id"), "comment.id"),
    ("gitlab_merge_request_open", ("object_attributes", "last_commit"), "object_attributes.last_commit.id"),
    ("gitlab_merge_request_merge", ("project", "path_with_namespace"), "project.path_with_namespace"),
    ("gitlab_note_merge_request", ("merge_request", "iid"), "merge_request.iid"),
])
def test_missing_fields_are_named(name: str, path: tuple[str, ...], field: str) -> None:
    forge = "github" if name.startswith("github") else "gitlab"
    data = fixture(f"{forge}_webhooks/{name}.json")
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    kind = GITHUB_CASES[name][0] if forge == "github" else GITLAB_CASES[name][0]
    header = "X-GitHub-Event" if forge == "github" else "X-Gitlab-Event"
    with pytest.raises(WebhookError, match=f"'{field}'"):
        FORGES[forge].parse({header: kind}, json.dumps(data).encode())


def test_wrong_field_type_is_named() -> None:
    data = fixture("github_webhooks/github_pull_request_opened.json")
    data["pull_request"]["number"] = "2"
    with pytest.raises(WebhookError, match=r"'pull_request\.number' is not a whole number"):
        GitHub.parse({"X-GitHub-Event": "pull_request"}, json.dumps(data).encode())


# -- webhooks built by the fakes round-trip -------------------------------------------------------


def test_fake_gitlab_webhooks(fake_gitlab: FakeGitLab) -> None:
    fake_gitlab.add_merge_request("data/shop", 7, head_sha="a1" * 20, author="alice", from_fork=True)
    headers, body = fake_gitlab.merge_request_hook("data/shop", 7, "update", oldrev="b2" * 20)
    assert GitLab.verify(headers, body, fake_gitlab.webhook_secret)
    event = GitLab.parse(headers, body).event
    assert isinstance(event, MergeRequestEvent)
    assert (event.action, event.head_sha, event.author, event.from_fork) == (
        MRAction.NEW_COMMITS, "a1" * 20, "alice", True)
    assert event.repository.clone_url == f"{fake_gitlab.url}/data/shop.git"
    comment = fake_gitlab.add_comment("data/shop", 7, "/plan", author="bob")
    headers, body = fake_gitlab.note_hook("data/shop", 7, comment.id)
    assert GitLab.parse(headers, body).event == CommentEvent(
        event.repository, 7, comment.id, "bob", "/plan", author_is_bot=False)


def test_fake_github_webhooks(fake_github: FakeGitHub) -> None:
    fake_github.add_merge_request("data/shop", 7, head_sha="a1" * 20, author="alice")
    headers, body = fake_github.pull_request_hook("data/shop", 7, "synchronize")
    assert GitHub.verify(headers, body, fake_github.webhook_secret)
    webhook = GitHub.parse(headers, body)
    assert isinstance(webhook.event, MergeRequestEvent)
    assert (webhook.event.action, webhook.event.head_sha, webhook.event.from_fork) == (
        MRAction.NEW_COMMITS, "a1" * 20, False)
    fake_github.merge("data/shop", 7, "c3" * 20)
    event = GitHub.parse(*fake_github.pull_request_hook("data/shop", 7, "closed")).event
    assert isinstance(event, MergeRequestEvent)
    assert (event.action, event.merge_sha) == (MRAction.MERGED, "c3" * 20)
    comment = fake_github.add_comment("data/shop", 7, "/deploy staging", author="bob")
    event = GitHub.parse(*fake_github.issue_comment_hook("data/shop", 7, comment.id)).event
    assert isinstance(event, CommentEvent) and (event.body, event.author) == ("/deploy staging", "bob")
    event = GitHub.parse(*fake_github.review_hook("data/shop", 7, "carol")).event
    assert isinstance(event, MergeRequestEvent) and event.action is MRAction.APPROVED


# -- API actions through the real clients ---------------------------------------------------------


@dataclass
class Site:
    """One forge adapter wired to its fake server, and a repository there."""

    fake: FakeGitLab | FakeGitHub
    forge: GitLab | GitHub
    repo: str

    @property
    def name(self) -> str:
        return self.forge.name


@pytest.fixture(params=["gitlab", "github"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    if request.param == "gitlab":
        with FakeGitLab() as gl:
            yield Site(gl, GitLab(gl.config()), "data/analytics/shop")
    else:
        with FakeGitHub() as gh:
            yield Site(gh, GitHub(gh.config()), "data/shop")


def test_merge_request_state_and_head(site: Site) -> None:
    site.fake.add_merge_request(site.repo, 5, head_sha="1" * 40, source_branch="orders-v2",
                                target_branch="main", author="alice")
    info = site.forge.merge_request(site.repo, 5)
    assert (info.number, info.state, info.head_sha) == (5, "open", "1" * 40)
    assert (info.source_branch, info.target_branch, info.author, info.merge_sha) == (
        "orders-v2", "main", "alice", None)
    site.fake.push(site.repo, 5, "2" * 40)
    assert site.forge.merge_request(site.repo, 5).head_sha == "2" * 40
    site.fake.merge(site.repo, 5, "3" * 40)
    merged = site.forge.merge_request(site.repo, 5)
    assert (merged.state, merged.merge_sha) == ("merged", "3" * 40)
    site.fake.add_merge_request(site.repo, 6, head_sha="4" * 40, state="closed")
    assert site.forge.merge_request(site.repo, 6).state == "closed"


def test_post_find_and_edit_the_report_comment(site: Site) -> None:
    site.fake.add_merge_request(site.repo, 5, head_sha="1" * 40)
    marker = "<!-- sluice:report -->"
    assert site.forge.find_comment(site.repo, 5, marker) is None
    # someone quoting the marker does not make their comment the bot's
    site.fake.add_comment(site.repo, 5, f"why does {marker} show up?", author="alice")
    assert site.forge.find_comment(site.repo, 5, marker) is None

    comment_id = site.forge.post_comment(site.repo, 5, f"{marker}\n## Plan\n1 model changed")
    bot = site.fake.bot_username if isinstance(site.fake, FakeGitLab) else site.fake.bot_login
    posted = site.fake.comments(site.repo, 5)[-1]
    assert (posted.id, posted.author, posted.body) == (comment_id, bot, f"{marker}\n## Plan\n1 model changed")
    assert site.forge.find_comment(site.repo, 5, marker) == comment_id

    site.forge.edit_comment(site.repo, 5, comment_id, f"{marker}\n## Plan\n2 models changed")
    assert site.fake.comment(comment_id).body.endswith("2 models changed")
    assert len(site.fake.comments(site.repo, 5)) == 2
    edits = site.fake.requests_to("PUT" if site.name == "gitlab" else "PATCH", f"/{comment_id}$")
    assert [r.json for r in edits] == [{"body": f"{marker}\n## Plan\n2 models changed"}]


def test_find_comment_reads_every_page(site: Site) -> None:
    site.fake.add_merge_request(site.repo, 5, head_sha="1" * 40)
    for i in range(120):
        site.fake.add_comment(site.repo, 5, f"chatter {i}", author="alice")
    comment_id = site.forge.post_comment(site.repo, 5, "<!-- sluice:report --> hello")
    assert site.forge.find_comment(site.repo, 5, "<!-- sluice:report -->") == comment_id
    pages = [r for r in site.fake.requests if r.method == "GET" and re.search("/5/(comments|notes)$", r.path)]
    assert len(pages) == 2


def test_react_to_a_command(site: Site) -> None:
    site.fake.add_merge_request(site.repo, 5, head_sha="1" * 40)
    command = site.fake.add_comment(site.repo, 5, "/plan", author="alice")
    site.forge.react(site.repo, 5, command.id)
    site.forge.react(site.repo, 5, command.id)  # a retried job reacts again: no error, one reaction
    assert site.fake.reactions(site.repo, command.id) == ["eyes"]
    sent = [r.json for r in site.fake.requests if re.search("/(reactions|award_emoji)$", r.path)]
    assert sent == ([{"name": "eyes"}] * 2 if site.name == "gitlab" else [{"content": "eyes"}] * 2)


def test_a_reaction_on_a_missing_comment_is_a_permanent_error(site: Site) -> None:
    site.fake.add_merge_request(site.repo, 5, head_sha="1" * 40)
    with pytest.raises(ForgeError) as error:
        site.forge.react(site.repo, 5, 999999)
    assert not error.value.transient


STATUS_BODIES = {
    "gitlab": {CommitState.PENDING: "pending", CommitState.RUNNING: "running",
               CommitState.SUCCESS: "success", CommitState.FAILURE: "failed", CommitState.ERROR: "failed"},
    "github": {CommitState.PENDING: "pending", CommitState.RUNNING: "pending",
               CommitState.SUCCESS: "success", CommitState.FAILURE: "failure", CommitState.ERROR: "error"},
}


def test_commit_statuses(site: Site) -> None:
    site.fake.add_merge_request(site.repo, 5, head_sha="ab" * 20)
    for state in CommitState:
        site.forge.set_status(site.repo, "ab" * 20, state, f"{state} now", "https://sluice.test/runs/9",
                              context="sluice/plan")
    site.forge.set_status(site.repo, "ab" * 20, CommitState.SUCCESS, "x" * 300, None)
    key = "name" if site.name == "gitlab" else "context"
    expected = [{"state": STATUS_BODIES[site.name][s], key: "sluice/plan", "description": f"{s} now",
                 "target_url": "https://sluice.test/runs/9"} for s in CommitState]
    limit = 255 if site.name == "gitlab" else 140
    expected.append({"state": "success", key: "sluice", "description": "x" * limit})
    assert site.fake.statuses(site.repo, "ab" * 20) == expected


def test_gitlab_refuses_the_same_running_status_twice_and_that_is_fine(fake_gitlab: FakeGitLab) -> None:
    fake_gitlab.add_merge_request("data/shop", 5, head_sha="ab" * 20)
    forge = GitLab(fake_gitlab.config())
    forge.set_status("data/shop", "ab" * 20, CommitState.RUNNING, "building", None)
    forge.set_status("data/shop", "ab" * 20, CommitState.RUNNING, "building", None)
    assert [r.status for r in fake_gitlab.requests_to("POST", "/statuses/")] == [201, 400]
    assert len(fake_gitlab.statuses("data/shop", "ab" * 20)) == 1


@pytest.mark.parametrize(("level", "role"), [
    (10, Role.READ), (15, Role.READ), (20, Role.READ), (30, Role.DEVELOPER), (40, Role.MAINTAINER),
    (50, Role.OWNER), (5, Role.NONE), (0, Role.NONE),
])
def test_gitlab_roles(fake_gitlab: FakeGitLab, level: int, role: Role) -> None:
    fake_gitlab.add_project("data/analytics/shop")
    fake_gitlab.set_role("data/analytics/shop", "dana", level)
    assert GitLab(fake_gitlab.config()).role("data/analytics/shop", "dana") is role


def test_gitlab_role_of_an_unknown_user(fake_gitlab: FakeGitLab) -> None:
    fake_gitlab.add_project("data/shop")
    assert GitLab(fake_gitlab.config()).role("data/shop", "ghost") is Role.NONE
    members = fake_gitlab.requests_to("GET", "/members/")
    assert members == []  # no such user: no member lookup either


@pytest.mark.parametrize(("name", "role"), [
    ("admin", Role.OWNER), ("maintain", Role.MAINTAINER), ("write", Role.DEVELOPER),
    ("triage", Role.READ), ("read", Role.READ), ("none", Role.NONE), ("custom-auditor", Role.READ),
])
def test_github_roles(fake_github: FakeGitHub, name: str, role: Role) -> None:
    fake_github.add_repo("data/shop")
    fake_github.set_role("data/shop", "dana", name)
    assert GitHub(fake_github.config()).role("data/shop", "dana") is role


def test_github_role_of_an_unknown_user(fake_github: FakeGitHub) -> None:
    fake_github.add_repo("data/shop")
    assert GitHub(fake_github.config()).role("data/shop", "ghost") is Role.NONE


def test_roles_from_the_role_enum(site: Site) -> None:
    site.fake.add_merge_request(site.repo, 1, head_sha="1" * 40)
    for role in Role:
        site.fake.set_role(site.repo, "erin", role)
        assert site.forge.role(site.repo, "erin") is role


def test_gitlab_approvals(fake_gitlab: FakeGitLab) -> None:
    fake_gitlab.add_merge_request("data/shop", 5, head_sha="1" * 40)
    forge = GitLab(fake_gitlab.config())
    assert forge.approvals("data/shop", 5) == []
    for user in ("bob", "carol"):
        fake_gitlab.approve("data/shop", 5, user)
    fake_gitlab.unapprove("data/shop", 5, "carol")
    # GitLab's approvals name no commit: the bot keeps the one their webhook carried
    assert forge.approvals("data/shop", 5) == [ForgeApproval("bob", None)]


def test_github_approvals_are_each_reviewers_latest_verdict(fake_github: FakeGitHub) -> None:
    fake_github.add_merge_request("data/shop", 5, head_sha="1" * 40)
    forge = GitHub(fake_github.config())
    assert forge.approvals("data/shop", 5) == []
    fake_github.add_review("data/shop", 5, "bob", "APPROVED")
    fake_github.add_review("data/shop", 5, "bob", "COMMENTED")  # a later comment keeps the approval
    fake_github.add_review("data/shop", 5, "carol", "APPROVED")
    fake_github.add_review("data/shop", 5, "carol", "CHANGES_REQUESTED")
    fake_github.add_review("data/shop", 5, "dave", "CHANGES_REQUESTED")
    fake_github.add_review("data/shop", 5, "dave", "APPROVED")
    fake_github.add_review("data/shop", 5, "erin", "APPROVED")
    fake_github.unapprove("data/shop", 5, "erin")  # dismissed
    assert sorted(a.user for a in forge.approvals("data/shop", 5)) == ["bob", "dave"]


def test_github_approvals_carry_the_commit_they_were_given_on(fake_github: FakeGitHub) -> None:
    fake_github.add_merge_request("data/shop", 5, head_sha="1" * 40)
    forge = GitHub(fake_github.config())
    fake_github.approve("data/shop", 5, "bob")
    fake_github.push("data/shop", 5, "2" * 40)
    fake_github.approve("data/shop", 5, "carol")
    assert sorted(forge.approvals("data/shop", 5), key=lambda a: a.user) == [
        ForgeApproval("bob", "1" * 40), ForgeApproval("carol", "2" * 40)]


def test_github_app_installation(fake_github: FakeGitHub) -> None:
    fake_github.enable_app(app_id=99, slug="sluice-ci")
    fake_github.add_merge_request("data/shop", 5, head_sha="1" * 40)
    forge = GitHub(fake_github.config())
    comment_id = forge.post_comment("data/shop", 5, "<!-- sluice --> from the app")
    forge.set_status("data/shop", "1" * 40, CommitState.PENDING, "queued", None)
    assert fake_github.comment(comment_id).author == "sluice-ci[bot]"
    assert forge.find_comment("data/shop", 5, "<!-- sluice -->") == comment_id
    # one installation lookup and one token for all of it
    assert len(fake_github.requests_to("GET", "/installation$")) == 1
    assert len(fake_github.requests_to("POST", "/access_tokens$")) == 1
    token = next(iter(fake_github.installation_tokens))
    api_host = urllib.parse.urlsplit(fake_github.url).hostname
    assert forge.clone_url(f"https://{api_host}/data/shop.git") == (
        f"https://x-access-token:{token}@{api_host}/data/shop.git")


def test_github_app_not_installed_is_a_permanent_error(fake_github: FakeGitHub) -> None:
    fake_github.enable_app()
    forge = GitHub(fake_github.config())
    with pytest.raises(ForgeError, match="404") as error:
        forge.merge_request("nobody/else", 1)
    assert not error.value.transient


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_server_errors_are_transient_and_not_retried_by_the_client(site: Site, status: int) -> None:
    site.fake.add_merge_request(site.repo, 5, head_sha="1" * 40)
    site.fake.fail_next(1, status)
    with pytest.raises(ForgeError) as error:
        site.forge.merge_request(site.repo, 5)
    assert error.value.transient
    assert str(status) in str(error.value)
    assert len(site.fake.requests) == 1  # the job queue retries, not the client
    assert site.forge.merge_request(site.repo, 5).head_sha == "1" * 40  # and the retry works


def test_github_secondary_rate_limit_is_transient(fake_github: FakeGitHub) -> None:
    fake_github.add_merge_request("data/shop", 5, head_sha="1" * 40)
    fake_github.fail_next(1, 403, message="You have exceeded a secondary rate limit. Please wait a few "
                          "minutes before you try again.", headers={"Retry-After": "60"})
    with pytest.raises(ForgeError, match="rate limited") as error:
        GitHub(fake_github.config()).post_comment("data/shop", 5, "hello")
    assert error.value.transient
    assert len(fake_github.requests) == 1


def test_forbidden_is_permanent(site: Site) -> None:
    site.fake.add_merge_request(site.repo, 5, head_sha="1" * 40)
    site.fake.fail_next(1, 403, message="Resource not accessible by integration")
    with pytest.raises(ForgeError, match="403 Resource not accessible") as error:
        site.forge.post_comment(site.repo, 5, "hello")
    assert not error.value.transient


def test_not_found_is_permanent(site: Site) -> None:
    site.fake.add_merge_request(site.repo, 5, head_sha="1" * 40)
    with pytest.raises(ForgeError, match="404") as error:
        site.forge.merge_request(site.repo, 404)
    assert not error.value.transient
    site.fake.fail_next(1, 404)
    with pytest.raises(ForgeError) as error:
        site.forge.post_comment(site.repo, 5, "hello")
    assert not error.value.transient


def test_bad_credentials_are_permanent(site: Site) -> None:
    site.fake.add_merge_request(site.repo, 5, head_sha="1" * 40)
    site.fake.token = "rotated"
    with pytest.raises(ForgeError, match="401") as error:
        site.forge.merge_request(site.repo, 5)
    assert not error.value.transient


def test_timeouts_are_transient(site: Site) -> None:
    site.fake.add_merge_request(site.repo, 5, head_sha="1" * 40)
    # PyGithub takes whole seconds only
    forge = GitLab(site.fake.config(), timeout=0.3) if isinstance(site.fake, FakeGitLab) else GitHub(
        site.fake.config(), timeout=1)
    site.fake.stall_next(1, 1.5)
    started = time.monotonic()
    with pytest.raises(ForgeError) as error:
        forge.merge_request(site.repo, 5)
    assert error.value.transient
    assert time.monotonic() - started < 1.4


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    for forge in (GitLab(GitLabConfig(url=url, token="t")), GitHub(GitHubConfig(api_url=url, token="t"))):
        with pytest.raises(ForgeError) as error:
            forge.merge_request("data/shop", 1)
        assert error.value.transient


def test_failures_can_target_one_endpoint(fake_github: FakeGitHub) -> None:
    fake_github.add_merge_request("data/shop", 5, head_sha="1" * 40)
    forge = GitHub(fake_github.config())
    fake_github.fail_next(1, 503, match="^POST .*/statuses/")
    assert forge.merge_request("data/shop", 5).state == "open"
    with pytest.raises(ForgeError) as error:
        forge.set_status("data/shop", "1" * 40, CommitState.RUNNING, "building", None)
    assert error.value.transient


# -- construction and credentials -----------------------------------------------------------------


def test_clone_urls_carry_credentials_only_to_the_forge_over_https() -> None:
    gitlab = GitLab(GitLabConfig(url="https://gitlab.example.com", token="glpat-x/y"))
    assert gitlab.clone_url("https://gitlab.example.com/data/shop.git") == (
        "https://oauth2:glpat-x%2Fy@gitlab.example.com/data/shop.git")
    assert gitlab.clone_url("https://elsewhere.example.com/data/shop.git") == (
        "https://elsewhere.example.com/data/shop.git")
    for url in ("git@gitlab.example.com:data/shop.git", "http://gitlab.example.com/data/shop.git",
                "file:///srv/shop.git", "/srv/shop"):
        assert gitlab.clone_url(url) == url
    github = GitHub(GitHubConfig(token="ghp_x"))
    assert github.clone_url("https://github.com/data/shop.git") == (
        "https://x-access-token:ghp_x@github.com/data/shop.git")
    assert github.clone_url("ssh://git@github.com/data/shop.git") == "ssh://git@github.com/data/shop.git"
    enterprise = GitHub(GitHubConfig(api_url="https://ghe.example.com/api/v3", token="ghp_y"))
    assert enterprise.clone_url("https://ghe.example.com/data/shop.git") == (
        "https://x-access-token:ghp_y@ghe.example.com/data/shop.git")


def test_make_forge() -> None:
    config = ServerConfig(forges={"gitlab": GitLabConfig(token="t"), "github": GitHubConfig(token="t")})
    assert isinstance(make_forge("gitlab", config), GitLab)
    assert isinstance(make_forge("github", config), GitHub)
    assert dict(FORGES) == {"gitlab": GitLab, "github": GitHub}
    assert (GitLab.comment_limit, GitHub.comment_limit) == (1_000_000, 65536)
    with pytest.raises(ConfigError, match="github is not configured"):
        make_forge("github", ServerConfig(forges={"gitlab": GitLabConfig(token="t")}))
    with pytest.raises(ConfigError, match="unknown forge 'bitbucket'"):
        make_forge("bitbucket", config)
    with pytest.raises(ConfigError, match="token"):
        GitHub(GitHubConfig())


def test_fakes_answer_like_the_fixtures(fake_gitlab: FakeGitLab, fake_github: FakeGitHub) -> None:
    """The fakes' answers keep every key of the recorded responses they are built from."""
    fake_gitlab.add_merge_request("data/shop", 5, head_sha="1" * 40)
    fake_github.add_merge_request("data/shop", 5, head_sha="1" * 40)
    GitLab(fake_gitlab.config()).merge_request("data/shop", 5)
    GitHub(fake_github.config()).merge_request("data/shop", 5)
    import requests

    gl = requests.get(f"{fake_gitlab.url}/api/v4/projects/data%2Fshop/merge_requests/5",
                      headers={"PRIVATE-TOKEN": fake_gitlab.token}, timeout=5).json()
    assert set(fixture("gitlab_api/gitlab_api_get_merge_request.response.json")) <= set(gl)
    gh = requests.get(f"{fake_github.url}/repos/data/shop/pulls/5",
                      headers={"Authorization": f"token {fake_github.token}"}, timeout=5).json()
    assert set(fixture("github_api/github_api_get_pull.response.json")) <= set(gh)
    assert isinstance(fake_gitlab, FakeForge) and isinstance(fake_github, FakeForge)
