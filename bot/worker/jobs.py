"""What the worker does with each stored event: run the merge-request pipeline, answer slash
commands, promote on merge, clean up on close. Intake, command parsing, authorisation, execution
and rendering are separate steps; this module wires them.

Errors are sorted once, here: the user's own (bad SQL, failing tests, a plan error) are reported
in the thread and never retried; transient ones (forge 5xx, network, a lock held too long) raise
`Transient` so the queue retries with backoff.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bot.commands import USAGE, BadCommand, Command, parse_comment
from bot.config import ServerConfig
from bot.events import CommentEvent, Event, MergeRequestEvent, MRAction, Repository, from_json
from bot.forges.base import CommitState, Forge, ForgeError, MergeRequestInfo, RedactingForge, Role
from bot.logs import Redactor, log_context, secrets_of
from bot.records.audit import AuditLog
from bot.records.comments import ReportComments
from bot.records.inbox import Inbox
from bot.records.runs import RunLog, Superseded
from bot.report.markdown import render_markdown
from bot.worker.governance import Governance, Governed
from bot.worker.sweeper import event_lease
from policies import Finding, check_write_scope
from runner import environments
from runner.checkout import CheckoutError, Mirrors, redact
from runner.datatests import run_tests, select_tests
from runner.engines import Engine, engine_class, open_engine
from runner.errors import SluiceError
from runner.naming import PRODUCTION
from runner.pipeline import RunResult, execute, plan_environment, run_pipeline, written_schemas
from runner.project.loader import load_project
from runner.project.nodes import Project
from runner.review.summary import review
from runner.state.locks import Locks
from runner.state.store import StateStore

log = logging.getLogger("sluice.worker")
MARKER = "<!-- sluice-report -->"
HISTORY_ROOM = 4_000  # characters kept free in the comment for the run history
STATUS_CONTEXT = "sluice"


class Transient(Exception):
    """Worth retrying later: the queue's Retries middleware backs off and tries again."""


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
        from bot.forges import make_forge

        if forges is None:
            forges = {name: make_forge(name, config) for name in config.forges}
        redact = Redactor(secrets_of(config))
        forges = {name: RedactingForge(forge, redact) for name, forge in forges.items()}
        return cls(config=config, state=state or StateStore(config.state_url), forges=forges,
                   mirrors=Mirrors(config.work_dir, allow_local=config.allow_local_clones),
                   redact=redact)

    def project_state(self, repository: Repository) -> StateStore:
        """Each repository's environments and snapshots live in their own namespace."""
        key = namespace(repository)
        if key not in self.project_states:
            self.project_states[key] = StateStore(self.config.state_url, namespace=key)
        return self.project_states[key]


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def namespace(repository: Repository) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", f"{repository.forge}_{repository.full_name}".lower()).strip("_")
    return f"sluice_{slug}"[:60]


def mr_environment(number: int) -> str:
    return f"mr_{number}"


def holder(repository: Repository, number: int) -> str:
    return f"{repository.forge}:{repository.full_name}!{number}"


