"""What every job handler shares: the worker's services (configuration, state store, forges, git
mirrors) and the steps several handlers take (the repository's policy, a checkout with its
warehouse, the warehouse's writer lock, the sticky report comment)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bot.config import RepositoryConfig, ServerConfig
from bot.events import Repository
from bot.forges.base import Forge, RedactingForge
from bot.logs import Redactor, secrets_of
from bot.records.audit import AuditLog
from bot.records.comments import ReportComments
from bot.records.inbox import Inbox
from bot.records.runs import RunLog, RunStatus
from bot.worker.governance import Governance, Governed
from bot.worker.keys import namespace, run_label, warehouse_lock
from bot.worker.text import MARKER, fit, held
from runner.checkout import Mirrors, redact
from runner.engines import Engine, engine_class, open_engine
from runner.errors import SluiceError
from runner.naming import Layout
from runner.project.dbt import DbtOptions, is_dbt_project
from runner.project.loader import load_project
from runner.project.nodes import Project
from runner.state.locks import Lock, Locks
from runner.state.store import StateStore

log = logging.getLogger("sluice.worker")
WAREHOUSE_WAIT = 300  # seconds a job waits for a single-writer warehouse before it retries later
WAIT_NOTICE = 30.0  # seconds of waiting for the warehouse after which the thread is told


class Transient(Exception):
    """Worth retrying later: the queue's Retries middleware backs off and tries again."""


class Waiting(Exception):
    """The job waits for lock `lock`, which someone else holds (`message`: who, since when, how to
    release it): its event is parked, and sent again once the lock is free."""

    def __init__(self, lock: str, message: str):
        super().__init__(message)
        self.lock = lock
        self.message = message


@dataclass
class Services:
    """Everything a job needs, built once per worker process from the server configuration."""

    config: ServerConfig
    state: StateStore
    forges: dict[str, Forge]
    mirrors: Mirrors
    project_states: dict[str, StateStore] = field(default_factory=dict)
    record_job: Callable[[str, str, float], None] | None = None
    redact: Callable[[str], str] = redact

    @classmethod
    def build(cls, config: ServerConfig, state: StateStore | None = None,
              forges: dict[str, Forge] | None = None) -> Services:
        from bot.forges import make_forge  # the forge clients' imports are heavy; only workers pay

        if forges is None:
            forges = {name: make_forge(name, config) for name in config.forges}
        redactor = Redactor(secrets_of(config))
        forges = {name: RedactingForge(forge, redactor) for name, forge in forges.items()}
        return cls(config=config, state=state or StateStore(config.state_url), forges=forges,
                   mirrors=Mirrors(config.work_dir, allow_local=config.allow_local_clones),
                   redact=redactor)

    def project_state(self, repository: Repository) -> StateStore:
        """Each repository's environments and snapshots live in their own namespace, and its
        warehouse objects in its own (`layout`)."""
        key = namespace(repository)
        if key not in self.project_states:
            self.project_states[key] = StateStore(self.config.state_url, namespace=key,
                                                  layout=layout(self.config, repository))
        return self.project_states[key]


def layout(config: ServerConfig, repository: Repository) -> Layout:
    """Where a repository's objects live in the warehouse: its namespace (the configured one, or
    one from its name), and itself as the owner of its production schemas."""
    entry = config.repository(repository.forge, repository.full_name)
    if entry is None:  # not configured (its events are ignored); named as it comes
        entry = RepositoryConfig(repository.forge, repository.full_name)
    return Layout(entry.warehouse_namespace, entry.owner)


