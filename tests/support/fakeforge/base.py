"""Fake GitLab and GitHub servers for tests (the shared server here; one module per forge): real
HTTP on 127.0.0.1 that the real python-gitlab and PyGithub clients talk to, answering the REST
endpoints Sluice uses with the payload shapes of tests/fixtures/forges (`*_api/*.response.json`,
loaded and patched), and keeping state a test can arrange and inspect. Nothing in the clients is mocked.

Use it as a context manager, or through the pytest fixtures `fake_gitlab` / `fake_github` (add
`tests.support.fakeforge` to `pytest_plugins` in tests/conftest.py)::

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
`fail_next(n, status)`, `stall_next(n, seconds)` (for client timeouts), `answer_late(match,
seconds)` (the request is served, its answer held: a client that dies meanwhile never learns that
it was done), and `requests` (every
request received: method, path, query, headers, json, status). GitHub adds `add_review(...)` and
`enable_app()` (GitHub App auth: returns the PEM key; JWTs are checked against it). Webhook
builders (signed with `webhook_secret`): GitLab `merge_request_hook`, `note_hook`, `push_hook`;
GitHub `pull_request_hook`, `issue_comment_hook`, `review_hook`, `push_hook`.

`config()` is the GitLabConfig / GitHubConfig (with `webhook_secret`) for the fake;
`requests_to(method, regex)` filters the request log; `errors` lists exceptions the fake raised
while serving (answered 500; a test may assert it stays empty). Fixture files are read from
tests/fixtures/forges (see its README for their sources and licences).

The bot's own identity is `bot_username` (GitLab, token user) / `bot_login` (GitHub, token user;
`<slug>[bot]` when the App is enabled): comments it posts carry that author.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from tests.support.paths import FORGE_FIXTURES

FIXTURES = FORGE_FIXTURES


def fixture(name: str) -> Any:
    """A fresh copy of one forge fixture file, e.g. `fixture("gitlab_api/....response.json")`."""
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
        self._late: list[tuple[re.Pattern[str], float]] = []
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
        self._git: dict[str, Path] = {}  # "<repo>.git" (lower case) -> a bare repository

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

    def answer_late(self, match: str, seconds: float) -> None:
        """Serve the next request whose "METHOD /path" matches regex `match` at once, then hold
        its answer for `seconds` (the forge did it; the client does not know yet)."""
        with self._lock:
            self._late.append((re.compile(match), seconds))

    def serve_git(self, repo: str, bare: Path) -> None:
        """Serve the bare repository `bare` at `<url>/<repo>.git`, as the forge's own host serves
        it (git's "dumb" HTTP protocol: plain files, refreshed by `git update-server-info`)."""
        with self._lock:
            self._git[f"{repo.lower()}.git"] = Path(bare)

    def _git_file(self, raw_path: str) -> tuple[int, bytes] | None:
        """A served repository's file for a GET of `/<repo>.git/<file>`, or None: not git's."""
        for name, bare in self._git.items():
            prefix = f"/{name}/"
            if raw_path.lower().startswith(prefix):
                rel = raw_path[len(prefix):]
                if rel == "info/refs":
                    subprocess.run(["git", "update-server-info"], cwd=bare, check=True)
                path = (bare / rel).resolve()
                if not path.is_relative_to(bare.resolve()) or not path.is_file():
                    return 404, b""
                return 200, path.read_bytes()
        return None

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
        git_file = self._git_file(raw_path) if failure is None and request.method == "GET" else None
        if git_file is not None:
            status, data = git_file
            content_type = "application/octet-stream"
        elif failure is not None:
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
            with self._lock:
                late = next((entry for entry in self._late
                             if entry[0].search(f"{request.method} {raw_path}")), None)
                if late is not None:
                    self._late.remove(late)
            if late is not None:
                time.sleep(late[1])
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
