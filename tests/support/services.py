"""The services tests talk to for real: Redis on 127.0.0.1:6379 (each suite on databases of its
own), a private Redis a test may kill, free ports.

Databases: SLUICE_TEST_REDIS_DB_BASE (default 8) and the five above it, two per purpose (one per
xdist worker), so that two checkouts' suites can share the server with different bases.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

import redis

REDIS_PURPOSES = ("e2e", "promises", "intake")


def redis_db(purpose: str = "e2e") -> int:
    base = int(os.environ.get("SLUICE_TEST_REDIS_DB_BASE", "8"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return base + 2 * REDIS_PURPOSES.index(purpose) + worker % 2


def redis_url(purpose: str = "e2e") -> str:
    return f"redis://127.0.0.1:6379/{redis_db(purpose)}"


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
