"""Webhook intake end to end: real forge payloads, signed as the forges sign them, posted to the app;
events stored in a real state store (SQLite, and PostgreSQL once) and sent through a real Redis.
A broker that is down is a closed port, not a mock; the sweeper later sends what it missed.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server

from bot.broker import DramatiqDispatcher, declare_actor, make_broker, queue_name
from bot.config import RepositoryConfig, ServerConfig
from bot.configkeys import ConfigError
from bot.events import CommentEvent, MergeRequestEvent, MRAction, from_json
from bot.forges.github import GitHubConfig
from bot.forges.gitlab import GitLabConfig
from bot.metrics import record_job
from bot.records.inbox import Inbox
from bot.records.schema import events
from bot.web.app import create_app
from bot.web.intake import BodyTooLarge, read_body
from bot.worker.sweeper import start_sweeper, sweep
from runner.state.store import StateStore
from tests.support.paths import FORGE_FIXTURES as FIXTURES
from tests.support.paths import REPO
from tests.support.services import redis_url

REDIS_URL = redis_url("intake")  # this file's own Redis database, flushed around each test
BROKER_DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1
GITHUB_SECRET = "gh-test-secret-It's a Secret"
GITLAB_SECRET = "gl-test-token-42"
GITHUB_REPO = "Codertocat/Hello-World"  # the repository in GitHub's pull_request payloads
GITHUB_COMMENT_REPO = "runatlantis/atlantis-tests"  # the one in its issue_comment payload
GITLAB_REPO = "demoaccount2-commits-group/test_ci_tmp"
GITLAB_NOTE_REPO = "lkysow-test/subgroup/sub-subgroup/atlantis-example"


# -- deliveries as the forges send them -----------------------------------------------------------


def github_delivery(fixture: str, event: str, *, secret: str | None = GITHUB_SECRET,
                    delivery: str | None = None, body: bytes | None = None) -> tuple[bytes, dict[str, str]]:
    body = body if body is not None else (FIXTURES / "github_webhooks" / f"{fixture}.json").read_bytes()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
               "User-Agent": "GitHub-Hookshot/044aadd", "Content-Type": "application/json"}
    if secret is not None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return body, headers


def opened_pull_request(number: int) -> bytes:
    """GitHub's pull_request opened payload for PR `number`: a distinct event per number."""
    payload = json.loads((FIXTURES / "github_webhooks" / "github_pull_request_opened.json").read_text())
    payload["number"] = payload["pull_request"]["number"] = number
    return json.dumps(payload).encode()


def gitlab_delivery(fixture: str, event: str, *, token: str | None = GITLAB_SECRET,
                    delivery: str | None = None) -> tuple[bytes, dict[str, str]]:
    body = (FIXTURES / "gitlab_webhooks" / f"{fixture}.json").read_bytes()
    key = delivery or str(uuid.uuid4())
    headers = {"X-Gitlab-Event": event, "Idempotency-Key": key, "X-Gitlab-Event-UUID": key,
               "X-Gitlab-Webhook-UUID": str(uuid.uuid4()), "User-Agent": "GitLab/18.3.0",
               "X-Gitlab-Instance": "https://gitlab.com", "Content-Type": "application/json"}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return body, headers


# -- the parts: config, state, Redis --------------------------------------------------------------


def server_config(state_url: str, **changes: Any) -> ServerConfig:
    values: dict[str, Any] = dict(
        state_url=state_url, broker_url=REDIS_URL,
        forges={"gitlab": GitLabConfig(token="gl-api-token", webhook_secret=GITLAB_SECRET),
                 "github": GitHubConfig(token="gh-api-token", webhook_secret=GITHUB_SECRET)},
        repositories=(RepositoryConfig("github", GITHUB_REPO),
                      RepositoryConfig("github", GITHUB_COMMENT_REPO),
                      RepositoryConfig("gitlab", GITLAB_REPO),
                      RepositoryConfig("gitlab", GITLAB_NOTE_REPO)))
    values.update(changes)
    return ServerConfig(**values)


def dispatcher_for(url: str) -> DramatiqDispatcher:
    broker = make_broker(url)
    return DramatiqDispatcher(broker, declare_actor(broker, lambda event_id: None, queue_name("test")))


