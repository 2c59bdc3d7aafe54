"""`sluice serve` and `sluice worker`: the service, from the server configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.cli.options import actor, console, errors, handle_errors
from runner.errors import SluiceError

if TYPE_CHECKING:
    from bot.config import RepositoryConfig, ServerConfig
    from bot.events import Repository


def server_config(config_path: Path | None) -> ServerConfig:
    # Deferred: the server configuration imports the forge clients (a fifth of a second), which
    # `sluice plan` on a laptop never needs.
    from bot.config import load_server_config

    return load_server_config(config_path)


def configured_repository(config: ServerConfig, text: str | None) -> tuple[Repository, RepositoryConfig]:
    """`forge:group/name` among the server's repositories (the only one, when `text` is None)."""
    from bot.events import Repository

    names = ", ".join(f"{r.forge}:{r.name}" for r in config.repositories) or "none"
    if text is None:
        if len(config.repositories) != 1:
            raise SluiceError(f"name the repository (FORGE:NAME); the server has: {names}")
        entry = config.repositories[0]
    else:
        forge, _, name = text.partition(":")
        found = config.repository(forge, name)
        if found is None:
            raise SluiceError(f"{text} is not one of the server's repositories ({names})")
        entry = found
    return Repository(entry.forge, entry.name, entry.clone_url or ""), entry


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar="SLUICE_CONFIG", help="Server configuration file (YAML); see README.")
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="host:port to listen on.")
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--threads", default=4, show_default=True, help="Threads per web worker.")
@click.option("--embedded", is_flag=True,
              help="Run the web app and a job worker in one process (single machine; the broker "
                   "is in-process unless SLUICE_BROKER_URL or broker_url is set).")
@click.option("--insecure", is_flag=True,
              help="Accept webhooks from a forge that has no secret configured (development only).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="SLUICE_LOG_FORMAT", help="json: one object per line with run, MR and commit.")
@handle_errors
def serve(config_path: Path | None, bind: str, workers: int, threads: int, embedded: bool,
          insecure: bool, log_format: str) -> None:
    """Serve the webhook endpoints, health checks, metrics and run pages."""
    import dataclasses

    from bot.logs import configure_logging
    from bot.web.serve import serve_embedded, serve_gunicorn

    config = server_config(config_path)
    configure_logging(config, log_format)
    from bot.web.serve import share_metrics

    share_metrics(config.work_dir)
    if insecure:
        config = dataclasses.replace(config, insecure=True)
    host, _, port = bind.rpartition(":")
    if embedded:
        if not os.environ.get("SLUICE_BROKER_URL") and not _broker_configured(config_path):
            config = dataclasses.replace(config, broker_url="stub://")
        serve_embedded(config, host or "127.0.0.1", int(port or 8000), threads)
    else:
        serve_gunicorn(config, bind, workers, threads)


def _broker_configured(config_path: Path | None) -> bool:
    if config_path is None:
        return False
    from runner.project.yamlfile import load_yaml

    return "broker_url" in load_yaml(config_path)


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar="SLUICE_CONFIG", help="Server configuration file (YAML); see README.")
@click.option("--threads", default=2, show_default=True, help="Jobs run at the same time.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="SLUICE_LOG_FORMAT", help="json: one object per line with run, MR and commit.")
@handle_errors
def worker(config_path: Path | None, threads: int, log_format: str) -> None:
    """Run jobs from the broker (plans, builds, reports, promotions), the event sweeper and the
    janitor."""
    from bot.logs import configure_logging
    from bot.web.serve import share_metrics
    from bot.worker.process import WorkerProcess

    config = server_config(config_path)
    configure_logging(config, log_format)
    share_metrics(config.work_dir)
    WorkerProcess.started_when_possible(config, threads=threads).run_forever()




@click.command()
@click.argument("repository", required=False, metavar="[FORGE:NAME]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar="SLUICE_CONFIG", help="Server configuration file (YAML); see README.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def bootstrap(repository: str | None, config_path: Path | None, fmt: str) -> None:
    """Build production from the head of a served repository's production branch, as the bot
    would: the same pipeline, under production's lock (waiting for it if held), reported on the
    commit (`sluice/production`) and on a run page. For the first day, or to bring production
    level with its branch after a merge the promotion rules refused. Exits 1 when a build or a
    test fails."""
    import json
    import sys
    import time

    from bot.logs import configure_logging
    from bot.worker.context import JobContext, Services, Waiting
    from bot.worker.production import bootstrap as build_production

    config = server_config(config_path)
    configure_logging(config, "text")
    repo, _ = configured_repository(config, repository)
    jobs = JobContext(Services.build(config))
    described = jobs.forge(repo).repository(repo.full_name)
    told = False
    while True:
        try:
            result = build_production(jobs, described, by=f"sluice bootstrap ({actor()})")
            break
        except Waiting as exc:
            if not told:
                errors.print(f"waiting: {exc.message}", markup=False, soft_wrap=True)
                told = True
            while jobs.locks.held_by(exc.lock) is not None:
                time.sleep(1)
    if fmt == "json":
        console.print_json(json.dumps({"repository": f"{repo.forge}:{repo.full_name}", "sha": result.sha,
                                       "ok": result.ok, "run": result.run_id,
                                       "run_url": config.run_url(result.run_id), "summary": result.summary}))
    else:
        console.print(f"{'[green]' if result.ok else '[red]'}{result.summary}[/] · run "
                      f"{config.run_url(result.run_id)}", markup=True, soft_wrap=True)
    if not result.ok:
        sys.exit(1)

