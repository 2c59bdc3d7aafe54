"""GitHub behind the `Forge` interface: webhook checks and normalisation, and the REST calls Sluice
makes, through PyGithub, as a token's user or as a GitHub App installation.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from github import Auth, Github, GithubException, GithubIntegration, RateLimitExceededException

from bot.configkeys import ConfigError, Key
from bot.events import CommentEvent, MergeRequestEvent, MRAction, PushEvent, Repository
from bot.forges._common import (
    field,
    header,
    load,
    number_field,
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
from runner.project.yamlfile import YamlMapping

TIMEOUT = 10  # seconds; the job queue retries, so fail fast rather than hang a worker
PUBLIC_API = "https://api.github.com"


@dataclass(frozen=True)
class GitHubConfig(ForgeConfig):
    api_url: str = PUBLIC_API  # GitHub Enterprise: https://host/api/v3
    token: str | None = None
    app_id: int | None = None  # or a GitHub App: its id and private key
    private_key: str | None = None  # PEM text of the GitHub App's key

    KEYS: ClassVar[tuple[Key, ...]] = (
        Key("api_url"), Key("token"), Key("app_id"), Key("private_key"), Key("private_key_path", "path"),
        Key("webhook_secret"))
    TRIGGERS: ClassVar[tuple[str, ...]] = ("token", "app_id")

    @classmethod
    def from_values(cls, values: dict[str, Any], section: YamlMapping) -> GitHubConfig:
        key_path = values.pop("private_key_path", None)
        if values.get("private_key") is None and key_path:
            try:
                values["private_key"] = Path(key_path).read_text()
            except OSError as exc:
                raise section.error("private_key_path", f"cannot read the GitHub App key: {exc}") from None
        app_id = values.get("app_id")
        if app_id is not None:
            if not str(app_id).isdigit():
                raise section.error("app_id", "'app_id' must be the GitHub App's numeric id")
            values["app_id"] = int(app_id)
        config = cls(**values)
        if config.token is None and (config.app_id is None or config.private_key is None):
            raise section.error(None, "github needs a token, or an app_id with a private key")
        return config

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.token, self.webhook_secret) if s)

    def web_url(self) -> str:
        api = self.api_url.rstrip("/")
        return "https://github.com" if api == PUBLIC_API else api.removesuffix("/api/v3")

_PR_ACTIONS = {
    "opened": MRAction.OPENED,
    "reopened": MRAction.REOPENED,
    "synchronize": MRAction.NEW_COMMITS,
}

_STATES = {
    CommitState.PENDING: "pending",
    CommitState.RUNNING: "pending",  # GitHub statuses have no "running"
    CommitState.SUCCESS: "success",
    CommitState.FAILURE: "failure",
    CommitState.ERROR: "error",
}

# role_name first (it tells maintain and triage apart), then the coarse `permission`
_ROLES = {"admin": Role.OWNER, "maintain": Role.MAINTAINER, "write": Role.DEVELOPER,
          "triage": Role.READ, "read": Role.READ, "none": Role.NONE}


class GitHub(Forge):
    name = "github"
    title = "GitHub"
    mr_prefix = "#"
    comment_limit = 65536
    config_type = GitHubConfig

    def __init__(self, config: GitHubConfig, timeout: int = TIMEOUT):
        self.config = config
        # no client-side retries and no client-side pacing: a failed call fails the job, whose
        # queue retries it later (secondary rate limits come back as transient ForgeErrors)
        self._options: dict[str, Any] = {
            "base_url": config.api_url.rstrip("/"), "timeout": timeout, "retry": None,
            "seconds_between_requests": None, "seconds_between_writes": None, "per_page": 100,
        }
        self._lock = threading.Lock()
        self._token_client: Github | None = None
        self._app: Auth.AppAuth | None = None
        self._integration: GithubIntegration | None = None
        self._installations: dict[str, int] = {}  # "owner/repo" (lower case) -> installation id
        self._installation_auth: dict[int, Auth.AppInstallationAuth] = {}
        self._installation_clients: dict[int, Github] = {}
        self._login: str | None = None
        if config.app_id is not None and config.private_key:
            self._app = Auth.AppAuth(config.app_id, config.private_key)
            self._integration = GithubIntegration(auth=self._app, **self._options)
        elif config.token:
            self._token_client = Github(auth=Auth.Token(config.token), lazy=True, **self._options)
        else:
            raise ConfigError("github needs a token, or an app_id with a private key")

    @staticmethod
    def merge_request_url(config: ForgeConfig, repository: str, number: int) -> str:
        assert isinstance(config, GitHubConfig)
        return f"{config.web_url()}/{repository}/pull/{number}"

    # -- webhooks -------------------------------------------------------------------------------

    @staticmethod
    def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        signature = header(headers, "X-Hub-Signature-256")
        if signature is None or not secret:
            return False
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature.strip().encode(), expected.encode())

    @staticmethod
    def parse(headers: Mapping[str, str], body: bytes) -> Webhook:
        kind = header(headers, "X-GitHub-Event")
        if not kind:
            raise WebhookError("the delivery has no X-GitHub-Event header")
        delivery = header(headers, "X-GitHub-Delivery") or "sha256:" + hashlib.sha256(body).hexdigest()
        data = load(body, form=True, content_type=header(headers, "Content-Type") or "")
        event: MergeRequestEvent | CommentEvent | PushEvent | None = None
        action = data.get("action")
        if kind == "pull_request":
            if action in _PR_ACTIONS:
                event = _pr_event(data, _PR_ACTIONS[action])
            elif action == "closed":
                merged = bool(field(data, "pull_request", dict).get("merged"))
                event = _pr_event(data, MRAction.MERGED if merged else MRAction.CLOSED)
        elif kind == "pull_request_review":
            state = str(field(data, "review", dict).get("state") or "").lower()
            if action == "submitted" and state == "approved":
                event = _pr_event(data, MRAction.APPROVED)
            elif (action == "submitted" and state == "changes_requested") or action == "dismissed":
                event = _pr_event(data, MRAction.UNAPPROVED)  # may withdraw this user's approval
        elif (kind == "issue_comment" and action == "created"
              and field(data, "issue", dict).get("pull_request") is not None):
            event = _comment_event(data)  # a plain issue's comments are no business of Sluice
        elif kind == "push":
            event = _push_event(data)
        return Webhook(delivery_id=delivery, kind=kind, event=event)

    # -- API ------------------------------------------------------------------------------------

    def repository(self, repo: str) -> Repository:
        with _calls(f"reading the repository {repo}"):
            found = self._client(repo).get_repo(repo)
            return Repository(forge=self.name, full_name=found.full_name, clone_url=found.clone_url,
                              default_branch=found.default_branch or "main")

    def merge_request(self, repo: str, number: int) -> MergeRequestInfo:
        with _calls(f"reading pull request #{number} of {repo}"):
            pr = self._client(repo).get_repo(repo).get_pull(number)
            merged = bool(pr.merged)
            head_repo = pr.head.repo.full_name if pr.head.repo is not None else None  # None: fork deleted
            return MergeRequestInfo(number=pr.number, state="merged" if merged else pr.state,
                                    head_sha=pr.head.sha, source_branch=pr.head.ref,
                                    target_branch=pr.base.ref, author=pr.user.login,
                                    merge_sha=pr.merge_commit_sha if merged else None,
                                    from_fork=head_repo != pr.base.repo.full_name)

    def find_comment(self, repo: str, number: int, marker: str) -> int | None:
        with _calls(f"reading the comments of #{number} in {repo}"):
            me = self._me(repo)
            for comment in self._client(repo).get_repo(repo).get_issue(number).get_comments():
                if comment.user is not None and comment.user.login == me and marker in (comment.body or ""):
                    return int(comment.id)
        return None

    def post_comment(self, repo: str, number: int, body: str) -> int:
        with _calls(f"commenting on #{number} in {repo}"):
            return int(self._client(repo).get_repo(repo).get_issue(number).create_comment(body).id)

    def edit_comment(self, repo: str, number: int, comment_id: int, body: str) -> None:
        with _calls(f"editing comment {comment_id} on #{number} in {repo}"):
            self._client(repo).get_repo(repo).get_issue(number).get_comment(comment_id).edit(body)

    def react(self, repo: str, number: int, comment_id: int, reaction: str = "eyes") -> None:
        # reacting twice is fine: GitHub answers 200 with the existing reaction
        with _calls(f"reacting to comment {comment_id} on #{number} in {repo}"):
            comment = self._client(repo).get_repo(repo).get_issue(number).get_comment(comment_id)
            comment.create_reaction(reaction)

    def set_status(self, repo: str, sha: str, state: CommitState, description: str,
                   url: str | None, context: str = "sluice") -> None:
        data = {"state": _STATES[state], "description": description[:140], "context": context}
        if url:
            data["target_url"] = url
        with _calls(f"setting the {context} status of {sha[:12]} in {repo}"):
            # the REST call itself: PyGithub's Commit.create_status would GET the commit first
            self._client(repo).requester.requestJsonAndCheck(
                "POST", f"/repos/{repo}/statuses/{urllib.parse.quote(sha, safe='')}", input=data)

    def role(self, repo: str, user: str) -> Role:
        with _calls(f"reading {user}'s permission on {repo}"):
            try:
                # one call for both fields; PyGithub's helpers return one each
                _, data = self._client(repo).requester.requestJsonAndCheck(
                    "GET", f"/repos/{repo}/collaborators/{urllib.parse.quote(user, safe='')}/permission")
            except GithubException as exc:
                if exc.status == 404:  # no such user
                    return Role.NONE
                raise
        role_name = str(data.get("role_name") or "")
        return _ROLES.get(role_name) or _ROLES.get(str(data.get("permission") or "none"), Role.NONE)

    def approvals(self, repo: str, number: int) -> list[ForgeApproval]:
        latest: dict[str, tuple[str, str | None]] = {}
        with _calls(f"reading the reviews of #{number} in {repo}"):
            for review in self._client(repo).get_repo(repo).get_pull(number).get_reviews():
                # comments after an approval leave it standing, as on GitHub's own page
                if review.user is not None and review.state in ("APPROVED", "CHANGES_REQUESTED",
                                                                 "DISMISSED"):
                    # the commit the review was given on: it approves that commit, not later ones
                    latest[review.user.login] = (review.state, review.commit_id or None)
        return [ForgeApproval(user, sha) for user, (state, sha) in latest.items() if state == "APPROVED"]

    def web_url(self) -> str:
        return self.config.web_url()

    def clone_url(self, repository_url: str) -> str:
        parts = urllib.parse.urlsplit(repository_url)
        if parts.scheme != "https":
            return repository_url
        if self._app is not None:
            # raises ForgeError (transient if GitHub is down) rather than fetch without credentials
            repo = parts.path.strip("/").removesuffix(".git")
            with _calls(f"getting an installation token for {repo}"):
                token = self._installation(repo).token
        elif self.config.token:
            token = self.config.token
        else:
            return repository_url
        api_host = urllib.parse.urlsplit(self.config.api_url).hostname or ""
        return with_credentials(repository_url, api_host.removeprefix("api."), "x-access-token", token)

    # -- clients ------------------------------------------------------------------------------

    def _client(self, repo: str) -> Github:
        if self._token_client is not None:
            return self._token_client
        installation = self._installation(repo)
        with self._lock:
            client = self._installation_clients.get(installation.installation_id)
            if client is None:
                client = Github(auth=installation, lazy=True, **self._options)
                self._installation_clients[installation.installation_id] = client
            return client

    def _installation(self, repo: str) -> Auth.AppInstallationAuth:
        """The App's installation on `repo` (looked up once), whose token refreshes itself."""
        assert self._app is not None and self._integration is not None
        key = repo.lower()
        with self._lock:
            installation_id = self._installations.get(key)
        if installation_id is None:
            owner, _, name = repo.partition("/")
            installation_id = int(self._integration.get_repo_installation(owner, name).id)
        with self._lock:
            self._installations[key] = installation_id
            auth = self._installation_auth.get(installation_id)
            if auth is None:
                auth = self._app.get_installation_auth(installation_id)
                self._installation_auth[installation_id] = auth
            return auth

    def _me(self, repo: str) -> str:
        """The login the bot comments as: the token's user, or the App's `<slug>[bot]`."""
        if self._login is None:
            if self._integration is not None:
                self._login = f"{self._integration.get_app().slug}[bot]"
            else:
                self._login = self._client(repo).get_user().login
        return self._login