@pytest.fixture
def redis_dispatcher() -> Iterator[DramatiqDispatcher]:
    dispatcher = dispatcher_for(REDIS_URL)
    client = dispatcher.broker.client  # type: ignore[attr-defined]
    client.flushdb()
    yield dispatcher
    client.flushdb()
    dispatcher.broker.close()


def queued_event_ids(dispatcher: DramatiqDispatcher) -> list[int]:
    """The event ids in the messages waiting in Redis, in queue order."""
    broker = dispatcher.broker
    client = broker.client  # type: ignore[attr-defined]
    namespace = broker.namespace  # type: ignore[attr-defined]
    queue = dispatcher.actor.queue_name
    ids = client.lrange(f"{namespace}:{queue}", 0, -1)
    messages = client.hmget(f"{namespace}:{queue}.msgs", ids) if ids else []
    return [json.loads(raw)["args"][0] for raw in messages]


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()


@pytest.fixture
def app(state: StateStore, redis_dispatcher: DramatiqDispatcher) -> Flask:
    return create_app(server_config(state.url), state=state, dispatcher=redis_dispatcher)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def stored_rows(state: StateStore) -> list[sa.Row]:
    with state.engine.connect() as conn:
        return list(conn.execute(sa.select(events).order_by(events.c.id)))


