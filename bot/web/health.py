"""Liveness and readiness: /healthz says the process answers, /readyz says it can do its job
(the state store answers a query and the broker answers a ping)."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, Response, jsonify

from bot.web.context import sluice

health = Blueprint("health", __name__)
log = logging.getLogger("sluice.health")


@health.get("/healthz")
def healthz() -> tuple[Response, int]:
    return jsonify({"status": "ok"}), 200


@health.get("/readyz")
def readyz() -> tuple[Response, int]:
    parts = sluice()
    checks: dict[str, str] = {}
    def ping_state() -> None:
        with parts.state.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    try:
        parts.deadline.run(ping_state)  # a hanging store is "not ready" in seconds, not never
        checks["state"] = "ok"
    except Exception as exc:  # the reason, never the URL (it may hold a password)
        log.warning("not ready: state store: %s", type(exc).__name__)
        checks["state"] = f"unavailable ({type(exc).__name__})"
    try:
        broker_up = bool(parts.deadline.run(parts.dispatcher.ping))
    except Exception as exc:
        log.warning("not ready: broker: %s", type(exc).__name__)
        broker_up = False
    checks["broker"] = "ok" if broker_up else "unavailable"
    ready = all(value == "ok" for value in checks.values())
    failed = [name for name, value in checks.items() if value != "ok"]
    body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": checks}
    if failed:
        body["failed"] = failed
    return jsonify(body), 200 if ready else 503
