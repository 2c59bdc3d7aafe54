"""A soak of the production shape under faults: `sluice serve` (gunicorn) and two `sluice worker`
processes on PostgreSQL state and warehouse and Redis (tests/support/deployment.py), fed webhooks
at a steady rate for a while, with one worker SIGKILLed (and replaced) every minute. Prints intake
p50/p99, what was accepted and processed, the processes' memory at the start and the end, and
what was left behind once the last event settled (it should be nothing).

    .venv/bin/python bench/soak.py --minutes 10 --rate 10

The deliveries are mostly slash commands (`/help`: a worker answers each in the thread) with a
merge-request update now and then (a pipeline: checkout, plan, reuse, report).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.forges.base import Role  # noqa: E402
from tests.support.deployment import Deployment, deployed  # noqa: E402  (test infrastructure)
from tests.support.e2e import Forge  # noqa: E402
from tests.support.fakeforge import FakeGitLab  # noqa: E402

MRS = 5


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (gunicorn's workers), in MiB."""
    total = 0.0
    for candidate in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{candidate}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def memory(deployment: Deployment) -> dict[str, float]:
    live = [w for w in deployment.workers if w.poll() is None]
    assert deployment.web is not None
    return {"web (gunicorn, 2 workers)": round(rss_mib(deployment.web.pid), 1),
            "workers": round(sum(rss_mib(w.pid) for w in live), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10.0, help="deliveries per second")
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between worker kills")
    parser.add_argument("--pipelines", type=float, default=0.05,
                        help="share of deliveries that are merge-request updates")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with FakeGitLab() as fake, tempfile.TemporaryDirectory(prefix="sluice-soak-") as tmp:
        fake.set_role("data/shop", "alice", Role.DEVELOPER)
        forge = Forge("gitlab", fake, "data/shop")
        with deployed(Path(tmp), forge) as deployment:
            workers = [deployment.start_worker(), deployment.start_worker()]
            for number in range(1, MRS + 1):
                sha = deployment.origin.branch(f"b{number}", {"models/marts/orders.sql": (
                    "p.total_amount as amount", f"p.total_amount + {number} as amount")})
                assert deployment.deliver(forge.open(number, sha, f"b{number}"))[0] == 202
            deployment.wait(lambda: deployment.pending() == 0, timeout=300, what="the first reports")
            start_memory = memory(deployment)
            latencies: list[float] = []
            statuses: dict[int, int] = {}
            kills = 0
            lock = threading.Lock()
            duration = args.minutes * 60
            started = time.monotonic()
            next_kill = started + args.kill_every
            sent = helps = 0

            def send(delivery: tuple[dict[str, str], bytes]) -> None:
                status, seconds = deployment.deliver(delivery)
                with lock:
                    latencies.append(seconds)
                    statuses[status] = statuses.get(status, 0) + 1

            threads: list[threading.Thread] = []
            while time.monotonic() - started < duration:
                number = random.randint(1, MRS)
                if random.random() < args.pipelines:
                    delivery = fake.merge_request_hook(forge.repo, number, "reopen")
                else:
                    delivery = forge.comment(number, "/help")
                    helps += 1
                thread = threading.Thread(target=send, args=(delivery,))
                thread.start()
                threads.append(thread)
                sent += 1
                if time.monotonic() >= next_kill:
                    victim = random.choice([w for w in workers if w.poll() is None])
                    victim.send_signal(signal.SIGKILL)
                    victim.wait(timeout=10)
                    workers.remove(victim)
                    workers.append(deployment.start_worker())
                    kills += 1
                    next_kill += args.kill_every
                time.sleep(max(0.0, started + sent / args.rate - time.monotonic()))
            for thread in threads:
                thread.join()
            sending = time.monotonic() - started
            try:
                drained: float | None = deployment.wait(lambda: deployment.pending() == 0, timeout=900,
                                                        what="the backlog")
            except AssertionError:  # too slow a machine for the rate: say so, with what is pending
                drained = None
            pending = deployment.pending()
            time.sleep(deployment_grace(deployment))
            left = deployment.leftovers()
            end_memory = memory(deployment)
        answered = sum(1 for n in range(1, MRS + 1) for c in forge.comments(n) if "Sluice commands" in c)
    ordered = sorted(latencies)
    result = {
        "minutes": args.minutes, "rate": args.rate, "sent": sent, "seconds sending": round(sending, 1),
        "statuses": statuses, "worker kills": kills, "help commands": helps, "help answers": answered,
        "intake p50 ms": round(statistics.median(ordered) * 1000, 1),
        "intake p99 ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1),
        "backlog drained in s": round(drained, 1) if drained is not None else "not within 900 s",
        "pending at the end": pending, "memory at start MiB": start_memory,
        "memory at end MiB": end_memory, "left behind": left,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if not any(left.values()) and answered == helps and not pending else 1


def deployment_grace(deployment: Deployment) -> float:
    """Time for the reaper to close what the last kill left (twice the job lease, plus a sweep)."""
    return 45.0


if __name__ == "__main__":
    sys.exit(main())
