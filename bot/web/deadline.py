"""Answering in time: a step that may hang on the state store or the broker runs in a thread of
the app's own, and the request stops waiting for it after a deadline. Forges give up on a
webhook after about 10 s (and GitLab disables hooks that keep failing), so the answer must come
first; a step that finishes late still finishes (a stored event is then a duplicate for the
forge's redelivery, never a loss)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

T = TypeVar("T")

ANSWER_WITHIN = 4.0  # seconds: the webhook answer and the readiness check, whatever hangs
WEB_STATEMENT_TIMEOUT = 4.0  # the web app's state-store statements give up after this too


class Late(Exception):
    """The step did not finish within the deadline (it goes on in its thread)."""


class Deadline:
    def __init__(self, threads: int = 16, seconds: float = ANSWER_WITHIN):
        self.seconds = seconds
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sluice-answer")

    def run(self, step: Callable[[], T]) -> T:
        future = self.pool.submit(step)
        try:
            return future.result(timeout=self.seconds)
        except FutureTimeout:
            raise Late(f"no answer within {self.seconds:.0f} s") from None
