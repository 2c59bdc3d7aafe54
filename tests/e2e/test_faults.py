"""Recovery under faults, in the production shape with the shipped defaults (see
`tests/support/deployment.py`): gunicorn with two web workers, two `sluice worker` processes, a
PostgreSQL state store and warehouse behind proxies, a Redis of its own. Each test asserts how long
recovery took, that the thread was told the truth, and ends with nothing left running, held,
checked out or orphaned. Run alone with `pytest -m faults`."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.forges.base import Role
from bot.records.runs import RunLog, RunStatus
from bot.worker.keys import event_lease
from runner.engines import open_engine
from runner.state.store import StateStore
from tests.support.deployment import Deployment, deployed
from tests.support.e2e import ORDERS, SEGMENTS, Forge
from tests.support.fakeforge import FakeGitLab
from tests.support.proxy import Trap
from tests.support.warehouses import env_views

pytestmark = [pytest.mark.faults, pytest.mark.slow]
RECOVERY = 60.0  # the promise: a fault is recovered from within a minute
# A build that takes about ten seconds on PostgreSQL (500 x 500 x 644 rows counted): long enough to
# be killed in the middle of it.
SLOW = {"models/marts/orders.sql": (
    "from staging.stg_orders as o",
    "from staging.stg_orders as o\ncross join (select count(*) as n from raw.raw_orders as a, "
    "raw.raw_orders as b, raw.raw_payments as c) as slow")}


@pytest.fixture
def forge() -> Iterator[Forge]:
    with FakeGitLab() as fake:
        for user, role in (("alice", Role.DEVELOPER), ("maria", Role.MAINTAINER)):
            fake.set_role("data/shop", user, role)
        yield Forge("gitlab", fake, "data/shop")


@pytest.fixture
def deployment(tmp_path: Path, forge: Forge) -> Iterator[Deployment]:
    with deployed(tmp_path, forge) as running:
        yield running


def lease_holder_pid(deployment: Deployment, event_id: int) -> int | None:
    from runner.state.locks import Locks

    store = deployment.state()
    try:
        [installation] = deployment.installations()
        held = Locks(store).held_by(event_lease(installation, event_id))
    finally:
        store.close()
    return int(held.holder.split(":")[1]) if held is not None else None


def reports(forge: Forge, number: int) -> list[str]:
    return forge.reports(number)


def story(deployment: Deployment, forge: Forge, state: StateStore, numbers: tuple[int, ...]) -> str:
    """What happened, for a failure's message: production's history and what the threads heard."""
    lines = [f"history: {h.id} {h.action} {h.commit} {h.source}" for h in state.history("prod")]
    lines += [f"!{n}: {c[:400]!r}" for n in numbers for c in forge.comments(n)]
    lines += [f"run {r.id} {r.kind} {r.status.value} {r.summary[:200]!r}"
              for n in numbers for r in RunLog(deployment.state()).for_merge_request("gitlab", forge.repo, n)]
    return "\n".join(lines)


def approved_and_merged(deployment: Deployment, forge: Forge, number: int, branch: str) -> str:
    """Approve the merge request as a maintainer would, then merge it; the merge commit."""
    assert deployment.deliver(forge.comment(number, "/approve\n/approve breaking", author="maria"))[0] == 202
    deployment.wait(lambda: deployment.pending() == 0, timeout=RECOVERY, what="the approval")
    sha = deployment.origin.merge(branch)
    forge.fake.merge(forge.repo, number, sha)
    return sha


def test_a_worker_killed_mid_build_is_taken_over_within_a_minute(deployment: Deployment, forge: Forge):
    deployment.start_worker()
    deployment.start_worker()
    sha = deployment.origin.branch("slow", SLOW)
    status, _ = deployment.deliver(forge.open(1, sha, "slow"))
    assert status == 202
    store = deployment.state()
    runs = RunLog(store)
    deployment.wait(lambda: any(r.status == "running"
                                for r in runs.for_merge_request("gitlab", forge.repo, 1)),
                    timeout=RECOVERY, what="the build to start")
    time.sleep(3.0)  # in the middle of the build
    pid = lease_holder_pid(deployment, 1)
    [victim] = [w for w in deployment.workers if w.pid == pid]
    deployment.kill(victim)
    killed = time.monotonic()

    deployment.wait(lambda: deployment.pending() == 0, timeout=RECOVERY, what="another worker to finish it")

    assert time.monotonic() - killed < RECOVERY
    assert len(reports(forge, 1)) == 1 and forge.last_status(sha) == "success"
    deployment.assert_clean()
    # The killed worker's run is closed as an error saying why; the one that took over succeeded.
    killed_run, taken_over = runs.for_merge_request("gitlab", forge.repo, 1)
    assert killed_run.status is RunStatus.ERROR and "worker running it stopped" in killed_run.summary
    assert taken_over.status is RunStatus.SUCCESS
    store.close()


def test_redis_restarted_empty_leaves_no_event_behind_for_more_than_a_minute(deployment: Deployment,
                                                                             forge: Forge):
    # Three events reach Redis while no worker runs, then Redis dies and comes back empty; two more
    # arrive while it is down.
    lost = [deployment.origin.branch(f"b{n}", {"models/marts/orders.sql": (
        "p.total_amount as amount", f"p.total_amount + {n} as amount")}) for n in range(1, 6)]
    for number, sha in enumerate(lost[:3], start=1):
        assert deployment.deliver(forge.open(number, sha, f"b{number}"))[0] == 202
    deployment.kill_redis()
    for number, sha in enumerate(lost[3:], start=4):
        assert deployment.deliver(forge.open(number, sha, f"b{number}"))[0] == 202
    deployment.start_redis()
    back = time.monotonic()
    deployment.start_worker()
    deployment.start_worker()

    deployment.wait(lambda: deployment.pending() == 0, timeout=RECOVERY, what="every stored event")

    assert time.monotonic() - back < RECOVERY
    assert all(len(reports(forge, n)) == 1 for n in range(1, 6))
    deployment.assert_clean()


def test_a_state_store_that_hangs_is_answered_503_in_seconds_and_nothing_is_lost(deployment: Deployment,
                                                                                 forge: Forge):
    deployment.start_worker()
    deployment.start_worker()
    sha = deployment.origin.branch("one", ORDERS)
    forge.fake.add_merge_request(forge.repo, 1, head_sha=sha, source_branch="one", author="alice")
    deliveries = [forge.comment(1, "/lineage marts.orders") for _ in range(4)]  # four comments
    deployment.wait(lambda: deployment.log.read_text().count(" started on ") == 2, timeout=30,
                    what="the workers to start")
    deployment.state_proxy.freeze()
    answers: list[tuple[int, float]] = []
    senders = [threading.Thread(target=lambda d=d: answers.append(deployment.deliver(d))) for d in deliveries]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    time.sleep(max(0.0, 10.0 - max(seconds for _, seconds in answers)))
    deployment.state_proxy.thaw()

    assert [status for status, _ in answers] == [503] * len(deliveries)
    assert max(seconds for _, seconds in answers) < 5.0
    # The forge delivers each again; each is processed once, whether the late store kept it or not.
    for delivery in deliveries:
        status, _ = deployment.deliver(delivery)
        assert status in (200, 202)
    deployment.wait(lambda: deployment.pending() == 0, timeout=RECOVERY, what="the redelivered events")
    answered = [c for c in forge.comments(1) if "Lineage of" in c]
    assert len(answered) == len(deliveries)
    deployment.assert_clean()


def test_the_web_app_started_while_the_state_store_is_down_serves_once_it_is_back(deployment: Deployment,
                                                                                   forge: Forge):
    """Started while the state store refused connections, every gunicorn worker crashed at boot
    with a traceback and the master exited: the web app stayed down once the store was back."""
    deployment.stop_web()
    seen = len(deployment.log.read_text())
    deployment.state_proxy.cut(refuse_for=6.0)
    web = deployment.start_web(wait=False)
    time.sleep(4.0)
    assert web.poll() is None  # waiting for the store, not gone

    took = deployment.wait(lambda: deployment.answers("/readyz"), timeout=RECOVERY, what="the web app")

    log = deployment.log.read_text()[seen:]
    assert "not serving yet: cannot open the state store" in log and "Traceback" not in log, log[-3000:]
    assert took < 30.0  # the store came back after 6 s; the wait backs off 1, 2, 4, 8 s
    deployment.start_worker()
    sha = deployment.origin.branch("late", ORDERS)
    forge.fake.add_merge_request(forge.repo, 61, head_sha=sha, source_branch="late", author="alice")
    assert deployment.deliver(forge.comment(61, "/help"))[0] == 202
    deployment.wait(lambda: deployment.pending() == 0, timeout=RECOVERY, what="the command")
    assert len([c for c in forge.comments(61) if "Sluice commands" in c]) == 1
    deployment.assert_clean()


@pytest.mark.parametrize("forward", [False, True], ids=["before COMMIT", "after COMMIT"])
def test_a_promotion_cut_at_commit_is_retried_and_the_thread_says_the_truth(deployment: Deployment,
                                                                             forge: Forge, forward: bool):
    deployment.start_worker()
    deployment.start_worker()
    sha = deployment.origin.branch("one", ORDERS)
    assert deployment.deliver(forge.open(1, sha, "one"))[0] == 202
    deployment.wait(lambda: len(reports(forge, 1)) == 1, timeout=RECOVERY, what="the report")
    merged = approved_and_merged(deployment, forge, 1, "one")
    trap = deployment.warehouse_proxy.set_trap(Trap(after=b'VIEW "marts"."orders"', at=b"COMMIT",
                                                    forward=forward))

    assert deployment.deliver(forge.hook(1, "closed"))[0] == 202
    deployment.wait(lambda: deployment.pending() == 0, timeout=RECOVERY, what="the promotion")

    assert trap.sprung
    told = [c for c in forge.comments(1) if "romoted" in c or "production" in c.lower()]
    told = [c for c in told if "Sluice ·" not in c]
    assert len(told) == 1 and "Promoted to production" in told[0], told
    assert "unchanged" not in told[0]
    state = deployment.project_state()
    engine = open_engine(deployment.warehouse_db)
    try:
        prod = state.environment("prod")
        assert prod is not None and state.changes.pending() == []
        shown = env_views(engine, "prod")
        snapshots = state.snapshots(fingerprints=prod.models.values())
        assert shown == {name: snapshots[fp].physical for name, fp in prod.models.items()}
        assert state.history("prod")[0].commit == merged
    finally:
        engine.close()
        state.close()
    deployment.assert_clean()


def under_new_id(delivery: tuple[dict[str, str], bytes]) -> tuple[dict[str, str], bytes]:
    """The same signed body again, under a fresh delivery id (a replay, or the forge resending)."""
    headers, body = delivery
    fresh = str(uuid.uuid4())
    ids = ("X-GitHub-Delivery", "X-Gitlab-Event-UUID", "Idempotency-Key")
    return {k: (fresh if k in ids else v) for k, v in headers.items()}, body


def test_a_command_redelivered_under_new_ids_is_answered_once(deployment: Deployment, forge: Forge):
    deployment.start_worker()
    deployment.start_worker()
    sha = deployment.origin.branch("cmd", ORDERS)
    forge.fake.add_merge_request(forge.repo, 31, head_sha=sha, source_branch="cmd", author="alice")
    command = forge.comment(31, "/lineage marts.orders")
    deliveries = [command] + [under_new_id(command) for _ in range(3)]
    statuses: list[int] = []
    senders = [threading.Thread(target=lambda d=d: statuses.append(deployment.deliver(d)[0]))
               for d in deliveries]
    for sender in senders:  # all at once, as a forge retrying a slow answer would
        sender.start()
    for sender in senders:
        sender.join()

    deployment.wait(lambda: deployment.pending() == 0, timeout=RECOVERY, what="the command")

    assert sorted(statuses) == [200, 200, 200, 202]
    assert len([c for c in forge.comments(31) if "Lineage of" in c]) == 1
    deployment.assert_clean()


def test_a_worker_killed_after_answering_does_not_answer_again(deployment: Deployment, forge: Forge):
    """The soak's double answer: a worker posted a command's answer and died before it marked the
    event done, so the worker that took the event over answered again."""
    worker = deployment.start_worker()
    sha = deployment.origin.branch("answered", ORDERS)
    forge.fake.add_merge_request(forge.repo, 41, head_sha=sha, source_branch="answered", author="alice")
    forge.fake.answer_late(r"^POST .*/merge_requests/41/notes$", 30.0)  # posted; the worker never hears

    assert deployment.deliver(forge.comment(41, "/help"))[0] == 202
    deployment.wait(lambda: any("Sluice commands" in c for c in forge.comments(41)), timeout=RECOVERY,
                    what="the answer")
    deployment.kill(worker)
    deployment.start_worker()
    deployment.wait(lambda: deployment.pending() == 0, timeout=RECOVERY, what="the takeover")

    assert len([c for c in forge.comments(41) if "Sluice commands" in c]) == 1
    deployment.assert_clean()


def test_two_merges_then_rollback_undo_exactly_the_last_one(deployment: Deployment, forge: Forge):
    deployment.start_worker()
    deployment.start_worker()
    one = deployment.origin.branch("one", ORDERS)
    two = deployment.origin.branch("two", SEGMENTS)
    for number, sha, branch in ((21, one, "one"), (22, two, "two")):
        assert deployment.deliver(forge.open(number, sha, branch))[0] == 202
    deployment.wait(lambda: all(len(reports(forge, n)) == 1 for n in (21, 22)), timeout=RECOVERY,
                    what="both reports")
    first = approved_and_merged(deployment, forge, 21, "one")
    second = approved_and_merged(deployment, forge, 22, "two")
    assert deployment.deliver(forge.hook(21, "closed"))[0] == 202
    time.sleep(0.05)
    assert deployment.deliver(forge.hook(22, "closed"))[0] == 202
    deployment.wait(lambda: deployment.pending() == 0, timeout=RECOVERY, what="both promotions")
    state = deployment.project_state()
    try:
        assert state.history("prod")[0].commit == second, story(deployment, forge, state, (21, 22))
        after_first = next(h.after for h in state.history("prod") if h.commit == first)
    finally:
        state.close()

    assert deployment.deliver(forge.comment(22, "/rollback prod", author="maria"))[0] == 202
    deployment.wait(lambda: deployment.pending() == 0, timeout=RECOVERY, what="the rollback")

    state = deployment.project_state()
    try:
        prod = state.environment("prod")
        assert prod is not None and dict(prod.models) == dict(after_first)
        assert state.history("prod")[0].commit == first
    finally:
        state.close()
    [answer] = [c for c in forge.comments(22) if c.startswith("`/rollback prod`")]
    assert "views moved back" in answer
    deployment.assert_clean()


def test_a_rollback_cut_after_commit_is_retried_and_goes_back_one_step(deployment: Deployment,
                                                                      forge: Forge):
    """The retry of a `/rollback` whose COMMIT answer was lost found production already rolled
    back (the change it settled) and went back a second step, past the merge before."""
    deployment.start_worker()
    deployment.start_worker()
    for number, edit, branch in ((51, ORDERS, "one"), (52, SEGMENTS, "two")):
        sha = deployment.origin.branch(branch, edit)
        assert deployment.deliver(forge.open(number, sha, branch))[0] == 202
        deployment.wait(lambda n=number: len(reports(forge, n)) == 1, timeout=RECOVERY, what="the report")
        approved_and_merged(deployment, forge, number, branch)
        assert deployment.deliver(forge.hook(number, "closed"))[0] == 202
        deployment.wait(lambda: deployment.pending() == 0, timeout=RECOVERY, what="the promotion")
    state = deployment.project_state()
    try:
        history = state.history("prod")  # production's build, then each merge's promotion
        assert len(history) == 3, story(deployment, forge, state, (51, 52))
        after_first = dict(history[1].after)
    finally:
        state.close()
    trap = deployment.warehouse_proxy.set_trap(Trap(after=b'VIEW "marts"."customer_segments"',
                                                    at=b"COMMIT", forward=True))

    assert deployment.deliver(forge.comment(52, "/rollback prod", author="maria"))[0] == 202
    deployment.wait(lambda: deployment.pending() == 0, timeout=RECOVERY, what="the rollback")

    assert trap.sprung
    state = deployment.project_state()
    try:
        prod = state.environment("prod")
        assert prod is not None and dict(prod.models) == after_first, story(deployment, forge, state, (52,))
        assert [h.action for h in state.history("prod")].count("rollback") == 1
        assert state.changes.pending() == []
    finally:
        state.close()
    [answer] = [c for c in forge.comments(52) if c.startswith("`/rollback prod`")]
    assert "views moved back" in answer and "customer_segments" in answer, answer
    deployment.assert_clean()