class JobContext:
    """The worker's records and the steps its handlers share; one per worker process."""

    def __init__(self, services: Services):
        self.s = services
        self.inbox = Inbox(services.state, services.config.installation)
        self.runs = RunLog(services.state, services.redact)
        self.locks = Locks(services.state)
        self.audit = AuditLog(services.state)
        self.comments = ReportComments(services.state)
        self.governance = Governance(services.config, services.mirrors, self.audit, self.runs)

    def forge(self, repository: Repository) -> Forge:
        return self.s.forges[repository.forge]

    def governed(self, repository: Repository) -> Governed:
        return self.governance.governed(self.clone_source(repository), self.production_branch(repository))

    def production_branch(self, repository: Repository) -> str:
        repo_config = self.s.config.repository(repository.forge, repository.full_name)
        return (repo_config.production_branch if repo_config and repo_config.production_branch
                else repository.default_branch)

    def clone_source(self, repository: Repository) -> tuple[str, str]:
        """The mirror's key and the URL to fetch from: the repository's `clone_url` in the server
        configuration, else the configured forge's address plus the repository's path — never
        the URL a webhook payload names."""
        repo_config = self.s.config.repository(repository.forge, repository.full_name)
        url = (repo_config.clone_url if repo_config and repo_config.clone_url
               else self.forge(repository).fetch_url(repository.full_name))
        return f"{repository.forge}:{repository.full_name}", url

    def load_only(self, repository: Repository, sha: str, run_id: int) -> None:
        """Check out `sha` and load its project (the loader's static checks) without opening a
        warehouse: all that untrusted code gets before someone approves its commit. A dbt
        project is not compiled: compiling runs its Jinja, which waits for the approval too."""
        key, url = self.clone_source(repository)
        self.runs.append_log(run_id, f"checking out {sha[:12]} (static checks only)")
        with self.s.mirrors.checkout(key, url, sha, label=run_label(run_id)) as tree:
            if is_dbt_project(tree):
                self.runs.append_log(run_id, "a dbt project: compiled and checked once its commit is trusted")
                return
            load_project(tree, cache_dir=self.s.config.work_dir / "cache", limits=self.s.config.limits,
                         sql_allowlist=self.governance.sql_allowlist())

    # -- the warehouse ----------------------------------------------------------------------------

    @contextmanager
    def workspace(self, repository: Repository, sha: str,
                  run_id: int) -> Iterator[tuple[Project, StateStore, Engine]]:
        """Check out `sha`, load the project, open its warehouse, holding the warehouse's lock
        when it has a single writer."""
        key, url = self.clone_source(repository)
        self.runs.append_log(run_id, f"checking out {sha[:12]}")
        with self.s.mirrors.checkout(key, url, sha, label=run_label(run_id)) as tree:
            project = load_project(tree, cache_dir=self.s.config.work_dir / "cache",
                                   limits=self.s.config.limits,
                                   sql_allowlist=self.governance.sql_allowlist(),
                                   dbt=self.dbt_options())
            warehouse = self.warehouse_url(repository, project)
            state = self.s.project_state(repository)
            with self.warehouse_lock(warehouse, run_id):
                engine = open_engine(warehouse, self.s.config.sandbox)  # runs the checkout's SQL
                try:
                    yield project, state, engine
                finally:
                    engine.close()

    def dbt_options(self) -> DbtOptions:
        """What a dbt project's compile may see: the allowlisted variables (read from this
        process's environment, the worker's, here at the edge) and the read-only connection."""
        config = self.s.config
        allowed = {name: os.environ[name] for name in config.dbt_env_names() if name in os.environ}
        return DbtOptions(env=allowed, warehouse_url=config.dbt_introspection_url or None)

    def warehouse_url(self, repository: Repository, project: Project) -> str:
        name = project.config.warehouse
        repo_config = self.s.config.repository(repository.forge, repository.full_name)
        allowed = repo_config.warehouses if repo_config else ("default",)
        if name not in allowed:
            raise SluiceError(f"this repository may not use warehouse connection {name!r} "
                              f"(allowed: {', '.join(allowed)})", file="sluice.yml")
        url = self.s.config.warehouses.get(name)
        if url is None:
            raise SluiceError(f"the server defines no warehouse connection {name!r}", file="sluice.yml")
        return url

    @contextmanager
    def warehouse_lock(self, url: str, run_id: int | None, who: str = "",
                       notice_after: float = WAIT_NOTICE) -> Iterator[None]:
        """The single writer's turn on a DuckDB warehouse (server warehouses need none). A run
        that has to wait says so on its page (who writes, since when), and, once it has waited
        `notice_after` seconds, once in its merge request's thread."""
        if not engine_class(url).single_writer:
            yield  # server warehouses take concurrent builds
            return
        name = warehouse_lock(url)
        who = who or f"run:{run_id}"
        run = self.runs.get(run_id) if run_id is not None else None
        reason = f"run #{run.id} ({run.kind} of {run.repository}{self._label(run.forge, run.number)})" \
            if run is not None else who
        waited: list[bool] = []

        def on_held(lock: Lock) -> None:
            waited.append(True)
            if run_id is not None:
                self.runs.wait(run_id, held(lock, "the warehouse's writer lock (one writer at a time)"),
                               status=RunStatus.RUNNING)

        def on_long_wait(lock: Lock) -> None:
            if run is not None and run.number and run.forge in self.s.forges:
                self.s.forges[run.forge].post_comment(
                    run.repository, run.number,
                    f"⏳ Run [#{run.id}]({self.s.config.run_url(run.id)}) waits: "
                    f"{held(lock, 'the warehouse (one writer at a time)')} It goes on by itself.")

        with self.locks.hold(name, who, self.s.config.job_lease, reason=reason, timeout=WAREHOUSE_WAIT,
                             release="it is released when that run's warehouse work ends",
                             on_held=on_held, on_long_wait=(notice_after, on_long_wait)) as lock:
            if lock is None:
                raise Transient(f"the warehouse is busy ({name}); retrying later")
            if waited and run_id is not None:
                self.runs.resume(run_id, "took the warehouse's writer lock")
            yield

    def _label(self, forge: str, number: int) -> str:
        found = self.s.forges.get(forge)
        return found.mr_label(number) if found is not None and number else ""

    @contextmanager
    def warehouse(self, repository: Repository, run_id: int | None, who: str = "") -> Iterator[Engine]:
        """The repository's warehouse, opened under its lock, for work without a checkout."""
        repo_config = self.s.config.repository(repository.forge, repository.full_name)
        url = self.s.config.warehouses[repo_config.warehouses[0] if repo_config else "default"]
        with self.warehouse_lock(url, run_id, who):
            # Sluice's own statements only (promotion, drops): no merge-request SQL runs here.
            engine = open_engine(url, dataclasses.replace(self.s.config.sandbox, untrusted=False))
            try:
                yield engine
            finally:
                engine.close()

    # -- the thread ---------------------------------------------------------------------------------

    def post_report(self, repository: Repository, number: int, run_id: int, sha: str, report: str,
                    summary: str | None) -> None:
        """The one sticky comment per MR, found again by its marker and edited in place; with a
        `summary`, the run joins the comment's run history."""
        forge = self.forge(repository)
        saved = self.comments.get(repository.forge, repository.full_name, number)
        history = saved.history if saved else ""
        if summary is not None:
            history += f"- run [#{run_id}]({self.s.config.run_url(run_id)}) at `{sha[:8]}`: {summary}\n"
        body = fit(report, history, forge.comment_limit, self.s.config.run_url(run_id))
        comment_id = saved.comment_id if saved else forge.find_comment(repository.full_name, number, MARKER)
        if comment_id is None:
            comment_id = forge.post_comment(repository.full_name, number, body)
        else:
            forge.edit_comment(repository.full_name, number, comment_id, body)
        self.comments.save(repository.forge, repository.full_name, number, comment_id, history, report)
