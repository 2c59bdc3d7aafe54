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


def holds(broker: dramatiq.Broker, queue: str, message_id: str) -> bool | None:
    """RabbitMQ cannot be asked about one message; its queues are durable and it redelivers what a
    dead consumer had not acknowledged, so it is trusted to hold what it took."""
    return None


def depth(broker: dramatiq.Broker, queue: str) -> int:
    assert isinstance(broker, RabbitmqBroker)
    return int(broker.get_queue_message_counts(queue)[0])

