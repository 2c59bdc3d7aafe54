"""An event whose work waits for a lock is parked: not sent again, not counted as stalled, until
the lock is free; then the sweeper sends it. Each installation sees only its own events."""

from __future__ import annotations

from bot.records.inbox import Inbox
from bot.worker.sweeper import sweep
from runner.state.locks import Locks
from runner.state.store import StateStore


class Recorder:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def send(self, event_id: int) -> None:
        self.sent.append(event_id)

    def ping(self) -> bool:
        return True

    def queue_depth(self) -> int | None:
        return 0


def test_a_parked_event_waits_for_its_lock_then_goes_out(state: StateStore):
    inbox = Inbox(state, "mine")
    event = inbox.store("gitlab", "d1", "Merge Request Hook", "data/shop", 2, "{}")
    assert event is not None
    inbox.mark_dispatched(event)
    locks = Locks(state)
    assert locks.acquire("mine:env:gitlab:data/shop:prod", "gitlab:data/shop!1", "/deploy prod", ttl=3600)
    inbox.park(event, "mine:env:gitlab:data/shop:prod")
    out = Recorder()
    assert sweep(state, out, 0, installation="mine") == 0
    assert out.sent == [] and [e.id for e in inbox.waiting()] == [event]
    assert inbox.pending_count() == 1  # not done: it is waiting

    locks.release("mine:env:gitlab:data/shop:prod")  # released without a wake (a crash, a lapse)
    assert sweep(state, out, 0, installation="mine") == 1
    assert out.sent == [event] and inbox.waiting() == []


def test_wake_makes_parked_events_ready_at_once(state: StateStore):
    inbox = Inbox(state, "mine")
    event = inbox.store("github", "d2", "pull_request", "acme/x", 5, "{}")
    assert event is not None
    inbox.park(event, "lock")
    assert inbox.wake("other lock") == 0 and inbox.wake("lock") == 1
    stored = inbox.get(event)
    assert stored is not None and stored.waiting_for is None and stored.dispatched_at is None


def test_an_installation_sees_only_its_own_events(state: StateStore):
    mine, theirs, everyone = Inbox(state, "mine"), Inbox(state, "theirs"), Inbox(state)
    one = mine.store("gitlab", "a", "Note Hook", "data/shop", 1, "{}")
    two = theirs.store("gitlab", "b", "Note Hook", "data/other", 1, "{}")
    assert one is not None and two is not None
    assert [e.id for e in mine.undispatched(2e9)] == [one]
    assert mine.start(two) is None and theirs.start(two) is not None
    assert mine.pending_count() == 1 and everyone.pending_count() == 2
    out = Recorder()
    assert sweep(state, out, 0, installation="mine") == 1 and out.sent == [one]  # never theirs


class FinishesWhileAsked(Recorder):
    """A broker that no longer has the message because, as the sweeper asks, a worker finished
    the event and acknowledged it (the sweeper listed it a moment before)."""

    def __init__(self, inbox: Inbox, event_id: int) -> None:
        super().__init__()
        self.inbox, self.event_id = inbox, event_id

    def holds(self, message_id: str) -> bool:
        self.inbox.finish(self.event_id)
        return False


def test_an_event_finished_while_the_sweeper_looks_is_not_sent_again(state: StateStore):
    inbox = Inbox(state, "mine")
    event = inbox.store("gitlab", "d3", "Note Hook", "data/shop", 1, "{}")
    assert event is not None
    inbox.mark_dispatched(event, "message-1")
    out = FinishesWhileAsked(inbox, event)
    assert sweep(state, out, 0, installation="mine") == 0 and out.sent == []


def test_an_event_whose_message_the_broker_lost_is_sent_again(state: StateStore):
    inbox = Inbox(state, "mine")
    event = inbox.store("gitlab", "d4", "Note Hook", "data/shop", 1, "{}")
    assert event is not None
    inbox.mark_dispatched(event, "message-1")

    class Lost(Recorder):
        def holds(self, message_id: str) -> bool:
            return False

    out = Lost()
    assert sweep(state, out, 0, installation="mine") == 1 and out.sent == [event]
