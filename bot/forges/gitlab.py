"""GitLab behind the `Forge` interface: webhook checks and normalisation, and the REST calls Sluice
makes, through python-gitlab.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import gitlab
import requests
from gitlab.exceptions import GitlabError

from bot.configkeys import Key
from bot.events import CommentEvent, MergeRequestEvent, MRAction, PushEvent, Repository
from bot.forges._common import (
    field,
    header,
    load,
    number_field,
    optional_id,
    reason,
    requests_errors,
    transient,
    with_credentials,
)
from bot.forges.base import (
    CommitState,
    Forge,
    ForgeApproval,
    ForgeConfig,
    ForgeError,
    MergeRequestInfo,
    Role,
    Webhook,
    WebhookError,
    repository_path,
)

TIMEOUT = 10.0  # seconds; the job queue retries, so fail fast rather than hang a worker


@dataclass(frozen=True)
class GitLabConfig(ForgeConfig):
    url: str = "https://gitlab.com"
    token: str | None = None  # api scope; a project or group bot's token

    KEYS: ClassVar[tuple[Key, ...]] = (Key("url"), Key("token"), Key("webhook_secret"))
    TRIGGERS: ClassVar[tuple[str, ...]] = ("token",)

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.token, self.webhook_secret) if s)

_MR_ACTIONS = {
    "open": MRAction.OPENED,
    "reopen": MRAction.REOPENED,
    "merge": MRAction.MERGED,
    "close": MRAction.CLOSED,
    "approved": MRAction.APPROVED,  # the MR as a whole became approved
    "approval": MRAction.APPROVED,  # one user approved (no "approved" follows until rules are met)
    "unapproved": MRAction.UNAPPROVED,
    "unapproval": MRAction.UNAPPROVED,
}

_GENERIC_HOOKS = ("System Hook", "Service Hook")
NO_COMMIT = "0" * 40  # `after` of a deleted branch

_STATES = {
    CommitState.PENDING: "pending",
    CommitState.RUNNING: "running",
    CommitState.SUCCESS: "success",
    CommitState.FAILURE: "failed",
    CommitState.ERROR: "failed",
}

_MR_STATES = {"opened": "open", "locked": "open", "closed": "closed", "merged": "merged"}

_REACTIONS = {"+1": "thumbsup", "-1": "thumbsdown", "laugh": "laughing", "hooray": "tada",
              "confused": "confused", "heart": "heart", "rocket": "rocket", "eyes": "eyes"}

# users behind project and group access tokens: project_123_bot_<hash>, group_45_bot_<hash>
_TOKEN_BOT = re.compile(r"^(project|group)_\d+_bot(_[0-9a-f]+)?$")


def _role(access_level: int) -> Role:
    if access_level >= 50:
        return Role.OWNER
    if access_level >= 40:
        return Role.MAINTAINER
    if access_level >= 30:
        return Role.DEVELOPER
    if access_level >= 10:  # guest, planner, reporter; 5 is "minimal access"
        return Role.READ
    return Role.NONE


class _Client(gitlab.Gitlab):
    """python-gitlab that never retries on its own (not even 429s): the job queue decides."""

    def http_request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["obey_rate_limit"] = False
        kwargs["retry_transient_errors"] = False
        return super().http_request(*args, **kwargs)


class GitLab(Forge):
    name = "gitlab"
    title = "GitLab"
    mr_prefix = "!"
    comment_limit = 1_000_000
    config_type = GitLabConfig

    def __init__(self, config: GitLabConfig, timeout: float = TIMEOUT):
        self.config = config
        self._client = _Client(config.url, private_token=config.token, timeout=timeout,
                               retry_transient_errors=False)
        self._username: str | None = None

    @staticmethod
    def merge_request_url(config: ForgeConfig, repository: str, number: int) -> str:
        assert isinstance(config, GitLabConfig)
        return f"{config.url.rstrip('/')}/{repository}/-/merge_requests/{number}"

    # -- webhooks -------------------------------------------------------------------------------

    @staticmethod
    def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        token = header(headers, "X-Gitlab-Token")
        if token is None or not secret:
            return False
        return hmac.compare_digest(token.encode(), secret.encode())

    @staticmethod
    def parse(headers: Mapping[str, str], body: bytes) -> Webhook:
        kind = header(headers, "X-Gitlab-Event")
        if not kind:
            raise WebhookError("the delivery has no X-Gitlab-Event header")
        delivery = (header(headers, "Idempotency-Key") or header(headers, "X-Gitlab-Event-UUID")
                    or "sha256:" + hashlib.sha256(body).hexdigest())
        data = load(body)
        object_kind = data.get("object_kind")
        # System hooks (instance-wide) and service hooks (integrations) name no event in their
        # header: the body's object_kind says what it is.
        generic = kind in _GENERIC_HOOKS
        event: MergeRequestEvent | CommentEvent | PushEvent | None = None
        if kind == "Merge Request Hook" or (generic and object_kind == "merge_request"):
            event = _merge_request_event(data)
        elif kind in ("Note Hook", "Confidential Note Hook") or (generic and object_kind == "note"):
            event = _comment_event(data)
        elif kind == "Push Hook" or (generic and object_kind == "push"):
            event = _push_event(data)
        return Webhook(delivery_id=delivery, kind=kind, event=event)

    # -- API ------------------------------------------------------------------------------------

    def repository(self, repo: str) -> Repository:
        with _calls(f"reading the project {repo}"):
            attrs = self._client.projects.get(repo).attributes
            return Repository(forge=self.name, full_name=str(attrs["path_with_namespace"]),
                              clone_url=str(attrs["http_url_to_repo"]),
                              default_branch=str(attrs.get("default_branch") or "main"),
                              project_id=int(attrs["id"]))

    def merge_request(self, repo: str, number: int) -> MergeRequestInfo:
        with _calls(f"reading merge request !{number} of {repo}"):
            mr = self._project(repo).mergerequests.get(number)
            attrs = mr.attributes
            state = _MR_STATES.get(attrs["state"], attrs["state"])
            merge_sha = attrs.get("merge_commit_sha") or attrs.get("squash_commit_sha")
            fork = attrs.get("source_project_id") != attrs.get("target_project_id")
            if state == "merged" and not merge_sha:
                merge_sha = attrs.get("sha")  # fast-forward merge: the head is the merge
            return MergeRequestInfo(number=attrs["iid"], state=state, head_sha=attrs["sha"],
                                    source_branch=attrs["source_branch"],
                                    target_branch=attrs["target_branch"],
                                    author=attrs["author"]["username"],
                                    merge_sha=merge_sha if state == "merged" else None,
                                    from_fork=fork)

    def find_comment(self, repo: str, number: int, marker: str) -> int | None:
        with _calls(f"reading the comments of !{number} in {repo}"):
            me = self._me()
            mr = self._project(repo).mergerequests.get(number, lazy=True)
            for note in mr.notes.list(iterator=True, sort="asc", order_by="created_at", per_page=100):
                attrs = note.attributes
                if (not attrs.get("system") and attrs["author"]["username"] == me
                        and marker in (attrs.get("body") or "")):
                    return int(attrs["id"])
        return None

    def post_comment(self, repo: str, number: int, body: str) -> int:
        with _calls(f"commenting on !{number} in {repo}"):
            mr = self._project(repo).mergerequests.get(number, lazy=True)
            note = mr.notes.create({"body": body})
            return int(note.id)

    def edit_comment(self, repo: str, number: int, comment_id: int, body: str) -> None:
        with _calls(f"editing comment {comment_id} on !{number} in {repo}"):
            mr = self._project(repo).mergerequests.get(number, lazy=True)
            mr.notes.update(comment_id, {"body": body})

    def react(self, repo: str, number: int, comment_id: int, reaction: str = "eyes") -> None:
        with _calls(f"reacting to comment {comment_id} on !{number} in {repo}"):
            mr = self._project(repo).mergerequests.get(number, lazy=True)
            note = mr.notes.get(comment_id, lazy=True)
            try:
                note.awardemojis.create({"name": _REACTIONS.get(reaction, reaction)})
            except GitlabError as exc:
                # awarding the same emoji twice is a 404 "Award Emoji Name has already been taken"
                if "already been taken" not in str(exc.error_message):
                    raise

    def set_status(self, repo: str, sha: str, state: CommitState, description: str,
                   url: str | None, context: str = "sluice") -> None:
        data = {"state": _STATES[state], "name": context, "description": description[:255]}
        if url:
            data["target_url"] = url
        with _calls(f"setting the {context} status of {sha[:12]} in {repo}"):
            commit = self._project(repo).commits.get(sha, lazy=True)
            try:
                commit.statuses.create(data)
            except GitlabError as exc:
                # a retried job re-sending the state the commit already has: GitLab refuses the
                # transition (400 "Cannot transition status via :run from :running"); nothing to do
                if exc.response_code != 400 or "Cannot transition status" not in str(exc.error_message):
                    raise

    def role(self, repo: str, user: str) -> Role:
        with _calls(f"reading {user}'s role in {repo}"):
            found = next(iter(self._client.users.list(username=user, get_all=False)), None)
            if found is None:
                return Role.NONE
            try:
                member = self._project(repo).members_all.get(found.id)
            except GitlabError as exc:
                if exc.response_code == 404:
                    return Role.NONE
                raise
            if member.attributes.get("state", "active") != "active":
                return Role.NONE
            return _role(int(member.attributes["access_level"]))

    def approvals(self, repo: str, number: int) -> list[ForgeApproval]:
        # GitLab's approvals name no commit (and, unless the project resets them on push, stay
        # standing across pushes): which commit each was given on is what its webhook said.
        with _calls(f"reading the approvals of !{number} in {repo}"):
            mr = self._project(repo).mergerequests.get(number, lazy=True)
            approval = mr.approvals.get()
            return [ForgeApproval(entry["user"]["username"])
                    for entry in approval.attributes.get("approved_by") or []]

    def web_url(self) -> str:
        return self.config.url

    def clone_url(self, repository_url: str) -> str:
        if not self.config.token:
            return repository_url
        return with_credentials(repository_url, urllib.parse.urlsplit(self.config.url).hostname,
                                "oauth2", self.config.token)

    # -- helpers ------------------------------------------------------------------------------

    def _project(self, repo: str) -> Any:
        return self._client.projects.get(repo, lazy=True)

    def _me(self) -> str:
        """The username of the token's user: the bot's own comments are the ones it may edit."""
        if self._username is None:
            self._client.auth()
            user = self._client.user
            self._username = str(user.username) if user is not None else ""
        return self._username


# -- errors -------------------------------------------------------------------------------------


@contextmanager
def _calls(doing: str) -> Iterator[None]:
    """Turn python-gitlab's and requests' exceptions into ForgeError, saying what was being done."""
    with requests_errors("GitLab", doing):
        try:
            yield
        except GitlabError as exc:
            status = exc.response_code
            raise ForgeError(f"GitLab: {doing} failed: {reason(status, exc.error_message)}",
                             transient=transient(status)) from exc


# -- webhook payloads ---------------------------------------------------------------------------


def _repository(data: dict[str, Any]) -> Repository:
    # project.id is optional: group and system hooks may leave it out, and the API takes the path.
    # The payload's clone URL is kept for the record only: git fetches from the configured forge
    # URL plus the (checked) path, never from a URL a payload names.
    return Repository(forge="gitlab",
                      full_name=repository_path(field(data, "project.path_with_namespace", str)),
                      clone_url=str(field(data, "project", dict).get("git_http_url") or ""),
                      default_branch=str(data["project"].get("default_branch") or "main"),
                      project_id=optional_id(data, "project.id"))


def _push_event(data: dict[str, Any]) -> PushEvent | None:
    """A push to a branch; tags and deleted branches are none of Sluice's business."""
    ref = field(data, "ref", str)
    after = field(data, "after", str)
    if not ref.startswith("refs/heads/") or after == NO_COMMIT:
        return None
    return PushEvent(repository=_repository(data), branch=ref.removeprefix("refs/heads/"),
                     before=str(data.get("before") or ""), after=after,
                     pusher=str(data.get("user_username") or ""))


