"""Promises under failure, tried for real: a worker killed with SIGKILL mid-job, production
during a promotion that dies. Run alone with `pytest -m promises`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import load_server_config
from bot.forges.base import Role
from bot.records.inbox import Inbox
from bot.records.runs import RunLog
from bot.web.app import broker_dispatcher, create_app
from runner.state.store import StateStore
from tests.support.e2e import ORDERS, Forge
from tests.support.fakeforge import FakeGitLab
from tests.support.paths import REPO
from tests.support.repos import Origin
from tests.support.services import free_port, redis_client, redis_db, redis_url, start_redis

pytestmark = pytest.mark.promises
ROOT = REPO
# A build that takes a few seconds: long enough to be killed in the middle of it.
SLOW = {"models/marts/orders.sql": (
    "from staging.stg_orders as o",
    "from staging.stg_orders as o\ncross join (select sum(a.amount * b.amount * c.id) as n "
    "from raw.raw_payments as a, raw.raw_payments as b, raw.raw_orders as c, raw.raw_customers as d"
    ") as slow")}


class Deployment:
    """A web app in this process and `sluice worker` processes, sharing a state file and Redis."""

    def __init__(self, tmp_path: Path, forge: Forge, origin: Origin):
        gl = forge.fake.config()
        self.db = redis_db("promises")
        self.config_path = tmp_path / "server.yml"
        self.config_path.write_text(
            f"state_url: sqlite:///{tmp_path / 'state.db'}\n"
            f"broker_url: {redis_url('promises')}\n"
            f"work_dir: {tmp_path / 'work'}\n"
            f"public_url: http://sluice.test\n"
            f"gitlab:\n  url: {gl.url}\n  token: {gl.token}\n  webhook_secret: {gl.webhook_secret}\n"
            f"warehouses:\n  default: duckdb:///{tmp_path / 'warehouse.duckdb'}\n"
            f"repositories:\n  - forge: gitlab\n    name: {forge.repo}\n    clone_url: {origin.bare}\n"
            "allow_local_clones: true\njanitor_interval: 0\n")  # the shipped defaults otherwise
        redis_client("promises").flushdb()
        self.config = load_server_config(self.config_path, {})
        self.state = StateStore(self.config.state_url)
        self.app = create_app(self.config, state=self.state,
                              dispatcher=broker_dispatcher(self.config))
        self.client = self.app.test_client()
        self.workers: list[subprocess.Popen[bytes]] = []
        self.log = tmp_path / "worker.log"

    def start_worker(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.config_path.parent / "metrics")}
        (self.config_path.parent / "metrics").mkdir(exist_ok=True)
        with self.log.open("a") as log:
            worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--config",
                                       str(self.config_path), "--threads", "1"],
                                      cwd=ROOT, stdout=log, stderr=log, env=env)
        self.workers.append(worker)
        return worker

    def deliver(self, delivery: tuple[dict[str, str], bytes]) -> int:
        headers, body = delivery
        return self.client.post("/webhooks/gitlab", data=body, headers=headers).status_code

    def wait(self, condition, timeout: float = 120.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not condition():
            tail = self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"timed out waiting for {what}; log:\n{tail}"
            time.sleep(0.05)

    def pending(self) -> int:
        return Inbox(self.state).pending_count()

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
        self.state.close()


@pytest.fixture
def forge() -> Iterator[Forge]:
    with FakeGitLab() as fake:
        for user, role in (("alice", Role.DEVELOPER), ("maria", Role.MAINTAINER)):
            fake.set_role("data/shop", user, role)
        yield Forge("gitlab", fake, "data/shop")


@pytest.fixture
def deployment(tmp_path: Path, forge: Forge) -> Iterator[Deployment]:
    origin = Origin(tmp_path)
    instance = Deployment(tmp_path, forge, origin)
    instance.origin = origin  # type: ignore[attr-defined]
    yield instance
    instance.stop()


def test_a_worker_killed_mid_job_loses_nothing_and_reports_once(deployment: Deployment, forge: Forge):
    origin: Origin = deployment.origin  # type: ignore[attr-defined]
    worker = deployment.start_worker()
    sha = origin.branch("slow", SLOW)
    assert deployment.deliver(forge.open(1, sha, "slow")) == 202
    runs = RunLog(deployment.state)
    deployment.wait(lambda: any(r.status == "running"
                                for r in runs.for_merge_request("gitlab", forge.repo, 1)),
                    what="the job to start")
    time.sleep(0.3)  # in the middle of the build
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert deployment.pending() == 1 and forge.reports(1) == []

    deployment.start_worker()  # the lease runs out, the sweeper sends the event again
    deployment.wait(lambda: deployment.pending() == 0, what="the event to finish")
    assert len(forge.reports(1)) == 1
    assert forge.last_status(sha) == "success"
    finished = [r for r in runs.for_merge_request("gitlab", forge.repo, 1) if r.status == "success"]
    assert len(finished) == 1
    # The redelivered job reused what the killed one finished and left no half-built table.
    from runner.engines.duckdb import DuckDBEngine

    project_state = StateStore(deployment.config.state_url, namespace="sluice_gitlab_data_shop")
    recorded = {s.physical for s in project_state.snapshots().values()}
    engine = DuckDBEngine(deployment.config.warehouses["default"].removeprefix("duckdb:///"))
    try:
        physical = {f"{o.schema}.{o.name}" for o in engine.objects() if o.schema.startswith("sluice__")}
    finally:
        engine.close()
        project_state.close()
    assert not [name for name in physical if "__tmp_" in name]
    assert physical == recorded


def test_production_is_all_old_or_all_new_when_a_promotion_dies(deployment: Deployment, forge: Forge):
    origin: Origin = deployment.origin  # type: ignore[attr-defined]
    worker = deployment.start_worker()
    sha = origin.branch("promote", ORDERS)
    assert deployment.deliver(forge.open(2, sha, "promote")) == 202
    deployment.wait(lambda: deployment.pending() == 0, what="the MR pipeline")
    assert deployment.deliver(forge.comment(2, "/approve\n/approve breaking", author="maria")) == 202
    deployment.wait(lambda: deployment.pending() == 0, what="the approvals")
    project_state = StateStore(deployment.config.state_url, namespace="sluice_gitlab_data_shop")
    mr = dict(project_state.environment("mr_2").models)  # type: ignore[union-attr]
    forge.fake.merge(forge.repo, 2, origin.merge("promote"))
    assert deployment.deliver(forge.hook(2, "closed")) == 202
    runs = RunLog(deployment.state)
    deployment.wait(lambda: any(r.kind == "promote" for r in runs.for_merge_request("gitlab", forge.repo, 2)),
                    what="the promotion to start")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    prod = project_state.environment("prod")
    if prod is not None:  # the first promotion builds production: it is there whole, or not at all
        assert set(prod.models.values()) == set(mr.values()) or not prod.models
    deployment.start_worker()
    deployment.wait(lambda: deployment.pending() == 0, what="the promotion to finish")
    prod = project_state.environment("prod")
    assert prod is not None and dict(prod.models) == mr
    assert sum("Promoted to production" in c for c in forge.comments(2)) == 1
    project_state.close()


def test_no_event_is_lost_or_doubled_while_workers_die_and_redis_restarts(tmp_path: Path, forge: Forge):
    """A bounded burst of merge requests and commands; meanwhile a worker is SIGKILLed and
    restarted and Redis (which keeps nothing on disk) restarts. Every accepted event ends in
    exactly one report or answer."""
    origin = Origin(tmp_path)
    port = free_port()
    broker = start_redis(port)
    deployment = Deployment(tmp_path, forge, origin)
    text = deployment.config_path.read_text().replace(redis_url("promises"),
                                                      f"redis://127.0.0.1:{port}/0")
    deployment.config_path.write_text(text)
    deployment.config = load_server_config(deployment.config_path, {})
    deployment.app = create_app(deployment.config, state=deployment.state,
                                dispatcher=broker_dispatcher(deployment.config))
    deployment.client = deployment.app.test_client()
    try:
        first = deployment.start_worker()
        deployment.start_worker()
        sha = origin.branch("load", ORDERS)
        numbers = list(range(100, 112))
        accepted = 0
        runs = RunLog(deployment.state)
        for i, number in enumerate(numbers):
            accepted += deployment.deliver(forge.open(number, sha, "load")) == 202
            accepted += deployment.deliver(forge.comment(number, "/lineage marts.orders")) == 202
            if i == 4:  # mid-burst, and mid-job: wait until work is running, then kill
                deployment.wait(lambda: any(r.status == "running" for n in numbers[:5]
                                            for r in runs.for_merge_request("gitlab", forge.repo, n)),
                                what="a job to run")
                first.send_signal(signal.SIGKILL)
            if i == 6:
                broker.terminate()  # Redis goes away with whatever it held
                broker.wait(timeout=10)
            if i == 8:
                broker = start_redis(port)
                deployment.start_worker()
        assert accepted == 2 * len(numbers)  # intake stored everything, Redis or not
        deployment.wait(lambda: deployment.pending() == 0, timeout=240, what="every event to finish")
        for number in numbers:
            assert len(forge.reports(number)) == 1, number
            answers = [c for c in forge.comments(number) if c.startswith("**Lineage of")]
            assert len(answers) == 1, (number, len(answers))
    finally:
        deployment.stop()
        broker.terminate()
        broker.wait(timeout=10)
