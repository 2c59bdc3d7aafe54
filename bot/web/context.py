"""What the web app's blueprints share: one object on `app.extensions["sluice"]`, built by
`app.create_app`, read with `sluice()` inside a request."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from bot.broker import Dispatcher
from bot.config import ServerConfig
from bot.metrics import AppMetrics
from bot.records.inbox import Inbox
from bot.records.runs import RunLog
from bot.web.deadline import Deadline
from bot.web.intake import Intake
from runner.state.store import StateStore


@dataclass(frozen=True)
class WebContext:
    """Everything the routes of one app use."""

    config: ServerConfig
    state: StateStore
    dispatcher: Dispatcher
    inbox: Inbox
    runs: RunLog
    intake: Intake
    metrics: AppMetrics
    deadline: Deadline


def sluice() -> WebContext:
    """The current app's parts (inside a request or an app context)."""
    parts: WebContext = current_app.extensions["sluice"]
    return parts