# -- errors -------------------------------------------------------------------------------------


@contextmanager
def _calls(doing: str) -> Iterator[None]:
    """Turn PyGithub's and requests' exceptions into ForgeError, saying what was being done."""
    with requests_errors("GitHub", doing):
        try:
            yield
        except RateLimitExceededException as exc:  # 403 or 429: primary or secondary rate limit
            raise ForgeError(f"GitHub: {doing} failed: rate limited ({exc.status})",
                             transient=True) from exc
        except GithubException as exc:
            message = exc.data.get("message") if isinstance(exc.data, dict) else exc.data
            raise ForgeError(f"GitHub: {doing} failed: {reason(exc.status, message)}",
                             transient=transient(exc.status)) from exc


# -- webhook payloads ---------------------------------------------------------------------------


def _repository(data: dict[str, Any]) -> Repository:
    # The payload's clone URL is kept for the record only: git fetches from the configured
    # GitHub host plus the (checked) path, never from a URL a payload names.
    return Repository(forge="github",
                      full_name=repository_path(field(data, "repository.full_name", str), segments=(2, 2)),
                      clone_url=str(field(data, "repository", dict).get("clone_url") or ""),
                      default_branch=str(data["repository"].get("default_branch") or "main"))


def _push_event(data: dict[str, Any]) -> PushEvent | None:
    """A push to a branch; tags and deleted branches are none of Sluice's business."""
    ref = field(data, "ref", str)
    if not ref.startswith("refs/heads/") or data.get("deleted"):
        return None
    return PushEvent(repository=_repository(data), branch=ref.removeprefix("refs/heads/"),
                     before=str(data.get("before") or ""), after=field(data, "after", str),
                     pusher=str((data.get("pusher") or {}).get("name") or ""))


