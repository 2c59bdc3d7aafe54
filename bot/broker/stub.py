"""The in-process broker of `sluice serve --embedded` (`stub://`): the inbox makes it durable."""

from __future__ import annotations

from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.stub import StubBroker

SCHEMES = ("stub://",)

BROKER = StubBroker


def make(url: str, middleware: Sequence[dramatiq.Middleware]) -> dramatiq.Broker:
    return StubBroker(middleware=list(middleware))


def ping(broker: dramatiq.Broker, queue: str) -> bool:
    return True


def holds(broker: dramatiq.Broker, queue: str, message_id: str) -> bool | None:
    """In-process: it holds what it took while the process lives (a restart re-sends from the
    inbox)."""
    return None


def depth(broker: dramatiq.Broker, queue: str) -> int:
    assert isinstance(broker, StubBroker)
    return int(broker.queues[queue].qsize()) if queue in broker.queues else 0
