"""The bot end to end, for GitLab and GitHub: a real webhook payload posted to the Flask app, a
real Redis broker and dramatiq worker, real git repositories, a real DuckDB warehouse, and the
fake forge's record of the comments and statuses the real forge clients sent.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from pathlib import Path

import pytest

from bot.logs import JsonFormatter, Redactor, _RedactingFilter, log_context, secrets_of
from bot.records.runs import RunLog
from bot.worker.pipeline import run_pipeline
from tests.support.e2e import (
    CUSTOMERS,
    ORDERS,
    SEGMENTS,
    Bot,
    Forge,
    build_production,
    path,
    server_config,
    warehouse_tables,
)
from tests.support.repos import Origin
from tests.support.services import amqp_url, free_port, redis_client, start_redis
from tests.support.warehouses import fresh_login_database


def test_merge_request_lifecycle(tmp_path: Path, forge: Forge, origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    # Open: a report in the thread and a green status on the head commit.
    sha1 = origin.branch("orders-amount", ORDERS)
    assert bot.deliver(forge.open(1, sha1, "orders-amount"), path(forge)) == 202
    bot.settle()
    [report] = forge.reports(1)
    assert "`mr_1`" in report and "`marts.orders`" in report
    assert forge.last_status(sha1) == "success"
    assert "marts__data_shop__mr_1.orders" in warehouse_tables(tmp_path, bot)

    # Push: the same comment is edited for the new commit (never a second report).
    sha2 = origin.commit("orders-amount", CUSTOMERS)
    assert bot.deliver(forge.push(1, sha1, sha2), path(forge)) == 202
    bot.settle()
    [report] = forge.reports(1)
    assert f"`{sha2[:8]}`" in report and f"`{sha1[:8]}`" in report  # run history, newest last
    assert "email_domain" in report
    assert forge.last_status(sha2) == "success"

    # /deploy staging: staging's views point at the MR's snapshots.
    assert bot.deliver(forge.comment(1, "/deploy staging"), path(forge)) == 202
    bot.settle()
    assert any("`staging` now points at this merge request's snapshots" in c for c in forge.comments(1))
    state = bot.project_state(forge)
    assert state.environment("staging").models == state.environment("mr_1").models  # type: ignore[union-attr]
    command = next(c for c in forge.fake.comments(forge.repo, 1) if c.body == "/deploy staging")
    assert "eyes" in forge.fake.reactions(forge.repo, command.id)

    # A second MR asking for staging is told who holds it.
    sha3 = origin.branch("segments", SEGMENTS)
    assert bot.deliver(forge.open(2, sha3, "segments", author="bob"), path(forge)) == 202
    bot.settle()
    assert bot.deliver(forge.comment(2, "/deploy staging", author="bob"), path(forge)) == 202
    bot.settle()
    label = "!1" if forge.name == "gitlab" else "#1"
    assert any(f"`staging` is held by `/deploy staging` by @alice in {label} since" in c
               and f"To release it: comment `/unlock staging` in {label}" in c
               for c in forge.comments(2))

    # Merge: production gets the MR's tables without a single rebuild, once a maintainer has
    # approved and acknowledged the breaking change (the default policy).
    assert bot.deliver(forge.comment(1, "/approve\n/approve breaking", author="maria"), path(forge)) == 202
    bot.settle()
    before = warehouse_tables(tmp_path, bot)
    merge_sha = origin.merge("orders-amount")
    forge.fake.merge(forge.repo, 1, merge_sha)
    assert bot.deliver(forge.hook(1, "closed"), path(forge)) == 202
    bot.settle()
    promoted = [c for c in forge.comments(1) if "Promoted to production" in c]
    assert promoted and "0 rebuilt" in promoted[0]
    physical_after = {t for t in warehouse_tables(tmp_path, bot) if t.startswith("sluice__")}
    assert physical_after == {t for t in before if t.startswith("sluice__")}
    prod, staging = state.environment("prod"), state.environment("staging")
    assert prod is not None and staging is not None
    assert prod.models["marts.orders"] == staging.models["marts.orders"]
    assert state.environment("mr_1") is None

    # /diff on the other MR now compares with the production the merge made.
    assert bot.deliver(forge.comment(2, "/diff marts.customer_segments", author="bob"), path(forge)) == 202
    bot.settle()
    assert any("**`marts.customer_segments`**: directly modified, non-breaking (nothing downstream "
               "reads segment)" in c
               for c in forge.comments(2))
    assert bot.deliver(forge.comment(2, '/diff customer_segments --where "segment = \'vip\'" --limit 2',
                                     author="bob"), path(forge)) == 202
    assert bot.deliver(forge.comment(2, '/diff customer_segments --where "1=1; drop table marts.orders"',
                                     author="bob"), path(forge)) == 202
    bot.settle()
    answers = "\n".join(forge.comments(2))
    assert "**Data diff of `marts.customer_segments`**" in answers and "where `segment = 'vip'`" in answers
    assert "takes one condition, not several statements" in answers

    # Close without merge: the MR's environment is dropped, its locks released.
    forge.fake.close(forge.repo, 2)
    assert bot.deliver(forge.hook(2, "closed"), path(forge)) == 202
    bot.settle()
    assert state.environment("mr_2") is None
    assert not any(t.startswith("marts__data_shop__mr_2.") for t in warehouse_tables(tmp_path, bot))


def test_bad_signature_is_refused_and_nothing_is_stored(forge: Forge, origin: Origin, bot: Bot):
    sha = origin.branch("x", ORDERS)
    headers, body = forge.open(5, sha, "x")
    headers = {k: v for k, v in headers.items()
               if k.lower() not in ("x-hub-signature-256", "x-gitlab-token")}
    headers["X-Hub-Signature-256" if forge.name == "github" else "X-Gitlab-Token"] = "sha256=" + "0" * 64
    assert bot.deliver((headers, body), path(forge)) == 401
    assert bot.inbox.pending_count() == 0
    assert bot.worker.jobs.runs.for_merge_request(forge.name, forge.repo, 5) == []


def test_duplicate_delivery_runs_one_job(forge: Forge, origin: Origin, bot: Bot):
    sha = origin.branch("dup", ORDERS)
    delivery = forge.open(3, sha, "dup")
    assert bot.deliver(delivery, path(forge)) == 202
    assert bot.deliver(delivery, path(forge)) == 200
    bot.settle()
    assert len(bot.worker.jobs.runs.for_merge_request(forge.name, forge.repo, 3)) == 1
    assert len(forge.reports(3)) == 1


def test_guest_commands_are_refused_and_bad_commands_get_usage(forge: Forge, origin: Origin, bot: Bot):
    sha = origin.branch("g", ORDERS)
    assert bot.deliver(forge.open(4, sha, "g"), path(forge)) == 202
    bot.settle()
    assert bot.deliver(forge.comment(4, "/deploy staging", author="guest"), path(forge)) == 202
    assert bot.deliver(forge.comment(4, "/deploy prod", author="alice"), path(forge)) == 202
    hostile = "/deploy 'staging; drop schema marts'"
    assert bot.deliver(forge.comment(4, hostile, author="alice"), path(forge)) == 202
    bot.settle()
    answers = "\n".join(forge.comments(4))
    assert ("`/deploy staging`: refused — /deploy to environment staging needs developer access; "
            "you have read") in answers
    assert "`/deploy prod`: refused — /deploy to protected environment prod needs maintainer access; " \
        "you have developer" in answers
    assert "is not an environment name" in answers and "Sluice commands" in answers
    state = bot.project_state(forge)
    assert state.environment("staging") is None and state.environment("prod") is None


def test_project_error_is_reported_in_the_thread_without_retry(forge: Forge, origin: Origin, bot: Bot):
    sha = origin.branch("broken", {"models/marts/orders.sql": ("from staging.stg_orders as o",
                                                               "from staging.no_such_model as o")})
    assert bot.deliver(forge.open(6, sha, "broken"), path(forge)) == 202
    bot.settle()
    [report] = forge.reports(6)
    assert "models/marts/orders.sql" in report and "no_such_model" in report
    assert forge.last_status(sha) == "failure"
    [run] = bot.worker.jobs.runs.for_merge_request(forge.name, forge.repo, 6)
    assert run.status == "failed"


def test_an_older_run_never_posts_over_a_newer_one(tmp_path: Path, forge: Forge, origin: Origin, bot: Bot):
    """Supersession: a run waiting for the warehouse finds a newer run for its MR and stops."""
    import threading

    from bot.events import Repository

    sha = origin.branch("slow", ORDERS)
    forge.fake.add_merge_request(forge.repo, 7, head_sha=sha, source_branch="slow")
    jobs = bot.worker.jobs
    url = bot.config.warehouses["default"]
    repository = Repository(forge.name, forge.repo, str(origin.bare))
    assert jobs.locks.acquire(f"warehouse:{url}", "someone-else")
    outcome: list[int | None] = []
    older = threading.Thread(target=lambda: outcome.append(run_pipeline(jobs, repository, 7, None)))
    older.start()
    deadline = time.monotonic() + 10
    while not jobs.runs.for_merge_request(forge.name, forge.repo, 7):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    newer = jobs.runs.create(forge.name, forge.repo, 7, "pipeline", sha=sha)
    jobs.locks.release(f"warehouse:{url}", "someone-else")
    older.join(timeout=60)
    first = jobs.runs.get(outcome[0])  # type: ignore[arg-type]
    assert first is not None and first.status == "superseded"
    assert forge.reports(7) == []
    assert newer > first.id


@pytest.mark.promises
@pytest.mark.parametrize("forge", ["gitlab"], indirect=True)
def test_redis_down_at_intake_the_event_is_processed_when_it_is_back(tmp_path: Path, forge: Forge,
                                                                        origin: Origin):
    port = free_port()
    server = start_redis(port)
    bot = Bot(server_config(tmp_path, forge, origin, broker_url=f"redis://127.0.0.1:{port}/0"))
    bot.worker.start()
    try:
        server.terminate()
        server.wait(timeout=10)
        sha = origin.branch("while-down", ORDERS)
        assert bot.deliver(forge.open(8, sha, "while-down"), path(forge)) == 202  # stored all the same
        assert bot.inbox.pending_count() == 1
        assert forge.reports(8) == []
        server = start_redis(port)
        bot.settle(timeout=90)
        assert len(forge.reports(8)) == 1
        assert forge.last_status(sha) == "success"
    finally:
        bot.worker.stop()
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("forge", ["github"], indirect=True)
def test_rabbitmq_broker_carries_the_work_too(tmp_path: Path, forge: Forge, origin: Origin):
    from bot.broker import queue_name

    url = amqp_url()
    bot = Bot(server_config(tmp_path, forge, origin, broker_url=url))
    bot.worker.broker.flush(queue_name(bot.config.installation))
    bot.worker.start()
    try:
        sha = origin.branch("via-rabbit", ORDERS)
        assert bot.deliver(forge.open(9, sha, "via-rabbit"), path(forge)) == 202
        bot.settle()
        [report] = forge.reports(9)
        assert "`mr_9`" in report
        assert forge.last_status(sha) == "success"
    finally:
        bot.worker.stop()


def test_a_forge_outage_is_retried_and_the_report_arrives(forge: Forge, origin: Origin, bot: Bot):
    sha = origin.branch("flaky", ORDERS)
    headers_body = forge.open(10, sha, "flaky")
    forge.fake.fail_next(2, 502)  # the worker's first calls to the forge fail
    assert bot.deliver(headers_body, path(forge)) == 202
    bot.settle(timeout=90)
    assert len(forge.reports(10)) == 1
    assert forge.last_status(sha) == "success"


def test_other_commands(tmp_path: Path, forge: Forge, origin: Origin, bot: Bot):
    sha = origin.branch("cmds", ORDERS)
    assert bot.deliver(forge.open(11, sha, "cmds"), path(forge)) == 202
    bot.settle()
    for body in ("/test", "/lineage marts.orders.amount", "/diff marts.orders", "/help",
                 "/deploy qa", "/unlock qa", "/approve", "/destroy"):
        assert bot.deliver(forge.comment(11, body, author="bob" if body == "/approve" else "alice"),
                           path(forge)) == 202
        bot.settle()
    answers = forge.comments(11)[1:]  # after the report
    text = "\n".join(answers)
    assert "`/test`: 18 passed, 0 failed in `mr_11`." in text  # /test runs every test
    assert "```mermaid" in text and "marts_orders --> marts_revenue_by_day" in text
    assert "- `marts.orders.amount` reaches: `marts.revenue_by_day.revenue`" in text
    assert "`/diff marts.orders`: new — production has no version of it yet." in text
    assert "Sluice commands (one per line)" in text
    assert "`/unlock qa`: released (it was held by `/deploy qa` by @alice in " in text
    assert "`/approve`: approval by @bob at `" in text and "recorded in the audit log" in text
    assert "`/destroy`: environment `mr_11` dropped" in text
    state = bot.project_state(forge)
    assert state.environment("mr_11") is None
    assert state.environment("qa") is not None  # deployed before the MR's environment was dropped


def test_merging_into_another_branch_leaves_production_alone(forge: Forge, origin: Origin, bot: Bot):
    sha = origin.branch("into-dev", ORDERS)
    forge.fake.add_merge_request(forge.repo, 12, head_sha=sha, source_branch="into-dev",
                                 target_branch="develop")
    assert bot.deliver(forge.hook(12, "opened"), path(forge)) == 202
    bot.settle()
    forge.fake.merge(forge.repo, 12, sha)
    assert bot.deliver(forge.hook(12, "closed"), path(forge)) == 202
    bot.settle()
    state = bot.project_state(forge)
    assert state.environment("prod") is None
    assert state.environment("mr_12") is None
    assert not any("Promoted" in c for c in forge.comments(12))


# -- secrets never leak ------------------------------------------------------------------------------

PASSWORD = "pg-pa55word-XYZ"


@pytest.mark.promises
def test_no_secret_in_any_output(tmp_path: Path, forge: Forge, origin: Origin):
    redis_client().flushdb()
    config = server_config(tmp_path, forge, origin)
    # A warehouse URL and a state URL that carry a password; the forge has a token and a secret.
    config = dataclasses.replace(config, warehouses={"default": config.warehouses["default"],
                                                     "other": f"postgresql://sluice:{PASSWORD}@10.9.9.9/x"})
    secrets = secrets_of(config)
    assert PASSWORD in secrets and forge.fake.token in secrets and forge.fake.webhook_secret in secrets

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_RedactingFilter(Redactor(secrets)))
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    bot = Bot(config)
    bot.worker.start()
    try:
        build_production(bot, forge, origin)
        sha = origin.branch("leaky", {**ORDERS, **CUSTOMERS})
        assert bot.deliver(forge.open(1, sha, "leaky"), f"/webhooks/{forge.name}") == 202
        bot.settle()
        # A message that tries to echo secrets back (a log line and a comment).
        logging.getLogger("sluice.test").info("token %s and url https://oauth2:%s@host/x.git",
                                              forge.fake.token, forge.fake.token)
        with log_context(run=1, mr="data/shop!1", sha="abc"):
            logging.getLogger("sluice.test").warning("connecting with %s", PASSWORD)
        RunLog(bot.worker.services.state, bot.worker.services.redact).append_log(
            1, f"oops {forge.fake.token} {PASSWORD}")
        bot.worker.services.forges[forge.name].post_comment(forge.repo, 1, f"echo {forge.fake.token}")
    finally:
        bot.worker.stop()
        root.removeHandler(handler)
        root.setLevel(old_level)

    outputs = [stream.getvalue()]
    outputs += [c.body for c in forge.fake.comments(forge.repo, 1)]
    outputs += [json.dumps(s) for s in forge.fake.statuses(forge.repo, sha)]
    for run in bot.worker.jobs.runs.for_merge_request(forge.name, forge.repo, 1):
        outputs += [run.log, run.report, run.summary, run.policy or ""]
    text = "\n".join(outputs)
    assert "data/shop!1" in stream.getvalue() and '"run": 1' in stream.getvalue()  # context fields
    for secret in secrets:
        assert secret not in text, f"a secret leaked: {secret[:3]}…"
    assert "***" in text


@pytest.mark.parametrize("forge", ["gitlab"], indirect=True)
def test_the_worker_runs_the_janitor_periodically(tmp_path: Path, forge: Forge, origin: Origin):
    from bot.metrics import job_metrics

    redis_client().flushdb()
    config = dataclasses.replace(server_config(tmp_path, forge, origin), janitor_interval=0.3,
                                 janitor_ttl="0s")
    bot = Bot(config)
    build_production(bot, forge, origin)
    sha = origin.branch("gone", ORDERS)
    bot.worker.start()
    try:
        before = job_metrics().janitor.labels("object")._value.get()
        assert bot.deliver(forge.open(13, sha, "gone"), path(forge)) == 202
        bot.settle()
        forge.fake.close(forge.repo, 13)
        assert bot.deliver(forge.hook(13, "closed"), path(forge)) == 202
        bot.settle()
        # mr_13's own tables (orders, revenue_by_day) are referenced by no environment now.
        deadline = time.monotonic() + 20
        while job_metrics().janitor.labels("object")._value.get() < before + 2:
            assert time.monotonic() < deadline, "the janitor did not run"
            time.sleep(0.1)
    finally:
        bot.worker.stop()
    prod = bot.project_state(forge).environment("prod")
    assert prod is not None and "marts__data_shop__mr_13.orders" not in warehouse_tables(tmp_path, bot)


# -- promises under failure ------------------------------------------------------------------------


@pytest.mark.promises
@pytest.mark.parametrize("forge", ["github"], indirect=True)
def test_a_report_post_that_fails_is_retried_without_a_duplicate_comment(forge: Forge, origin: Origin,
                                                                          bot: Bot):
    build_production(bot, forge, origin)
    sha = origin.branch("flaky-post", ORDERS)
    delivery = forge.open(14, sha, "flaky-post")
    # Let the worker start (its pending status), then fail the next two forge calls.
    assert bot.deliver(delivery, path(forge)) == 202
    deadline = time.monotonic() + 30
    while not forge.fake.requests_to("POST", r"/statuses/"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    forge.fake.fail_next(2, 502)
    bot.settle(timeout=90)
    assert sum(1 for r in forge.fake.requests if r.status == 502) == 2  # the outage happened
    assert len(forge.reports(14)) == 1
    assert forge.last_status(sha) == "success"


@pytest.mark.promises
@pytest.mark.parametrize("forge", ["gitlab"], indirect=True)
def test_two_merges_at_once_are_promoted_one_after_the_other(tmp_path: Path, forge: Forge, origin: Origin,
                                                            bot: Bot):
    build_production(bot, forge, origin)
    orders = origin.branch("one", ORDERS)
    segments = origin.branch("two", {"models/marts/customer_segments.sql": ("then 'loyal'", "then 'vip'"),
                                     "models/schema.yml": ("values: [loyal, regular",
                                                           "values: [vip, loyal, regular")})
    for number, sha, branch in ((21, orders, "one"), (22, segments, "two")):
        assert bot.deliver(forge.open(number, sha, branch), path(forge)) == 202
    bot.settle()
    for number in (21, 22):
        assert bot.deliver(forge.comment(number, "/approve\n/approve breaking", author="maria"),
                           path(forge)) == 202
    bot.settle()
    first = origin.merge("one")
    second = origin.merge("two")  # main now holds both changes
    forge.fake.merge(forge.repo, 21, first)
    forge.fake.merge(forge.repo, 22, second)
    hooks = [forge.hook(21, "closed"), forge.hook(22, "closed")]
    for hook in hooks:  # delivered back to back; two worker threads pick them up together
        assert bot.deliver(hook, path(forge)) == 202
    bot.settle()
    # Each thread is told the truth: promoted, or already in production with the other's promotion.
    told = {n: [c for c in forge.comments(n) if "production" in c and "Sluice ·" not in c
                and " waits: " not in c] for n in (21, 22)}  # a wait for the other's promotion aside
    assert all(len(said) == 1 for said in told.values()), told
    assert any("Promoted to production" in said[0] for said in told.values()), told
    assert all("Promoted to production" in s[0] or "Already in production" in s[0] for s in told.values())
    state = bot.project_state(forge)
    prod = state.environment("prod")
    assert prod is not None
    # Production holds both changes: whichever came second was planned on top of the first.
    physical = state.snapshots(fingerprints=prod.models.values())
    orders_sql = physical[prod.models["marts.orders"]].canonical
    segments_sql = physical[prod.models["marts.customer_segments"]].canonical
    assert "coupon_amount AS amount" in orders_sql and "'vip'" in segments_sql
    assert [h.action for h in state.history("prod")][-1] == "plan"  # production's first build
    assert state.history("prod")[0].commit in (first, second)


@pytest.mark.promises
@pytest.mark.parametrize("forge", ["gitlab"], indirect=True)
def test_after_the_retry_budget_the_thread_says_what_failed(tmp_path: Path, forge: Forge, origin: Origin):
    redis_client().flushdb()
    config = dataclasses.replace(server_config(tmp_path, forge, origin), job_retries=1,
                                 retry_backoff_ms=100)
    bot = Bot(config)
    bot.worker.start()
    try:
        sha = origin.branch("doomed", ORDERS)
        delivery = forge.open(15, sha, "doomed")
        forge.fake.fail_next(2, 503)  # the first attempt and its one retry both meet a forge outage
        assert bot.deliver(delivery, path(forge)) == 202
        bot.settle(timeout=60)
        [comment] = [c for c in forge.comments(15) if "could not finish" in c]
        assert "after 2 attempts" in comment and "503" in comment
        assert forge.reports(15) == []
    finally:
        bot.worker.stop()


@pytest.mark.promises
@pytest.mark.parametrize("forge", ["gitlab"], indirect=True)
def test_a_lost_warehouse_connection_is_retried_and_the_report_says_so(tmp_path: Path, forge: Forge,
                                                                       origin: Origin):

    redis_client().flushdb()
    # The shipped defaults: a login that is not a superuser, the default retry backoff.
    with fresh_login_database() as (url, _login):
        config = dataclasses.replace(server_config(tmp_path, forge, origin), warehouses={"default": url})
        _lost_warehouse_connection(Bot(config), forge, origin, url.rsplit("/", 1)[1])


def _lost_warehouse_connection(bot: Bot, forge: Forge, origin: Origin, database: str) -> None:
    import psycopg

    bot.worker.start()
    try:
        build_production(bot, forge, origin)
        slow = {"models/marts/orders.sql": (
            "from staging.stg_orders as o",
            "from staging.stg_orders as o\ncross join (select sum(a.amount * b.amount * d.id) as n "
            "from raw.raw_payments as a, raw.raw_payments as b, raw.raw_customers as d) as slow")}
        sha = origin.branch("pg-slow", slow)
        assert bot.deliver(forge.open(16, sha, "pg-slow"), path(forge)) == 202
        killed = 0
        deadline = time.monotonic() + 60
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
            while not killed:
                assert time.monotonic() < deadline, "the build never started"
                killed = len(admin.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s "
                    "and state = 'active' and query ilike %s", (database, "%raw_payments%")).fetchall())
                time.sleep(0.05)
        bot.settle(timeout=120)
        [report] = forge.reports(16)
        assert "Attempt 2: attempt 1 stopped" in report and "warehouse connection was lost" in report
        assert forge.last_status(sha) == "success"
    finally:
        bot.worker.stop()
