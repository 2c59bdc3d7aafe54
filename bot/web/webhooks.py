"""Webhook routes: POST /webhooks/<forge> (a forge of `bot.forges.FORGES`), handed to the intake."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from flask import Blueprint, Response, jsonify, request
from werkzeug.datastructures import Headers

from bot.web.context import sluice

webhooks = Blueprint("webhooks", __name__)


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
    answer = sluice().intake.receive(forge, RequestHeaders(request.headers), request.stream,
                                     request.content_length, source=request.remote_addr or "-")
    return jsonify(dict(answer.body)), answer.status
