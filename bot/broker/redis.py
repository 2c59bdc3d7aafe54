"""Redis as the broker (the default): `redis://`, `rediss://` or `unix://` URLs."""

from __future__ import annotations

from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.redis import RedisBroker

SCHEMES = ("redis://", "rediss://", "unix://")

BROKER = RedisBroker


HEARTBEAT_TIMEOUT_MS = 15_000  # a consumer silent this long is dead: its fetched messages go back
MAINTENANCE_CHANCE = 10_000  # per million commands; idle consumers poll every 0.1 s, so ~1/10 s


def make(url: str, middleware: Sequence[dramatiq.Middleware]) -> dramatiq.Broker:
    # Short socket timeouts: a broker that drops packets must not hold a webhook answer. Messages
    # a dead consumer had fetched are put back within seconds, not after dramatiq's default minute
    # (and rare maintenance).
    return RedisBroker(url=url, middleware=list(middleware), socket_connect_timeout=1.0,
                       socket_timeout=2.0, heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
                       maintenance_chance=MAINTENANCE_CHANCE)


def ping(broker: dramatiq.Broker, queue: str) -> bool:
    assert isinstance(broker, RedisBroker)
    return bool(broker.client.ping())


def holds(broker: dramatiq.Broker, queue: str, message_id: str) -> bool | None:
    """Whether Redis still has the message: queued, delayed for a retry, or fetched by a consumer
    and not acknowledged (false after a Redis restart that lost it)."""
    assert isinstance(broker, RedisBroker)
    client, prefix = broker.client, f"{broker.namespace}:{queue}"
    return any(client.hexists(f"{prefix}{part}.msgs", message_id) for part in ("", ".DQ"))


def depth(broker: dramatiq.Broker, queue: str) -> int:
    assert isinstance(broker, RedisBroker)
    return int(broker.client.llen(f"{broker.namespace}:{queue}"))
