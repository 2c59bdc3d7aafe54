"""Webhook intake: take one delivery from size cap to stored event, and answer the forge.

The steps run in this order, each able to end the delivery: read the body (capped) → the forge is
configured → the signature or token is right → the payload parses → the repository is allowed →
the event is stored in the inbox (a delivery id or an event seen before stops here) → the broker is told.
Nothing is answered 2xx unless it is stored or deliberately ignored, and a broker that is down
loses nothing: the event stays in the inbox and the sweeper sends it. No forge calls, no git, no
SQL beyond the inbox, so the forge gets its answer in well under a second. Bodies and secrets are
never logged.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO

from sqlalchemy.exc import SQLAlchemyError

from bot.broker import Dispatcher
from bot.config import ServerConfig
from bot.events import identity, to_json
from bot.forges.base import Forge, Webhook, WebhookError
from bot.metrics import IntakeMetrics
from bot.records.inbox import Inbox
from runner.errors import StateError

log = logging.getLogger("sluice.intake")

READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """What the forge is told: an HTTP status and a small JSON body."""

    status: int
    body: Mapping[str, object] = field(default_factory=dict)


class BodyTooLarge(Exception):
    pass


def read_body(stream: IO[bytes], declared_length: int | None, limit: int) -> bytes:
    """The raw body, refusing one over `limit` bytes: by its Content-Length before reading
    anything, and by what actually arrives (a missing or lying Content-Length)."""
    if declared_length is not None and declared_length > limit:
        raise BodyTooLarge(f"{declared_length} bytes declared")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"more than {limit} bytes sent")
    return b"".join(chunks)


class Intake:
    def __init__(self, config: ServerConfig, inbox: Inbox, dispatcher: Dispatcher,
                 forges: Mapping[str, type[Forge]], metrics: IntakeMetrics):
        self.config = config
        self.inbox = inbox
        self.dispatcher = dispatcher
        self.forges = forges
        self.metrics = metrics

    def receive(self, forge_name: str, headers: Mapping[str, str], stream: IO[bytes],
                declared_length: int | None, source: str = "-") -> Answer:
        """Handle one delivery to /webhooks/<forge_name>; `source` is the sender's address, for logs."""
        self.metrics.received.labels(forge_name).inc()
        try:
            body = read_body(stream, declared_length, self.config.max_body_bytes)
        except BodyTooLarge as exc:
            self.metrics.rejected.labels(forge_name, "too_large").inc()
            log.warning("%s delivery from %s refused: body too large (%s; limit %d bytes)",
                        forge_name, source, exc, self.config.max_body_bytes)
            return Answer(413, {"error": f"body larger than {self.config.max_body_bytes} bytes"})

        forge = self.forges.get(forge_name)
        forge_config = self.config.forge(forge_name)
        if forge is None or forge_config is None:
            return Answer(404, {"error": f"{forge_name} is not configured on this server"})

        secret = forge_config.webhook_secret
        needs_check = bool(secret) or not self.config.insecure
        if needs_check and not self._authentic(forge, headers, body, secret):
            self.metrics.rejected.labels(forge_name, "signature").inc()
            log.warning("%s delivery from %s refused: missing or wrong signature/token "
                        "(%d bytes, event %r)", forge_name, source, len(body), _event_header(headers))
            return Answer(401, {"error": "signature or token missing or wrong"})

        try:
            webhook = forge.parse(headers, body)
        except WebhookError as exc:
            self.metrics.rejected.labels(forge_name, "malformed").inc()
            log.warning("%s delivery from %s refused: %s", forge_name, source, exc)
            return Answer(400, {"error": str(exc) or "malformed delivery"})
        except Exception:  # an adapter bug must not take the endpoint down
            self.metrics.rejected.labels(forge_name, "malformed").inc()
            log.exception("%s delivery from %s could not be parsed", forge_name, source)
            return Answer(400, {"error": "malformed delivery"})
        delivery_id = webhook.delivery_id or _body_delivery_id(body)
        return self._accept(forge_name, delivery_id, webhook, body)

    def _authentic(self, forge: type[Forge], headers: Mapping[str, str], body: bytes,
                   secret: str | None) -> bool:
        if not secret:  # only reachable when check_secrets was bypassed: refuse, never accept
            return False
        try:
            return bool(forge.verify(headers, body, secret))
        except Exception as exc:
            log.warning("signature check failed with %s", type(exc).__name__)
            return False

    def _accept(self, forge: str, delivery_id: str, webhook: Webhook, body: bytes) -> Answer:
        event = webhook.event
        if event is None:
            return self._ignore(forge, delivery_id, webhook.kind, None, None, "event kind not handled")
        repository, number = event.repository.full_name, event.number
        if self.config.repository(forge, repository) is None:
            return self._ignore(forge, delivery_id, webhook.kind, repository, number,
                                "repository not allowlisted")
        try:
            event_id = self.inbox.store(forge, delivery_id, webhook.kind, repository, number,
                                        to_json(event), identity(event, body))
        except (SQLAlchemyError, StateError) as exc:
            # Not stored, so not accepted: a 5xx tells the forge to deliver it again.
            log.error("%s delivery %s for %s not stored: state store error %s", forge, delivery_id,
                      repository, type(exc).__name__)
            return Answer(503, {"error": "state store unavailable; deliver again later"})
        if event_id is None:
            self.metrics.duplicate.labels(forge).inc()
            log.info("%s delivery %s: event seen before; not dispatched again", forge, delivery_id)
            return Answer(200, {"status": "duplicate"})
        dispatched = self._dispatch(forge, event_id)
        log.info("%s delivery %s (%s) for %s #%s stored as event %d%s", forge, delivery_id,
                 webhook.kind, repository, number, event_id,
                 "" if dispatched else "; broker down, the sweeper will send it")
        return Answer(202, {"status": "accepted", "event": event_id, "dispatched": dispatched})

    def _dispatch(self, forge: str, event_id: int) -> bool:
        try:
            message_id = self.dispatcher.send(event_id)
        except Exception as exc:  # DispatchError, or any other broker failure: the event is stored
            self.metrics.dispatch_failed.labels(forge).inc()
            log.warning("event %d stored but not dispatched: %s", event_id, exc)
            return False
        self.metrics.dispatched.labels(forge).inc()
        try:
            self.inbox.mark_dispatched(event_id, message_id)
        except (SQLAlchemyError, StateError) as exc:
            # The message is on its way; at worst the sweeper sends it again and the worker sees
            # the event is already done.
            log.warning("event %d dispatched but not marked so: %s", event_id, type(exc).__name__)
        return True

    def _ignore(self, forge: str, delivery_id: str, kind: str, repository: str | None,
                number: int | None, reason: str) -> Answer:
        try:
            # Recorded as done (no event), so a redelivery is recognised and the inbox shows it.
            stored = self.inbox.store(forge, delivery_id, kind, repository, number, None)
        except (SQLAlchemyError, StateError) as exc:
            log.warning("ignored %s delivery %s not recorded: %s", forge, delivery_id, type(exc).__name__)
            stored = 0
        if stored is None:
            self.metrics.duplicate.labels(forge).inc()
            return Answer(200, {"status": "duplicate"})
        self.metrics.ignored.labels(forge).inc()
        log.info("%s delivery %s (%s%s) ignored: %s", forge, delivery_id, kind,
                 f", {repository}" if repository else "", reason)
        return Answer(202, {"status": "ignored", "reason": reason})


def _event_header(headers: Mapping[str, str]) -> str:
    return headers.get("X-GitHub-Event") or headers.get("X-Gitlab-Event") or "?"


def _body_delivery_id(body: bytes) -> str:
    """For a forge that sent no delivery id: a redelivery carries the same bytes."""
    return "sha256:" + hashlib.sha256(body).hexdigest()
