"""Names every worker agrees on, defined once: the locks and leases in the state store, the
environment of a merge request, who holds what, and each repository's state namespace."""

from __future__ import annotations

import os
import re
import socket
import threading

from bot.events import Repository

SWEEPER_LOCK = "sluice:sweeper"
JANITOR_LOCK = "sluice:janitor"


def worker_identity() -> str:
    """This thread of this process on this machine: the holder of the leases it takes."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def event_lease(event_id: int) -> str:
    """The lock a worker holds while it works on an event (it expires if the worker dies)."""
    return f"event:{event_id}"


def env_lock(repository: Repository, environment: str) -> str:
    """The lock on one of a repository's environments (`/deploy`, promotion)."""
    return f"env:{repository.forge}:{repository.full_name}:{environment}"


def warehouse_lock(url: str) -> str:
    """The writer's lock of a single-writer warehouse (a DuckDB file)."""
    return f"warehouse:{url}"


def holder(repository: Repository, number: int) -> str:
    """A merge request as the holder of locks: `gitlab:group/project!42`."""
    return f"{repository.forge}:{repository.full_name}!{number}"


def run_label(run_id: int) -> str:
    """What a run's worktree folder is called by (see `runner.checkout.Mirrors.prune`)."""
    return f"run-{run_id}"


def run_of_label(label: str) -> int | None:
    prefix, _, number = label.partition("-")
    return int(number) if prefix == "run" and number.isdigit() else None


def mr_environment(number: int) -> str:
    return f"mr_{number}"


def namespace(repository: Repository) -> str:
    """Where a repository's environments and snapshots live in the state store."""
    slug = re.sub(r"[^a-z0-9]+", "_", f"{repository.forge}_{repository.full_name}".lower()).strip("_")
    return f"sluice_{slug}"[:60]
