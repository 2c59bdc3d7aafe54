"""The fake GitLab: REST API v4 as far as Sluice uses it, and signed webhook builders."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from bot.forges.base import Role
from bot.forges.gitlab import GitLabConfig
from tests.support.fakeforge.base import (
    Comment,
    FakeForge,
    MergeRequest,
    Request,
    _need,
    _NotFound,
    _now,
    _segment,
    fixture,
)


@dataclass
class _Project:
    id: int
    path: str
    default_branch: str = "main"
    members: dict[str, int] = field(default_factory=dict)  # username -> access level


_GITLAB_LEVELS = {Role.READ: 20, Role.DEVELOPER: 30, Role.MAINTAINER: 40, Role.OWNER: 50}


class FakeGitLab(FakeForge):
    """GitLab's REST API v4, as far as Sluice uses it (see the module docstring).
    (One method per endpoint Sluice calls, so the class is as long as that list.)
    """

    def __init__(self, token: str = "glpat-fake-token", bot_username: str = "sluice-bot") -> None:
        super().__init__()
        self.token = token
        self.bot_username = bot_username
        self.projects: dict[str, _Project] = {}
        self.users: dict[str, int] = {}
        self.approvals: dict[tuple[str, int], list[str]] = {}
        self._known_user(bot_username)
        api = "/api/v4/projects/(?P<project>[^/]+)"
        mr = api + "/merge_requests/(?P<iid>\\d+)"
        note = mr + "/notes/(?P<note>\\d+)"
        self.route("GET", "/api/v4/user")(self._current_user)
        self.route("GET", "/api/v4/users")(self._users)
        self.route("GET", api)(self._project)
        self.route("GET", mr)(self._get_mr)
        self.route("GET", mr + "/notes")(self._list_notes)
        self.route("POST", mr + "/notes")(self._create_note)
        self.route("GET", note)(self._get_note)
        self.route("PUT", note)(self._update_note)
        self.route("GET", note + "/award_emoji")(self._list_awards)
        self.route("POST", note + "/award_emoji")(self._award)
        self.route("GET", mr + "/approvals")(self._approvals)
        self.route("POST", api + "/statuses/(?P<sha>[0-9a-fA-F]+)")(self._create_status)
        self.route("GET", api + "/repository/commits/(?P<sha>[0-9a-fA-F]+)/statuses")(self._list_statuses)
        self.route("GET", api + "/members/all/(?P<user>\\d+)")(self._member)

    def config(self) -> GitLabConfig:
        return GitLabConfig(url=self.url, token=self.token, webhook_secret=self.webhook_secret)

    # -- arranging ------------------------------------------------------------------------------

    def add_project(self, repo: str, default_branch: str = "main") -> _Project:
        with self._lock:
            project = self.projects.get(repo.lower())
            if project is None:
                project = _Project(self.next_id(), repo, default_branch)
                self.projects[repo.lower()] = project
            return project

    _known_repo = add_project

    def _known_user(self, user: str) -> int:
        with self._lock:
            return self.users.setdefault(user, self.next_id())

    def project_id(self, repo: str) -> int:
        return self.add_project(repo).id

    def set_role(self, repo: str, user: str, role: Role | int) -> None:
        """`Role` (READ becomes reporter, 20) or a raw access level (10 guest, 20 reporter, …);
        Role.NONE or 0 removes the member."""
        with self._lock:
            project = self.add_project(repo)
            self._known_user(user)
            level = _GITLAB_LEVELS.get(role, 0) if isinstance(role, Role) else int(role)
            if level:
                project.members[user] = level
            else:
                project.members.pop(user, None)

    def approve(self, repo: str, number: int, user: str) -> None:
        with self._lock:
            self._known_user(user)
            approved = self.approvals.setdefault((repo.lower(), number), [])
            if user not in approved:
                approved.append(user)

    def unapprove(self, repo: str, number: int, user: str) -> None:
        with self._lock:
            approved = self.approvals.get((repo.lower(), number), [])
            if user in approved:
                approved.remove(user)

    # -- webhooks -------------------------------------------------------------------------------

    def merge_request_hook(self, repo: str, number: int, action: str = "open", *,
                           oldrev: str | None = None, actor: str | None = None,
                           secret: str | None = None) -> tuple[dict[str, str], bytes]:
        """A "Merge Request Hook" delivery for the MR as it stands (action: open, reopen, update,
        merge, close, approved, unapproved, …), signed with `secret` (default `webhook_secret`)."""
        mr = self.merge_request(repo, number)
        project = self.add_project(repo)
        data = fixture("gitlab_webhooks/gitlab_merge_request_open.json")
        actor = actor or mr.author
        data["user"].update(id=self._known_user(actor), username=actor, name=actor)
        data["project"] = self._hook_project(project)
        attrs = data["object_attributes"]
        source_id = self.next_id() if mr.from_fork else project.id
        attrs.update(id=mr.id, iid=mr.number, action=action, title=mr.title,
                     state={"open": "opened"}.get(mr.state, mr.state),
                     source_branch=mr.source_branch, target_branch=mr.target_branch,
                     author_id=self._known_user(mr.author), source_project_id=source_id,
                     target_project_id=project.id, merge_commit_sha=mr.merge_sha,
                     url=f"{self.url}/{repo}/-/merge_requests/{number}")
        attrs["last_commit"].update(id=mr.head_sha, url=f"{self.url}/{repo}/-/commit/{mr.head_sha}")
        attrs["source"] = dict(data["project"], id=source_id)
        attrs["target"] = data["project"]
        if oldrev:
            attrs["oldrev"] = oldrev
        return self._signed("Merge Request Hook", data, secret)

    def note_hook(self, repo: str, number: int, comment_id: int,
                  secret: str | None = None) -> tuple[dict[str, str], bytes]:
        """A "Note Hook" delivery for comment `comment_id` on the MR."""
        mr = self.merge_request(repo, number)
        comment = self._comments[comment_id]
        project = self.add_project(repo)
        data = fixture("gitlab_webhooks/gitlab_note_merge_request.json")
        data["user"] = {"id": self._known_user(comment.author), "username": comment.author,
                        "name": comment.author, "avatar_url": None}
        if comment.author_is_bot:
            data["user"]["bot"] = True
        data["project_id"] = project.id
        data["project"] = self._hook_project(project)
        data["object_attributes"].update(id=comment.id, note=comment.body, noteable_id=mr.id,
                                         project_id=project.id, author_id=data["user"]["id"],
                                         description=comment.body)
        data["merge_request"].update(id=mr.id, iid=mr.number, source_branch=mr.source_branch,
                                     target_branch=mr.target_branch, title=mr.title,
                                     source_project_id=project.id, target_project_id=project.id)
        data["merge_request"]["last_commit"]["id"] = mr.head_sha
        return self._signed("Note Hook", data, secret)

    def push_hook(self, repo: str, branch: str, before: str, after: str, pusher: str = "alice",
                  kind: str = "Push Hook", secret: str | None = None) -> tuple[dict[str, str], bytes]:
        """A "Push Hook" delivery: `branch` moved from `before` to `after`."""
        project = self.add_project(repo)
        data = fixture("gitlab_webhooks/gitlab_push.json")
        data.update(ref=f"refs/heads/{branch}", before=before, after=after, checkout_sha=after,
                    user_id=self._known_user(pusher), user_name=pusher, user_username=pusher,
                    project_id=project.id, project=self._hook_project(project), total_commits_count=1)
        data["commits"] = [dict(data["commits"][-1], id=after)]
        return self._signed(kind, data, secret)

    def _hook_project(self, project: _Project) -> dict[str, Any]:
        name = project.path.rsplit("/", 1)[-1]
        return {"id": project.id, "name": name, "description": "", "web_url": f"{self.url}/{project.path}",
                "avatar_url": None, "git_ssh_url": f"git@127.0.0.1:{project.path}.git",
                "git_http_url": f"{self.url}/{project.path}.git",
                "namespace": project.path.rsplit("/", 1)[0], "visibility_level": 0,
                "path_with_namespace": project.path, "default_branch": project.default_branch,
                "ci_config_path": None, "homepage": f"{self.url}/{project.path}",
                "url": f"git@127.0.0.1:{project.path}.git", "ssh_url": f"git@127.0.0.1:{project.path}.git",
                "http_url": f"{self.url}/{project.path}.git"}

    def _signed(self, kind: str, data: dict[str, Any], secret: str | None) -> tuple[dict[str, str], bytes]:
        key = str(uuid.uuid4())
        headers = {"Content-Type": "application/json", "User-Agent": "GitLab/18.3.0",
                   "X-Gitlab-Event": kind, "X-Gitlab-Token": secret or self.webhook_secret,
                   "X-Gitlab-Instance": self.url, "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
                   "X-Gitlab-Event-UUID": key, "Idempotency-Key": key}
        return headers, json.dumps(data).encode()

    # -- serving --------------------------------------------------------------------------------

    def _authorised(self, request: Request) -> tuple[int, Any] | None:
        if request.headers.get("PRIVATE-TOKEN") != self.token:
            return 401, {"message": "401 Unauthorized"}
        return None

    def _find_project(self, match: re.Match[str]) -> _Project:
        key = _segment(match["project"])
        if key.isdigit():
            return _need(next((p for p in self.projects.values() if p.id == int(key)), None))
        return _need(self.projects.get(key.lower()))

    def _find_mr(self, match: re.Match[str]) -> MergeRequest:
        return _need(self._mr_or_none(self._find_project(match).path, int(match["iid"])))

    def _find_note(self, match: re.Match[str]) -> Comment:
        mr = self._find_mr(match)
        comment = _need(self._comments.get(int(match["note"])))
        if comment.repo.lower() != mr.repo.lower() or comment.number != mr.number:
            raise _NotFound
        return comment

    def _user_json(self, username: str) -> dict[str, Any]:
        user = fixture("gitlab_api/gitlab_api_get_user.response.json")
        user.update(id=self._known_user(username), username=username, name=username.title(),
                    email=f"{username}@example.com", web_url=f"{self.url}/{username}",
                    bot=username == self.bot_username)
        return user

    def _current_user(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        return 200, self._user_json(self.bot_username), {}

    def _users(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        wanted = request.query.get("username", [None])[0]
        names = [u for u in self.users if wanted is None or u.lower() == wanted.lower()]
        return 200, [self._user_json(u) for u in names], {}

    def _project(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        project = self._find_project(match)
        data = fixture("gitlab_api/gitlab_api_get_project.response.json")
        name = project.path.rsplit("/", 1)[-1]
        data.update(id=project.id, path=name, name=name, path_with_namespace=project.path,
                    name_with_namespace=project.path.replace("/", " / "),
                    default_branch=project.default_branch, web_url=f"{self.url}/{project.path}",
                    http_url_to_repo=f"{self.url}/{project.path}.git",
                    ssh_url_to_repo=f"git@127.0.0.1:{project.path}.git")
        data["_links"] = {k: v.replace("http://gitlab.com", self.url).replace("178504", str(project.id))
                          for k, v in data["_links"].items()}
        return 200, data, {}

    def _mr_json(self, mr: MergeRequest) -> dict[str, Any]:
        project = self.add_project(mr.repo)
        data = fixture("gitlab_api/gitlab_api_get_merge_request.response.json")
        author = {"id": self._known_user(mr.author), "username": mr.author, "name": mr.author,
                  "state": "active", "avatar_url": None, "web_url": f"{self.url}/{mr.author}"}
        state = {"open": "opened"}.get(mr.state, mr.state)
        source_id = project.id + 100000 if mr.from_fork else project.id
        data.update(id=mr.id, iid=mr.number, project_id=project.id, title=mr.title, state=state,
                    target_branch=mr.target_branch, source_branch=mr.source_branch, author=author,
                    source_project_id=source_id, target_project_id=project.id, sha=mr.head_sha,
                    merge_commit_sha=mr.merge_sha if mr.state == "merged" else None,
                    squash_commit_sha=None, reference=f"!{mr.number}", draft=False,
                    work_in_progress=False, web_url=f"{self.url}/{mr.repo}/-/merge_requests/{mr.number}",
                    user_notes_count=len(self.comments(mr.repo, mr.number)))
        data["diff_refs"]["head_sha"] = mr.head_sha
        for key in ("pipeline", "head_pipeline"):
            data[key].update(sha=mr.head_sha, ref=mr.source_branch)
        return data

    def _get_mr(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        return 200, self._mr_json(self._find_mr(match)), {}

    def _note_json(self, comment: Comment) -> dict[str, Any]:
        mr = self.merge_request(comment.repo, comment.number)
        data = fixture("gitlab_api/gitlab_api_merge_request_note.response.json")
        data.update(id=comment.id, body=comment.body, created_at=comment.created_at,
                    updated_at=comment.updated_at, noteable_id=mr.id, noteable_iid=mr.number,
                    noteable_type="MergeRequest", system=False)
        data["author"].update(id=self._known_user(comment.author), username=comment.author,
                              name=comment.author, email=f"{comment.author}@example.com")
        return data

    def _list_notes(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        mr = self._find_mr(match)
        notes = self.comments(mr.repo, mr.number)  # oldest first
        if request.query.get("sort", ["desc"])[0] == "desc":
            notes = notes[::-1]
        page, headers = self._page(request, [self._note_json(c) for c in notes], 20)
        return 200, page, headers

    def _create_note(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        mr = self._find_mr(match)
        body = (request.json or {}).get("body")
        if not body:
            return 400, {"message": "400 Bad request - Note {:note=>[\"can't be blank\"]}"}, {}
        comment = Comment(self.next_id(), mr.repo, mr.number, body, self.bot_username)
        self._comments[comment.id] = comment
        return 201, self._note_json(comment), {}

    def _get_note(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        return 200, self._note_json(self._find_note(match)), {}

    def _update_note(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        comment = self._find_note(match)
        if comment.author != self.bot_username:
            return 403, {"message": "403 Forbidden"}, {}
        comment.body = (request.json or {}).get("body", comment.body)
        comment.updated_at = _now()
        return 200, self._note_json(comment), {}

    def _award_json(self, comment: Comment, index: int) -> dict[str, Any]:
        name, user = comment.reactions[index]
        data = fixture("gitlab_api/gitlab_api_award_emoji.response.json")
        data.update(id=comment.id * 100 + index, name=name, awardable_id=comment.id, awardable_type="Note")
        data["user"].update(id=self._known_user(user), username=user, name=user)
        return data

    def _list_awards(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        comment = self._find_note(match)
        return 200, [self._award_json(comment, i) for i in range(len(comment.reactions))], {}

    def _award(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        comment = self._find_note(match)
        name = (request.json or {}).get("name")
        if not name:
            return 400, {"message": "400 Bad request - name is missing"}, {}
        if (name, self.bot_username) in comment.reactions:
            return 404, {"message": "404 Award Emoji Name has already been taken Not Found"}, {}
        comment.reactions.append((name, self.bot_username))
        return 201, self._award_json(comment, len(comment.reactions) - 1), {}

    def _approvals(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        mr = self._find_mr(match)
        approved = self.approvals.get((mr.repo.lower(), mr.number), [])
        data = {"id": mr.id, "iid": mr.number, "project_id": self.project_id(mr.repo), "title": mr.title,
                "state": {"open": "opened"}.get(mr.state, mr.state), "merge_status": "can_be_merged",
                "approved": bool(approved), "approvals_required": 1,
                "approvals_left": 0 if approved else 1,
                "approved_by": [{"user": {k: v for k, v in self._user_json(u).items()
                                          if k in ("id", "username", "name", "state", "avatar_url",
                                                   "web_url")}}
                                for u in approved]}
        return 200, data, {}

    def _create_status(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        project = self._find_project(match)
        body = dict(request.json or {})
        state, name = body.get("state"), body.get("name") or body.get("context") or "default"
        if state not in ("pending", "running", "success", "failed", "canceled", "skipped"):
            return 400, {"message": "400 Bad request - state does not have a valid value"}, {}
        sha = match["sha"]
        history = self._statuses.setdefault((project.path.lower(), sha), [])
        latest = next((s for s in reversed(history)
                       if (s.get("name") or s.get("context") or "default") == name), None)
        if latest is not None and latest["state"] == state and state in ("pending", "running"):
            verb = {"pending": "enqueue", "running": "run"}[state]
            return 400, {"message": f"Cannot transition status via :{verb} from :{state}"}, {}
        history.append(body)
        data = fixture("gitlab_api/gitlab_api_create_commit_status.response.json")
        data.update(id=self.next_id(), sha=sha, status=state, name=name,
                    description=body.get("description"), target_url=body.get("target_url"),
                    ref=body.get("ref"), created_at=_now())
        data["author"].update(username=self.bot_username, id=self._known_user(self.bot_username))
        return 201, data, {}

    def _list_statuses(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        project = self._find_project(match)
        out = []
        for body in self._statuses.get((project.path.lower(), match["sha"]), []):
            data = fixture("gitlab_api/gitlab_api_list_commit_statuses.response.json")[0]
            data.update(status=body["state"], name=body.get("name") or "default", sha=match["sha"],
                        description=body.get("description"), target_url=body.get("target_url"))
            out.append(data)
        return 200, out, {}

    def _member(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        project = self._find_project(match)
        user_id = int(match["user"])
        username = _need(next((u for u, i in self.users.items() if i == user_id), None))
        level = _need(project.members.get(username))
        data = fixture("gitlab_api/gitlab_api_get_project_member_all.response.json")
        data.update(id=user_id, username=username, name=username, access_level=level,
                    web_url=f"{self.url}/{username}", email=f"{username}@example.com")
        return 200, data, {}


