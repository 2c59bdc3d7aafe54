"""Fake GitLab and GitHub servers for tests: real HTTP on 127.0.0.1 that the real python-gitlab and
PyGithub clients talk to, answering the REST endpoints Sluice uses with the payload shapes of the
shared fixtures (`*_api/*.response.json`, loaded and patched), and keeping state a test can arrange
and inspect. Nothing in the clients is mocked.

Use it as a context manager, or through the pytest fixtures `fake_gitlab` / `fake_github` (add
`pytest_plugins = ["fakeforge"]` to tests/conftest.py)::

    with FakeGitLab() as gl:                     # or def test_x(fake_gitlab): ...
        gl.add_merge_request("data/shop", 7, head_sha="c0ffee", author="alice")
        gl.set_role("data/shop", "alice", Role.DEVELOPER)      # or a raw access level: 20
        forge = GitLab(gl.config())              # GitLabConfig(url=gl.url, token=gl.token, ...)
        forge.post_comment("data/shop", 7, "<!-- sluice --> hello")
        assert gl.comments("data/shop", 7)[-1].body.endswith("hello")
        gl.fail_next(2, 502)                     # the next two requests answer 502
        headers, body = gl.merge_request_hook("data/shop", 7, "open")   # a signed webhook

State helpers (both fakes): `add_merge_request`, `merge_request`, `push`, `merge`, `close`,
`add_comment` (a user's comment, e.g. a slash command), `comments(repo, number)` (Comment objects:
id, body, author, reactions), `reactions(repo, comment_id)`, `statuses(repo, sha)` (the status
request bodies as received), `set_role(repo, user, Role | raw)`, `approve` / `unapprove`,
`fail_next(n, status)`, `stall_next(n, seconds)` (for client timeouts), and `requests` (every
request received: method, path, query, headers, json, status). GitHub adds `add_review(...)` and
`enable_app()` (GitHub App auth: returns the PEM key; JWTs are checked against it). Webhook
builders (signed with `webhook_secret`): GitLab `merge_request_hook`, `note_hook`; GitHub
`pull_request_hook`, `issue_comment_hook`, `review_hook`.

`config()` is the GitLabConfig / GitHubConfig (with `webhook_secret`) for the fake;
`requests_to(method, regex)` filters the request log; `errors` lists exceptions the fake raised
while serving (answered 500; a test may assert it stays empty). Fixture files are read from
$SLUICE_FORGE_FIXTURES, else ../shared/fixtures beside the repository.

The bot's own identity is `bot_username` (GitLab, token user) / `bot_login` (GitHub, token user;
`<slug>[bot]` when the App is enabled): comments it posts carry that author.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest

from bot.forges.base import Role
from bot.forges.github import GitHubConfig
from bot.forges.gitlab import GitLabConfig

# shared/ sits beside the repository's root, in a session's checkout and in CI's clone alike.
_SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
FIXTURES = Path(os.environ.get("SLUICE_FORGE_FIXTURES") or _SHARED_FIXTURES)


def fixture(name: str) -> Any:
    """A fresh copy of one shared fixture file, e.g. `fixture("gitlab_api/....response.json")`."""
    return json.loads((FIXTURES / name).read_text())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- state ----------------------------------------------------------------------------------------


@dataclass
class MergeRequest:
    repo: str
    number: int
    head_sha: str
    source_branch: str = "feature"
    target_branch: str = "main"
    author: str = "alice"
    title: str = "Change models"
    state: str = "open"  # "open" | "closed" | "merged"
    merge_sha: str | None = None
    from_fork: bool = False
    id: int = 0


@dataclass
class Comment:
    id: int
    repo: str
    number: int
    body: str
    author: str
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    reactions: list[tuple[str, str]] = field(default_factory=list)  # (name, user)
    author_is_bot: bool = False


@dataclass
class Request:
    """One request the fake received (`status` is what it answered)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any
    status: int = 0


@dataclass
class _Failure:
    status: int
    match: re.Pattern[str] | None
    message: str | None
    headers: dict[str, str]


