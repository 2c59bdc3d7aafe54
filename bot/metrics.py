"""Prometheus metrics: webhook intake counters per app, gauges read at scrape time, and job metrics
the worker records with `record_job`.

Each app scrapes its own CollectorRegistry, never prometheus_client's global one, so tests can build
many apps in one process. When PROMETHEUS_MULTIPROC_DIR is set (gunicorn workers plus `sluice
worker` processes), every process writes its counters to files in that directory and a scrape
adds them up; prometheus_client decides this from the same variable when it is imported.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.forges import FORGES

REJECT_REASONS = ("signature", "too_large", "malformed", "timeout")
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, float("inf"))

log = logging.getLogger("sluice.metrics")


def multiprocess_dir() -> str | None:
    """The directory processes share metrics through, if any: prometheus_client's own setting, so
    it is read from the environment like prometheus_client does, not from Sluice's config."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class IntakeMetrics:
    """What happened to webhook deliveries, by forge. One per app."""

    def __init__(self, registry: CollectorRegistry | None):
        # In multiprocess mode the values live in files, not in a registry: registering them too
        # would report each one twice.
        def counter(name: str, doc: str, labels: tuple[str, ...] = ("forge",)) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.received = counter("sluice_webhooks_received_total", "Webhook deliveries received")
        self.rejected = counter("sluice_webhooks_rejected_total",
                                "Webhook deliveries refused (bad signature, too large, malformed)",
                                ("forge", "reason"))
        self.duplicate = counter("sluice_webhooks_duplicate_total",
                                 "Deliveries seen before (same delivery id), not dispatched again")
        self.ignored = counter("sluice_webhooks_ignored_total",
                               "Deliveries Sluice does not act on (event kind or repository)")
        self.dispatched = counter("sluice_events_dispatched_total", "Stored events handed to the broker")
        self.dispatch_failed = counter("sluice_events_dispatch_failed_total",
                                       "Stored events the broker refused (the sweeper sends them later)")
        for forge in FORGES:  # show zeros from the start, so rates and alerts work at once
            for family in (self.received, self.duplicate, self.ignored, self.dispatched,
                           self.dispatch_failed):
                family.labels(forge)
            for reason in REJECT_REASONS:
                self.rejected.labels(forge, reason)


@dataclass(frozen=True)
class JobMetrics:
    duration: Histogram
    total: Counter
    janitor: Counter


_jobs: JobMetrics | None = None
_jobs_lock = threading.Lock()


def job_metrics() -> JobMetrics:
    """The process's job metrics, made on first use (not at import). They belong to no registry:
    each app's registry reads them (one process), or the scrape reads their files (multiprocess)."""
    global _jobs
    with _jobs_lock:
        if _jobs is None:
            _jobs = JobMetrics(
                duration=Histogram("sluice_job_duration_seconds", "How long a job took, by kind",
                                   ("kind",), buckets=JOB_BUCKETS, registry=None),
                total=Counter("sluice_jobs_total", "Jobs finished, by kind and outcome",
                              ("kind", "outcome"), registry=None),
                janitor=Counter("sluice_janitor_dropped_total",
                                "What the janitor dropped: environments and physical objects",
                                ("kind",), registry=None))
        return _jobs


def record_job(kind: str, outcome: str, seconds: float) -> None:
    """Called by the worker when a job ends: kind is pipeline/promote/drop/command, outcome is
    the run's final status (success, failed, superseded, error)."""
    jobs = job_metrics()
    jobs.duration.labels(kind).observe(max(seconds, 0.0))
    jobs.total.labels(kind, outcome).inc()


def record_janitor(environments: int, objects: int) -> None:
    jobs = job_metrics()
    jobs.janitor.labels("environment").inc(environments)
    jobs.janitor.labels("object").inc(objects)


def mark_process_dead(pid: int) -> None:
    """For gunicorn's `child_exit` hook in multiprocess mode: forget a dead worker's live gauges."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class _JobCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        jobs = job_metrics()
        yield from jobs.duration.collect()
        yield from jobs.total.collect()
        yield from jobs.janitor.collect()


class _ScrapeTimeGauges(Collector):
    """Gauges asked for when Prometheus scrapes: the broker's queue and the inbox's backlog.
    A part that does not answer leaves its gauge out rather than failing the scrape."""

    def __init__(self, queue_depth: Callable[[], int | None], pending: Callable[[], int]):
        self.queue_depth = queue_depth
        self.pending = pending

    def collect(self) -> Iterator[Metric]:
        try:
            depth = self.queue_depth()
        except Exception as exc:
            log.warning("queue depth unavailable: %s", type(exc).__name__)
            depth = None
        if depth is not None:
            yield GaugeMetricFamily("sluice_queue_depth", "Messages waiting in the broker's queue",
                                    value=depth)
        try:
            pending = self.pending()
        except Exception as exc:
            log.warning("pending event count unavailable: %s", type(exc).__name__)
        else:
            yield GaugeMetricFamily("sluice_events_pending",
                                    "Events stored but not yet done (queued, running or undispatched)",
                                    value=pending)


@dataclass(frozen=True)
class AppMetrics:
    registry: CollectorRegistry
    intake: IntakeMetrics

    def render(self) -> bytes:
        return generate_latest(self.registry)


def make_app_metrics(queue_depth: Callable[[], int | None], pending: Callable[[], int]) -> AppMetrics:
    registry = CollectorRegistry()  # no auto-describe: registering must not query anything
    shared = multiprocess_dir()
    if shared:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=shared)
        intake = IntakeMetrics(None)
    else:
        intake = IntakeMetrics(registry)
        registry.register(_JobCollector())
    registry.register(_ScrapeTimeGauges(queue_depth, pending))
    return AppMetrics(registry, intake)
