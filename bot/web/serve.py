"""`sluice serve`: the web app under gunicorn, or with `--embedded` the app and a worker in one
process (Werkzeug's threaded server, an in-process broker) for a single machine."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from bot.config import ServerConfig
from bot.reachable import when_reachable

log = logging.getLogger("sluice.serve")


def build_app(config: ServerConfig) -> Flask:
    """The web app with its own state connection and a dispatcher on the configured broker."""
    from bot.web.app import broker_dispatcher, create_app
    from bot.web.deadline import WEB_STATEMENT_TIMEOUT
    from runner.state.store import StateStore

    return create_app(config, state=StateStore(config.state_url, statement_timeout=WEB_STATEMENT_TIMEOUT),
                      dispatcher=broker_dispatcher(config))


def _open_state(config: ServerConfig) -> None:
    """Open the state store and bring its tables to this version (StateError: it does not answer)."""
    from bot.records.schema import RECORDS
    from runner.state.store import StateStore

    store = StateStore(config.state_url)
    try:
        store.ensure(RECORDS)
    finally:
        store.close()


def share_metrics(work_dir: Path) -> None:
    """Web and worker processes on one machine add up their metrics through one directory,
    which prometheus_client reads from the environment before it is imported."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    directory = work_dir.resolve() / "metrics"
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


class _Gunicorn(BaseApplication):
    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]):
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.factory()


def serve_gunicorn(config: ServerConfig, bind: str, workers: int, threads: int) -> None:
    config.check_secrets()
    from bot.metrics import mark_process_dead

    # The state store is opened (and migrated) once here, before gunicorn forks its workers: one
    # that does not answer yet is waited for, not crashed on in every worker.
    when_reachable(lambda: _open_state(config), log, "not serving yet")
    options = {"bind": bind, "workers": workers, "threads": threads, "worker_class": "gthread",
               "timeout": 30, "graceful_timeout": 20, "errorlog": "-",
               "child_exit": lambda _server, worker: mark_process_dead(worker.pid)}
    _Gunicorn(lambda: build_app(config), options).run()


def serve_embedded(config: ServerConfig, host: str, port: int, worker_threads: int) -> None:
    """App and worker in one process. With the in-process broker, events the previous process
    left unfinished are sent again from the inbox at start."""
    from werkzeug.serving import make_server

    from bot.records.inbox import Inbox
    from bot.web.app import create_app
    from bot.worker.process import WorkerProcess

    config.check_secrets()
    worker = WorkerProcess(config, threads=worker_threads)
    if config.broker_url == "stub://":
        requeued = Inbox(worker.services.state, config.installation).requeue_unfinished()
        if requeued:
            log.info("%s unfinished events will be sent again", requeued)
    app = create_app(config, state=worker.services.state, dispatcher=worker.dispatcher)
    server = make_server(host, port, app, threaded=True)
    worker.start()
    thread = threading.Thread(target=server.serve_forever, name="sluice-web", daemon=True)
    thread.start()
    log.info("serving on http://%s:%s (embedded worker)", host, server.server_port)
    try:
        worker.run_forever_after_start()
    finally:
        server.shutdown()