Route = Callable[[re.Match[str], Request], tuple[int, Any, dict[str, str]]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeForge


class FakeForge:
    """The HTTP machinery both fakes share: routing, request log, injected failures, pagination."""

    not_found: Any = {"message": "404 Not Found"}

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._routes: list[tuple[str, re.Pattern[str], Route]] = []
        self._failures: list[_Failure] = []
        self._stalls: list[float] = []
        self._ids = itertools.count(1001)
        self._server: _Server | None = None
        self._url = ""
        self._thread: threading.Thread | None = None
        self.requests: list[Request] = []
        self.errors: list[str] = []  # exceptions raised while serving: bugs in the fake or the test
        self.merge_requests: dict[tuple[str, int], MergeRequest] = {}
        self._comments: dict[int, Comment] = {}
        self._statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.webhook_secret = "fake-webhook-secret"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._url, "the fake is not started"
        return self._url

    # -- failures -------------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 502, match: str | None = None,
                  message: str | None = None, headers: dict[str, str] | None = None) -> None:
        """Answer the next `n` requests (those whose "METHOD /path" matches regex `match`, if
        given) with `status` instead of serving them: an HTML page for 5xx like a proxy's, else
        JSON `{"message": message}`, with extra response `headers` (e.g. Retry-After)."""
        with self._lock:
            pattern = re.compile(match) if match else None
            self._failures.extend(_Failure(status, pattern, message, headers or {}) for _ in range(n))

    def stall_next(self, n: int = 1, seconds: float = 2.0) -> None:
        """Hold the next `n` requests for `seconds` before serving them (client timeouts)."""
        with self._lock:
            self._stalls.extend([seconds] * n)

    def requests_to(self, method: str, pattern: str) -> list[Request]:
        """The requests received whose method is `method` and path matches regex `pattern`."""
        with self._lock:
            return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    # -- shared state helpers -------------------------------------------------------------------

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def add_merge_request(self, repo: str, number: int, *, head_sha: str, source_branch: str = "feature",
                          target_branch: str = "main", author: str = "alice",
                          title: str = "Change models", state: str = "open",
                          from_fork: bool = False, merge_sha: str | None = None) -> MergeRequest:
        with self._lock:
            self._known_repo(repo)
            self._known_user(author)
            mr = MergeRequest(repo, number, head_sha, source_branch, target_branch, author, title, state,
                              merge_sha, from_fork, id=self.next_id())
            self.merge_requests[(repo.lower(), number)] = mr
            return mr

    def merge_request(self, repo: str, number: int) -> MergeRequest:
        return self.merge_requests[(repo.lower(), number)]

    def push(self, repo: str, number: int, head_sha: str) -> None:
        self.merge_request(repo, number).head_sha = head_sha

    def merge(self, repo: str, number: int, merge_sha: str) -> None:
        mr = self.merge_request(repo, number)
        mr.state, mr.merge_sha = "merged", merge_sha

    def close(self, repo: str, number: int) -> None:
        self.merge_request(repo, number).state = "closed"

    def add_comment(self, repo: str, number: int, body: str, author: str = "alice",
                    bot: bool = False) -> Comment:
        """A comment someone (not the bot under test) wrote on the merge request."""
        with self._lock:
            self._mr_or_none(repo, number) or self._missing(repo, number)
            self._known_user(author)
            comment = Comment(self.next_id(), repo, number, body, author, author_is_bot=bot)
            self._comments[comment.id] = comment
            return comment

    def comments(self, repo: str, number: int) -> list[Comment]:
        with self._lock:
            return [c for c in self._comments.values()
                    if c.repo.lower() == repo.lower() and c.number == number]

    def comment(self, comment_id: int) -> Comment:
        return self._comments[comment_id]

    def reactions(self, repo: str, comment_id: int) -> list[str]:
        comment = self._comments.get(comment_id)
        if comment is None or comment.repo.lower() != repo.lower():
            return []
        return [name for name, _ in comment.reactions]

    def statuses(self, repo: str, sha: str) -> list[dict[str, Any]]:
        """The commit status requests for `sha`, oldest first, as the client sent them."""
        with self._lock:
            return list(self._statuses.get((repo.lower(), sha), []))

    # -- for subclasses -------------------------------------------------------------------------

    def _known_repo(self, repo: str) -> Any:
        raise NotImplementedError

    def _known_user(self, user: str) -> Any:
        raise NotImplementedError

    def _authorised(self, request: Request) -> tuple[int, Any] | None:
        """None when the request carries valid credentials, else the error answer."""
        return None

    def route(self, method: str, pattern: str) -> Callable[[Route], Route]:
        def register(handler: Route) -> Route:
            self._routes.append((method, re.compile(f"^{pattern}$"), handler))
            return handler
        return register

    def _mr_or_none(self, repo: str, number: int) -> MergeRequest | None:
        return self.merge_requests.get((repo.lower(), number))

    def _missing(self, repo: str, number: int) -> MergeRequest:
        raise KeyError(f"no merge request {repo} {number}: add_merge_request() first")

    def _page(self, request: Request, items: list[Any], default_per_page: int) -> tuple[list[Any],
                                                                                         dict[str, str]]:
        """One page of `items` as the query asks, with a Link header to the next and last pages."""
        page = int(request.query.get("page", ["1"])[0])
        per_page = int(request.query.get("per_page", [str(default_per_page)])[0])
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]

        def link(number: int) -> str:
            query = {k: v[0] for k, v in request.query.items()} | {"page": str(number),
                                                                   "per_page": str(per_page)}
            return f"{self.url}{request.path}?{urllib.parse.urlencode(query)}"

        links = []
        if page < last:
            links.append(f'<{link(page + 1)}>; rel="next"')
        links.append(f'<{link(last)}>; rel="last"')
        headers = {"Link": ", ".join(links), "X-Page": str(page), "X-Per-Page": str(per_page),
                   "X-Total": str(len(items)), "X-Total-Pages": str(last)}
        if page < last:
            headers["X-Next-Page"] = str(page + 1)
        return chunk, headers

    # -- serving --------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        raw_path, _, raw_query = handler.path.partition("?")
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        request = Request(handler.command, raw_path, urllib.parse.parse_qs(raw_query),
                          dict(handler.headers.items()), body)
        with self._lock:
            self.requests.append(request)
            stall = self._stalls.pop(0) if self._stalls else 0.0
            failure = next((f for f in self._failures
                            if f.match is None or f.match.search(f"{request.method} {raw_path}")), None)
            if failure is not None:
                self._failures.remove(failure)
        if stall:
            time.sleep(stall)
        headers: dict[str, str] = {}
        if failure is not None:
            status, headers = failure.status, failure.headers
            message = failure.message or f"{failure.status} injected by the fake"
            if failure.status >= 500 and failure.message is None:
                data = f"<html><body><h1>{message}</h1></body></html>".encode()
                content_type = "text/html"
            else:
                data, content_type = json.dumps({"message": message}).encode(), "application/json"
        else:
            status, payload, headers = self._dispatch(request)
            data = b"" if payload is None else json.dumps(payload).encode()
            content_type = "application/json"
        request.status = status
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if data:
                handler.wfile.write(data)
        except OSError:  # the client gave up (a timeout test)
            pass

    def _dispatch(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        denied = self._authorised(request)
        if denied is not None:
            return denied[0], denied[1], {}
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                with self._lock:
                    try:
                        return handler(match, request)
                    except _NotFound:
                        return 404, self.not_found, {}
                    except Exception as exc:  # answer, and let the test see it in `errors`
                        self.errors.append(f"{request.method} {request.path}: {exc!r}")
                        return 500, {"message": f"the fake failed: {exc!r}"}, {}
        return 404, self.not_found, {}


class _NotFound(Exception):
    pass


def _need(value: Any) -> Any:
    if value is None:
        raise _NotFound
    return value


def _segment(text: str) -> str:
    return urllib.parse.unquote(text)


# -- GitLab ---------------------------------------------------------------------------------------


@dataclass
class _Project:
    id: int
    path: str
    default_branch: str = "main"
    members: dict[str, int] = field(default_factory=dict)  # username -> access level


_GITLAB_LEVELS = {Role.READ: 20, Role.DEVELOPER: 30, Role.MAINTAINER: 40, Role.OWNER: 50}


class FakeGitLab(FakeForge):
    """GitLab's REST API v4, as far as Sluice uses it (see the module docstring)."""

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


# -- GitHub ---------------------------------------------------------------------------------------


_GITHUB_ROLES = {Role.OWNER: "admin", Role.MAINTAINER: "maintain", Role.DEVELOPER: "write",
                 Role.READ: "read", Role.NONE: "none"}
_GITHUB_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read",
                      "read": "read", "none": "none"}
