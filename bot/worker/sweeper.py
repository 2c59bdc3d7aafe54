"""The sweeper: send again the events that were stored but never reached the broker (it was down
when the webhook came in), those whose worker died, and those parked on a lock that is free now
(released, or its holder's term passed). The worker process runs it in a background thread."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

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
          installation: str | None = None) -> int:
    """Send again every event of `installation` that is not done and that nobody has: stored more
    than `older_than_seconds` ago and never dispatched (the broker was down, or it was parked on
    a lock that is free now), or dispatched that long ago while no worker holds its lease and the
    broker no longer has its message (its worker died after acknowledging it, or the broker
    restarted empty). Parked events whose lock nobody holds any more are woken first. Each is
    marked dispatched once the broker took it; the first broker failure ends the round (the next
    one tries again). Returns how many were sent."""
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
            message_id = dispatcher.send(event.id)
        except DispatchError as exc:
            log.warning("sweeper: broker refuses event %d: %s", event.id, exc)
            return False
        inbox.mark_dispatched(event.id, message_id)
        log.info("sweeper: sent event %d (%s %s) again: %s", event.id, event.forge, event.kind, why)
        return True

    for event in inbox.stalled(cutoff, limit=BATCH):
        if locks.held_by(event_lease(event.installation or installation or "", event.id)) is not None:
            continue  # a live worker is on it
        if event.message_id is not None and dispatcher.holds(event.message_id) is not False:
            continue  # queued, waiting for a retry, or fetched: the broker delivers it
        if not _still_stalled(inbox, event):
            continue  # finished (lease released, message acknowledged) since it was listed
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


def _still_stalled(inbox: Inbox, listed: StoredEvent) -> bool:
    """Whether the event is as it was listed: not done and not sent again since. A worker that
    finishes it between the listing and the checks releases its lease and acknowledges its
    message, which looks exactly like a lost one; on a busy queue that is most of the batch."""
    now = inbox.get(listed.id)
    return now is not None and now.done_at is None and now.message_id == listed.message_id


def run_sweeper(stop: threading.Event, state: StateStore, dispatcher: Dispatcher,
                older_than_seconds: float = 30.0, *, interval_seconds: float = 10.0,
                holder: str | None = None, installation: str | None = None,
                reap: Callable[[bool], object] | None = None) -> None:
    """Sweep every `interval_seconds` until `stop` is set. With several worker processes, one
    sweeps at a time (a lock in the state store that expires if its holder dies), so an event is
    not sent twice by two sweepers. `installation`: whose events (None: every event).
    `reap(holding_the_lock)` runs every round too."""
    holder = holder or worker_identity()
    locks = Locks(state)
    name = sweeper_lock(installation or "*")
    while not stop.is_set():
        try:
            sweeping = locks.acquire(name, holder, reason="the event sweeper",
                                     ttl=max(3 * interval_seconds, 1.0)) is not None
            if sweeping:
                sweep(state, dispatcher, older_than_seconds, installation)
            if reap is not None:
                reap(sweeping)
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