class Jobs:
    def __init__(self, services: Services):
        self.s = services
        self.inbox = Inbox(services.state)
        self.runs = RunLog(services.state, services.redact)
        self.locks = Locks(services.state)
        self.audit = AuditLog(services.state)
        self.comments = ReportComments(services.state)
        self.governance = Governance(services.config, services.mirrors, self.audit, self.runs)

    def governed(self, repository: Repository) -> Governed:
        return self.governance.governed(self.clone_source(repository), self.production_branch(repository))

    # -- entry point ------------------------------------------------------------------------------

    def process(self, event_id: int) -> None:
        """Handle stored event `event_id` once; raise Transient to be retried."""
        stored = self.inbox.start(event_id)
        if stored is None or stored.event is None:
            return
        event = from_json(stored.event)
        # A lease on the event: a redelivered copy does not run beside this one, and if this
        # process dies the lease runs out and the sweeper sends the event again.
        with self.locks.hold(event_lease(event_id), worker_identity(), self.s.config.job_lease,
                             note="working") as lease:
            if lease is None:
                log.info("event %s: another worker holds it", event_id)
                return
            with log_context(event=event_id, mr=f"{event.repository.full_name}!{event.number}"):
                self._process(event, event_id)

    def gave_up(self, message: dict[str, Any], retries: dict[str, Any]) -> None:
        """An event's retries ran out: say so in the thread, close its runs, mark it done."""
        event_id = int(message["args"][0])
        stored = self.inbox.get(event_id)
        if stored is None or stored.event is None or stored.done_at is not None:
            return
        event = from_json(stored.event)
        lines = str(message.get("options", {}).get("traceback") or "").strip().splitlines()
        reason = self.s.redact(lines[-1] if lines else "an unknown error")
        for run in self.runs.for_event(event_id):
            if run.status in ("queued", "running"):
                self.runs.finish(run.id, "error", f"gave up: {reason}")
        attempts = int(retries.get("retries", 0)) + 1
        self.s.forges[event.repository.forge].post_comment(
            event.repository.full_name, event.number,
            f"❌ Sluice could not finish this after {attempts} attempts: `{_quote(reason)}`. "
            "Nothing was promoted or changed by the failed attempts; comment `/plan` to try again.")
        self.inbox.finish(event_id)
        log.error("event %s: gave up after %s attempts: %s", event_id, attempts, reason)

    def _process(self, event: Event, event_id: int) -> None:
        started = time.perf_counter()
        kind = "comment" if isinstance(event, CommentEvent) else event.action.value
        outcome = "ok"
        try:
            if isinstance(event, CommentEvent):
                self.on_comment(event, event_id)
            elif event.action in (MRAction.OPENED, MRAction.REOPENED, MRAction.NEW_COMMITS):
                self.pipeline(event.repository, event.number, event_id)
            elif event.action is MRAction.MERGED:
                self.on_merged(event, event_id)
            elif event.action is MRAction.CLOSED:
                self.on_closed(event)
            else:
                log.info("event %s: %s needs no work", event_id, event.action.value)
        except (ForgeError, CheckoutError) as exc:
            if getattr(exc, "transient", False):
                outcome = "retry"
                raise Transient(redact(str(exc))) from exc
            outcome = "error"
            log.warning("event %s failed: %s", event_id, redact(str(exc)))
        except Transient:
            outcome = "retry"
            raise
        finally:
            if self.s.record_job:
                self.s.record_job(kind, outcome, time.perf_counter() - started)
        self.inbox.finish(event_id)

    # -- the merge-request pipeline -------------------------------------------------------------

    def pipeline(self, repository: Repository, number: int, event_id: int | None) -> int | None:
        forge = self.s.forges[repository.forge]
        info = forge.merge_request(repository.full_name, number)  # events arrive late and out of order
        if info.state != "open":
            log.info("%s!%s is %s: nothing to build", repository.full_name, number, info.state)
            return None
        env = mr_environment(number)
        run_id = self.runs.create(repository.forge, repository.full_name, number, "pipeline",
                                  sha=info.head_sha, environment=env, event_id=event_id)
        with log_context(run=run_id, sha=info.head_sha[:12]):
            log.info("planning %s at %s", env, info.head_sha[:12])
            return self._pipeline(repository, number, info, env, run_id)

    def _pipeline(self, repository: Repository, number: int, info: MergeRequestInfo, env: str,
                  run_id: int) -> int | None:
        forge = self.s.forges[repository.forge]
        self.runs.start(run_id)
        url = self.s.config.run_url(run_id)
        forge.set_status(repository.full_name, info.head_sha, CommitState.PENDING,
                         "Sluice is planning this change", url, STATUS_CONTEXT)
        try:
            governed = self.governed(repository)
            facts = self.governance.facts(repository, number, info,
                                          forge.role(repository.full_name, info.author), forge)
            untrusted = self.governance.trust(governed, facts)
            if untrusted is not None:  # nothing from this commit runs until someone approves it
                self.wait_for_approval(repository, number, run_id, info.head_sha, untrusted, url)
                return run_id
            with self.workspace(repository, info.head_sha, run_id) as (project, state, engine):
                self.runs.check_current(run_id)
                clock = time.perf_counter()
                plan = plan_environment(project, state, env, against=PRODUCTION)
                outside = check_write_scope(governed.policy, written_schemas(plan), env)
                if outside:  # cannot happen by construction; refuse rather than trust that
                    raise SluiceError("; ".join(f.message for f in outside))
                result = execute(plan, project, state, engine, plan_seconds=time.perf_counter() - clock)
                if result.build.transient:  # not the change's fault: try the whole run again later
                    names = ", ".join(sorted(result.build.transient))
                    raise Transient(f"the warehouse connection was lost while building {names}: "
                                    f"{next(iter(result.build.failed.values()))}")
                self.runs.append_log(run_id, _summary(result))
                self.runs.check_current(run_id)
                the_review = review(result.plan, project, state, engine) if result.build.ok else None
                rules = self.governance.model_rules(governed, project, facts)
            self.runs.check_current(run_id)  # never post over a newer run's result
            notes = self.earlier_attempts(run_id)
            full = render_markdown(result, run_url=url, review=the_review, policy=rules, notes=notes)
            report = render_markdown(result, run_url=url, review=the_review, policy=rules, notes=notes,
                                     limit=forge.comment_limit - HISTORY_ROOM)
            status = "success" if result.ok and not result.held_back and rules.ok else "failed"
            summary = _summary(result) + ("" if rules.ok else "; blocked by policy")
            self.post_report(repository, number, run_id, info.head_sha, report, summary)
            forge.set_status(repository.full_name, info.head_sha,
                             CommitState.SUCCESS if status == "success" else CommitState.FAILURE,
                             summary[:140], url, STATUS_CONTEXT)
            self.runs.set_policy(run_id, {
                "policy": governed.policy.describe(), "evaluation": rules.describe(),
                "tests_passed": result.ok and not result.held_back,
                "breaking": any(n.category.startswith("breaking") for n in result.plan.nodes),
                "blocking": list(rules.blocking_labels)})
            self.runs.finish(run_id, status, summary, full)
        except Superseded as exc:
            self.runs.append_log(run_id, str(exc))
            self.runs.finish(run_id, "superseded", "superseded by a newer commit")
        except SluiceError as exc:  # the user's own error: say it in the thread, do not retry
            if isinstance(exc, CheckoutError) and exc.transient:
                self.runs.finish(run_id, "error", "fetch failed; will retry")
                raise
            message = redact(str(exc))
            report = (f"{MARKER}\n### ❌ Sluice · `{env}` · cannot plan this change\n\n"
                      f"```\n{message}\n```\n\n[run #{run_id}]({url})\n")
            self.runs.append_log(run_id, message)
            self.post_report(repository, number, run_id, info.head_sha, report, "error: " + message[:80])
            forge.set_status(repository.full_name, info.head_sha, CommitState.FAILURE, message[:140],
                             url, STATUS_CONTEXT)
            self.runs.finish(run_id, "failed", message, report)
        except Exception as exc:
            self.runs.append_log(run_id, f"{type(exc).__name__}: {redact(str(exc))}")
            self.runs.finish(run_id, "error", f"{redact(str(exc)) or type(exc).__name__}; will retry")
            raise
        return run_id

    def earlier_attempts(self, run_id: int) -> list[str]:
        """What stopped the earlier attempts at this run's event (the report says it retried)."""
        run = self.runs.get(run_id)
        if run is None or run.event_id is None:
            return []
        failed = [r for r in self.runs.for_event(run.event_id) if r.id != run_id and r.status == "error"]
        return [f"Attempt {i + 2}: attempt {i + 1} stopped — {_quote(r.summary)}"
                for i, r in enumerate(failed)]

    def wait_for_approval(self, repository: Repository, number: int, run_id: int, sha: str,
                          finding: Finding, url: str) -> None:
        forge = self.s.forges[repository.forge]
        report = (f"{MARKER}\n### ⏸ Sluice · `{mr_environment(number)}` · waiting for approval\n\n"
                  f"{_quote(finding.message)}.\n\n**To build it:** {_quote(finding.fix)}\n")
        self.post_report(repository, number, run_id, sha, report, "waiting for /approve")
        forge.set_status(repository.full_name, sha, CommitState.PENDING,
                         "waiting for a maintainer's /approve", url, STATUS_CONTEXT)
        self.runs.finish(run_id, "failed", "waiting for /approve", report)

    @contextmanager
    def workspace(self, repository: Repository, sha: str,
                  run_id: int) -> Iterator[tuple[Project, StateStore, Engine]]:
        """Check out `sha`, load the project, open its warehouse, holding the warehouse's lock
        when it is a DuckDB file (one writer process at a time)."""
        key, url = self.clone_source(repository)
        self.runs.append_log(run_id, f"checking out {sha[:12]}")
        with self.s.mirrors.checkout(key, url, sha) as tree:
            project = load_project(tree, cache_dir=self.s.config.work_dir / "cache")
            warehouse = self.warehouse_url(repository, project)
            state = self.s.project_state(repository)
            with self.warehouse_lock(warehouse, f"run:{run_id}"):
                engine = open_engine(warehouse)
                try:
                    yield project, state, engine
                finally:
                    engine.close()

    def clone_source(self, repository: Repository) -> tuple[str, str]:
        """The mirror's key and the URL to fetch from (the configured one, else the forge's)."""
        forge = self.s.forges[repository.forge]
        repo_config = self.s.config.repository(repository.forge, repository.full_name)
        url = (repo_config.clone_url if repo_config and repo_config.clone_url
               else forge.clone_url(repository.clone_url))
        return f"{repository.forge}:{repository.full_name}", url

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
    def warehouse_lock(self, url: str, who: str) -> Iterator[None]:
        if not engine_class(url).single_writer:
            yield  # server warehouses take concurrent builds
            return
        name = f"warehouse:{url}"
        with self.locks.hold(name, who, self.s.config.job_lease, note="DuckDB has one writer",
                             timeout=300) as lock:
            if lock is None:
                raise Transient(f"the warehouse is busy ({name}); retrying later")
            yield

    def post_report(self, repository: Repository, number: int, run_id: int, sha: str, report: str,
                    summary: str) -> None:
        """The one sticky comment per MR, found again by its marker and edited in place."""
        forge = self.s.forges[repository.forge]
        saved = self.comments.get(repository.forge, repository.full_name, number)
        history = (saved[1] if saved else "")
        history += f"- run [#{run_id}]({self.s.config.run_url(run_id)}) at `{sha[:8]}`: {summary}\n"
        body = _fit(report, history, forge.comment_limit, self.s.config.run_url(run_id))
        comment_id = saved[0] if saved else forge.find_comment(repository.full_name, number, MARKER)
        if comment_id is None:
            comment_id = forge.post_comment(repository.full_name, number, body)
        else:
            forge.edit_comment(repository.full_name, number, comment_id, body)
        self.comments.save(repository.forge, repository.full_name, number, comment_id, history)

    # -- merge and close --------------------------------------------------------------------------

    def on_merged(self, event: MergeRequestEvent, event_id: int) -> None:
        """Promote what the MR built; build only what the merged commit needs beyond it."""
        repository, number = event.repository, event.number
        forge = self.s.forges[repository.forge]
        info = forge.merge_request(repository.full_name, number)
        production_branch = self.production_branch(repository)
        if info.target_branch != production_branch:
            log.info("%s!%s merged into %s, not %s: production unchanged", repository.full_name,
                     number, info.target_branch, production_branch)
            self.on_closed(event)
            return
        sha = info.merge_sha or event.merge_sha or info.head_sha
        run_id = self.runs.create(repository.forge, repository.full_name, number, "promote",
                                  sha=sha, environment=PRODUCTION, event_id=event_id)
        self.runs.start(run_id)
        try:
            governed = self.governed(repository)
        except SluiceError as exc:
            forge.post_comment(repository.full_name, number,
                               f"❌ **Not promoted**: {_quote(str(exc))}. Production is unchanged.")
            self.runs.finish(run_id, "failed", str(exc))
            return
        facts = self.governance.facts(repository, number, info,
                                      forge.role(repository.full_name, info.author), forge)
        gate = self.governance.promotion(governed, facts, PRODUCTION)
        if not gate.ok:
            text = ("❌ **Not promoted**: the policy stops it. Production is unchanged.\n\n"
                    + _findings(gate.blocking))
            forge.post_comment(repository.full_name, number, text)
            self.audit.record("sluice", "promotion_refused", forge=repository.forge,
                              repository=repository.full_name, number=number, sha=sha,
                              environment=PRODUCTION, rules=list(gate.blocking_labels))
            self.runs.finish(run_id, "failed", "promotion refused by policy", text)
            return
        prod_lock = f"env:{repository.forge}:{repository.full_name}:{PRODUCTION}"
        who = holder(repository, number)
        if self.locks.wait(prod_lock, who, note="promotion on merge", ttl=3600, timeout=300) is None:
            self.runs.finish(run_id, "error", "production is locked; will retry")
            raise Transient("production is locked by another promotion")
        try:
            # Under the lock, production follows its branch's head, not this MR's merge commit:
            # when two merges race, the later promotion holds both, and neither undoes the other.
            head = self.s.mirrors.branch_head(*self.clone_source(repository), production_branch)
            sha = head or sha
            with self.workspace(repository, sha, run_id) as (project, state, engine):
                result = run_pipeline(project, state, engine, PRODUCTION)
                if result.ok and not result.held_back:
                    dropped = self._drop_quietly(engine, state, mr_environment(number))
                else:
                    dropped = False
            if result.ok and not result.held_back:
                moved = len(result.repoint.changed) if result.repoint else 0
                text = (f"✅ **Promoted to production** at `{sha[:8]}`: {moved} views moved, "
                        f"{result.built} rebuilt, {result.reused} reused.")
                self.audit.record(info.author, "promote", forge=repository.forge,
                                  repository=repository.full_name, number=number, sha=sha,
                                  environment=PRODUCTION, moved=moved, rebuilt=result.built,
                                  overrides=[f"{o.rule} by {o.by}" for o in gate.applied])
                if dropped:
                    text += f" Environment `{mr_environment(number)}` dropped."
                status = "success"
            else:
                reason = result.held_back or "a build or test failed"
                text = (f"❌ **Not promoted**: {reason}. Production is unchanged.\n\n"
                        + render_markdown(result, run_url=self.s.config.run_url(run_id)))
                status = "failed"
            forge.post_comment(repository.full_name, number, text)
            self.runs.finish(run_id, status, text.splitlines()[0], render_markdown(result))
        except SluiceError as exc:
            message = redact(str(exc))
            forge.post_comment(repository.full_name, number,
                               f"❌ **Not promoted**: {message}. Production is unchanged.")
            self.runs.finish(run_id, "failed", message)
        finally:
            self.locks.release(prod_lock, who)
            self.locks.release_all(who)

    def production_branch(self, repository: Repository) -> str:
        repo_config = self.s.config.repository(repository.forge, repository.full_name)
        return (repo_config.production_branch if repo_config and repo_config.production_branch
                else repository.default_branch)

    def on_closed(self, event: MergeRequestEvent) -> None:
        repository, number = event.repository, event.number
        who = holder(repository, number)
        released = self.locks.release_all(who)
        state = self.s.project_state(repository)
        env = mr_environment(number)
        if state.environment(env) is None:
            return
        with self.warehouse(repository, f"close:{who}") as engine:
            self._drop_quietly(engine, state, env)
        log.info("closed %s: dropped %s, released %s", who, env, released)

    @contextmanager
    def warehouse(self, repository: Repository, who: str) -> Iterator[Engine]:
        """The repository's warehouse, opened under its lock, for work without a checkout."""
        repo_config = self.s.config.repository(repository.forge, repository.full_name)
        url = self.s.config.warehouses[repo_config.warehouses[0] if repo_config else "default"]
        with self.warehouse_lock(url, who):
            engine = open_engine(url)
            try:
                yield engine
            finally:
                engine.close()

    @staticmethod
    def _drop_quietly(engine: Engine, state: StateStore, env: str) -> bool:
        if state.environment(env) is None:
            return False
        environments.drop(engine, state, env)
        return True

    # -- slash commands -----------------------------------------------------------------------------

    def on_comment(self, event: CommentEvent, event_id: int) -> None:
        if event.author_is_bot or MARKER in event.body:
            return
        commands = parse_comment(event.body)
        if not commands:
            return
        forge = self.s.forges[event.repository.forge]
        forge.react(event.repository.full_name, event.number, event.comment_id, "eyes")
        role = forge.role(event.repository.full_name, event.author)
        replies = [self.answer(event, command, role, event_id) for command in commands]
        answer = "\n\n---\n\n".join(r for r in replies if r)
        if answer:
            forge.post_comment(event.repository.full_name, event.number, answer)

    def answer(self, event: CommentEvent, command: Command | BadCommand, role: Role,
               event_id: int) -> str:
        """A command's reply; the user's own errors (no such environment, nothing to roll back, a
        bad predicate) are the reply, not a failed job."""
        try:
            return self.run_command(event, command, role, event_id)
        except SluiceError as exc:
            if isinstance(exc, CheckoutError) and exc.transient:
                raise
            return f"`{_quote(command.line)}`: {_quote(redact(str(exc)))}"

    def run_command(self, event: CommentEvent, command: Command | BadCommand, role: Role,
                    event_id: int) -> str:
        if isinstance(command, BadCommand):
            return f"`{_quote(command.line)}`: {command.reason}.\n\n{USAGE}"
        repository, number = event.repository, event.number
        governed = self.governed(repository)
        env = command.args[0] if command.name in ("deploy", "unlock", "rollback") else None
        own = True
        if command.name == "unlock" and env is not None:
            current = self.locks.held_by(self._env_lock(repository, env))
            own = current is None or current.holder == holder(repository, number)
        rule = command.args[0] if command.name == "approve" and command.args else None
        refusal = self.governance.refusal(governed, command.name, env, role, rule=rule, own=own)
        if refusal is not None:
            return f"`{_quote(command.line)}`: refused — {refusal.message}."
        if command.name == "help":
            return USAGE
        if command.name == "plan":
            run_id = self.pipeline(repository, number, event_id)
            return f"`/plan`: done, see the report above (run #{run_id})." if run_id else \
                "`/plan`: this merge request is not open."
        if command.name == "deploy":
            return self.deploy(event, command.args[0], governed)
        if command.name == "unlock":
            return self.unlock(event, command.args[0])
        if command.name == "rollback":
            return self.rollback(event, command.args[0])
        if command.name == "destroy":
            state = self.s.project_state(repository)
            env = mr_environment(number)
            if state.environment(env) is None:
                return f"`/destroy`: there is no environment `{env}`."
            with self.warehouse(repository, f"destroy:{holder(repository, number)}") as engine:
                environments.drop(engine, state, env)
            return f"`/destroy`: environment `{env}` dropped; its tables go when the janitor's TTL passes."
        if command.name == "test":
            return self.test(event)
        if command.name in ("diff", "lineage"):
            return self.inspect(event, command)
        if command.name == "approve":
            return self.approve(event, rule, role, governed, event_id)
        return USAGE

    def approve(self, event: CommentEvent, rule: str | None, role: Role, governed: Governed,
                event_id: int) -> str:
        """`/approve` (a review; from a maintainer it lets an untrusted commit build) or
        `/approve <rule>` (an override). Both are recorded in the audit log at the head commit."""
        repository, number = event.repository, event.number
        forge = self.s.forges[repository.forge]
        info = forge.merge_request(repository.full_name, number)
        if info.author.casefold() == event.author.casefold() and rule is None:
            return "`/approve`: authors cannot approve their own merge request."
        self.audit.record(event.author, "override" if rule else "approve", forge=repository.forge,
                          repository=repository.full_name, number=number, sha=info.head_sha,
                          role=int(role), rule=rule)
        what = f"override of `{rule}`" if rule else "approval"
        answer = (f"`/approve`: {what} by @{event.author} at `{info.head_sha[:8]}` recorded in the "
                  "audit log.")
        waiting = [r for r in self.runs.for_merge_request(repository.forge, repository.full_name, number)
                   if r.kind == "pipeline" and r.sha == info.head_sha]
        if waiting and waiting[-1].summary == "waiting for /approve":
            facts = self.governance.facts(repository, number, info,
                                          forge.role(repository.full_name, info.author), forge)
            if self.governance.trust(governed, facts) is None:
                self.pipeline(repository, number, event_id)
                answer += " The commit is trusted now: planned and built, see the report above."
        return answer

    def _env_lock(self, repository: Repository, env: str) -> str:
        return f"env:{repository.forge}:{repository.full_name}:{env}"

    def deploy(self, event: CommentEvent, env: str, governed: Governed) -> str:
        repository, number = event.repository, event.number
        source = mr_environment(number)
        state = self.s.project_state(repository)
        if state.environment(source) is None:
            return f"`/deploy {env}`: this merge request has no environment yet; comment `/plan` first."
        if governed.protected(env):
            forge = self.s.forges[repository.forge]
            info = forge.merge_request(repository.full_name, number)
            facts = self.governance.facts(repository, number, info,
                                          forge.role(repository.full_name, info.author), forge)
            gate = self.governance.promotion(governed, facts, env)
            if not gate.ok:
                return f"`/deploy {env}`: refused by the policy.\n\n" + _findings(gate.blocking)
        lock_name = self._env_lock(repository, env)
        who = holder(repository, number)
        lock = self.locks.acquire(lock_name, who, note=f"/deploy by @{event.author}")
        if lock is None:
            current = self.locks.held_by(lock_name)
            if current is not None:
                since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(current.since))
                other = current.holder.rsplit("!", 1)[-1]
                return (f"`/deploy {env}`: `{env}` is held by !{other} since {since}. Ask there for "
                        f"`/unlock {env}`, or a maintainer can `/unlock {env}` here.")
            return f"`/deploy {env}`: `{env}` is busy; try again."
        with self.warehouse(repository, f"deploy:{who}") as engine:
            result = environments.promote(engine, state, source, env)
        self.audit.record(event.author, "deploy", forge=repository.forge, repository=repository.full_name,
                          number=number, environment=env, source=source, moved=len(result.changed))
        return (f"`/deploy {env}`: `{env}` now points at this merge request's snapshots "
                f"({len(result.changed)} views moved, 0 rebuilt). `/unlock {env}` releases it.")

    def rollback(self, event: CommentEvent, env: str) -> str:
        """Instant: the previous snapshots are still there until the janitor's TTL."""
        repository, number = event.repository, event.number
        state = self.s.project_state(repository)
        before = state.environment(env)
        with self.warehouse(repository, f"rollback:{holder(repository, number)}") as engine:
            result = environments.rollback(engine, state, env)
        after = state.environment(env)
        self.audit.record(event.author, "rollback", forge=repository.forge, repository=repository.full_name,
                          number=number, environment=env,
                          before=dict(before.models) if before else {},
                          after=dict(after.models) if after else {})
        return (f"`/rollback {env}`: `{env}` points at its previous snapshots again "
                f"({len(result.changed)} views moved back, 0 rebuilt).")

    def unlock(self, event: CommentEvent, env: str) -> str:
        """Who may release whose lock is the policy's call (checked before this runs)."""
        repository, number = event.repository, event.number
        lock_name = self._env_lock(repository, env)
        current = self.locks.held_by(lock_name)
        if current is None:
            return f"`/unlock {env}`: `{env}` is not locked."
        self.locks.release(lock_name)
        self.audit.record(event.author, "unlock", forge=repository.forge, repository=repository.full_name,
                          number=number, environment=env, held_by=current.holder)
        return f"`/unlock {env}`: released."

    def test(self, event: CommentEvent) -> str:
        repository, number = event.repository, event.number
        env = mr_environment(number)
        state = self.s.project_state(repository)
        if state.environment(env) is None:
            return f"`/test`: there is no environment `{env}` yet; comment `/plan` first."
        info = self.s.forges[repository.forge].merge_request(repository.full_name, number)
        run_id = self.runs.create(repository.forge, repository.full_name, number, "command",
                                  sha=info.head_sha, environment=env)
        with self.workspace(repository, info.head_sha, run_id) as (project, st, engine):
            rows = environments.describe(st, env)
            physical = {name: (s.physical_schema, s.physical_table) for name, s in rows}
            tests = [t for t in select_tests(project, None)
                     if all(d in physical or d in project.sources for d in (t.model, *t.depends_on) if d)]
            result = run_tests(tests, project, engine, physical)
        lines = [f"`/test`: {len(result.passed)} passed, {len(result.failed)} failed in `{env}`."]
        for failed in result.failed:
            what = failed.error or f"{failed.failures} failing rows"
            lines.append(f"- ❌ {failed.test.name}: {_quote(what)}")
        self.runs.finish(run_id, "success" if result.ok else "failed", lines[0])
        return "\n".join(lines)

    def inspect(self, event: CommentEvent, command: Command) -> str:
        """`/diff` and `/lineage` from the merge request's head: the plan's view of one model."""
        repository, number = event.repository, event.number
        info = self.s.forges[repository.forge].merge_request(repository.full_name, number)
        run_id = self.runs.create(repository.forge, repository.full_name, number, "command",
                                  sha=info.head_sha, environment=mr_environment(number))
        from bot.report.answers import describe_diff, describe_lineage

        try:
            with self.workspace(repository, info.head_sha, run_id) as (project, state, engine):
                if command.name == "lineage":
                    text = describe_lineage(project, command.args[0].lower())
                else:  # what the merge request changes: its head against production
                    text = describe_diff(project, state, engine, command, mr_environment(number))
        except SluiceError as exc:
            if isinstance(exc, CheckoutError) and exc.transient:
                raise
            self.runs.finish(run_id, "failed", str(exc))
            return f"`{_quote(command.line)}`: {_quote(str(exc))}"
        self.runs.finish(run_id, "success", command.line)
        return text


