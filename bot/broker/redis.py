"""Redis as the broker (the default): `redis://`, `rediss://` or `unix://` URLs."""

from __future__ import annotations

from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.redis import RedisBroker

SCHEMES = ("redis://", "rediss://", "unix://")

BROKER = RedisBroker


def make(url: str, middleware: Sequence[dramatiq.Middleware]) -> dramatiq.Broker:
    # Short socket timeouts: a broker that drops packets must not hold a webhook answer.
    return RedisBroker(url=url, middleware=list(middleware), socket_connect_timeout=1.0,
                       socket_timeout=2.0)


def ping(broker: dramatiq.Broker, queue: str) -> bool:
    assert isinstance(broker, RedisBroker)
    return bool(broker.client.ping())


def depth(broker: dramatiq.Broker, queue: str) -> int:
    assert isinstance(broker, RedisBroker)
    return int(broker.client.llen(f"{broker.namespace}:{queue}"))
