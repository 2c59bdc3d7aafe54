"""What Sluice needs from a forge: read webhooks, read merge requests, write comments and statuses.

One module per forge implements `Forge` (`gitlab.py` with python-gitlab, `github.py` with
PyGithub). Adding Bitbucket or Gitea is one new module.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from bot.configkeys import Key
from bot.events import Event, Repository
from policies.roles import Role
from runner.project.yamlfile import YamlMapping

__all__ = ["CommitState", "Forge", "ForgeApproval", "ForgeConfig", "ForgeError", "MergeRequestInfo",
           "RedactingForge", "Role", "Webhook", "WebhookError"]


class CommitState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


@dataclass(frozen=True)
class MergeRequestInfo:
    number: int
    state: str  # "open" | "closed" | "merged"
    head_sha: str
    source_branch: str
    target_branch: str
    author: str
    merge_sha: str | None = None
    from_fork: bool = False  # the source branch lives in another repository


@dataclass(frozen=True)
class ForgeApproval:
    """One user's standing approval of a merge request on the forge, and the commit it was given
    on when the forge says so (GitHub: the review's `commit_id`). GitLab's approvals name no
    commit (None): the bot keeps the head its approval webhook carried (`Governance`)."""

    user: str
    sha: str | None = None


@dataclass(frozen=True)
class Webhook:
    """One verified delivery: its id for deduplication, and the event if Sluice acts on it."""

    delivery_id: str
    kind: str  # the forge's event name, e.g. "pull_request", "Merge Request Hook"
    event: Event | None  # None: a kind Sluice ignores (answered 2xx all the same)


class ForgeError(Exception):
    """The forge API failed; `transient` says whether a retry may help (5xx, timeouts)."""

    def __init__(self, message: str, transient: bool):
        super().__init__(message)
        self.transient = transient


class WebhookError(Exception):
    """A delivery that is not what the forge sends: bad JSON, missing fields. Answered 400."""


@dataclass(frozen=True)
class ForgeConfig:
    """A forge's section of the server configuration. Each forge module subclasses it with its own
    fields and declares the section's keys."""

    webhook_secret: str | None = None

    KEYS: ClassVar[tuple[Key, ...]] = (Key("webhook_secret"),)
    # Keys whose variable alone configures the forge, without a section in the file.
    TRIGGERS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_values(cls, values: dict[str, Any], section: YamlMapping) -> ForgeConfig:
        """The section's object from the values read for its keys (`section` names lines)."""
        return cls(**values)

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log, a run log or a comment."""
        return tuple(s for s in (self.webhook_secret,) if s)


# A repository path: segments of letters, digits, `_`, `-` and `.` (not `.` or `..` alone), so a
# fetch URL built from it stays on the forge's own host and path (no scheme, `@`, `?`, `#`, `%`).
_SEGMENT = re.compile(r"[A-Za-z0-9_.-]{1,255}")


def repository_path(path: str, *, segments: tuple[int, int] = (2, 20)) -> str:
    """`path` if it names a repository (`owner/name`, or GitLab's `group/sub/name`), else
    WebhookError: a fetch URL is the forge's base URL plus this path, and nothing in it may
    take the URL elsewhere (a scheme, `..`, `@`, `?`, `#`, `%`, spaces)."""
    parts = path.split("/")
    low, high = segments
    fine = all(_SEGMENT.fullmatch(p) and p not in (".", "..") for p in parts)
    if not fine or not low <= len(parts) <= high:
        raise WebhookError(f"{path[:100]!r} is not a repository path (expected owner/name with letters, "
                           "digits, '_', '-' and '.')")
    return path


class Forge(ABC):
    name: ClassVar[str]  # the key in server.yml, the webhook route and every record
    title: ClassVar[str]  # how people write it: "GitLab"
    mr_prefix: ClassVar[str]  # how it refers to a merge request: "!" (!42) or "#" (#42)
    comment_limit: ClassVar[int]  # longest comment body the forge accepts, in characters
    config_type: ClassVar[type[ForgeConfig]]

    @classmethod
    def mr_label(cls, number: int) -> str:
        return f"{cls.mr_prefix}{number}"

    @staticmethod
    @abstractmethod
    def merge_request_url(config: ForgeConfig, repository: str, number: int) -> str:
        """The merge request's page on the forge's website."""

    # -- webhooks (no network) -----------------------------------------------------------------

    @staticmethod
    @abstractmethod
    def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        """Is the delivery authentic? Constant-time comparison."""

    @staticmethod
    @abstractmethod
    def parse(headers: Mapping[str, str], body: bytes) -> Webhook:
        """Normalise a delivery; raises WebhookError for a malformed one."""

    # -- API ------------------------------------------------------------------------------------

    @abstractmethod
    def repository(self, repo: str) -> Repository:
        """The repository as the forge describes it: its default branch and clone URL (what a
        webhook would say, for work that starts without one, such as `sluice bootstrap`)."""

    @abstractmethod
    def merge_request(self, repo: str, number: int) -> MergeRequestInfo: ...

    @abstractmethod
    def find_comment(self, repo: str, number: int, marker: str) -> int | None:
        """The id of the bot's comment holding `marker`, if any."""

    @abstractmethod
    def post_comment(self, repo: str, number: int, body: str) -> int: ...

    @abstractmethod
    def edit_comment(self, repo: str, number: int, comment_id: int, body: str) -> None: ...

    @abstractmethod
    def react(self, repo: str, number: int, comment_id: int, reaction: str = "eyes") -> None: ...

    @abstractmethod
    def set_status(self, repo: str, sha: str, state: CommitState, description: str,
                   url: str | None, context: str = "sluice") -> None: ...

    @abstractmethod
    def role(self, repo: str, user: str) -> Role: ...

    @abstractmethod
    def approvals(self, repo: str, number: int) -> list[ForgeApproval]:
        """The standing approvals of the merge request (GitHub: latest review state APPROVED)."""

    @abstractmethod
    def web_url(self) -> str:
        """The forge's web address from the server configuration (repositories live below it)."""

    def fetch_url(self, repo: str) -> str:
        """Where git fetches `repo` from: the configured web address plus the repository's path
        (checked), with credentials. Never a URL a webhook named: a payload could point a worker
        at any host, a loopback service or a local path."""
        try:
            path = repository_path(repo)
        except WebhookError as exc:
            raise ForgeError(str(exc), transient=False) from None
        return self.clone_url(f"{self.web_url().rstrip('/')}/{path}.git")

    def clone_url(self, repository_url: str) -> str:
        """`repository_url` with credentials if the forge needs them (only for its own host)."""
        return repository_url


class RedactingForge(Forge):
    """A forge whose outgoing text (comments, status descriptions) never carries a secret:
    the one seam between Sluice's words and the outside."""

    def __init__(self, inner: Forge, redact: Callable[[str], str]):
        self.inner = inner
        self.redact = redact
        # Instance attributes shadowing the ClassVars: this wrapper speaks for `inner`'s forge.
        self.name = inner.name  # type: ignore[misc]
        self.title = inner.title  # type: ignore[misc]
        self.mr_prefix = inner.mr_prefix  # type: ignore[misc]
        self.comment_limit = inner.comment_limit  # type: ignore[misc]

    def mr_label(self, number: int) -> str:  # type: ignore[override]
        return self.inner.mr_label(number)

    def merge_request_url(self, config: ForgeConfig, repository: str,  # type: ignore[override]
                          number: int) -> str:
        return type(self.inner).merge_request_url(config, repository, number)

    # Webhooks are read by the adapter classes at intake; this wrapper only speaks.
    @staticmethod
    def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        return False

    @staticmethod
    def parse(headers: Mapping[str, str], body: bytes) -> Webhook:
        raise WebhookError("webhooks are read by the forge adapter, not by RedactingForge")

    def repository(self, repo: str) -> Repository:
        return self.inner.repository(repo)

    def merge_request(self, repo: str, number: int) -> MergeRequestInfo:
        return self.inner.merge_request(repo, number)

    def find_comment(self, repo: str, number: int, marker: str) -> int | None:
        return self.inner.find_comment(repo, number, marker)

    def post_comment(self, repo: str, number: int, body: str) -> int:
        return self.inner.post_comment(repo, number, self.redact(body))

    def edit_comment(self, repo: str, number: int, comment_id: int, body: str) -> None:
        self.inner.edit_comment(repo, number, comment_id, self.redact(body))

    def react(self, repo: str, number: int, comment_id: int, reaction: str = "eyes") -> None:
        self.inner.react(repo, number, comment_id, reaction)

    def set_status(self, repo: str, sha: str, state: CommitState, description: str,
                   url: str | None, context: str = "sluice") -> None:
        self.inner.set_status(repo, sha, state, self.redact(description), url, context)

    def role(self, repo: str, user: str) -> Role:
        return self.inner.role(repo, user)

    def approvals(self, repo: str, number: int) -> list[ForgeApproval]:
        return self.inner.approvals(repo, number)

    def web_url(self) -> str:
        return self.inner.web_url()

    def fetch_url(self, repo: str) -> str:
        return self.inner.fetch_url(repo)

    def clone_url(self, repository_url: str) -> str:
        return self.inner.clone_url(repository_url)
