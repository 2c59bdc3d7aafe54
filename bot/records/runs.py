"""Runs: one per piece of work (a pipeline, a promotion, a bootstrap of production, each slash
command), with status, report, log and what it waits for, so the run page and the thread can link
to it; and supersession, so an older run never posts over a newer one."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa

from bot.records.schema import RECORDS, runs
from runner.state.store import StateStore


class RunKind(StrEnum):
    PIPELINE = "pipeline"  # plan, build, test and report a merge request's head
    PROMOTE = "promote"  # a merge promotes production
    BOOTSTRAP = "bootstrap"  # production built from its branch's head (a push, `sluice bootstrap`)
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    APPROVE = "approve"  # an approval or override, and the merge gate it recomputes
    COMMAND = "command"  # any other slash command


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"  # for an approval or a lock: `Run.waiting_for` says which
    SUCCESS = "success"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    ERROR = "error"


LIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})  # a WAITING run is parked: nobody works on it
FINAL = frozenset(RunStatus) - LIVE


@dataclass(frozen=True)
class Run:
    id: int
    event_id: int | None
    forge: str
    repository: str
    number: int
    sha: str | None
    kind: str
    environment: str | None
    status: RunStatus
    summary: str
    report: str
    log: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    policy: str | None = None
    waiting_for: str | None = None  # what a waiting run waits for, in a user's words
    command: str | None = None  # a command run's slash command, as written


class Superseded(Exception):
    """A newer run for the same merge request exists: this one stops at its next step."""


class RunLog:
    """`redact` is applied to everything written (log lines, summaries, reports)."""

    def __init__(self, state: StateStore, redact: Callable[[str], str] = lambda text: text):
        state.ensure(RECORDS)
        self.state = state
        self.redact = redact

    def create(self, forge: str, repository: str, number: int, kind: str, sha: str | None = None,
               environment: str | None = None, event_id: int | None = None,
               command: str | None = None) -> int:
        with self.state.engine.begin() as conn:
            result = conn.execute(runs.insert().values(
                event_id=event_id, forge=forge, repository=repository, number=number, sha=sha,
                kind=kind, environment=environment, status=RunStatus.QUEUED.value, summary="",
                report="", log="", created_at=time.time(), command=command))
            key = result.inserted_primary_key
            return int(key[0]) if key else 0

    def get(self, run_id: int) -> Run | None:
        with self.state.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        return _run(row) if row is not None else None

    def for_event(self, event_id: int) -> list[Run]:
        with self.state.engine.connect() as conn:
            rows = conn.execute(sa.select(runs).where(runs.c.event_id == event_id).order_by(runs.c.id))
            return [_run(r) for r in rows]

    def for_merge_request(self, forge: str, repository: str, number: int) -> list[Run]:
        with self.state.engine.connect() as conn:
            rows = conn.execute(sa.select(runs).where(runs.c.forge == forge,
                                                      runs.c.repository == repository,
                                                      runs.c.number == number).order_by(runs.c.id))
            return [_run(r) for r in rows]

    def live(self, started_before: float, limit: int = 100) -> list[Run]:
        """Runs still queued or running that were created before `started_before`."""
        with self.state.engine.connect() as conn:
            rows = conn.execute(sa.select(runs).where(
                runs.c.status.in_([s.value for s in LIVE]), runs.c.created_at < started_before)
                .order_by(runs.c.id).limit(limit))
            return [_run(r) for r in rows]

    def set_sha(self, run_id: int, sha: str) -> None:
        """The commit the run ended up working on (a promotion follows the branch head)."""
        self._update(run_id, sha=sha)

    def start(self, run_id: int) -> None:
        """The run is being worked on (again, after a wait: what it waited for stays until
        `resume`, so a resumed run knows it already said so)."""
        run = self.get(run_id)
        started = run.started_at if run is not None and run.started_at is not None else time.time()
        self._update(run_id, status=RunStatus.RUNNING.value, started_at=started)

    def wait(self, run_id: int, what: str, status: RunStatus = RunStatus.WAITING) -> None:
        """The run waits (for a lock, or an approval): its page says for what. A run that waits
        in its worker (a short wait) stays RUNNING; a parked one is WAITING."""
        self._update(run_id, status=status.value, waiting_for=self.redact(what))
        self.append_log(run_id, f"waiting for {what}")

    def claim(self, run_id: int, line: str) -> bool:
        """Take a parked (WAITING) run up again; False when another worker already did."""
        with self.state.engine.begin() as conn:
            taken = conn.execute(runs.update().where(runs.c.id == run_id,
                                                     runs.c.status == RunStatus.WAITING.value)
                                 .values(status=RunStatus.RUNNING.value, waiting_for=None,
                                         finished_at=None)).rowcount
        if taken:
            self.append_log(run_id, line)
        return bool(taken)

    def resume(self, run_id: int, line: str) -> None:
        """What the run waited for is there: it works on."""
        self._update(run_id, status=RunStatus.RUNNING.value, waiting_for=None)
        self.append_log(run_id, line)

    def append_log(self, run_id: int, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self.state.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id)
                         .values(log=runs.c.log + f"{stamp} {self.redact(line)}\n"))

    def finish(self, run_id: int, status: RunStatus, summary: str = "", report: str = "") -> None:
        assert status in FINAL, status
        values: dict[str, object] = dict(status=status.value, summary=self.redact(summary),
                                         report=self.redact(report), finished_at=time.time())
        if status is not RunStatus.WAITING:
            values["waiting_for"] = None
        self._update(run_id, **values)

    def set_policy(self, run_id: int, outcome: dict[str, object]) -> None:
        """The run's effective policy and what it decided (JSON), kept with the run."""
        self._update(run_id, policy=json.dumps(outcome, sort_keys=True, default=str))

    def check_current(self, run_id: int) -> None:
        """Raise Superseded when a newer pipeline run exists for the same merge request."""
        with self.state.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).one()
            newer = conn.execute(sa.select(sa.func.count()).select_from(runs).where(
                runs.c.forge == row.forge, runs.c.repository == row.repository,
                runs.c.number == row.number, runs.c.kind == row.kind, runs.c.id > run_id)).scalar()
        if newer:
            raise Superseded(f"run {run_id} was superseded by a newer run")

    def _update(self, run_id: int, **values: object) -> None:
        with self.state.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(**values))


def _run(row: sa.Row) -> Run:
    return Run(row.id, row.event_id, row.forge, row.repository, row.number, row.sha, row.kind,
               row.environment, RunStatus(row.status), row.summary, row.report, row.log, row.created_at,
               row.started_at, row.finished_at, row.policy, row.waiting_for, row.command)
