"""A process that starts while the state store is unreachable waits for it, saying why and backing
off up to half a minute, instead of exiting: a restart of the database must not take the web app
or the workers down with it (nor make them crash-loop with a traceback)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from runner.errors import StateError

T = TypeVar("T")
MAX_DELAY = 30.0  # seconds between two attempts, at most


def when_reachable(start: Callable[[], T], log: logging.Logger, waiting: str) -> T:
    """`start()` once the state store it opens answers; `waiting`: what the log line says the
    process is doing meanwhile ("not serving yet")."""
    delay = 1.0
    while True:
        try:
            return start()
        except StateError as exc:
            log.warning("%s: %s; trying again in %.0f s", waiting, exc, delay)
        time.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)
