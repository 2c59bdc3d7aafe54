"""Run pages open only through the link the bot writes (a token per run, signed with the server's
link key); ids alone show nothing, and /metrics asks for the operator's bearer token."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bot.broker import DramatiqDispatcher, declare_actor, make_broker, queue_name
from bot.config import ServerConfig, load_server_config
from bot.forges.gitlab import GitLabConfig
from bot.logs import secrets_of
from bot.records.runs import RunLog, RunStatus
from bot.web.app import create_app
from runner.state.store import StateStore


@pytest.fixture
def state(tmp_path: Path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def config(state: StateStore) -> ServerConfig:
    return ServerConfig(state_url=state.url, public_url="https://sluice.example", broker_url="stub://",
                        forges={"gitlab": GitLabConfig(webhook_secret="hook-secret")},
                        metrics_token="scrape-me")


def client_for(config: ServerConfig, state: StateStore) -> Any:
    broker = make_broker("stub://")
    dispatcher = DramatiqDispatcher(broker, declare_actor(broker, lambda event_id: None, queue_name("t")))
    return create_app(config, state=state, dispatcher=dispatcher).test_client()


def a_run(state: StateStore, report: str = "### secret report of data/shop") -> int:
    runs = RunLog(state)
    run_id = runs.create("gitlab", "data/shop", 3, "pipeline", sha="ab" * 20)
    runs.finish(run_id, RunStatus.SUCCESS, "done", report)
    return run_id


def test_a_run_opens_with_its_token_only(config: ServerConfig, state: StateStore) -> None:
    client = client_for(config, state)
    first, second = a_run(state), a_run(state)
    link = config.run_url(first)
    assert link.startswith(f"https://sluice.example/runs/{first}?token=")
    token = link.split("?token=")[1]
    assert len(token) == 32 and token != config.run_url(second).split("?token=")[1]
    page = client.get(config.run_path(first))
    assert page.status_code == 200 and "secret report" in page.get_data(as_text=True)
    assert client.get(config.run_path(first).replace("?", ".md?")).status_code == 200
    for path in (f"/runs/{first}", f"/runs/{first}.md", f"/runs/{first}?token=",
                 f"/runs/{first}?token={token[:-1]}0", f"/runs/{second}?token={token}",
                 f"/runs/{first}.md?token={'0' * 32}", f"/runs/{first}?token={token.upper()}"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "secret report" not in response.get_data(as_text=True)
    # A missing run and a wrong token read the same: ids say nothing.
    assert f"There is no run {first}" in client.get(f"/runs/{first}").get_data(as_text=True)
    assert "There is no run 999" in client.get("/runs/999").get_data(as_text=True)


def test_tokens_follow_the_link_secret_or_else_the_webhook_secrets(config: ServerConfig) -> None:
    pinned = dataclasses.replace(config, link_secret="pinned-link-key")
    rotated = dataclasses.replace(config, forges={"gitlab": GitLabConfig(webhook_secret="new-secret")})
    assert config.run_url(1) != rotated.run_url(1)  # rotating the webhook secret: new links
    assert pinned.run_url(1) == dataclasses.replace(rotated, link_secret="pinned-link-key").run_url(1)
    assert pinned.run_url(1) != config.run_url(1)
    assert {"pinned-link-key", "scrape-me"} <= set(secrets_of(pinned))  # redacted everywhere


def test_link_secret_and_metrics_token_are_server_settings(tmp_path: Path) -> None:
    path = tmp_path / "server.yml"
    path.write_text("public_url: https://sluice.example\nlink_secret: from-file\n")
    config = load_server_config(path, {"SLUICE_METRICS_TOKEN": "from-env"})
    assert (config.link_secret, config.metrics_token) == ("from-file", "from-env")


def test_metrics_need_the_bearer_token(config: ServerConfig, state: StateStore) -> None:
    client = client_for(config, state)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic scrape-me"}).status_code == 401
    scrape = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert scrape.status_code == 200 and "sluice_webhooks_received_total" in scrape.get_data(as_text=True)


def test_without_a_metrics_token_there_are_no_metrics(config: ServerConfig, state: StateStore) -> None:
    client = client_for(dataclasses.replace(config, metrics_token=None), state)
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert response.status_code == 404 and "metrics_token" in response.get_data(as_text=True)
