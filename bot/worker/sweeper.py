"""The sweeper: send again the events that were stored but never reached the broker (it was down
when the webhook came in). The worker process runs it in a background thread."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from bot.broker import Dispatcher, DispatchError
from bot.records.inbox import Inbox, StoredEvent
from bot.worker.keys import SWEEPER_LOCK, event_lease, worker_identity
from runner.errors import StateError
from runner.state.locks import Locks
from runner.state.store import StateStore

log = logging.getLogger("sluice.sweeper")

BATCH = 100


def sweep(state: StateStore, dispatcher: Dispatcher, older_than_seconds: float) -> int:
    """Send again every event that is not done and that nobody has: stored more than
    `older_than_seconds` ago and never dispatched (the broker was down), or dispatched that long
    ago while no worker holds its lease and the broker no longer has its message (its worker died
    after acknowledging it, or the broker restarted empty). Each is marked dispatched once the
    broker took it; the first broker failure ends the round (the next one tries again). Returns
    how many were sent."""
    inbox = Inbox(state)
    cutoff = time.time() - older_than_seconds
    sent = 0

    def send(event: StoredEvent, why: str) -> bool:
        try:
            message_id = dispatcher.send(event.id)
        except DispatchError as exc:
            log.warning("sweeper: broker refuses event %d: %s", event.id, exc)
            return False
        inbox.mark_dispatched(event.id, message_id)
        log.info("sweeper: sent event %d (%s %s) again: %s", event.id, event.forge, event.kind, why)
        return True

    locks = Locks(state)
    for event in inbox.stalled(cutoff, limit=BATCH):
        if locks.held_by(event_lease(event.id)) is not None:
            continue  # a live worker is on it
        if event.message_id is not None and dispatcher.holds(event.message_id) is not False:
            continue  # queued, waiting for a retry, or fetched: the broker delivers it
        if not send(event, "dispatched, but no worker has it and the broker has lost it"):
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
                holder: str | None = None, reap: Callable[[bool], object] | None = None) -> None:
    """Sweep every `interval_seconds` until `stop` is set. With several worker processes, one
    sweeps at a time (a lock in the state store that expires if its holder dies), so an event is
    not sent twice by two sweepers. `reap(holding_the_lock)` runs every round too."""
    holder = holder or worker_identity()
    locks = Locks(state)
    while not stop.is_set():
        try:
            sweeping = locks.acquire(SWEEPER_LOCK, holder, note="sweeper",
                                     ttl=max(3 * interval_seconds, 1.0)) is not None
            if sweeping:
                sweep(state, dispatcher, older_than_seconds)
            if reap is not None:
                reap(sweeping)
        except (SQLAlchemyError, StateError) as exc:
            log.warning("sweeper: state store unavailable: %s", type(exc).__name__)
        except Exception:  # the loop must survive anything a round throws
            log.exception("sweeper: round failed")
        stop.wait(interval_seconds)
    with contextlib.suppress(SQLAlchemyError, StateError):
        locks.release(SWEEPER_LOCK, holder)


def start_sweeper(state: StateStore, dispatcher: Dispatcher, *, older_than_seconds: float = 30.0,
                  interval_seconds: float = 10.0) -> tuple[threading.Thread, threading.Event]:
    """Run the sweeper in a daemon thread; set the returned event (then join) to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=run_sweeper, args=(stop, state, dispatcher), daemon=True,
                              name="sluice-sweeper",
                              kwargs={"older_than_seconds": older_than_seconds,
                                      "interval_seconds": interval_seconds})
    thread.start()
    return thread, stop
