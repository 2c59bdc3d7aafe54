"""The sweeper: send again the events that were stored but never reached the broker (it was down
when the webhook came in), those whose worker died, and those parked on a lock that is free now
(released, or its holder's term passed). The worker process runs it in a background thread."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from sqlalchemy.exc import SQLAlchemyError

from bot.broker import Dispatcher, DispatchError
from bot.records.inbox import Inbox, StoredEvent
from bot.worker.keys import event_lease, sweeper_lock, worker_identity
from runner.errors import StateError
from runner.state.locks import Locks
from runner.state.store import StateStore

log = logging.getLogger("sluice.sweeper")

BATCH = 100


def sweep(state: StateStore, dispatcher: Dispatcher, older_than_seconds: float,
          stalled_after_seconds: float | None = None, installation: str | None = None) -> int:
    """Send every event of `installation` stored more than `older_than_seconds` ago and never
    dispatched; mark each one dispatched once the broker took it. Stops at the first broker
    failure (it is down: the next round tries again). With `stalled_after_seconds`, also send
    again the events dispatched that long ago and not done whose worker holds no lease on them
    any more (it died mid-job). Parked events whose lock nobody holds any more are woken first.
    Returns how many were sent."""
    inbox = Inbox(state, installation)
    locks = Locks(state)
    for parked in inbox.waiting(limit=BATCH):
        if parked.waiting_for and locks.held_by(parked.waiting_for) is None:
            inbox.wake(parked.waiting_for)
            log.info("sweeper: event %d no longer waits for %s", parked.id, parked.waiting_for)
    cutoff = time.time() - older_than_seconds
    sent = 0

    def send(event: StoredEvent, why: str) -> bool:
        try:
            dispatcher.send(event.id)
        except DispatchError as exc:
            log.warning("sweeper: broker refuses event %d: %s", event.id, exc)
            return False
        inbox.mark_dispatched(event.id)
        log.info("sweeper: sent event %d (%s %s) again: %s", event.id, event.forge, event.kind, why)
        return True

    if stalled_after_seconds is not None:
        for event in inbox.stalled(time.time() - stalled_after_seconds, limit=BATCH):
            if locks.held_by(event_lease(event.installation or installation or "", event.id)) is not None:
                continue  # a worker is on it
            if not send(event, "dispatched but never finished (its worker died?)"):
                return sent
            sent += 1
    while True:
        batch = inbox.undispatched(cutoff, limit=BATCH)
        for event in batch:
            if not send(event, f"never dispatched, received {time.time() - event.received_at:.0f} s ago"):
                return sent
            sent += 1
        if len(batch) < BATCH:
            return sent


def run_sweeper(stop: threading.Event, state: StateStore, dispatcher: Dispatcher,
                older_than_seconds: float = 30.0, *, interval_seconds: float = 10.0,
                holder: str | None = None, stalled_after_seconds: float | None = None,
                installation: str | None = None) -> None:
    """Sweep every `interval_seconds` until `stop` is set. With several worker processes, one
    sweeps at a time (a lock in the state store that expires if its holder dies), so an event is
    not sent twice by two sweepers. `installation`: whose events (None: every event)."""
    holder = holder or worker_identity()
    locks = Locks(state)
    name = sweeper_lock(installation or "*")
    while not stop.is_set():
        try:
            if locks.acquire(name, holder, reason="the event sweeper", ttl=max(3 * interval_seconds, 1.0)):
                sweep(state, dispatcher, older_than_seconds, stalled_after_seconds, installation)
        except (SQLAlchemyError, StateError) as exc:
            log.warning("sweeper: state store unavailable: %s", type(exc).__name__)
        except Exception:  # the loop must survive anything a round throws
            log.exception("sweeper: round failed")
        stop.wait(interval_seconds)
    with contextlib.suppress(SQLAlchemyError, StateError):
        locks.release(name, holder)


def start_sweeper(state: StateStore, dispatcher: Dispatcher, *, older_than_seconds: float = 30.0,
                  interval_seconds: float = 10.0,
                  installation: str | None = None) -> tuple[threading.Thread, threading.Event]:
    """Run the sweeper in a daemon thread; set the returned event (then join) to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=run_sweeper, args=(stop, state, dispatcher), daemon=True,
                              name="sluice-sweeper",
                              kwargs={"older_than_seconds": older_than_seconds,
                                      "interval_seconds": interval_seconds,
                                      "installation": installation})
    thread.start()
    return thread, stop
