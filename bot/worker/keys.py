"""Names every worker agrees on, defined once: the locks and leases in the state store, the
environment of a merge request, who holds what, and each repository's state namespace.

Lock names carry the installation's name (`ServerConfig.installation`), so two installations
sharing one state store never hold each other's locks; only a warehouse's writer lock does not:
it guards a file, whoever writes it.
"""

from __future__ import annotations

import os
import re
import socket
import threading

from bot.events import Repository


def sweeper_lock(installation: str) -> str:
    """One sweeper at a time among an installation's workers."""
    return f"{installation}:sweeper"


def janitor_lock(installation: str) -> str:
    """One janitor pass at a time among an installation's workers."""
    return f"{installation}:janitor"


def worker_identity() -> str:
    """This thread of this process on this machine: the holder of the leases it takes."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def event_lease(installation: str, event_id: int) -> str:
    """The lock a worker holds while it works on an event (it expires if the worker dies)."""
    return f"{installation}:event:{event_id}"


def env_lock_prefix(installation: str) -> str:
    """What every environment lock's name of this installation starts with."""
    return f"{installation}:env:"


def env_lock(installation: str, repository: Repository, environment: str) -> str:
    """The lock on one of a repository's environments (`/deploy`, promotion, bootstrap)."""
    return f"{env_lock_prefix(installation)}{repository.forge}:{repository.full_name}:{environment}"


def warehouse_lock(url: str) -> str:
    """The writer's lock of a single-writer warehouse (a DuckDB file), for every installation."""
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


def branch_holder(repository: Repository, branch: str) -> str:
    """A build of a branch's head (a push, `sluice bootstrap`) as the holder of locks."""
    return f"{repository.forge}:{repository.full_name}@{branch}"


def mr_environment(number: int) -> str:
    return f"mr_{number}"


def namespace(repository: Repository) -> str:
    """Where a repository's environments and snapshots live in the state store."""
    slug = re.sub(r"[^a-z0-9]+", "_", f"{repository.forge}_{repository.full_name}".lower()).strip("_")
    return f"sluice_{slug}"[:60]
