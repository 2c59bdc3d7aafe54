"""The fake GitHub: the REST API as far as Sluice uses it (token or App auth), and signed webhook
builders."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.forges.base import Role
from bot.forges.github import GitHubConfig
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
    """GitHub's REST API, as far as Sluice uses it (see the module docstring).
    (One method per endpoint Sluice calls, so the class is as long as that list.)
    """

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
        self.route("GET", repo)(self._get_repo)
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

    def push_hook(self, repo: str, branch: str, before: str, after: str, pusher: str = "alice",
                  secret: str | None = None) -> tuple[dict[str, str], bytes]:
        """A `push` delivery: `branch` moved from `before` to `after`."""
        data = fixture("github_webhooks/github_push.json")
        data.update(ref=f"refs/heads/{branch}", before=before, after=after, created=False,
                    deleted=False, forced=False, repository=self._repo_json(repo),
                    pusher={"name": pusher, "email": f"{pusher}@example.com"},
                    sender=self._user_json(pusher),
                    compare=f"{self.url}/{repo}/compare/{before[:12]}...{after[:12]}")
        data["head_commit"].update(id=after, tree_id=after)
        data["commits"] = [dict(data["head_commit"])]
        return self._signed("push", data, secret)

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

    def _get_repo(self, match: re.Match[str], request: Request) -> tuple[int, Any, dict[str, str]]:
        return 200, self._repo_json(self._full_name(match)), {}

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


