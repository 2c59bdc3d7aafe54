"""Helpers the forge adapters share: webhook headers and payloads, API errors, credentialed clone URLs."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import requests

from bot.forges.base import ForgeError, WebhookError

T = TypeVar("T")

# -- errors -------------------------------------------------------------------------------------


def transient(status: int | None) -> bool:
    return status is not None and (status >= 500 or status in (408, 429))


def reason(status: int | None, message: object) -> str:
    """`502 Bad Gateway`: the status and the forge's message, without HTML or a repeated status."""
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message or "")
    text = " ".join(re.sub(r"<[^>]+>", " ", text).split())
    if status is not None and text.startswith(str(status)):
        text = text[len(str(status)):].strip()
    return " ".join(part for part in (str(status or ""), text[:200]) if part) or "no answer"


@contextmanager
def requests_errors(forge: str, doing: str) -> Iterator[None]:
    """Turn requests' exceptions into ForgeError: transient for connection trouble and timeouts."""
    try:
        yield
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise ForgeError(f"{forge}: {doing} failed: {exc}", transient=True) from exc
    except requests.RequestException as exc:
        raise ForgeError(f"{forge}: {doing} failed: {exc}", transient=False) from exc


def with_credentials(url: str, host: str | None, user: str, token: str) -> str:
    """`url` with `user:token@` in it, only for https URLs on the forge's own host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.hostname != host:
        return url
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    quoted = urllib.parse.quote(token, safe="")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{quoted}@{netloc}"))


# -- webhook payloads ---------------------------------------------------------------------------


def header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def load(body: bytes, *, form: bool = False, content_type: str = "") -> dict[str, Any]:
    """The payload, from a JSON body; with `form`, also from a form body's `payload` field (a form
    body: `content_type` says so, or the body starts with `payload=`)."""
    try:
        text = body.decode("utf-8")
        if form and (content_type.startswith("application/x-www-form-urlencoded")
                     or text.startswith("payload=")):
            fields = urllib.parse.parse_qs(text)
            if "payload" not in fields:
                raise WebhookError("the form-encoded body has no 'payload' field")
            text = fields["payload"][0]
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WebhookError(f"the body is a JSON {type(data).__name__}, not an object")
    return data


# Ids must fit the columns they are kept in: merge request numbers an INTEGER, every other id a
# BIGINT. A payload beyond them is refused at intake (400), never an overflow later (500).
MAX_NUMBER = 2**31 - 1
MAX_ID = 2**63 - 1



def field(data: dict[str, Any], path: str, kind: type[T]) -> T:
    """The value at dotted `path`, which must exist and be a `kind` (an int: an id from 0 to
    2^63 - 1)."""
    value: Any = data
    for key in path.split("."):
        if not isinstance(value, dict) or value.get(key) is None:
            raise WebhookError(f"the payload has no '{path}'")
        value = value[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        what = "whole number" if kind is int else kind.__name__
        raise WebhookError(f"the payload's '{path}' is not a {what}")
    if isinstance(value, int):
        check_id(path, value, MAX_ID)
    return value


def number_field(data: dict[str, Any], path: str) -> int:
    """A merge request's number: a whole number from 1 to 2^31 - 1."""
    value = field(data, path, int)
    if value < 1:
        raise WebhookError(f"the payload's '{path}' is out of range: {value} (merge request numbers "
                           "start at 1)")
    return check_id(path, value, MAX_NUMBER)


def check_id(path: str, value: int, largest: int) -> int:
    if not 0 <= value <= largest:
        shown = str(value) if len(str(value)) <= 30 else f"{str(value)[:30]}…"
        raise WebhookError(f"the payload's '{path}' is out of range: {shown} (0 to {largest})")
    return value


def optional_id(data: dict[str, Any], path: str) -> int | None:
    """An id the payload may leave out; when it is there, it must be one."""
    value: Any = data
    for key in path.split("."):
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return field(data, path, int)
