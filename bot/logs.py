"""Logging for the service: plain text or one JSON object per line, each line carrying the run,
merge request and commit it is about, and every secret the server knows replaced by `***`."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.config import ServerConfig

_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "sluice_log_context", default=MappingProxyType({}))
_URL_CREDENTIALS = re.compile(r"(://)[^/@\s:]+:[^/@\s]+@|(://)[^/@\s]+@")


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Every log line inside the block carries these fields (run, mr, sha, …)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def secrets_of(config: ServerConfig) -> list[str]:
    """The values that must never appear in a log, a run log or a comment."""
    found: list[str] = []
    for forge in config.forges.values():
        found.extend(forge.secrets())
    found.extend(s for s in (config.link_secret, config.metrics_token) if s)
    for url in (config.state_url, config.broker_url, *config.warehouses.values()):
        try:
            password = make_url(url).password
        except ArgumentError:
            password = None
        if password:
            found.append(str(password))
    return [s for s in found if len(s) >= 4]


class Redactor:
    def __init__(self, secrets: Iterable[str]):
        ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        text = _URL_CREDENTIALS.sub(lambda m: (m.group(1) or m.group(2)) + "***@", text)
        return self.pattern.sub("***", text) if self.pattern else text


class _RedactingFilter(logging.Filter):
    def __init__(self, redact: Redactor):
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = self.redact(message), None
        for key, value in _CONTEXT.get().items():
            setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        for key in _CONTEXT.get():
            entry[key] = getattr(record, key, None)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in _CONTEXT.get().items())
        base = super().format(record)
        return f"{base} [{context}]" if context else base


def configure_logging(config: ServerConfig, fmt: str = "text", level: int = logging.INFO) -> Redactor:
    """Root logging for `sluice serve` / `sluice worker`; returns the redactor for other outputs."""
    redact = Redactor(secrets_of(config))
    handler = logging.StreamHandler()
    handler.addFilter(_RedactingFilter(redact))
    handler.setFormatter(JsonFormatter() if fmt == "json"
                         else TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return redact
