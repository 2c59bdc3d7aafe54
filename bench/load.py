"""End to end under load: `sluice serve` (gunicorn) and `sluice worker` processes, a fake GitLab
on loopback (tests/support/fakeforge: the real python-gitlab client talks to it), a git repository and
a DuckDB warehouse. Prints events accepted per second, intake latency, the time from webhook to
final report for a one-model change, and what was lost or duplicated.

    .venv/bin/python bench/load.py --events 200 --rate 50 --workers 2

Bounded: `--events` deliveries to 127.0.0.1 at `--rate` per second, then it waits for the reports
and stops everything it started.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from loopback import free_port, wait_ready  # noqa: E402

from bot.forges.base import Role  # noqa: E402
from bot.records.inbox import Inbox  # noqa: E402
from runner.state.store import StateStore  # noqa: E402
from tests.support.fakeforge import FakeGitLab  # noqa: E402  (test infrastructure, reused as the forge)

DEMO = ROOT / "bot" / "demo" / "project"
REPO = "data/shop"
GIT = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@b", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env=GIT).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="merge requests opened")
    parser.add_argument("--rate", type=float, default=50.0, help="deliveries per second")
    parser.add_argument("--workers", type=int, default=2, help="`sluice worker` processes")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for reports")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sluice-load-"))
    origin, bare = work / "work", work / "origin.git"
    shutil.copytree(DEMO, origin)
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", ".")
    git(origin, "commit", "-q", "-m", "shop")
    git(work, "clone", "-q", "--bare", str(origin), str(bare))
    git(origin, "checkout", "-q", "-b", "change")
    orders = origin / "models" / "marts" / "orders.sql"
    orders.write_text(orders.read_text().replace("p.total_amount as amount",
                                                 "p.total_amount - p.coupon_amount as amount"))
    git(origin, "commit", "-qam", "one model")
    git(origin, "push", "-q", str(bare), "change")
    sha = git(origin, "rev-parse", "HEAD")

    fake = FakeGitLab()
    fake.__enter__()
    fake.set_role(REPO, "alice", Role.DEVELOPER)
    redis_port, web_port = free_port(), free_port()
    broker = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    config = work / "server.yml"
    gl = fake.config()
    config.write_text(
        f"state_url: sqlite:///{work / 'state.db'}\nbroker_url: redis://127.0.0.1:{redis_port}/0\n"
        f"work_dir: {work / 'w'}\npublic_url: http://127.0.0.1:{web_port}\n"
        f"gitlab:\n  url: {gl.url}\n  token: {gl.token}\n  webhook_secret: {gl.webhook_secret}\n"
        f"warehouses:\n  default: duckdb:///{work / 'warehouse.duckdb'}\n"
        f"repositories:\n  - forge: gitlab\n    name: {REPO}\n    clone_url: {bare}\n"
        "allow_local_clones: true\nsweep_after: 1\njanitor_interval: 0\n")
    sluice = [sys.executable, "-m", "bot.cli"]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics")}
    (work / "metrics").mkdir()
    logs = (work / "processes.log").open("w")
    processes = [subprocess.Popen([*sluice, "serve", "--config", str(config), "--bind",
                                   f"127.0.0.1:{web_port}", "--workers", "2"],
                                  cwd=ROOT, stdout=logs, stderr=logs, env=env)]
    processes += [subprocess.Popen([*sluice, "worker", "--config", str(config), "--threads", "1"],
                                   cwd=ROOT, stdout=logs, stderr=logs, env=env)
                  for _ in range(args.workers)]
    state = StateStore(f"sqlite:///{work / 'state.db'}")
    try:
        wait_ready(web_port)
        # One merge request first, alone: the time from webhook to final report.
        fake.add_merge_request(REPO, 1, head_sha=sha, source_branch="change", author="alice")
        single_start = time.monotonic()
        status = post(web_port, *fake.merge_request_hook(REPO, 1, "open"))[0]
        assert status == 202, status
        while not [c for c in fake.comments(REPO, 1) if "sluice-report" in c.body]:
            time.sleep(0.01)
        single = time.monotonic() - single_start

        # Then a burst of merge requests at a fixed rate.
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        sent_at: dict[int, float] = {}
        lock = threading.Lock()
        numbers = list(range(1000, 1000 + args.events))
        for number in numbers:
            fake.add_merge_request(REPO, number, head_sha=sha, source_branch="change", author="alice")
        start = time.monotonic()
        cursor = iter(enumerate(numbers))

        def sender() -> None:
            while True:
                with lock:
                    item = next(cursor, None)
                if item is None:
                    return
                i, number = item
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                headers, body = fake.merge_request_hook(REPO, number, "open")
                sent = time.monotonic()
                code, elapsed = post(web_port, headers, body)
                with lock:
                    sent_at[number] = sent
                    latencies.append(elapsed)
                    statuses[code] = statuses.get(code, 0) + 1

        threads = [threading.Thread(target=sender) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - start
        deadline = time.monotonic() + args.timeout
        while Inbox(state).pending_count() and time.monotonic() < deadline:
            time.sleep(0.2)
        finished = time.monotonic() - start
    finally:
        state.close()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        broker.terminate()
        fake.__exit__(None, None, None)
        logs.close()

    reports = {n: sum("sluice-report" in c.body for c in fake.comments(REPO, n)) for n in numbers}
    lost = sum(1 for n in numbers if reports[n] == 0)
    duplicated = sum(1 for n in numbers if reports[n] > 1)
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    print(f"one-model change, webhook to final report: {single:.2f} s")
    print(f"burst: {args.events} merge requests at {args.rate:.0f}/s, {args.workers} workers")
    print(f"accepted/s: {statuses.get(202, 0) / wall:.0f}   intake p50: {p50:.1f} ms   p99: {p99:.1f} ms   "
          f"statuses: {dict(sorted(statuses.items()))}")
    print(f"all reports posted {finished:.1f} s after the first delivery "
          f"({args.events / finished:.1f} merge requests/s end to end)")
    print(f"lost: {lost}, duplicated: {duplicated}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if lost == 0 and duplicated == 0 else 1


def post(port: int, headers: dict[str, str], body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/webhooks/gitlab", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except OSError:
        return 0, time.perf_counter() - started
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
