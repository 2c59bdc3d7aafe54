"""RabbitMQ as the broker: `amqp://` or `amqps://` URLs."""

from __future__ import annotations

from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

SCHEMES = ("amqp://", "amqps://")

BROKER = RabbitmqBroker


def make(url: str, middleware: Sequence[dramatiq.Middleware]) -> dramatiq.Broker:
    return RabbitmqBroker(url=url, middleware=list(middleware))


def ping(broker: dramatiq.Broker, queue: str) -> bool:
    """The installation's queue answers (it must exist for the ping to mean something)."""
    assert isinstance(broker, RabbitmqBroker)
    broker.get_queue_message_counts(queue)
    return True


def depth(broker: dramatiq.Broker, queue: str) -> int:
    assert isinstance(broker, RabbitmqBroker)
    return int(broker.get_queue_message_counts(queue)[0])

