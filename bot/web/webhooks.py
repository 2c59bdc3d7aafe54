"""Webhook routes: POST /webhooks/<forge> (a forge of `bot.forges.FORGES`), handed to the intake."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from flask import Blueprint, Response, jsonify, request
from werkzeug.datastructures import Headers

from bot.web.context import sluice
from bot.web.deadline import Late

webhooks = Blueprint("webhooks", __name__)
log = logging.getLogger("sluice.intake")


class RequestHeaders(Mapping[str, str]):
    """The request's headers as the Mapping the forge adapters take; lookups ignore case."""

    def __init__(self, headers: Headers):
        self._headers = headers

    def __getitem__(self, name: str) -> str:
        return self._headers[name]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._headers.items())

    def __len__(self) -> int:
        return len(self._headers)


@webhooks.post("/webhooks/<forge>")
def receive(forge: str) -> tuple[Response, int]:
    parts = sluice()
    headers, stream, length = RequestHeaders(request.headers), request.stream, request.content_length
    source = request.remote_addr or "-"
    try:
        answer = parts.deadline.run(lambda: parts.intake.receive(forge, headers, stream, length, source))
    except Late:
        # Not known to be stored: a 5xx makes the forge deliver it again (deduplicated if the late
        # step did store it after all).
        parts.metrics.intake.rejected.labels(forge, "timeout").inc()
        log.warning("%s delivery from %s: no answer from the state store within %.0f s; answered 503",
                    forge, source, parts.deadline.seconds)
        return jsonify({"error": "the state store is slow; deliver again later"}), 503
    return jsonify(dict(answer.body)), answer.status
