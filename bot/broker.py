"""The message broker between the web app and the workers: Redis by default, RabbitMQ by URL.

Messages only say "go look at event N"; the event itself is in the state store. dramatiq's own
middleware does retries (with backoff), time limits and Prometheus metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications, TimeLimit

QUEUE = "sluice"
ACTOR = "sluice_process_event"
JOB_TIME_LIMIT_MS = 60 * 60 * 1000


class DispatchError(Exception):
    """The broker could not take the message (down, unreachable); the event stays stored."""


class Dispatcher(Protocol):
    def send(self, event_id: int) -> None: ...

    def ping(self) -> bool: ...

    def queue_depth(self) -> int | None: ...


def make_broker(url: str, *, max_retries: int = 5, min_backoff_ms: int = 1000,
                max_backoff_ms: int = 60_000) -> dramatiq.Broker:
    middleware = [AgeLimit(), TimeLimit(time_limit=JOB_TIME_LIMIT_MS), ShutdownNotifications(),
                  Callbacks(), Pipelines(),
                  Retries(max_retries=max_retries, min_backoff=min_backoff_ms, max_backoff=max_backoff_ms)]
    broker: dramatiq.Broker
    if url.startswith(("amqp://", "amqps://")):
        broker = RabbitmqBroker(url=url, middleware=middleware)
    elif url.startswith(("redis://", "rediss://", "unix://")):
        # Short socket timeouts: a broker that drops packets must not hold a webhook answer.
        broker = RedisBroker(url=url, middleware=middleware, socket_connect_timeout=1.0,
                             socket_timeout=2.0)
    elif url == "stub://":  # in-process, for `sluice serve --embedded`: the inbox makes it durable
        broker = StubBroker(middleware=middleware)
    else:
        raise ValueError(f"unsupported broker URL {url.split('://')[0]!r}: use redis://, amqp:// or stub://")
    return broker


GAVE_UP = "sluice_event_gave_up"


def declare_actor(broker: dramatiq.Broker, fn: Callable[[int], Any],
                  max_retries: int = 5) -> dramatiq.Actor:
    """The one actor: process stored event N. Declared on an explicit broker, not at import time.
    When its retries run out, dramatiq's Retries middleware sends the message to `GAVE_UP`."""
    return dramatiq.Actor(fn, broker=broker, actor_name=ACTOR, queue_name=QUEUE, priority=0,
                          options={"max_retries": max_retries, "on_retry_exhausted": GAVE_UP})


def declare_gave_up(broker: dramatiq.Broker,
                    fn: Callable[[dict[str, Any], dict[str, Any]], Any]) -> dramatiq.Actor:
    """Called with the failed message and the retry counts, once an event's retries ran out."""
    return dramatiq.Actor(fn, broker=broker, actor_name=GAVE_UP, queue_name=QUEUE, priority=0,
                          options={"max_retries": 3})


class DramatiqDispatcher:
    def __init__(self, broker: dramatiq.Broker, actor: dramatiq.Actor):
        self.broker = broker
        self.actor = actor

    def send(self, event_id: int) -> None:
        try:
            self.actor.send(event_id)
        except Exception as exc:  # redis/pika raise their own connection errors
            raise DispatchError(f"{type(exc).__name__}: {exc}") from exc

    def ping(self) -> bool:
        try:
            if isinstance(self.broker, RedisBroker):
                return bool(self.broker.client.ping())
            if isinstance(self.broker, RabbitmqBroker):
                self.broker.get_queue_message_counts(QUEUE)
                return True
        except Exception:
            return False
        return True

    def queue_depth(self) -> int | None:
        try:
            if isinstance(self.broker, RedisBroker):
                return int(self.broker.client.llen(f"{self.broker.namespace}:{QUEUE}"))
            if isinstance(self.broker, RabbitmqBroker):
                counts = self.broker.get_queue_message_counts(QUEUE)
                return int(counts[0])
            if isinstance(self.broker, StubBroker):
                return int(self.broker.queues[QUEUE].qsize()) if QUEUE in self.broker.queues else 0
        except Exception:
            return None
        return None
