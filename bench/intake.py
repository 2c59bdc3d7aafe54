"""Webhook intake under load: `sluice serve` (gunicorn) on loopback, signed GitHub deliveries at a
fixed rate, latency percentiles, and a count of what reached the state store and the broker.

    .venv/bin/python bench/intake.py --rate 200 --seconds 10

Bounded: it sends rate x seconds requests to 127.0.0.1 only, then stops. Needs Redis on
127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (what `make test` starts).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import redis
from loopback import free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT.parent / "shared" / "fixtures" / "github_webhooks" / "github_pull_request_opened.json"
SECRET = "bench-secret"
REDIS_DB = 14


def make_database() -> str:
    name = f"sluice_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--senders", type=int, default=16, help="client threads")
    args = parser.parse_args()

    body_template = json.loads(FIXTURE.read_text())
    repo = body_template["repository"]["full_name"]
    database = make_database()
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="sluice-intake-bench-"))
    config = work / "server.yml"
    config.write_text(
        f"state_url: postgresql+psycopg://postgres@127.0.0.1:5432/{database}\n"
        f"broker_url: redis://127.0.0.1:6379/{REDIS_DB}\n"
        f"work_dir: {work}\n"
        "github:\n  token: bench-token\n"
        f"  webhook_secret: {SECRET}\n"
        f"repositories:\n  - forge: github\n    name: {repo}\n")
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    log_file = (work / "server.log").open("w")  # lives as long as the server
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "sluice"), "serve", "--config", str(config),
         "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers), "--threads", "8"],
        stdout=subprocess.DEVNULL, stderr=log_file,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    lock = threading.Lock()
    total = int(args.rate * args.seconds)
    try:
        wait_ready(port)
        start = time.monotonic()
        next_index = iter(range(total))

        def sender() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                due = start + i / args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                payload = dict(body_template)
                payload["number"] = 1000 + i
                body = json.dumps(payload).encode()
                signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                headers = {"Content-Type": "application/json", "X-GitHub-Event": "pull_request",
                           "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": signature}
                sent = time.perf_counter()
                try:
                    conn.request("POST", "/webhooks/github", body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(repr(exc))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    status = 0
                elapsed = time.perf_counter() - sent
                with lock:
                    latencies.append(elapsed)
                    statuses[status] = statuses.get(status, 0) + 1

        threads = [threading.Thread(target=sender) for _ in range(args.senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}") as conn:
            stored = conn.execute("select count(*) from sluice_events").fetchone()[0]  # type: ignore[index]
        queued = int(client.llen("dramatiq:sluice"))
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_file.close()
        client.flushdb()
        drop_database(database)
        if os.environ.get("SLUICE_BENCH_KEEP"):
            print(f"server log: {work / 'server.log'}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    accepted = statuses.get(202, 0)
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    print(f"sent {total} signed deliveries at {args.rate}/s for {args.seconds:.0f}s "
          f"({args.workers} gunicorn workers)")
    print(f"accepted/s: {accepted / wall:.0f}   p50: {p50:.1f} ms   p99: {p99:.1f} ms   "
          f"statuses: {dict(sorted(statuses.items()))}")
    if errors:
        print(f"client errors: {len(errors)}, first: {errors[0]}")
    print(f"stored: {stored}   queued in Redis: {queued}   lost: {total - stored}   "
          f"duplicated: {max(0, stored - total)}")
    return 0 if stored == total and p99 < 50 else 1


if __name__ == "__main__":
    sys.exit(main())
