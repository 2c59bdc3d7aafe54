"""GET /metrics: the Prometheus scrape of the app's registry (see bot/metrics.py)."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST

from bot.web.context import sluice

routes = Blueprint("metrics", __name__)


@routes.get("/metrics")
def scrape() -> Response:
    return Response(sluice().metrics.render(), mimetype=None, content_type=CONTENT_TYPE_LATEST)
