"""The message broker between the web app and the workers: Redis by default, RabbitMQ by URL, an
in-process one for a single machine; one module each (`redis`, `rabbitmq`, `stub`), chosen here.

Messages only say "go look at event N"; the event itself is in the state store. dramatiq's own
middleware does retries (with backoff) and time limits. Each installation has a queue of its own
(`queue_name`), so two installations on one broker never take each other's messages.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

import dramatiq
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications, TimeLimit

QUEUE_PREFIX = "sluice."
ACTOR = "sluice_process_event"
GAVE_UP = "sluice_event_gave_up"
JOB_TIME_LIMIT_MS = 60 * 60 * 1000
# Each module: SCHEMES (URL prefixes), BROKER (its dramatiq class), make(), ping(broker, queue),
# depth(broker, queue), holds(broker, queue, message_id).
_MODULES = ("bot.broker.redis", "bot.broker.rabbitmq", "bot.broker.stub")


class DispatchError(Exception):
    """The broker could not take the message (down, unreachable); the event stays stored."""


class Dispatcher(Protocol):
    def send(self, event_id: int) -> str | None:
        """Hand event N to the broker; the message's id, when the broker gives one."""

    def holds(self, message_id: str) -> bool | None:
        """Whether the broker still has that message (queued, delayed, or fetched and not
        acknowledged); None when it cannot tell (then it is trusted to)."""

    def ping(self) -> bool: ...

    def queue_depth(self) -> int | None: ...


def _kinds() -> list[ModuleType]:
    return [importlib.import_module(name) for name in _MODULES]


def queue_name(installation: str) -> str:
    """The queue of one installation (`ServerConfig.installation`): `sluice.<installation>`."""
    return f"{QUEUE_PREFIX}{installation}"


def kind_of(url: str) -> ModuleType:
    for kind in _kinds():
        if url.startswith(kind.SCHEMES):
            return kind
    raise ValueError(f"unsupported broker URL {url.split('://')[0]!r}: use redis://, amqp:// or stub://")


def kind_of_broker(broker: dramatiq.Broker) -> ModuleType | None:
    return next((kind for kind in _kinds() if isinstance(broker, kind.BROKER)), None)


class MessageIds(dramatiq.Middleware):
    """Tells `record(event_id, message_id)` the broker's id of each message the worker enqueues
    again for a retry (the broker gives a retry a new id), so the sweeper can ask the broker
    about the message that really stands for the event."""

    def __init__(self, record: Callable[[int, str], None]):
        self.record = record

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        if message.actor_name == ACTOR and delay:
            self.record(int(message.args[0]), broker_id(message))


def broker_id(message: dramatiq.Message) -> str:
    """The id the broker keeps the message under (Redis gives every enqueue one of its own)."""
    return str(message.options.get("redis_message_id") or message.message_id)


def make_broker(url: str, *, max_retries: int = 5, min_backoff_ms: int = 1000,
                max_backoff_ms: int = 60_000,
                on_retry_enqueued: Callable[[int, str], None] | None = None) -> dramatiq.Broker:
    middleware = [AgeLimit(), TimeLimit(time_limit=JOB_TIME_LIMIT_MS), ShutdownNotifications(),
                  Callbacks(), Pipelines(),
                  Retries(max_retries=max_retries, min_backoff=min_backoff_ms, max_backoff=max_backoff_ms)]
    if on_retry_enqueued is not None:
        middleware.append(MessageIds(on_retry_enqueued))
    broker: dramatiq.Broker = kind_of(url).make(url, middleware)
    return broker


def declare_actor(broker: dramatiq.Broker, fn: Callable[[int], Any], queue: str,
                  max_retries: int = 5) -> dramatiq.Actor:
    """The one actor: process stored event N, on `queue` (`queue_name`). Declared on an explicit
    broker, not at import time. When its retries run out, dramatiq's Retries middleware sends the
    message to `GAVE_UP` (on the same queue)."""
    return dramatiq.Actor(fn, broker=broker, actor_name=ACTOR, queue_name=queue, priority=0,
                          options={"max_retries": max_retries, "on_retry_exhausted": GAVE_UP})


def declare_gave_up(broker: dramatiq.Broker, fn: Callable[[dict[str, Any], dict[str, Any]], Any],
                    queue: str) -> dramatiq.Actor:
    """Called with the failed message and the retry counts, once an event's retries ran out."""
    return dramatiq.Actor(fn, broker=broker, actor_name=GAVE_UP, queue_name=queue, priority=0,
                          options={"max_retries": 3})


class DramatiqDispatcher:
    def __init__(self, broker: dramatiq.Broker, actor: dramatiq.Actor):
        self.broker = broker
        self.actor = actor
        self.kind = kind_of_broker(broker)

    def send(self, event_id: int) -> str | None:
        try:
            return broker_id(self.actor.send(event_id))
        except Exception as exc:  # redis/pika raise their own connection errors
            raise DispatchError(f"{type(exc).__name__}: {exc}") from exc

    def holds(self, message_id: str) -> bool | None:
        if self.kind is None:
            return None
        try:
            held: bool | None = self.kind.holds(self.broker, self.actor.queue_name, message_id)
            return held
        except Exception:  # the broker is down: the next sweep asks again
            return True

    def ping(self) -> bool:
        try:
            return self.kind is None or bool(self.kind.ping(self.broker, self.actor.queue_name))
        except Exception:
            return False

    def queue_depth(self) -> int | None:
        if self.kind is None:
            return None
        try:
            return int(self.kind.depth(self.broker, self.actor.queue_name))
        except Exception:
            return None
