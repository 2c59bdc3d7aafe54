"""The worker process: dramatiq workers that route each message's event to its handler
(`routing.process`), the sweeper that re-sends stored events, and the janitor loop."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import dramatiq

from bot.broker import DramatiqDispatcher, declare_actor, declare_gave_up, make_broker, queue_name
from bot.config import ServerConfig
from bot.reachable import when_reachable
from bot.worker.context import JobContext, Services
from bot.worker.routing import gave_up, process

log = logging.getLogger("sluice.worker")


class WorkerProcess:
    """Workers plus sweeper for one process; `start()` returns, `stop()` drains and ends."""

    def __init__(self, config: ServerConfig, threads: int = 2, services: Services | None = None,
                 broker: dramatiq.Broker | None = None):
        from bot.metrics import record_job

        self.config = config
        self.services = services or Services.build(config)
        self.services.record_job = self.services.record_job or record_job
        self.jobs = JobContext(self.services)
        jobs = self.jobs

        def process_event(event_id: int) -> None:
            process(jobs, event_id)

        def event_gave_up(message: dict[str, Any], retries: dict[str, Any]) -> None:
            gave_up(jobs, message, retries)

        self.broker = broker or make_broker(config.broker_url, max_retries=config.job_retries,
                                            min_backoff_ms=config.retry_backoff_ms,
                                            on_retry_enqueued=jobs.inbox.mark_dispatched)
        queue = queue_name(config.installation)
        self.actor = declare_actor(self.broker, process_event, queue, max_retries=config.job_retries)
        declare_gave_up(self.broker, event_gave_up, queue)
        self.dispatcher = DramatiqDispatcher(self.broker, self.actor)
        # No more messages fetched ahead than threads to run them: what a consumer holds when it
        # dies waits for the broker to notice, so keep it small.
        self.worker = dramatiq.Worker(self.broker, worker_threads=threads, worker_timeout=100)
        self.worker.queue_prefetch = threads
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    @classmethod
    def started_when_possible(cls, config: ServerConfig, threads: int = 2) -> WorkerProcess:
        """A worker whose state store is not reachable yet waits for it (`bot.reachable`)."""
        return when_reachable(lambda: cls(config, threads=threads), log, "not starting yet")

    def janitor_pass(self) -> tuple[int, int]:
        """One janitor pass over every configured repository's environments and snapshots."""
        from bot.events import Repository
        from bot.metrics import record_janitor
        from bot.worker.locking import expire_holds
        from runner.janitor import parse_duration, run_janitor

        ttl = parse_duration(self.config.janitor_ttl)
        dropped_envs = dropped_objects = 0
        expire_holds(self.jobs)
        for repo in self.config.repositories:
            repository = Repository(repo.forge, repo.name, "")
            state = self.services.project_state(repository)
            with self.jobs.warehouse(repository, None, "janitor") as engine:
                report = run_janitor(engine, state, ttl)
            dropped_envs += len(report.environments)
            dropped_objects += len(report.objects)
            if report.environments or report.objects:
                log.info("janitor for %s: dropped %s environments, %s objects", repo.name,
                         len(report.environments), len(report.objects))
        pruned = self.jobs.inbox.prune(time.time() - ttl)
        if pruned:
            log.info("janitor: forgot %s events finished more than %s ago", pruned, self.config.janitor_ttl)
        record_janitor(dropped_envs, dropped_objects)
        return dropped_envs, dropped_objects

    def _janitor_loop(self) -> None:
        from bot.worker.keys import janitor_lock, worker_identity

        while not self._stop.wait(self.config.janitor_interval):
            try:
                # One pass at a time across all workers; a dead worker's hold expires.
                with self.jobs.locks.hold(janitor_lock(self.config.installation), worker_identity(),
                                          ttl=600, reason="the janitor") as held:
                    if held is not None:
                        self.janitor_pass()
            except Exception:  # a failed pass is logged and tried again next time
                log.exception("janitor pass failed")

    def start(self) -> None:
        from bot.worker.reaper import reap
        from bot.worker.sweeper import run_sweeper

        self.worker.start()
        if self.config.janitor_interval > 0:
            threading.Thread(target=self._janitor_loop, name="sluice-janitor", daemon=True).start()
        self._sweeper = threading.Thread(
            target=run_sweeper, name="sluice-sweeper", daemon=True,
            args=(self._stop, self.services.state, self.dispatcher, self.config.sweep_after),
            kwargs={"interval_seconds": min(10.0, max(0.2, self.config.sweep_after)),
                    "installation": self.config.installation,
                    "reap": lambda sweeping: reap(self.jobs, runs=sweeping)})
        self._sweeper.start()
        log.info("worker %s started on %s", self.config.installation, self.config.broker_url.split("@")[-1])

    def stop(self, timeout_ms: int = 30_000) -> None:
        self._stop.set()
        self.worker.stop(timeout=timeout_ms)
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        self.broker.close()

    def run_forever(self) -> None:
        """Start, then wait for SIGINT/SIGTERM and stop cleanly."""
        self.start()
        self.run_forever_after_start()

    def run_forever_after_start(self) -> None:
        done = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("signal %s: stopping", signum)
            done.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        done.wait()
        self.stop()
