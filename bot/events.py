"""Forge events in one shape, whatever forge sent them: what the worker acts on.

Each forge adapter turns its webhook payloads into these; everything after intake deals only with
these types. They are stored as JSON in the state store (see `to_json` / `from_json`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class MRAction(StrEnum):
    OPENED = "opened"
    REOPENED = "reopened"
    NEW_COMMITS = "new_commits"
    MERGED = "merged"
    CLOSED = "closed"
    APPROVED = "approved"
    UNAPPROVED = "unapproved"


@dataclass(frozen=True)
class Repository:
    forge: str  # "gitlab" | "github"
    full_name: str  # "group/sub/project" or "owner/repo"
    clone_url: str
    default_branch: str = "main"
    project_id: int | None = None  # GitLab's numeric id (the API accepts the path too)


@dataclass(frozen=True)
class MergeRequestEvent:
    repository: Repository
    number: int  # GitLab iid, GitHub PR number
    action: MRAction
    head_sha: str
    source_branch: str
    target_branch: str
    author: str
    title: str = ""
    from_fork: bool = False
    merge_sha: str | None = None  # the merge commit, for MERGED
    kind: str = field(default="merge_request", init=False)


@dataclass(frozen=True)
class CommentEvent:
    repository: Repository
    number: int
    comment_id: int
    author: str
    body: str
    author_is_bot: bool = False
    kind: str = field(default="comment", init=False)


@dataclass(frozen=True)
class PushEvent:
    """Commits pushed to a branch (only branch heads; tags and deletions are not events)."""

    repository: Repository
    branch: str
    before: str
    after: str  # the branch's new head
    pusher: str = ""
    kind: str = field(default="push", init=False)

    @property
    def number(self) -> int:
        """Pushes belong to no merge request: 0, as the inbox and the runs record it."""
        return 0


Event = MergeRequestEvent | CommentEvent | PushEvent


def identity(event: Event, body: bytes) -> str:
    """What makes a delivery the same event, whatever its delivery id: the key the inbox stores
    each event under once, so a replayed or redelivered body, or a comment sent again, runs once.

    A comment is its forge id (edits of a comment are never commands, so the id alone names the
    command). A merge-request event is its action and head commit plus a hash of the signed body:
    re-opening an MR at the same head is a new event (its body differs), a replay is not. A push is
    its branch move.
    """
    where = f"{event.repository.forge}:{event.repository.full_name}"
    if isinstance(event, CommentEvent):
        key = f"comment:{where}:{event.number}:{event.comment_id}"
    elif isinstance(event, MergeRequestEvent):
        key = (f"mr:{where}:{event.number}:{event.action}:{event.head_sha}:"
               f"{hashlib.sha256(body).hexdigest()}")
    else:
        key = f"push:{where}:{event.branch}:{event.before}:{event.after}"
    return hashlib.sha256(key.encode()).hexdigest()


def to_json(event: Event) -> str:
    return json.dumps(asdict(event), sort_keys=True)


def from_json(text: str) -> Event:
    data: dict[str, Any] = json.loads(text)
    kind = data.pop("kind")
    repository = Repository(**data.pop("repository"))
    if kind == "merge_request":
        data["action"] = MRAction(data["action"])
        return MergeRequestEvent(repository=repository, **data)
    if kind == "comment":
        return CommentEvent(repository=repository, **data)
    if kind == "push":
        return PushEvent(repository=repository, **data)
    raise ValueError(f"unknown event kind {kind!r}")
