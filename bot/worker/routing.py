"""What the worker does with each stored event: take its lease, route it to its handler, count
it, mark it done; and, when its retries ran out, say so in the thread.

Errors are sorted once, here: the user's own (bad SQL, failing tests, a plan error) are reported
in the thread by the handlers and never retried; transient ones (forge 5xx, network, a lock held
too long) raise `Transient` so the queue retries with backoff; a job that waits for an
environment's lock raises `Waiting`, and its event is parked until the lock is free.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bot.events import CommentEvent, Event, MRAction, PushEvent, from_json
from bot.forges.base import ForgeError
from bot.logs import log_context
from bot.records.runs import LIVE, RunStatus
from bot.worker.commands import on_comment
from bot.worker.context import JobContext, Transient, Waiting
from bot.worker.keys import event_lease, worker_identity
from bot.worker.merge import on_closed, on_merged
from bot.worker.pipeline import run_pipeline
from bot.worker.production import on_push
from bot.worker.reviews import on_review
from bot.worker.text import quote
from runner.checkout import CheckoutError, redact
from runner.errors import is_transient

log = logging.getLogger("sluice.worker")
BUILDS = (MRAction.OPENED, MRAction.REOPENED, MRAction.NEW_COMMITS)
REVIEWS = (MRAction.APPROVED, MRAction.UNAPPROVED)


def process(ctx: JobContext, event_id: int) -> None:
    """Handle stored event `event_id` once; raise Transient to be retried."""
    # The lease first, then whether the event is done: a worker finishes an event before it lets
    # go of its lease, so a copy that gets the lease after it sees it done and does nothing
    # (checked the other way round, two copies could both run). The lease is renewed while this
    # process lives; if it dies, it runs out and the sweeper sends the event again.
    with ctx.locks.hold(event_lease(ctx.s.config.installation, event_id), worker_identity(),
                        ctx.s.config.job_lease, reason=f"working on event {event_id}") as lease:
        if lease is None:
            log.info("event %s: another worker holds it", event_id)
            return
        stored = ctx.inbox.start(event_id)
        if stored is None or stored.event is None:
            return
        event = from_json(stored.event)
        label = (f"@{event.branch}" if isinstance(event, PushEvent)
                 else ctx.forge(event.repository).mr_label(event.number))
        with log_context(event=event_id, mr=f"{event.repository.full_name}{label}"):
            _route(ctx, event, event_id, stored.attempts)


def _route(ctx: JobContext, event: Event, event_id: int, attempts: int = 1) -> None:
    started = time.perf_counter()
    kind = event.kind if isinstance(event, CommentEvent | PushEvent) else event.action.value
    outcome = "ok"
    try:
        if isinstance(event, CommentEvent):
            on_comment(ctx, event, event_id, attempts)
        elif isinstance(event, PushEvent):
            on_push(ctx, event, event_id)
        elif event.action in BUILDS:
            run_pipeline(ctx, event.repository, event.number, event_id)
        elif event.action is MRAction.MERGED:
            on_merged(ctx, event, event_id)
        elif event.action is MRAction.CLOSED:
            on_closed(ctx, event)
        elif event.action in REVIEWS:
            on_review(ctx, event, event_id)
        else:
            log.info("event %s: %s needs no work", event_id, event.action.value)
    except Waiting as exc:
        outcome = "waiting"
        ctx.inbox.park(event_id, exc.lock)
        log.info("event %s waits: %s", event_id, exc.message)
        return
    except (ForgeError, CheckoutError) as exc:
        if is_transient(exc):
            outcome = "retry"
            raise Transient(redact(str(exc))) from exc
        outcome = "error"
        log.warning("event %s failed: %s", event_id, redact(str(exc)))
    except Transient:
        outcome = "retry"
        raise
    finally:
        if ctx.s.record_job:
            ctx.s.record_job(kind, outcome, time.perf_counter() - started)
    ctx.inbox.finish(event_id)


def gave_up(ctx: JobContext, message: dict[str, Any], retries: dict[str, Any]) -> None:
    """An event's retries ran out: say so in the thread, close its runs, mark it done."""
    event_id = int(message["args"][0])
    stored = ctx.inbox.get(event_id)
    if stored is None or stored.event is None or stored.done_at is not None:
        return
    event = from_json(stored.event)
    lines = str(message.get("options", {}).get("traceback") or "").strip().splitlines()
    reason = ctx.s.redact(lines[-1] if lines else "an unknown error")
    for run in ctx.runs.for_event(event_id):
        if run.status in LIVE:
            ctx.runs.finish(run.id, RunStatus.ERROR, f"gave up: {reason}")
    attempts = int(retries.get("retries", 0)) + 1
    if event.number:  # pushes have no thread: their run page and commit status say it
        ctx.forge(event.repository).post_comment(
            event.repository.full_name, event.number,
            f"❌ Sluice could not finish this after {attempts} attempts: `{quote(reason)}`. "
            "Nothing was promoted or changed by the failed attempts; comment `/plan` to try again.")
    ctx.inbox.finish(event_id)
    log.error("event %s: gave up after %s attempts: %s", event_id, attempts, reason)