def _findings(findings: tuple[Finding, ...]) -> str:
    return "\n".join(f"- **{f.rule}** ({f.subject}): {_quote(f.message)}. Fix: {_quote(f.fix)}"
                     + (f" Override: `/approve {f.rule}` by {', '.join(_role_names(f.override_roles))}."
                        if f.override_roles else "")
                     for f in findings)


def _role_names(roles: tuple[int, ...]) -> list[str]:
    return [Role(r).name.lower() if r in Role._value2member_map_ else str(r) for r in roles]


def _summary(result: RunResult) -> str:
    if not result.build.ok:
        return f"build failed ({len(result.build.failed)} models)"
    verdict = "ready" if result.tests.ok else "tests failing"
    return (f"{verdict}: {result.built} built, {result.reused} reused, tests "
            f"{len(result.tests.passed)} passed / {len(result.tests.failed)} failed")


def _quote(text: str) -> str:
    return text.replace("`", "'").replace("\n", " ")[:200]


def _fit(report: str, history: str, limit: int, run_url: str) -> str:
    """The comment: report plus run history, shortened to the forge's limit with a link."""
    tail = f"\n<details><summary>Runs</summary>\n\n{history}\n</details>\n"
    body = report + tail
    if len(body) <= limit:
        return body
    note = f"\n\n… the report was shortened; [read all of it]({run_url}).\n"
    keep = limit - len(tail) - len(note)
    if keep < 200:
        return (report[: limit - len(note)] + note)[:limit]
    cut = report[:keep]
    cut = cut[: cut.rfind("\n")] if "\n" in cut else cut
    if cut.count("<details>") > cut.count("</details>"):
        cut += "\n</details>"
    return cut + note + tail


