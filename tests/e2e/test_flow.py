"""The merge-request flow never lies and never hangs (issue 11): one end-to-end test per problem a
team met, each on GitLab and on GitHub, through the web app, a real worker on Redis and the fake
forge's real clients. Each failed before its fix."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from bot.events import Repository
from bot.forges import FORGES
from bot.records.audit import AuditLog
from bot.records.runs import RunKind, RunStatus
from bot.worker.keys import env_lock, event_lease
from bot.worker.reaper import reap
from tests.support.e2e import (
    CUSTOMERS,
    ORDERS,
    Bot,
    Forge,
    build_production,
    path,
    run_page,
    runs_of,
    server_config,
    wait_until,
)
from tests.support.repos import Origin, git
from tests.support.services import redis_client

PROMOTION = "sluice/promotion"


def label(forge: Forge, number: int) -> str:
    return FORGES[forge.name].mr_label(number)


def gate_line(report: str) -> str:
    found = re.search(r"\*\*Merge gate\*\* \(`sluice/promotion` .\): (.*)\n", report)
    assert found, report[:600]
    return found.group(1)


def send(bot: Bot, forge: Forge, delivery: tuple[dict[str, str], bytes], parked: int = 0) -> None:
    assert bot.deliver(delivery, path(forge)) == 202
    bot.settle(parked=parked)


# -- 1. a promotion never hangs silently -------------------------------------------------------------


def test_a_promotion_behind_a_deploy_hold_says_so_once_and_goes_on_when_released(forge: Forge,
                                                                                  origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    # !1 holds production with `/deploy prod` (approved, as protected environments need).
    sha1 = origin.branch("held", CUSTOMERS)
    send(bot, forge, forge.open(1, sha1, "held"))
    send(bot, forge, forge.comment(1, "/approve", author="bob"))
    send(bot, forge, forge.comment(1, "/deploy prod", author="maria"))
    [deployed] = [c for c in forge.comments(1) if c.startswith("`/deploy prod`")]
    assert "This merge request holds `prod` for 8 h, until " in deployed  # the term, said when taken

    # !2 is merged meanwhile: its promotion waits, says so once, and holds no worker.
    sha2 = origin.branch("second", ORDERS)
    send(bot, forge, forge.open(2, sha2, "second"))
    send(bot, forge, forge.comment(2, "/approve\n/approve breaking", author="maria"))
    forge.fake.merge(forge.repo, 2, origin.merge("second"))
    send(bot, forge, forge.hook(2, "closed"), parked=1)
    [waiting] = [c for c in forge.comments(2) if c.startswith("⏳")]
    one = label(forge, 1)
    assert waiting.startswith(f"⏳ The promotion of {label(forge, 2)} to production waits: `prod` is held "
                              f"by `/deploy prod` by @maria in {one} since ")
    assert ", until " in waiting and f"To release it: comment `/unlock prod` in {one}" in waiting
    [promotion] = runs_of(bot, forge, 2, RunKind.PROMOTE)
    assert promotion.status is RunStatus.WAITING
    page = run_page(bot, promotion.id)
    assert "Waiting for:" in page and "/deploy prod</code> by @maria" in page
    assert "Nothing logged yet" not in page
    # Other work goes on: the workers are free.
    send(bot, forge, forge.comment(1, "/help"), parked=1)
    assert any("Sluice commands" in c for c in forge.comments(1))

    # Released: the promotion goes on by itself, in the same run, without a second message.
    send(bot, forge, forge.comment(1, "/unlock prod", author="maria"))
    assert any("Promoted to production" in c for c in forge.comments(2))
    assert len([c for c in forge.comments(2) if c.startswith("⏳")]) == 1
    [promotion] = runs_of(bot, forge, 2, RunKind.PROMOTE)
    assert promotion.status is RunStatus.SUCCESS and promotion.waiting_for is None


def test_an_expired_deploy_hold_is_released_by_the_janitor_and_audited(tmp_path: Path, forge: Forge,
                                                                        origin: Origin):
    redis_client("e2e").flushdb()
    # The hold outlasts the answer (opening the sandboxed warehouse takes a moment on a loaded machine).
    bot = Bot(dataclasses.replace(server_config(tmp_path, forge, origin), deploy_hold="2s",
                                  janitor_interval=0))
    bot.worker.start()
    try:
        sha = origin.branch("short", ORDERS)
        send(bot, forge, forge.open(1, sha, "short"))
        send(bot, forge, forge.comment(1, "/deploy staging"))
        assert any("holds `staging` for 2 s, until" in c for c in forge.comments(1))
        name = env_lock(bot.config.installation, Repository(forge.name, forge.repo, ""), "staging")
        # On a loaded machine the 2 s hold may have lapsed already; if not, it has a term.
        lock = bot.worker.jobs.locks.held_by(name)
        assert lock is None or lock.expires_at is not None
        wait_until(lambda: bot.worker.jobs.locks.held_by(name) is None, what="the hold to lapse")
        bot.worker.janitor_pass()
        [entry] = AuditLog(bot.worker.services.state).entries(action="lock_expired")
        assert entry.environment == "staging"
        assert lock is None or entry.detail["held_by"] == lock.holder
        assert entry.detail["reason"].startswith("`/deploy staging` by @alice")
        # Free again: another merge request may deploy there.
        sha2 = origin.branch("other", CUSTOMERS)
        send(bot, forge, forge.open(2, sha2, "other", author="bob"))
        send(bot, forge, forge.comment(2, "/deploy staging", author="bob"))
        assert any("`staging` now points at this merge request's snapshots" in c for c in forge.comments(2))
    finally:
        bot.worker.stop()


# -- 2. the report tells the same story on a rerun ----------------------------------------------------


def test_a_rerun_reports_the_same_downstream_impact(forge: Forge, origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    sha = origin.branch("amount", ORDERS)
    send(bot, forge, forge.open(1, sha, "amount"))
    send(bot, forge, forge.comment(1, "/plan"))  # every snapshot is built already
    [report] = forge.reports(1)
    [first, rerun] = runs_of(bot, forge, 1, RunKind.PIPELINE)
    for text in (first.report, rerun.report, report):
        assert "- `marts.revenue_by_day` changes: `revenue`" in text
        assert "dashboard **revenue_dashboard**" in text
        assert "No downstream model's data changes" not in text
        assert "Unaffected, reused without rebuilding: `marts.revenue_by_day`" not in text
        assert 'marts_revenue_by_day["marts.revenue_by_day<br/><i>revenue</i>"]:::breaking' in text
    assert "0 rebuilt" in rerun.report.splitlines()[3] or "· 0 rebuilt ·" in rerun.report


# -- 3. the gate is shown before the merge ----------------------------------------------------------


def test_what_merging_will_do_is_said_before_the_merge_and_kept_true(forge: Forge, origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    sha1 = origin.branch("gated", ORDERS)
    send(bot, forge, forge.open(1, sha1, "gated"))
    [report] = forge.reports(1)
    line = gate_line(report)
    assert line.startswith("merging will not promote to `prod`: needs 1 approval from developers other "
                           "than @alice (has 0)")
    assert "the change to `marts.orders` is breaking" in line and "`/approve breaking`" in line
    assert "ready" not in report.splitlines()[1].replace("not ready to merge", "")
    assert forge.last_status(sha1, PROMOTION) == "failure"

    # An approval on the forge recomputes it: one reason left.
    send(bot, forge, forge.approve(1, "bob"))
    line = gate_line(forge.reports(1)[0])
    assert "needs 1 approval" not in line and "`/approve breaking`" in line
    assert forge.last_status(sha1, PROMOTION) == "failure"
    # The acknowledgement clears the last one: green, exactly when merging would promote.
    send(bot, forge, forge.comment(1, "/approve breaking", author="maria"))
    assert gate_line(forge.reports(1)[0]) == "merging promotes to `prod`."
    assert forge.last_status(sha1, PROMOTION) == "success"
    assert any("Now merging promotes to `prod`." in c for c in forge.comments(1))
    approvals = [r for r in runs_of(bot, forge, 1) if r.kind == RunKind.APPROVE]
    assert len(approvals) == 2 and all(r.status is RunStatus.SUCCESS for r in approvals)

    # A push: the gate is computed again for the new head.
    sha2 = origin.commit("gated", CUSTOMERS)
    send(bot, forge, forge.push(1, sha1, sha2))
    assert forge.last_status(sha2, PROMOTION) in ("success", "failure")
    assert gate_line(forge.reports(1)[0])

    # Merged although the gate is red (no required check): the thread says so and what brings
    # production level.
    sha3 = origin.branch("ungated", {"models/marts/customer_segments.sql": ("then 'loyal'", "then 'vip'"),
                                     "models/schema.yml": ("values: [loyal, regular",
                                                           "values: [vip, loyal, regular")})
    send(bot, forge, forge.open(2, sha3, "ungated"))
    assert forge.last_status(sha3, PROMOTION) == "failure"
    forge.fake.merge(forge.repo, 2, origin.merge("ungated"))
    send(bot, forge, forge.hook(2, "closed"))
    [refused] = [c for c in forge.comments(2) if "Not promoted" in c]
    assert "Production is now behind `main`. To bring it level:" in refused
    assert "`/deploy prod` here" in refused


# -- 4. a new or edited test always runs -------------------------------------------------------------


def test_a_merge_request_that_only_changes_a_test_runs_it(forge: Forge, origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    narrowed = {"models/schema.yml": ("values: [placed, shipped, completed, return_pending, returned]",
                                      "values: [placed, shipped, completed]")}
    sha = origin.branch("stricter", narrowed)
    send(bot, forge, forge.open(1, sha, "stricter"))
    [report] = forge.reports(1)
    assert "accepted_values(staging.stg_orders.status)" in report and "failing row" in report
    assert "tests failing" in report.splitlines()[1]
    assert forge.last_status(sha) == "failure"  # no false green
    assert forge.last_status(sha, PROMOTION) == "failure"


# -- 5. production has a start -----------------------------------------------------------------------


def test_the_first_push_to_the_production_branch_builds_production(forge: Forge, origin: Origin, bot: Bot):
    sha = origin.branch("early", ORDERS)
    send(bot, forge, forge.open(1, sha, "early"))
    assert "Production has not been built yet" in forge.reports(1)[0]

    main = git(origin.work, "rev-parse", "main")
    send(bot, forge, forge.push_branch("main", "0" * 40, main))
    prod = bot.project_state(forge).environment("prod")
    assert prod is not None and len(prod.models) == 11
    assert forge.last_status(main, "sluice/production") == "success"
    [run] = [r for r in bot.worker.jobs.runs.for_merge_request(forge.name, forge.repo, 0)
             if r.kind == RunKind.BOOTSTRAP]
    assert run.status is RunStatus.SUCCESS and run.sha == main
    assert "production built from main" in run_page(bot, run.id)

    # Now a merge request plans against production, and a later push changes nothing.
    send(bot, forge, forge.comment(1, "/plan"))
    assert "#### Plan against `prod`" in forge.reports(1)[0]
    assert "Production has not been built yet" not in forge.reports(1)[0]
    send(bot, forge, forge.push_branch("main", main, main))
    assert len([r for r in bot.worker.jobs.runs.for_merge_request(forge.name, forge.repo, 0)
                if r.kind == RunKind.BOOTSTRAP]) == 1
    send(bot, forge, forge.push_branch("feature-x", "0" * 40, sha))  # not the production branch
    assert bot.project_state(forge).environment("prod") == prod


# -- 7. payloads and /rollback answers ----------------------------------------------------------------


def test_payloads_the_forges_really_send_and_rollback_answers(forge: Forge, origin: Origin, bot: Bot):
    from tests.support.fakeforge import FakeGitLab

    build_production(bot, forge, origin)
    sha = origin.branch("c1", ORDERS)
    send(bot, forge, forge.open(1, sha, "c1"))
    send(bot, forge, forge.comment(1, "/rollback prod", author="maria"))
    assert any(c.startswith("`/rollback prod`: production has no earlier version to roll back to")
               and "sluice env drop" not in c for c in forge.comments(1))
    send(bot, forge, forge.comment(1, "/rollback staging", author="maria"))
    assert any("`staging` has no change to roll back" in c for c in forge.comments(1))

    if isinstance(forge.fake, FakeGitLab):
        # An integration's "Service Hook" carrying new commits (oldrev) is a push to the MR.
        old = forge.fake.merge_request(forge.repo, 1).head_sha
        new = origin.commit("c1", CUSTOMERS)
        forge.fake.push(forge.repo, 1, new)
        headers, body = forge.fake.merge_request_hook(forge.repo, 1, "update", oldrev=old)
        send(bot, forge, ({**headers, "X-Gitlab-Event": "Service Hook"}, body))
        assert f"`{new[:8]}`" in forge.reports(1)[0]
        # A group hook's merge payload without project.id is a merge all the same.
        send(bot, forge, forge.comment(1, "/approve\n/approve breaking", author="maria"))
        forge.fake.merge(forge.repo, 1, origin.merge("c1"))
        headers, body = forge.fake.merge_request_hook(forge.repo, 1, "merge")
        data = json.loads(body)
        del data["project"]["id"]
        assert bot.deliver((headers, json.dumps(data).encode()), path(forge)) == 202
        bot.settle()
        assert any("Promoted to production" in c for c in forge.comments(1))


# -- 8. every kind of run has a page, and a waiting one says for what -------------------------------


def test_deploys_rollbacks_approvals_and_commands_have_run_pages(forge: Forge, origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    sha = origin.branch("pages", CUSTOMERS)
    send(bot, forge, forge.open(1, sha, "pages"))
    for body, author in (("/deploy staging", "alice"), ("/rollback staging", "maria"), ("/approve", "bob"),
                         ("/lineage marts.orders", "alice")):
        send(bot, forge, forge.comment(1, body, author=author))
    send(bot, forge, forge.approve(1, "maria"))
    kinds = {r.kind: r for r in runs_of(bot, forge, 1)}
    assert {RunKind.PIPELINE, RunKind.DEPLOY, RunKind.ROLLBACK, RunKind.APPROVE,
            RunKind.COMMAND} <= set(kinds)
    deploy = run_page(bot, kinds[RunKind.DEPLOY].id)
    assert "deploy" in deploy and "now points at this merge request" in deploy and "@alice" in deploy
    rollback = run_page(bot, kinds[RunKind.ROLLBACK].id)
    assert "rollback" in rollback and "has no earlier version to roll back to" in rollback
    approvals = [r for r in runs_of(bot, forge, 1) if r.kind == RunKind.APPROVE]
    assert len(approvals) == 2  # /approve, and the forge's own approval
    assert all("merge gate:" in r.log for r in approvals)
    assert "Lineage of" in run_page(bot, kinds[RunKind.COMMAND].id)

    # A run that waits for a maintainer says so instead of "Nothing logged yet".
    sha2 = origin.branch("forked", ORDERS)
    forge.fake.add_merge_request(forge.repo, 2, head_sha=sha2, source_branch="forked", author="outsider",
                                 from_fork=True)
    send(bot, forge, forge.hook(2, "opened"))
    [waiting] = runs_of(bot, forge, 2, RunKind.PIPELINE)
    page = run_page(bot, waiting.id)
    assert waiting.status is RunStatus.WAITING and "Waiting for:" in page
    assert f"<code>/approve</code> of commit <code>{sha2[:12]}</code>" in page


# -- 9. two models with the same SQL are two tables ------------------------------------------------


def test_twin_models_keep_their_own_tables(forge: Forge, origin: Origin, bot: Bot):
    twin = origin.work / "models" / "marts" / "orders_copy.sql"
    twin.write_text((origin.work / "models" / "marts" / "orders.sql").read_text())
    git(origin.work, "add", ".")
    git(origin.work, "commit", "-q", "-m", "a copy of orders")
    git(origin.work, "push", "-q", "origin", "main")
    build_production(bot, forge, origin)
    state = bot.project_state(forge)
    prod = state.environment("prod")
    assert prod is not None
    snapshots = state.snapshots(fingerprints=prod.models.values())
    orders, copy = (snapshots[prod.models[m]] for m in ("marts.orders", "marts.orders_copy"))
    assert orders.physical != copy.physical
    assert copy.physical.startswith("sluice__data_shop__marts.orders_copy__")  # the repository's namespace

    sha = origin.branch("amount", ORDERS)
    send(bot, forge, forge.open(1, sha, "amount"))
    send(bot, forge, forge.comment(1, "/diff marts.orders"))
    answer = next(c for c in forge.comments(1) if "**Data diff of `marts.orders`**" in c)
    assert f"`{orders.physical}` →" in answer and "orders_copy" not in answer
    mr = state.environment("mr_1")
    assert mr is not None and mr.models["marts.orders_copy"] == prod.models["marts.orders_copy"]


def test_a_run_waiting_for_the_warehouse_says_for_whom_on_its_page_and_then_in_its_thread(
        forge: Forge, origin: Origin, bot: Bot):
    import threading

    from bot.worker.keys import warehouse_lock

    forge.fake.add_merge_request(forge.repo, 7, head_sha=origin.branch("w", ORDERS), source_branch="w")
    jobs = bot.worker.jobs
    url = bot.config.warehouses["default"]
    assert jobs.locks.acquire(warehouse_lock(url), "run:99", "run #99 (pipeline of data/shop!6)", ttl=60)
    run_id = jobs.runs.create(forge.name, forge.repo, 7, RunKind.PIPELINE)
    jobs.runs.start(run_id)
    done = threading.Event()

    def work() -> None:
        with jobs.warehouse_lock(url, run_id, notice_after=0.2):
            done.set()

    worker = threading.Thread(target=work)
    worker.start()
    wait_until(lambda: any(c.startswith("⏳ Run") for c in forge.comments(7)), what="the notice")
    [notice] = [c for c in forge.comments(7) if c.startswith("⏳ Run")]
    assert ("waits: the warehouse (one writer at a time) is held by run #99 (pipeline of data/shop!6)"
            in notice)
    assert "Waiting for:" in run_page(bot, run_id) and not done.is_set()
    jobs.locks.release(warehouse_lock(url), "run:99")
    worker.join(timeout=30)
    assert done.is_set()
    run = jobs.runs.get(run_id)
    assert run is not None and run.waiting_for is None and "took the warehouse's writer lock" in run.log


# -- a dead run's error never covers the verdict of the run that took its work over -----------------


def test_a_dead_runs_commit_status_does_not_cover_the_run_that_took_over(forge: Forge, origin: Origin,
                                                                          bot: Bot):
    """The fault suite's flake: a worker was killed mid-build; another took the event (and its
    lease) over and built the commit, green; only then, the lease free, the reaper closed the dead
    run and set the commit's status to its error, over the green one."""
    build_production(bot, forge, origin)
    sha = origin.branch("amount", ORDERS)
    jobs = bot.worker.jobs
    dead = jobs.runs.create(forge.name, forge.repo, 1, RunKind.PIPELINE, sha=sha, event_id=10_000)
    jobs.runs.start(dead)
    with jobs.s.state.engine.begin() as conn:  # started long before the reaper's grace
        conn.exec_driver_sql(f"UPDATE sluice_runs SET created_at = created_at - 3600 WHERE id = {dead}")
    lease = event_lease(bot.config.installation, 10_000)
    assert jobs.locks.acquire(lease, "the worker that took over", ttl=300) is not None

    send(bot, forge, forge.open(1, sha, "amount"))  # the taking-over worker's build
    assert forge.last_status(sha) == "success"
    jobs.locks.release(lease)
    reaped = reap(jobs)

    assert dead in reaped.runs
    assert jobs.runs.get(dead).status is RunStatus.ERROR  # type: ignore[union-attr]
    assert forge.last_status(sha) == "success"