def _author(data: dict[str, Any], author_id: int | None) -> str:
    """The MR author's username: webhooks give only `author_id`, so look for that id among the
    users the payload does name. Empty when it is nobody there; ask the API then."""
    people = [data.get("user") or {}, *(data.get("assignees") or []), *(data.get("reviewers") or [])]
    for person in people:
        if isinstance(person, dict) and author_id is not None and person.get("id") == author_id:
            return str(person.get("username") or "")
    return ""


def _merge_request_event(data: dict[str, Any]) -> MergeRequestEvent | None:
    attrs = field(data, "object_attributes", dict)
    action_name = field(data, "object_attributes.action", str)
    if action_name == "update":
        if not attrs.get("oldrev"):
            return None  # title, description, labels…: no new code
        action = MRAction.NEW_COMMITS
    elif action_name in _MR_ACTIONS:
        action = _MR_ACTIONS[action_name]
    else:
        return None
    head_sha = field(data, "object_attributes.last_commit.id", str)
    merge_sha = None
    if action is MRAction.MERGED:  # a fast-forward merge makes no commit: the head is the merge
        merge_sha = attrs.get("merge_commit_sha") or attrs.get("squash_commit_sha") or head_sha
    source_id = attrs.get("source_project_id")
    target_id = attrs.get("target_project_id")
    return MergeRequestEvent(
        repository=_repository(data),
        number=number_field(data, "object_attributes.iid"),
        action=action,
        head_sha=head_sha,
        source_branch=field(data, "object_attributes.source_branch", str),
        target_branch=field(data, "object_attributes.target_branch", str),
        author=_author(data, attrs.get("author_id")),
        title=str(attrs.get("title") or ""),
        from_fork=source_id is not None and target_id is not None and source_id != target_id,
        merge_sha=merge_sha,
        actor=_username(data.get("user")),
    )


def _username(user: object) -> str:
    return str(user.get("username") or "") if isinstance(user, dict) else ""


def _is_bot(user: dict[str, Any]) -> bool:
    username = str(user.get("username") or "")
    return bool(user.get("bot")) or username.endswith("-bot") or bool(_TOKEN_BOT.match(username))


def _comment_event(data: dict[str, Any]) -> CommentEvent | None:
    attrs = field(data, "object_attributes", dict)
    if attrs.get("noteable_type") != "MergeRequest" or attrs.get("system"):
        return None
    if attrs.get("action") not in (None, "create"):  # edits of a note are not new commands
        return None
    user = field(data, "user", dict)
    return CommentEvent(
        repository=_repository(data),
        number=number_field(data, "merge_request.iid"),
        comment_id=field(data, "object_attributes.id", int),
        author=field(data, "user.username", str),
        body=str(attrs.get("note") or ""),
        author_is_bot=_is_bot(user),
    )
