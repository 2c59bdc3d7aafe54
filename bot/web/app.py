"""The web service's app factory: `create_app(config)` builds a Flask app; importing does nothing.

Blueprints group the routes by purpose: webhooks (intake), health (liveness and readiness),
metrics (Prometheus) and pages (run pages). What they share (configuration, state store,
dispatcher, intake, metrics) sits on `app.extensions["sluice"]` (see `context`); blueprints never
import this module.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask
from jinja2 import StrictUndefined

from bot.broker import Dispatcher, DramatiqDispatcher, declare_actor, make_broker, queue_name
from bot.config import ServerConfig, load_server_config
from bot.forges.base import Forge
from bot.metrics import make_app_metrics
from bot.records.inbox import Inbox
from bot.records.runs import RunLog
from bot.web.context import WebContext
from bot.web.deadline import WEB_STATEMENT_TIMEOUT, Deadline
from bot.web.health import health
from bot.web.intake import Intake
from bot.web.metrics import routes as metrics_routes
from bot.web.pages import pages
from bot.web.webhooks import webhooks
from runner.state.store import StateStore


def create_app(config: ServerConfig, *, state: StateStore | None = None,
               dispatcher: Dispatcher | None = None,
               forges: Mapping[str, type[Forge]] | None = None) -> Flask:
    """Build the web app. Raises ConfigError when a configured forge has no webhook secret (unless
    `config.insecure`); opens the state store at `config.state_url` and a broker at
    `config.broker_url` when they are not given."""
    config.check_secrets()
    if forges is None:
        from bot.forges import FORGES

        forges = FORGES
    state = state if state is not None else StateStore(config.state_url,
                                                       statement_timeout=WEB_STATEMENT_TIMEOUT)
    dispatcher = dispatcher if dispatcher is not None else broker_dispatcher(config)
    inbox = Inbox(state, config.installation)
    metrics = make_app_metrics(dispatcher.queue_depth, inbox.pending_count)

    app = Flask("bot.web", template_folder="templates")
    # Flask autoescapes only *.html; these templates are *.html.j2, and every one of them shows
    # text that came from a merge request.
    app.jinja_env.autoescape = True
    app.jinja_env.undefined = StrictUndefined
    app.extensions["sluice"] = WebContext(
        config=config, state=state, dispatcher=dispatcher, inbox=inbox, runs=RunLog(state),
        intake=Intake(config, inbox, dispatcher, forges, metrics.intake), metrics=metrics,
        deadline=Deadline())

    for blueprint in (webhooks, health, metrics_routes, pages):
        app.register_blueprint(blueprint)
    return app


def broker_dispatcher(config: ServerConfig) -> DramatiqDispatcher:
    """A dispatcher that only sends, to this installation's queue: the web process never runs the
    actor, `sluice worker` does (declaring the same actor name and queue on its own broker)."""
    broker = make_broker(config.broker_url)
    return DramatiqDispatcher(broker, declare_actor(broker, _processed_by_the_worker,
                                                    queue_name(config.installation)))


def _processed_by_the_worker(event_id: int) -> None:
    raise RuntimeError(f"event {event_id}: the web process only sends events; run `sluice worker`")


def app_from_environment() -> Flask:
    """For gunicorn: `gunicorn 'bot.web.app:app_from_environment()'`, configured by SLUICE_CONFIG and
    SLUICE_* variables (see bot.config.load_server_config)."""
    return create_app(load_server_config(None))
