"""GET /metrics: the Prometheus scrape of the app's registry (see bot/metrics.py), for a scraper
that sends `Authorization: Bearer <metrics_token>`. Without `metrics_token` in the server
configuration there is no /metrics (404): job names, queue depths and repository activity are
nobody's business but the operator's."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST

from bot.web.context import sluice

routes = Blueprint("metrics", __name__)


@routes.get("/metrics")
def scrape() -> Response:
    parts = sluice()
    expected = parts.config.metrics_token
    if not expected:
        return Response("no metrics here: set metrics_token (SLUICE_METRICS_TOKEN) to turn them on\n",
                        status=404, mimetype="text/plain")
    given = request.headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return Response("a bearer token is needed (the server's metrics_token)\n", status=401,
                        mimetype="text/plain", headers={"WWW-Authenticate": 'Bearer realm="sluice metrics"'})
    return Response(parts.metrics.render(), mimetype=None, content_type=CONTENT_TYPE_LATEST)