_GITHUB_REACTIONS = {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}


@dataclass
class Review:
    id: int
    user: str
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | DISMISSED
    commit_id: str
    submitted_at: str = field(default_factory=_now)


class FakeGitHub(FakeForge):
    """GitHub's REST API, as far as Sluice uses it (see the module docstring)."""

    not_found = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}

    def __init__(self, token: str = "ghp_fake_token", bot_login: str = "sluice-bot") -> None:
        super().__init__()
        self.token = token
        self.bot_login = bot_login
        self.repos: dict[str, dict[str, Any]] = {}  # lower-case full name -> {"full_name", "roles"}
        self.users: dict[str, int] = {}
        self.reviews: dict[tuple[str, int], list[Review]] = {}
        self.app_id: int | None = None
        self.app_slug = "sluice-app"
        self.installation_id = 4242
        self.installation_tokens: dict[str, datetime] = {}
        self._public_key: Any = None
        self.private_key_pem = ""
        self._known_user(bot_login)
        repo = "/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
        comment = repo + "/issues/comments/(?P<comment>\\d+)"
        self.route("GET", "/user")(self._current_user)
        self.route("GET", "/app")(self._app)
        self.route("GET", repo + "/installation")(self._installation)
        self.route("POST", "/app/installations/(?P<id>\\d+)/access_tokens")(self._access_token)
        self.route("GET", repo + "/pulls/(?P<number>\\d+)")(self._get_pull)
        self.route("GET", repo + "/pulls/(?P<number>\\d+)/reviews")(self._list_reviews)
        self.route("GET", repo + "/issues/(?P<number>\\d+)/comments")(self._list_comments)
        self.route("POST", repo + "/issues/(?P<number>\\d+)/comments")(self._create_comment)
        self.route("GET", comment)(self._get_comment)
        self.route("PATCH", comment)(self._update_comment)
        self.route("GET", comment + "/reactions")(self._list_reactions)
        self.route("POST", comment + "/reactions")(self._react)
        self.route("POST", repo + "/statuses/(?P<sha>[0-9a-fA-F]+)")(self._create_status)
        self.route("GET", repo + "/commits/(?P<sha>[0-9a-fA-F]+)/status")(self._combined_status)
        self.route("GET", repo + "/collaborators/(?P<user>[^/]+)/permission")(self._permission)

    def config(self, app: bool | None = None) -> GitHubConfig:
        """A config for this fake: token auth, or App auth when `enable_app()` was called."""
        if app if app is not None else self.app_id is not None:
            assert self.app_id is not None and self.private_key_pem, "call enable_app() first"
            return GitHubConfig(api_url=self.url, app_id=self.app_id, private_key=self.private_key_pem,
                                webhook_secret=self.webhook_secret)
        return GitHubConfig(api_url=self.url, token=self.token, webhook_secret=self.webhook_secret)

    # -- arranging ------------------------------------------------------------------------------

    def add_repo(self, repo: str, default_branch: str = "main") -> dict[str, Any]:
        with self._lock:
            return self.repos.setdefault(repo.lower(), {"full_name": repo, "roles": {},
                                                        "id": self.next_id(),
                                                        "default_branch": default_branch})

    _known_repo = add_repo

    def _known_user(self, user: str) -> int:
        with self._lock:
            return self.users.setdefault(user, self.next_id())

    def set_role(self, repo: str, user: str, role: Role | str) -> None:
        """`Role` or a raw role name: admin, maintain, write, triage, read, none."""
        with self._lock:
            self._known_user(user)
            self.add_repo(repo)["roles"][user] = _GITHUB_ROLES[role] if isinstance(role, Role) else role

    def add_review(self, repo: str, number: int, user: str, state: str = "APPROVED") -> Review:
        with self._lock:
            self._known_user(user)
            mr = self.merge_request(repo, number)
            review = Review(self.next_id(), user, state, mr.head_sha)
            self.reviews.setdefault((repo.lower(), number), []).append(review)
            return review

    def approve(self, repo: str, number: int, user: str) -> None:
        self.add_review(repo, number, user, "APPROVED")

    def unapprove(self, repo: str, number: int, user: str) -> None:
        """Dismiss `user`'s approving reviews, as a maintainer or a new push would."""
        with self._lock:
            for review in self.reviews.get((repo.lower(), number), []):
                if review.user == user and review.state == "APPROVED":
                    review.state = "DISMISSED"

    def enable_app(self, app_id: int = 31337, slug: str = "sluice-app") -> str:
        """Accept GitHub App auth (installed on every repository); returns the App's PEM key."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_key_pem = key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()).decode()
        self._public_key = key.public_key()
        self.app_id, self.app_slug = app_id, slug
        return self.private_key_pem

    @property
    def app_login(self) -> str:
        return f"{self.app_slug}[bot]"

    # -- webhooks -------------------------------------------------------------------------------

    def pull_request_hook(self, repo: str, number: int, action: str = "opened", *,
                          secret: str | None = None, before: str | None = None,
                          ) -> tuple[dict[str, str], bytes]:
        """A `pull_request` delivery for the PR as it stands (opened, synchronize, closed, …)."""
        data = fixture("github_webhooks/github_pull_request_opened.json")
        data["action"] = action
        data["number"] = number
        data["pull_request"] = self._pull_json(self.merge_request(repo, number))
        data["repository"] = self._repo_json(repo)
        data["sender"] = self._user_json(self.merge_request(repo, number).author)
        if action == "synchronize":
            data["before"] = before or "0" * 40
            data["after"] = data["pull_request"]["head"]["sha"]
        return self._signed("pull_request", data, secret)

    def issue_comment_hook(self, repo: str, number: int, comment_id: int, action: str = "created",
                           secret: str | None = None) -> tuple[dict[str, str], bytes]:
        """An `issue_comment` delivery for comment `comment_id` on the PR."""
        mr = self.merge_request(repo, number)
        data = fixture("github_webhooks/github_issue_comment_created.json")
        data["action"] = action
        comment = self._comments[comment_id]
        data["comment"] = self._comment_json(comment)
        issue = data["issue"]
        issue.update(number=number, title=mr.title, state="open" if mr.state == "open" else "closed",
                     user=self._user_json(mr.author),
                     url=f"{self.url}/repos/{repo}/issues/{number}",
                     html_url=f"{self.url}/{repo}/pull/{number}")
        issue["pull_request"] = {"url": f"{self.url}/repos/{repo}/pulls/{number}",
                                 "html_url": f"{self.url}/{repo}/pull/{number}"}
        data["repository"] = self._repo_json(repo)
        data["sender"] = self._user_json(comment.author, bot=comment.author_is_bot)
        return self._signed("issue_comment", data, secret)

    def review_hook(self, repo: str, number: int, user: str, state: str = "approved",
                    action: str = "submitted", secret: str | None = None) -> tuple[dict[str, str], bytes]:
        """A `pull_request_review` delivery (state: approved, changes_requested, commented)."""
        mr = self.merge_request(repo, number)
        data = fixture("github_webhooks/github_pull_request_review_submitted_approved.json")
        data["action"] = action
        data["review"].update(id=self.next_id(), state=state, user=self._user_json(user),
                              commit_id=mr.head_sha)
        data["pull_request"] = self._pull_json(mr)
        data["repository"] = self._repo_json(repo)
        data["sender"] = self._user_json(user)
        return self._signed("pull_request_review", data, secret)

    def _signed(self, kind: str, data: dict[str, Any], secret: str | None) -> tuple[dict[str, str], bytes]:
        body = json.dumps(data).encode()
        digest = hmac.new((secret or self.webhook_secret).encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/fake",
                   "X-GitHub-Event": kind, "X-GitHub-Delivery": str(uuid.uuid4()),
                   "X-GitHub-Hook-ID": "1", "X-Hub-Signature-256": f"sha256={digest}"}
        return headers, body

    # -- serving --------------------------------------------------------------------------------

    def _authorised(self, request: Request) -> tuple[int, Any] | None:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if request.path == "/app" or re.match(r"^/app/|^/repos/[^/]+/[^/]+/installation$", request.path):
            if scheme.lower() != "bearer" or not self._valid_jwt(credential):
                return 401, {"message": "A JSON web token could not be decoded"}
            return None
        expires = self.installation_tokens.get(credential)
        if scheme.lower() in ("token", "bearer") and (
                credential == self.token or (expires is not None and expires > datetime.now(UTC))):
            return None
        return 401, {"message": "Bad credentials"}

    def _valid_jwt(self, token: str) -> bool:
        if self._public_key is None:
            return False
        import jwt

        try:
            claims = jwt.decode(token, self._public_key, algorithms=["RS256"])
        except jwt.PyJWTError:
            return False
        return str(claims.get("iss")) == str(self.app_id)

    def _login(self, request: Request) -> str:
        """Who the request's token belongs to."""
        credential = request.headers.get("Authorization", "").partition(" ")[2]
        return self.app_login if credential in self.installation_tokens else self.bot_login

    def _full_name(self, match: re.Match[str]) -> str:
        repo = _need(self.repos.get(f"{_segment(match['owner'])}/{_segment(match['repo'])}".lower()))
        return str(repo["full_name"])

    def _user_json(self, login: str, bot: bool | None = None) -> dict[str, Any]:
        user = fixture("github_api/github_api_get_collaborator_permission.response.json")["user"]
        is_bot = bot if bot is not None else login.endswith("[bot]")
        user.update(login=login, id=self._known_user(login), type="Bot" if is_bot else "User")
        for key, value in list(user.items()):
            if isinstance(value, str) and "octocat" in value:
                user[key] = value.replace("https://api.github.com", self.url).replace("octocat", login)
        return user

    def _repo_json(self, repo: str) -> dict[str, Any]:
        record = self.add_repo(repo)
        owner, name = record["full_name"].split("/", 1)
        return {"id": record["id"], "name": name, "full_name": record["full_name"],
                "owner": self._user_json(owner), "private": False,
                "html_url": f"{self.url}/{record['full_name']}",
                "url": f"{self.url}/repos/{record['full_name']}",
                "clone_url": f"{self.url}/{record['full_name']}.git",
                "git_url": f"git://127.0.0.1/{record['full_name']}.git",
                "ssh_url": f"git@127.0.0.1:{record['full_name']}.git",
                "default_branch": record["default_branch"]}

    def _pull_json(self, mr: MergeRequest) -> dict[str, Any]:
        data = fixture("github_api/github_api_get_pull.response.json")
        api = f"{self.url}/repos/{mr.repo}"
        head_repo = self._repo_json(f"fork-of-{mr.author}/{mr.repo.split('/')[1]}" if mr.from_fork
                                    else mr.repo)
        data.update(url=f"{api}/pulls/{mr.number}", id=mr.id, number=mr.number,
                    html_url=f"{self.url}/{mr.repo}/pull/{mr.number}",
                    issue_url=f"{api}/issues/{mr.number}", comments_url=f"{api}/issues/{mr.number}/comments",
                    commits_url=f"{api}/pulls/{mr.number}/commits",
                    review_comments_url=f"{api}/pulls/{mr.number}/comments",
                    statuses_url=f"{api}/statuses/{mr.head_sha}",
                    state="open" if mr.state == "open" else "closed", title=mr.title, locked=False,
                    user=self._user_json(mr.author), merged=mr.state == "merged",
                    merge_commit_sha=mr.merge_sha, draft=False,
                    merged_at=_now() if mr.state == "merged" else None,
                    closed_at=None if mr.state == "open" else _now())
        data["head"].update(sha=mr.head_sha, ref=mr.source_branch, label=f"{mr.author}:{mr.source_branch}",
                            repo=head_repo, user=self._user_json(mr.author))
        data["base"].update(ref=mr.target_branch, repo=self._repo_json(mr.repo),
                            label=mr.target_branch)
        data["_links"] = {"self": {"href": data["url"]}, "html": {"href": data["html_url"]},
                          "issue": {"href": data["issue_url"]}, "comments": {"href": data["comments_url"]}}
        return data

    def _comment_json(self, comment: Comment) -> dict[str, Any]:
        data = fixture("github_api/github_api_create_issue_comment.response.json")
        api = f"{self.url}/repos/{comment.repo}"
        data.update(id=comment.id, node_id=f"IC_{comment.id}", body=comment.body,
                    url=f"{api}/issues/comments/{comment.id}",
                    html_url=f"{self.url}/{comment.repo}/pull/{comment.number}#issuecomment-{comment.id}",
                    issue_url=f"{api}/issues/{comment.number}", created_at=comment.created_at,
                    updated_at=comment.updated_at,
                    user=self._user_json(comment.author, bot=comment.author_is_bot or None),
                    author_association="MEMBER")
        return data

    def _find_pull(self, match: re.Match[str]) -> MergeRequest:
        return _need(self._mr_or_none(self._full_name(match), int(match["number"])))

    def _find_comment(self, match: re.Match[str]) -> Comment:
        comment = _need(self._comments.get(int(match["comment"])))
        if comment.repo.lower() != self._full_name(match).lower():
            raise _NotFound
        return comment

    def _current_user(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        if self._login(request) != self.bot_login:
            return 403, {"message": "Resource not accessible by integration"}, {}
        return 200, self._user_json(self.bot_login), {}

    def _app(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        return 200, {"id": self.app_id, "slug": self.app_slug, "node_id": "A_fake", "name": "Sluice",
                     "owner": self._user_json("sluice-org"), "description": "", "external_url": self.url,
                     "html_url": f"{self.url}/apps/{self.app_slug}", "created_at": _now(),
                     "updated_at": _now(), "permissions": {}, "events": []}, {}

    def _installation(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._full_name(match)
        return 200, {"id": self.installation_id, "app_id": self.app_id, "app_slug": self.app_slug,
                     "account": self._user_json(full_name.split("/")[0]), "target_type": "Organization",
                     "access_tokens_url":
                         f"{self.url}/app/installations/{self.installation_id}/access_tokens",
                     "repositories_url": f"{self.url}/installation/repositories",
                     "permissions": {"pull_requests": "write", "statuses": "write", "issues": "write"},
                     "events": ["pull_request", "issue_comment"], "created_at": _now(),
                     "updated_at": _now()}, {}

    def _access_token(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        if int(match["id"]) != self.installation_id:
            raise _NotFound
        data = fixture("github_api/github_api_create_installation_token.response.json")
        token = f"ghs_{uuid.uuid4().hex}"
        expires = datetime.now(UTC) + timedelta(hours=1)
        self.installation_tokens[token] = expires
        data.update(token=token, expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ"))
        data.pop("repositories", None)
        return 201, data, {}

    def _get_pull(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        return 200, self._pull_json(self._find_pull(match)), {}

    def _list_reviews(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        mr = self._find_pull(match)
        out = []
        for review in self.reviews.get((mr.repo.lower(), mr.number), []):
            data = fixture("github_api/github_api_list_pull_reviews.response.json")[0]
            data.update(id=review.id, node_id=f"PRR_{review.id}", user=self._user_json(review.user),
                        state=review.state, commit_id=review.commit_id, submitted_at=review.submitted_at,
                        pull_request_url=f"{self.url}/repos/{mr.repo}/pulls/{mr.number}",
                        html_url=f"{self.url}/{mr.repo}/pull/{mr.number}#pullrequestreview-{review.id}")
            data["_links"] = {"html": {"href": data["html_url"]},
                              "pull_request": {"href": data["pull_request_url"]}}
            out.append(data)
        page, headers = self._page(request, out, 30)
        return 200, page, headers

    def _list_comments(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        mr = self._find_pull(match)  # every pull request is an issue; plain issues are not modelled
        items = [self._comment_json(c) for c in self.comments(mr.repo, mr.number)]
        page, headers = self._page(request, items, 30)
        return 200, page, headers

    def _create_comment(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        mr = self._find_pull(match)
        body = (request.json or {}).get("body")
        if not body:
            return 422, {"message": "Validation Failed", "errors": [{"field": "body", "code": "missing"}]}, {}
        if len(body) > 65536:
            return 422, {"message": "Validation Failed",
                         "errors": [{"message": "Body is too long (maximum is 65536 characters)"}]}, {}
        login = self._login(request)
        comment = Comment(self.next_id(), mr.repo, mr.number, body, login,
                          author_is_bot=login.endswith("[bot]"))
        self._comments[comment.id] = comment
        return 201, self._comment_json(comment), {}

    def _get_comment(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        return 200, self._comment_json(self._find_comment(match)), {}

    def _update_comment(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        comment = self._find_comment(match)
        if comment.author != self._login(request):
            return 403, {"message": "Must have admin rights to Repository."}, {}
        comment.body = (request.json or {}).get("body", comment.body)
        comment.updated_at = _now()
        return 200, self._comment_json(comment), {}

    def _reaction_json(self, comment: Comment, index: int) -> dict[str, Any]:
        content, user = comment.reactions[index]
        data = fixture("github_api/github_api_create_reaction_issue_comment.response.json")
        data.update(id=comment.id * 100 + index, content=content, user=self._user_json(user))
        return data

    def _list_reactions(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        comment = self._find_comment(match)
        return 200, [self._reaction_json(comment, i) for i in range(len(comment.reactions))], {}

    def _react(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        comment = self._find_comment(match)
        content = (request.json or {}).get("content")
        if content not in _GITHUB_REACTIONS:
            return 422, {"message": "Validation Failed", "errors": [{"field": "content"}]}, {}
        login = self._login(request)
        if (content, login) in comment.reactions:  # GitHub answers 200 with the existing reaction
            return 200, self._reaction_json(comment, comment.reactions.index((content, login))), {}
        comment.reactions.append((content, login))
        return 201, self._reaction_json(comment, len(comment.reactions) - 1), {}

    def _create_status(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._full_name(match)
        body = dict(request.json or {})
        if body.get("state") not in ("error", "failure", "pending", "success"):
            return 422, {"message": "Validation Failed", "errors": [{"field": "state"}]}, {}
        if len(body.get("description") or "") > 140:
            return 422, {"message": "Validation Failed",
                         "errors": [{"message": "description is too long (maximum is 140 characters)"}]}, {}
        self._statuses.setdefault((full_name.lower(), match["sha"]), []).append(body)
        data = fixture("github_api/github_api_create_commit_status.response.json")
        data.update(id=self.next_id(), state=body["state"], description=body.get("description"),
                    target_url=body.get("target_url"), context=body.get("context") or "default",
                    url=f"{self.url}/repos/{full_name}/statuses/{match['sha']}",
                    creator=self._user_json(self._login(request)), created_at=_now(), updated_at=_now())
        return 201, data, {}

    def _combined_status(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._full_name(match)
        latest: dict[str, dict[str, Any]] = {}
        for body in self._statuses.get((full_name.lower(), match["sha"]), []):
            latest[body.get("context") or "default"] = body
        states = {b["state"] for b in latest.values()}
        overall = ("failure" if states & {"failure", "error"} else
                   "pending" if "pending" in states or not states else "success")
        data = fixture("github_api/github_api_get_combined_status.response.json")
        data.update(state=overall, sha=match["sha"], total_count=len(latest),
                    repository=self._repo_json(full_name),
                    statuses=[{"id": i, "state": b["state"], "description": b.get("description"),
                               "target_url": b.get("target_url"), "context": ctx,
                               "created_at": _now(), "updated_at": _now()}
                              for i, (ctx, b) in enumerate(latest.items(), 1)])
        return 200, data, {}

    def _permission(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._full_name(match)
        user = _segment(match["user"])
        login = _need(next((u for u in self.users if u.lower() == user.lower()), None))
        role = self.repos[full_name.lower()]["roles"].get(login, "none")
        data = fixture("github_api/github_api_get_collaborator_permission.response.json")
        data.update(permission=_GITHUB_PERMISSION.get(role, "read"), role_name=role,
                    user=self._user_json(login))
        return 200, data, {}


# -- pytest fixtures ------------------------------------------------------------------------------


@pytest.fixture
def fake_gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        yield server


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server
