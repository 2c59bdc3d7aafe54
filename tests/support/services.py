"""The services tests talk to for real: Redis on 127.0.0.1 (each suite on databases of its own),
RabbitMQ, a private Redis a test may kill, free ports.

Redis: port SLUICE_TEST_REDIS_PORT (default 6379), databases SLUICE_TEST_REDIS_DB_BASE (default 8)
and the five above it, two per purpose (one per xdist worker). RabbitMQ: the virtual host
SLUICE_TEST_AMQP_VHOST (default "/"). Two checkouts' suites can run at once on other ports, bases
or virtual hosts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.parse

import redis

REDIS_PURPOSES = ("e2e", "promises", "intake")
REDIS_PORT = int(os.environ.get("SLUICE_TEST_REDIS_PORT", "6379"))
AMQP_VHOST = os.environ.get("SLUICE_TEST_AMQP_VHOST", "/")


def redis_db(purpose: str = "e2e") -> int:
    base = int(os.environ.get("SLUICE_TEST_REDIS_DB_BASE", "8"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return base + 2 * REDIS_PURPOSES.index(purpose) + worker % 2


def redis_url(purpose: str = "e2e") -> str:
    return f"redis://127.0.0.1:{REDIS_PORT}/{redis_db(purpose)}"


def redis_client(purpose: str = "e2e") -> redis.Redis:
    return redis.Redis(port=REDIS_PORT, db=redis_db(purpose))


def amqp_url() -> str:
    return f"amqp://guest:guest@127.0.0.1:5672/{urllib.parse.quote(AMQP_VHOST, safe='')}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int) -> subprocess.Popen[bytes]:
    """A private Redis server on `port` (a test may kill and restart it)."""
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis(port=port).ping():
                return server
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)