def metric_values(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


# -- accepted deliveries --------------------------------------------------------------------------


def test_github_pull_request_opened_is_stored_then_dispatched(state_url: str,
                                                              redis_dispatcher: DramatiqDispatcher) -> None:
    state = StateStore(state_url)  # SQLite file and a fresh PostgreSQL database
    try:
        client = create_app(server_config(state_url), state=state, dispatcher=redis_dispatcher).test_client()
        body, headers = github_delivery("github_pull_request_opened", "pull_request")
        started = time.perf_counter()
        response = client.post("/webhooks/github", data=body, headers=headers)
        assert time.perf_counter() - started < 1.0
        assert response.status_code == 202
        answer = response.get_json()
        assert answer["status"] == "accepted"
        stored = Inbox(state).get(answer["event"])
        assert stored is not None
        assert (stored.forge, stored.delivery_id, stored.kind) == ("github", headers["X-GitHub-Delivery"],
                                                                   "pull_request")
        assert (stored.repository, stored.number) == (GITHUB_REPO, 2)
        assert stored.dispatched_at is not None and stored.done_at is None
        assert stored.event is not None
        event = from_json(stored.event)
        assert isinstance(event, MergeRequestEvent)
        assert event.action is MRAction.OPENED
        assert queued_event_ids(redis_dispatcher) == [answer["event"]]
        assert redis_dispatcher.queue_depth() == 1
    finally:
        state.close()


@pytest.mark.parametrize(("fixture", "event", "repository", "kind"), [
    ("gitlab_merge_request_open", "Merge Request Hook", GITLAB_REPO, MergeRequestEvent),
    ("gitlab_note_merge_request", "Note Hook", GITLAB_NOTE_REPO, CommentEvent),
])
def test_gitlab_merge_request_and_comment_are_stored_then_dispatched(
        client: FlaskClient, state: StateStore, redis_dispatcher: DramatiqDispatcher, fixture: str,
        event: str, repository: str, kind: type) -> None:
    body, headers = gitlab_delivery(fixture, event)
    response = client.post("/webhooks/gitlab", data=body, headers=headers)
    assert response.status_code == 202, response.get_json()
    event_id = response.get_json()["event"]
    stored = Inbox(state).get(event_id)
    assert stored is not None and stored.event is not None
    assert (stored.forge, stored.repository, stored.kind) == ("gitlab", repository, event)
    assert stored.dispatched_at is not None
    assert isinstance(from_json(stored.event), kind)
    assert queued_event_ids(redis_dispatcher) == [event_id]


# -- refused deliveries ---------------------------------------------------------------------------


def test_bad_signature_is_refused_stores_nothing_and_logs_no_body(
        client: FlaskClient, state: StateStore, redis_dispatcher: DramatiqDispatcher,
        caplog: pytest.LogCaptureFixture) -> None:
    body, headers = github_delivery("github_pull_request_opened", "pull_request", secret="not-the-secret")
    with caplog.at_level(logging.DEBUG, logger="sluice"):
        response = client.post("/webhooks/github", data=body, headers=headers)
    assert response.status_code == 401
    assert stored_rows(state) == []
    assert redis_dispatcher.queue_depth() == 0
    assert "signature" in caplog.text
    assert "Update the README" not in caplog.text  # the PR title, from the body
    assert GITHUB_SECRET not in caplog.text and headers["X-Hub-Signature-256"] not in caplog.text

    body, headers = gitlab_delivery("gitlab_merge_request_open", "Merge Request Hook", token="wrong")
    assert client.post("/webhooks/gitlab", data=body, headers=headers).status_code == 401
    assert stored_rows(state) == []


def test_a_body_changed_after_signing_is_refused(client: FlaskClient, state: StateStore) -> None:
    body, headers = github_delivery("github_pull_request_opened", "pull_request")
    tampered = body.replace(b'"opened"', b'"closed"', 1)
    assert client.post("/webhooks/github", data=tampered, headers=headers).status_code == 401
    assert stored_rows(state) == []


def test_missing_signature_or_token_is_refused(client: FlaskClient, state: StateStore) -> None:
    body, headers = github_delivery("github_pull_request_opened", "pull_request", secret=None)
    assert client.post("/webhooks/github", data=body, headers=headers).status_code == 401
    body, headers = gitlab_delivery("gitlab_merge_request_open", "Merge Request Hook", token=None)
    assert client.post("/webhooks/gitlab", data=body, headers=headers).status_code == 401
    assert stored_rows(state) == []


def test_malformed_json_is_answered_400_with_the_reason(client: FlaskClient, state: StateStore) -> None:
    body, headers = github_delivery("", "pull_request", body=b'{"action": "opened", "pull_request": ')
    response = client.post("/webhooks/github", data=body, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"]
    body, headers = github_delivery("", "pull_request", body=b'{"action": "opened"}')  # JSON, not a PR
    response = client.post("/webhooks/github", data=body, headers=headers)
    assert response.status_code == 400
    assert stored_rows(state) == []


def test_a_body_over_the_cap_is_refused_before_anything_else(state: StateStore,
                                                             redis_dispatcher: DramatiqDispatcher) -> None:
    config = server_config(state.url, max_body_bytes=4096)
    app = create_app(config, state=state, dispatcher=redis_dispatcher)
    body, headers = github_delivery("github_pull_request_opened", "pull_request")
    assert len(body) > 4096
    # by its Content-Length, before reading it
    assert app.test_client().post("/webhooks/github", data=body, headers=headers).status_code == 413

    # by what arrives, when no Content-Length is sent (chunked): through a real HTTP server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def post_chunked(forge: str, body: bytes, headers: dict[str, str]) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        try:
            chunks = iter([body[i:i + 1000] for i in range(0, len(body), 1000)])
            conn.request("POST", f"/webhooks/{forge}", body=chunks, headers=headers, encode_chunked=True)
            return conn.getresponse().status
        finally:
            conn.close()

    try:
        assert post_chunked("github", body, headers) == 413
        small, small_headers = gitlab_delivery("gitlab_push", "Push Hook")
        assert len(small) < 4096
        assert post_chunked("gitlab", small, small_headers) == 202  # read whole, checked, ignored
    finally:
        server.shutdown()
        thread.join()
    assert [row.kind for row in stored_rows(state)] == ["Push Hook"]


def test_read_body_caps_what_actually_arrives() -> None:
    assert read_body(io.BytesIO(b"x" * 100), None, 100) == b"x" * 100
    with pytest.raises(BodyTooLarge):
        read_body(io.BytesIO(b"x" * 101), None, 100)
    with pytest.raises(BodyTooLarge):
        read_body(io.BytesIO(b""), 101, 100)  # refused on the declared length alone


def test_a_forge_that_is_not_configured_is_not_found(state: StateStore,
                                                     redis_dispatcher: DramatiqDispatcher) -> None:
    config = server_config(state.url, forges={"github": GitHubConfig(token="t", webhook_secret="s")})
    client = create_app(config, state=state, dispatcher=redis_dispatcher).test_client()
    body, headers = gitlab_delivery("gitlab_merge_request_open", "Merge Request Hook")
    assert client.post("/webhooks/gitlab", data=body, headers=headers).status_code == 404
    assert client.post("/webhooks/bitbucket", data=b"{}").status_code == 404
    assert stored_rows(state) == []


# -- duplicates and ignored deliveries ------------------------------------------------------------


def test_a_redelivery_is_answered_duplicate_and_sent_once(client: FlaskClient, state: StateStore,
                                                          redis_dispatcher: DramatiqDispatcher) -> None:
    body, headers = github_delivery("github_pull_request_opened", "pull_request")
    first = client.post("/webhooks/github", data=body, headers=headers)
    second = client.post("/webhooks/github", data=body, headers=headers)
    assert first.status_code == 202
    assert (second.status_code, second.get_json()) == (200, {"status": "duplicate"})
    assert len(stored_rows(state)) == 1
    assert queued_event_ids(redis_dispatcher) == [first.get_json()["event"]]


@pytest.mark.parametrize(("forge", "fixture", "event"), [
    ("github", "github_pull_request_opened", "pull_request"),
    ("github", "github_issue_comment_created", "issue_comment"),
    ("gitlab", "gitlab_merge_request_open", "Merge Request Hook"),
    ("gitlab", "gitlab_note_merge_request", "Note Hook"),
])
def test_a_signed_body_replayed_under_new_delivery_ids_is_stored_once(
        client: FlaskClient, state: StateStore, redis_dispatcher: DramatiqDispatcher, forge: str,
        fixture: str, event: str) -> None:
    # The signature covers the body, not the delivery header: a replay with a fresh id must not
    # run the event (a `/rollback staging` answered twice) a second time.
    deliver = github_delivery if forge == "github" else gitlab_delivery
    answers = [client.post(f"/webhooks/{forge}", data=body, headers=headers)
               for body, headers in (deliver(fixture, event) for _ in range(4))]
    assert [a.status_code for a in answers] == [202, 200, 200, 200]
    assert all(a.get_json() == {"status": "duplicate"} for a in answers[1:])
    assert len(stored_rows(state)) == 1
    assert queued_event_ids(redis_dispatcher) == [answers[0].get_json()["event"]]


def test_concurrent_redeliveries_of_one_comment_store_it_once(state: StateStore) -> None:
    apps = [create_app(server_config(state.url), dispatcher=dispatcher_for(REDIS_URL)) for _ in range(4)]
    body = (FIXTURES / "github_webhooks" / "github_issue_comment_created.json").read_bytes()
    barrier = threading.Barrier(len(apps))
    codes: list[int] = []

    def deliver(app: Flask) -> None:
        _, headers = github_delivery("", "issue_comment", body=body)
        barrier.wait()
        codes.append(app.test_client().post("/webhooks/github", data=body, headers=headers).status_code)

    threads = [threading.Thread(target=deliver, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200, 200, 200, 202]
    assert len(stored_rows(state)) == 1


def test_the_same_action_at_the_same_head_with_a_new_body_is_a_new_event(
        client: FlaskClient, state: StateStore) -> None:
    # Reopened, closed and reopened again at one head: two reopenings, each must run.
    fixture = FIXTURES / "github_webhooks" / "github_pull_request_reopened.json"
    first = json.loads(fixture.read_text())
    second = json.loads(fixture.read_text())
    second["pull_request"]["updated_at"] = "2030-01-01T00:00:00Z"
    for payload in (first, second):
        body, headers = github_delivery("", "pull_request", body=json.dumps(payload).encode())
        assert client.post("/webhooks/github", data=body, headers=headers).status_code == 202
    assert len(stored_rows(state)) == 2


@pytest.mark.parametrize(("forge", "fixture", "event"), [
    ("github", "github_ping", "ping"),
    ("github", "github_push_tag_created", "push"),
    ("gitlab", "gitlab_push", "Push Hook"),  # mike/diaspora is not on the allowlist
])
def test_kinds_sluice_does_not_act_on_are_ignored_and_recorded_done(
        client: FlaskClient, state: StateStore, redis_dispatcher: DramatiqDispatcher, forge: str,
        fixture: str, event: str) -> None:
    body, headers = (github_delivery if forge == "github" else gitlab_delivery)(fixture, event)
    response = client.post(f"/webhooks/{forge}", data=body, headers=headers)
    assert response.status_code == 202
    assert response.get_json()["status"] == "ignored"
    [row] = stored_rows(state)
    assert (row.kind, row.event) == (event, None)
    assert row.done_at is not None
    assert Inbox(state).pending_count() == 0
    assert redis_dispatcher.queue_depth() == 0


def test_a_repository_not_on_the_allowlist_is_ignored(state: StateStore,
                                                      redis_dispatcher: DramatiqDispatcher) -> None:
    config = server_config(state.url, repositories=(RepositoryConfig("github", "someone/else"),))
    client = create_app(config, state=state, dispatcher=redis_dispatcher).test_client()
    body, headers = github_delivery("github_pull_request_opened", "pull_request")
    response = client.post("/webhooks/github", data=body, headers=headers)
    assert response.status_code == 202
    assert response.get_json() == {"status": "ignored", "reason": "repository not allowlisted"}
    assert Inbox(state).pending_count() == 0
    assert redis_dispatcher.queue_depth() == 0


# -- a broker that is down, and the sweeper -------------------------------------------------------


def test_broker_down_at_intake_keeps_the_event_for_the_sweeper(
        state: StateStore, redis_dispatcher: DramatiqDispatcher) -> None:
    down = dispatcher_for(BROKER_DOWN)
    client = create_app(server_config(state.url), state=state, dispatcher=down).test_client()
    body, headers = github_delivery("github_pull_request_opened", "pull_request")
    started = time.perf_counter()
    response = client.post("/webhooks/github", data=body, headers=headers)
    assert time.perf_counter() - started < 1.0
    assert response.status_code == 202
    answer = response.get_json()
    assert (answer["status"], answer["dispatched"]) == ("accepted", False)
    inbox = Inbox(state)
    assert [e.id for e in inbox.undispatched(time.time() + 1)] == [answer["event"]]
    values = metric_values(client)
    assert values[("sluice_events_dispatch_failed_total", (("forge", "github"),))] == 1
    assert values[("sluice_events_pending", ())] == 1

    assert sweep(state, down, older_than_seconds=0) == 0  # still down: nothing sent, nothing lost
    assert sweep(state, redis_dispatcher, older_than_seconds=60) == 0  # too recent to sweep yet
    assert sweep(state, redis_dispatcher, older_than_seconds=0) == 1
    assert queued_event_ids(redis_dispatcher) == [answer["event"]]
    stored = inbox.get(answer["event"])
    assert stored is not None and stored.dispatched_at is not None
    assert sweep(state, redis_dispatcher, older_than_seconds=0) == 0


def test_the_sweeper_thread_sends_what_intake_could_not(state: StateStore,
                                                        redis_dispatcher: DramatiqDispatcher) -> None:
    client = create_app(server_config(state.url), state=state,
                        dispatcher=dispatcher_for(BROKER_DOWN)).test_client()
    for number in range(3):
        body, headers = github_delivery("", "pull_request", body=opened_pull_request(number + 1))
        assert client.post("/webhooks/github", data=body, headers=headers).status_code == 202
    thread, stop = start_sweeper(state, redis_dispatcher, older_than_seconds=0, interval_seconds=0.05)
    try:
        deadline = time.time() + 5
        while redis_dispatcher.queue_depth() != 3 and time.time() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert sorted(queued_event_ids(redis_dispatcher)) == [row.id for row in stored_rows(state)]
    assert Inbox(state).undispatched(time.time() + 1) == []


# -- health and metrics ---------------------------------------------------------------------------


def test_healthz_and_readyz_when_everything_answers(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"state": "ok", "broker": "ok"}


def test_readyz_names_the_broker_when_it_is_down(state: StateStore) -> None:
    client = create_app(server_config(state.url), state=state,
                        dispatcher=dispatcher_for(BROKER_DOWN)).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["failed"] == ["broker"]
    assert client.get("/healthz").status_code == 200  # up, just not ready


def test_readyz_names_the_state_store_when_it_is_gone(pg_url: str,
                                                      redis_dispatcher: DramatiqDispatcher) -> None:
    state = StateStore(pg_url)
    client = create_app(server_config(pg_url), state=state, dispatcher=redis_dispatcher).test_client()
    assert client.get("/readyz").status_code == 200
    database = pg_url.rsplit("/", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["failed"] == ["state"]
    assert "127.0.0.1" not in response.get_data(as_text=True)  # no URL in the answer
    assert client.get("/metrics").status_code == 200  # a scrape survives it too
    state.close()


def test_metrics_count_what_intake_did(client: FlaskClient, redis_dispatcher: DramatiqDispatcher) -> None:
    body, headers = github_delivery("github_pull_request_opened", "pull_request")
    client.post("/webhooks/github", data=body, headers=headers)  # accepted, dispatched
    client.post("/webhooks/github", data=body, headers=headers)  # duplicate
    client.post("/webhooks/github", data=body, headers={**headers, "X-Hub-Signature-256": "sha256=00"})
    client.post("/webhooks/github", data=b"x" * (6 * 1024 * 1024), headers=headers)  # too large
    client.post("/webhooks/github", data=b"{", headers=github_delivery("", "pull_request", body=b"{")[1])
    client.post("/webhooks/github", data=github_delivery("github_ping", "ping")[0],
                headers=github_delivery("github_ping", "ping")[1])
    gl_body, gl_headers = gitlab_delivery("gitlab_merge_request_open", "Merge Request Hook")
    client.post("/webhooks/gitlab", data=gl_body, headers=gl_headers)
    record_job("pipeline", "success", 12.5)

    values = metric_values(client)

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted(labels.items())))]

    assert value("sluice_webhooks_received_total", forge="github") == 6
    assert value("sluice_webhooks_received_total", forge="gitlab") == 1
    assert value("sluice_webhooks_rejected_total", forge="github", reason="signature") == 1
    assert value("sluice_webhooks_rejected_total", forge="github", reason="too_large") == 1
    assert value("sluice_webhooks_rejected_total", forge="github", reason="malformed") == 1
    assert value("sluice_webhooks_rejected_total", forge="gitlab", reason="signature") == 0
    assert value("sluice_webhooks_duplicate_total", forge="github") == 1
    assert value("sluice_webhooks_ignored_total", forge="github") == 1
    assert value("sluice_events_dispatched_total", forge="github") == 1
    assert value("sluice_events_dispatched_total", forge="gitlab") == 1
    assert value("sluice_events_dispatch_failed_total", forge="github") == 0
    assert value("sluice_queue_depth") == 2  # no worker is consuming
    assert value("sluice_events_pending") == 2
    # job metrics are process-wide (the worker records them), so only check they are exposed
    assert value("sluice_jobs_total", kind="pipeline", outcome="success") >= 1
    assert value("sluice_job_duration_seconds_count", kind="pipeline") >= 1


def test_each_app_counts_on_its_own_registry(state: StateStore, redis_dispatcher: DramatiqDispatcher) -> None:
    first = create_app(server_config(state.url), state=state, dispatcher=redis_dispatcher).test_client()
    second = create_app(server_config(state.url), state=state, dispatcher=redis_dispatcher).test_client()
    body, headers = github_delivery("github_ping", "ping")
    first.post("/webhooks/github", data=body, headers=headers)
    assert metric_values(first)[("sluice_webhooks_received_total", (("forge", "github"),))] == 1
    assert metric_values(second)[("sluice_webhooks_received_total", (("forge", "github"),))] == 0


SCRAPE_IN_ANOTHER_PROCESS = """
import sys
from bot.web.app import create_app
from bot.broker import DramatiqDispatcher, declare_actor, make_broker, queue_name
from bot.config import ServerConfig
from bot.forges.github import GitHubConfig
from runner.state.store import StateStore
from bot.metrics import record_job

if sys.argv[1] == "worker":
    record_job("pipeline", "success", 12.5)
    record_job("pipeline", "failed", 3.0)
else:
    broker = make_broker(sys.argv[3])
    config = ServerConfig(state_url=sys.argv[2],
                          forges={"github": GitHubConfig(token="t", webhook_secret="s")})
    app = create_app(config, state=StateStore(sys.argv[2]),
                     dispatcher=DramatiqDispatcher(broker, declare_actor(broker, print, queue_name("test"))))
    if sys.argv[1] == "web":
        app.test_client().post("/webhooks/github", data=b"{}", headers={"X-GitHub-Event": "ping"})
    else:
        sys.stdout.write(app.test_client().get("/metrics").get_data(as_text=True))
"""


def test_multiprocess_mode_adds_up_the_worker_and_web_processes(
        tmp_path: Path, redis_dispatcher: DramatiqDispatcher) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    repo = REPO

    def run(role: str) -> str:
        done = subprocess.run([sys.executable, "-c", SCRAPE_IN_ANOTHER_PROCESS, role, state_url, REDIS_URL],
                              env=env, cwd=repo, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("worker")
    run("web")  # one rejected delivery (unsigned), in a gunicorn-like worker process
    run("web")
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(run("scrape")) for s in family.samples}
    assert values[("sluice_jobs_total", (("kind", "pipeline"), ("outcome", "success")))] == 1
    assert values[("sluice_jobs_total", (("kind", "pipeline"), ("outcome", "failed")))] == 1
    assert values[("sluice_job_duration_seconds_count", (("kind", "pipeline"),))] == 2
    assert values[("sluice_job_duration_seconds_sum", (("kind", "pipeline"),))] == 15.5
    assert values[("sluice_webhooks_received_total", (("forge", "github"),))] == 2
    assert values[("sluice_webhooks_rejected_total", (("forge", "github"), ("reason", "signature")))] == 2
    assert ("sluice_queue_depth", ()) in values


# -- building the app -----------------------------------------------------------------------------


def test_create_app_refuses_a_forge_without_a_webhook_secret_unless_insecure(
        state: StateStore, redis_dispatcher: DramatiqDispatcher) -> None:
    forges = {"gitlab": GitLabConfig(token="gl-api-token", webhook_secret=GITLAB_SECRET),
              "github": GitHubConfig(token="gh-api-token")}
    config = server_config(state.url, forges=forges)
    with pytest.raises(ConfigError, match="github has no webhook_secret"):
        create_app(config, state=state, dispatcher=redis_dispatcher)

    insecure = server_config(state.url, forges=forges, insecure=True)
    client = create_app(insecure, state=state, dispatcher=redis_dispatcher).test_client()
    body, headers = github_delivery("github_pull_request_opened", "pull_request", secret=None)
    assert client.post("/webhooks/github", data=body, headers=headers).status_code == 202
    # a forge that has a secret is still checked, insecure or not
    body, headers = gitlab_delivery("gitlab_merge_request_open", "Merge Request Hook", token="wrong")
    assert client.post("/webhooks/gitlab", data=body, headers=headers).status_code == 401


def test_create_app_opens_its_own_state_store_and_broker(tmp_path: Path) -> None:
    """Given only a config, the app opens both; a broker that is down does not stop it building."""
    config = server_config(f"sqlite:///{tmp_path / 'own' / 'state.db'}", broker_url=BROKER_DOWN)
    app = create_app(config)
    assert app.extensions["sluice"].config is config
    assert sorted(app.blueprints) == ["health", "metrics", "pages", "webhooks"]
    assert app.test_client().get("/readyz").status_code == 503


def test_concurrent_deliveries_of_one_event_store_it_once(client: FlaskClient, state: StateStore,
                                                          redis_dispatcher: DramatiqDispatcher) -> None:
    body, headers = github_delivery("github_pull_request_opened", "pull_request")
    statuses: list[int] = []

    def deliver() -> None:
        statuses.append(client.application.test_client().post("/webhooks/github", data=body,
                                                               headers=headers).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 200, 200, 202]
    assert len(stored_rows(state)) == 1
    assert redis_dispatcher.queue_depth() == 1


def test_finished_events_are_forgotten_after_the_janitor_ttl(tmp_path):
    import time as _time

    from bot.records.inbox import Inbox
    from runner.state.store import StateStore

    state = StateStore(f"sqlite:///{tmp_path / 'prune.db'}")
    inbox = Inbox(state)
    old = inbox.store("gitlab", "d-1", "Merge Request Hook", "a/b", 1, "{}")
    pending = inbox.store("gitlab", "d-2", "Merge Request Hook", "a/b", 2, "{}")
    assert old is not None and pending is not None
    inbox.finish(old)
    assert inbox.prune(_time.time() - 3600) == 0  # finished just now: kept
    assert inbox.prune(_time.time() + 1) == 1  # finished before the cut-off: forgotten
    assert inbox.get(old) is None and inbox.get(pending) is not None  # unfinished work stays
    state.close()
