"""The bot end to end, as the e2e tests drive it: a fake forge with one repository and its users,
the web app and a real worker on Redis, and the changes the tests push."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.config import RepositoryConfig, ServerConfig
from bot.records.inbox import Inbox
from bot.records.runs import Run
from bot.web.app import create_app
from bot.worker.process import WorkerProcess
from bot.worker.text import MARKER
from runner.state.store import StateStore
from tests.support.fakeforge import FakeGitHub, FakeGitLab
from tests.support.repos import Origin, git
from tests.support.services import redis_url

ORDERS = {"models/marts/orders.sql": ("p.total_amount as amount",
                                      "p.total_amount - p.coupon_amount as amount")}
CUSTOMERS = {"models/marts/customers.sql": (
    "    c.email,\n", "    c.email,\n    split_part(c.email, '@', 2) as email_domain,\n")}
SEGMENTS = {"models/marts/customer_segments.sql": ("then 'loyal'", "then 'vip'"),
            "models/schema.yml": ("values: [loyal, regular", "values: [vip, loyal, regular")}



@dataclass
class Forge:
    """One forge's fake plus how to make its webhooks, so each test runs on GitLab and GitHub."""

    name: str
    fake: FakeGitLab | FakeGitHub
    repo: str

    def open(self, number: int, sha: str, branch: str, author: str = "alice") -> tuple[dict[str, str], bytes]:
        self.fake.add_merge_request(self.repo, number, head_sha=sha, source_branch=branch, author=author)
        return self.hook(number, "opened")

    def hook(self, number: int, action: str, **kwargs: str) -> tuple[dict[str, str], bytes]:
        if isinstance(self.fake, FakeGitLab):
            gitlab_action = {"opened": "open", "synchronize": "update", "closed": "close"}.get(action, action)
            if action == "closed" and self.fake.merge_request(self.repo, number).state == "merged":
                gitlab_action = "merge"
            return self.fake.merge_request_hook(self.repo, number, gitlab_action, **kwargs)
        return self.fake.pull_request_hook(self.repo, number, action, **kwargs)

    def push(self, number: int, old: str, new: str) -> tuple[dict[str, str], bytes]:
        self.fake.push(self.repo, number, new)
        if isinstance(self.fake, FakeGitLab):
            return self.fake.merge_request_hook(self.repo, number, "update", oldrev=old)
        return self.fake.pull_request_hook(self.repo, number, "synchronize", before=old)

    def push_branch(self, branch: str, before: str, after: str,
                    **kwargs: str) -> tuple[dict[str, str], bytes]:
        """A push to a branch outside any merge request (e.g. the production branch)."""
        return self.fake.push_hook(self.repo, branch, before, after, **kwargs)

    def approve(self, number: int, user: str) -> tuple[dict[str, str], bytes]:
        """`user` approves on the forge itself (GitLab's approval, GitHub's approving review)."""
        self.fake.approve(self.repo, number, user)
        if isinstance(self.fake, FakeGitLab):
            return self.fake.merge_request_hook(self.repo, number, "approval", actor=user)
        return self.fake.review_hook(self.repo, number, user, "approved")

    def comment(self, number: int, body: str, author: str = "alice") -> tuple[dict[str, str], bytes]:
        comment = self.fake.add_comment(self.repo, number, body, author=author)
        if isinstance(self.fake, FakeGitLab):
            return self.fake.note_hook(self.repo, number, comment.id)
        return self.fake.issue_comment_hook(self.repo, number, comment.id)

    def comments(self, number: int) -> list[str]:
        return [c.body for c in self.fake.comments(self.repo, number)]

    def reports(self, number: int) -> list[str]:
        return [body for body in self.comments(number) if MARKER in body]

    def last_status(self, sha: str, context: str = "sluice") -> str:
        """The commit's latest status of `context` (`sluice`, `sluice/promotion`, …)."""
        statuses = [s for s in self.fake.statuses(self.repo, sha)
                    if (s.get("context") or s.get("name")) == context]
        assert statuses, f"no {context} status for {sha}"
        state = str(statuses[-1].get("state"))
        return {"failed": "failure"}.get(state, state)  # GitLab's word for GitHub's "failure"

    def status_description(self, sha: str, context: str) -> str:
        statuses = [s for s in self.fake.statuses(self.repo, sha)
                    if (s.get("context") or s.get("name")) == context]
        assert statuses, f"no {context} status for {sha}"
        return str(statuses[-1].get("description"))



