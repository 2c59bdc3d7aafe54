"""Sluice in its production shape, for fault tests: `sluice serve` (gunicorn, two web workers) and
two `sluice worker` processes, a PostgreSQL state store and a PostgreSQL warehouse each behind a
proxy a test can cut or freeze, a Redis of its own a test can kill, and the fake GitLab. The
server configuration sets only where things are: every other setting is the shipped default."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests

from bot.events import Repository
from bot.records.runs import RunLog
from bot.worker.keys import janitor_lock, namespace, sweeper_lock
from runner.engines import open_engine
from runner.pipeline import run_pipeline
from runner.project.loader import load_project
from runner.state.schema import locks as locks_table
from runner.state.store import StateStore
from tests.support.e2e import Forge
from tests.support.paths import REPO
from tests.support.proxy import Proxy
from tests.support.repos import Origin, git
from tests.support.services import free_port, start_redis
from tests.support.warehouses import PG_SERVER, fresh_database, fresh_login_database


@dataclass
class Deployment:
    root: Path
    forge: Forge
    origin: Origin
    state_proxy: Proxy
    warehouse_proxy: Proxy
    state_db: str  # direct URLs (not through the proxies), for the test's own looks
    warehouse_db: str
    redis_port: int
    redis: subprocess.Popen[bytes] | None = None
    web: subprocess.Popen[bytes] | None = None
    web_port: int = 0
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    config_path: Path = Path()

    # -- processes ----------------------------------------------------------------------------------

    @property
    def log(self) -> Path:
        return self.root / "processes.log"

    def env(self) -> dict[str, str]:
        metrics = self.root / "metrics"
        metrics.mkdir(exist_ok=True)
        return {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics), "PYTHONUNBUFFERED": "1"}

    def start_redis(self) -> None:
        self.redis = start_redis(self.redis_port)

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.kill()
        self.redis.wait(timeout=10)

    def start_web(self, wait: bool = True) -> subprocess.Popen[bytes]:
        with self.log.open("a") as out:
            self.web = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve", "--config", str(self.config_path),
                 "--bind", f"127.0.0.1:{self.web_port}", "--workers", "2"],
                cwd=REPO, stdout=out, stderr=out, env=self.env())
        if wait:
            self.wait(lambda: self.answers("/healthz"), timeout=30, what="the web app to start")
        return self.web

    def stop_web(self) -> None:
        """As an operator's restart does: SIGTERM, and wait for it to end."""
        assert self.web is not None
        self.web.send_signal(signal.SIGTERM)
        self.web.wait(timeout=30)

    def start_worker(self) -> subprocess.Popen[bytes]:
        with self.log.open("a") as out:
            worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--config",
                                       str(self.config_path), "--threads", "2"],
                                      cwd=REPO, stdout=out, stderr=out, env=self.env())
        self.workers.append(worker)
        return worker

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def answers(self, path: str) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.web_port}{path}", timeout=2).ok
        except requests.RequestException:
            return False

    # -- acting and looking ---------------------------------------------------------------------------

    def deliver(self, delivery: tuple[dict[str, str], bytes], timeout: float = 30) -> tuple[int, float]:
        """(status, seconds) of one webhook delivery to the running web app."""
        headers, body = delivery
        started = time.monotonic()
        response = requests.post(f"http://127.0.0.1:{self.web_port}/webhooks/{self.forge.name}",
                                 data=body, headers=headers, timeout=timeout)
        return response.status_code, time.monotonic() - started

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Seconds until `condition` held (fails after `timeout`, with the processes' log)."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                tail = self.log.read_text()[-6000:] if self.log.exists() else ""
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; log:\n{tail}")
            time.sleep(0.1)
        return time.monotonic() - started

    def state(self) -> StateStore:
        return StateStore(self.state_db)

    def project_state(self) -> StateStore:
        repository = Repository(self.forge.name, self.forge.repo, "")
        return StateStore(self.state_db, namespace=namespace(repository))

    def pending(self) -> int:
        with psycopg.connect(self.state_db.replace("+psycopg", "")) as conn:
            row = conn.execute("SELECT count(*) FROM sluice_events WHERE done_at IS NULL").fetchone()
        return int(row[0]) if row else 0

    def build_production(self) -> None:
        """What an operator does once: build production from the main branch."""
        tree = self.root / "main-checkout"
        shutil.rmtree(tree, ignore_errors=True)
        git(self.root, "clone", "-q", str(self.origin.bare), str(tree))
        sha = git(tree, "rev-parse", "HEAD")
        state, engine = self.project_state(), open_engine(self.warehouse_db)
        try:
            assert run_pipeline(load_project(tree), state, engine, "prod", commit=sha).ok
        finally:
            engine.close()
            state.close()

    def installations(self) -> set[str]:
        from bot.config import load_server_config

        return {load_server_config(self.config_path, {}).installation}

    def leftovers(self) -> dict[str, list[str]]:
        """What should not be there once everything settled: events not done, runs still
        running, locks held (the sweeper's and janitor's aside), worktrees, orphan tables."""
        store = self.state()
        try:
            runs = [f"run {r.id} ({r.kind})" for r in RunLog(store).live(time.time() + 1)]
            with store.engine.connect() as conn:
                # The sweeper's and the janitor's are held by live workers by design.
                singletons = {sweeper_lock(name) for name in self.installations()} | {
                    janitor_lock(name) for name in self.installations()}
                held = [row.name for row in conn.execute(locks_table.select()) if row.name not in singletons
                        and (row.expires_at is None or row.expires_at > time.time())]
        finally:
            store.close()
        worktrees = self.root / "work" / "worktrees"
        trees = [p.name for p in worktrees.iterdir()] if worktrees.exists() else []
        state, engine = self.project_state(), open_engine(self.warehouse_db)
        try:
            recorded = {s.physical for s in state.snapshots().values()}
            physical = {f"{o.schema}.{o.name}" for o in engine.objects() if o.schema.startswith("sluice__")}
        finally:
            engine.close()
            state.close()
        return {"events": [f"{self.pending()} pending"] if self.pending() else [], "runs": runs,
                "locks": held, "worktrees": trees, "orphan tables": sorted(physical - recorded),
                "missing tables": sorted(recorded - physical)}

    def assert_clean(self, timeout: float = 90) -> None:
        """What every fault test ends with: nothing left running, held, checked out or orphaned
        (waiting up to `timeout` for the reaper)."""
        try:
            self.wait(lambda: not any(self.leftovers().values()), timeout=timeout, what="nothing left")
        except AssertionError as exc:
            raise AssertionError(f"left behind: {self.leftovers()}\n{exc}") from None

    def stop(self) -> None:
        for process in [*self.workers, self.web]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.kill()
        self.state_proxy.close()
        self.warehouse_proxy.close()


@contextlib.contextmanager
def deployed(root: Path, forge: Forge) -> Iterator[Deployment]:
    """A deployment of the demo shop for `forge` (GitLab's fake), with production built."""
    # The warehouse as production has it: a login without superuser (the shipped defaults refuse one).
    with fresh_database() as state_url, fresh_login_database() as (warehouse_url, _):
        pg_port = int(PG_SERVER.rsplit(":", 1)[1].split("/")[0])
        state_proxy, warehouse_proxy = Proxy(pg_port), Proxy(pg_port)
        state_db = state_url.replace("postgresql://", "postgresql+psycopg://", 1)
        proxied_state = state_db.replace(":5432/", f":{state_proxy.port}/")
        proxied_warehouse = warehouse_url.replace(":5432/", f":{warehouse_proxy.port}/")
        origin = Origin(root)
        deployment = Deployment(root, forge, origin, state_proxy, warehouse_proxy, state_db, warehouse_url,
                                redis_port=free_port(), web_port=free_port())
        gl = forge.fake.config()
        deployment.config_path = root / "server.yml"
        deployment.config_path.write_text(
            f"state_url: {proxied_state}\n"
            f"broker_url: redis://127.0.0.1:{deployment.redis_port}/0\n"
            f"work_dir: {root / 'work'}\n"
            "public_url: http://sluice.test\n"
            f"gitlab:\n  url: {gl.url}\n  token: {gl.token}\n  webhook_secret: {gl.webhook_secret}\n"
            f"warehouses:\n  default: {proxied_warehouse}\n"
            f"repositories:\n  - forge: gitlab\n    name: {forge.repo}\n    clone_url: {origin.bare}\n"
            "allow_local_clones: true\n")
        deployment.start_redis()
        deployment.build_production()
        try:
            deployment.start_web()
            yield deployment
        finally:
            deployment.stop()