def _pr_event(data: dict[str, Any], action: MRAction) -> MergeRequestEvent:
    pr = field(data, "pull_request", dict)
    head_repo = (pr.get("head") or {}).get("repo")  # null when the fork was deleted
    base_name = field(data, "pull_request.base.repo.full_name", str)
    return MergeRequestEvent(
        repository=_repository(data),
        number=number_field(data, "pull_request.number"),
        action=action,
        head_sha=field(data, "pull_request.head.sha", str),
        source_branch=field(data, "pull_request.head.ref", str),
        target_branch=field(data, "pull_request.base.ref", str),
        author=field(data, "pull_request.user.login", str),
        title=str(pr.get("title") or ""),
        from_fork=not isinstance(head_repo, dict) or head_repo.get("full_name") != base_name,
        merge_sha=pr.get("merge_commit_sha") if action is MRAction.MERGED else None,
        actor=_login(data, "review.user") or _login(data, "sender"),
    )


def _login(data: dict[str, Any], path: str) -> str:
    value: Any = data
    for key in (*path.split("."), "login"):
        value = value.get(key) if isinstance(value, dict) else None
    return str(value) if isinstance(value, str) else ""


def _comment_event(data: dict[str, Any]) -> CommentEvent:
    return CommentEvent(
        repository=_repository(data),
        number=number_field(data, "issue.number"),
        comment_id=field(data, "comment.id", int),
        author=field(data, "comment.user.login", str),
        body=str(field(data, "comment", dict).get("body") or ""),
        author_is_bot=field(data, "comment.user", dict).get("type") == "Bot",
    )