class Bot:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.worker = WorkerProcess(config, threads=2)
        self.app = create_app(config, state=self.worker.services.state, dispatcher=self.worker.dispatcher)
        self.client = self.app.test_client()
        self.inbox = Inbox(self.worker.services.state)

    def deliver(self, delivery: tuple[dict[str, str], bytes], path: str) -> int:
        headers, body = delivery
        return self.client.post(path, data=body, headers=headers).status_code

    def settle(self, timeout: float = 60.0, parked: int = 0) -> None:
        """Wait until every stored event is done, but `parked` ones waiting for a lock."""
        deadline = time.monotonic() + timeout
        while self.inbox.pending_count() != parked or len(self.inbox.waiting()) != parked:
            assert time.monotonic() < deadline, "events still pending"
            time.sleep(0.05)

    def project_state(self, forge: Forge) -> StateStore:
        from bot.events import Repository

        return self.worker.services.project_state(Repository(forge.name, forge.repo, ""))



def server_config(tmp_path: Path, forge: Forge, origin: Origin,
                  broker_url: str | None = None) -> ServerConfig:
    forge_config = forge.fake.config()
    return ServerConfig(
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        broker_url=broker_url or redis_url("e2e"),
        public_url="http://sluice.test", work_dir=tmp_path / "work",
        forges={forge.name: forge_config},
        warehouses={"default": f"duckdb:///{tmp_path / 'warehouse.duckdb'}"},
        repositories=(RepositoryConfig(forge.name, forge.repo, ("default",), clone_url=str(origin.bare)),),
        allow_local_clones=True, sweep_after=0.2)



def build_production(bot: Bot, forge: Forge, origin: Origin) -> None:
    """What an operator does once: build production from the main branch."""
    from bot.events import Repository
    from runner.pipeline import run_pipeline

    repository = Repository(forge.name, forge.repo, str(origin.bare))
    jobs = bot.worker.jobs
    run_id = jobs.runs.create(forge.name, forge.repo, 0, "bootstrap")
    main = git(origin.work, "rev-parse", "main")
    with jobs.workspace(repository, main, run_id) as (project, state, engine):
        assert run_pipeline(project, state, engine, "prod").ok


def path(forge: Forge) -> str:
    return f"/webhooks/{forge.name}"


def run_page(bot: Bot, run_id: int) -> str:
    """The run's page as a browser gets it, following the bot's link (with the run's token)."""
    response = bot.client.get(bot.config.run_path(run_id))
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def runs_of(bot: Bot, forge: Forge, number: int, kind: str | None = None) -> list[Run]:
    runs = bot.worker.jobs.runs.for_merge_request(forge.name, forge.repo, number)
    return [r for r in runs if kind is None or r.kind == kind]


def wait_until(check: Callable[[], object], timeout: float = 60.0, what: str = "the condition") -> None:
    """Poll the real system until `check()` holds (a worker's progress has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def warehouse_tables(tmp_path: Path, bot: Bot) -> set[str]:
    from runner.engines.duckdb import DuckDBEngine

    with bot.worker.jobs.warehouse_lock(bot.config.warehouses["default"], "test"):
        engine = DuckDBEngine(tmp_path / "warehouse.duckdb")
        try:
            return {f"{o.schema}.{o.name}" for o in engine.objects()}
        finally:
            engine.close()


