"""The reaper: what a killed worker leaves behind is closed or cleaned up by a live one, within a
sweep of it. Runs that were running are closed as errors with the reason (their commit status
too, so a merge request does not show "pending" forever), worktrees of runs that are no longer
running are removed (with git's worktree metadata), and the metrics files of dead processes are
removed. The sweeper calls it; one sweeper runs at a time."""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from bot.forges.base import CommitState, ForgeError
from bot.metrics import multiprocess_dir
from bot.records.runs import LIVE, Run, RunStatus
from bot.worker.context import JobContext
from bot.worker.keys import event_lease, run_of_label
from bot.worker.text import STATUS_CONTEXT

log = logging.getLogger("sluice.reaper")
_METRICS_FILE = re.compile(r"_(\d+)\.db$")


@dataclass
class Reaped:
    runs: list[int] = field(default_factory=list)
    worktrees: list[Path] = field(default_factory=list)
    metrics_files: list[Path] = field(default_factory=list)


def reap(ctx: JobContext, runs: bool = True) -> Reaped:
    """`runs`: also close dead runs (the sweeper's lock holder does; every process prunes its own
    worktrees and its machine's metrics files)."""
    reaped = Reaped()
    grace = ctx.s.config.job_lease * 2  # a run's event lease is taken before the run is created
    for run in ctx.runs.live(time.time() - grace) if runs else ():
        if run.event_id is None:
            continue  # no worker's: a command line's own run
        event = ctx.inbox.get(run.event_id)
        installation = ctx.s.config.installation
        if event is not None and event.installation not in (None, installation):
            continue  # another installation's, sharing this state store: its own reaper's business
        if ctx.locks.held_by(event_lease(installation, run.event_id)) is not None:
            continue  # its worker is alive
        reason = "the worker running it stopped (killed or lost); the event is sent to another"
        ctx.runs.append_log(run.id, reason)
        ctx.runs.finish(run.id, RunStatus.ERROR, reason)
        reaped.runs.append(run.id)
        if run.sha and run.kind == "pipeline" and run.forge in ctx.s.forges and not _retried(ctx, run):
            try:
                ctx.s.forges[run.forge].set_status(run.repository, run.sha, CommitState.ERROR,
                                                    "the worker stopped; Sluice runs it again",
                                                    ctx.s.config.run_url(run.id), STATUS_CONTEXT)
            except ForgeError as exc:  # the next run sets it anyway
                log.warning("reaper: status of run %s not set: %s", run.id, exc)
    reaped.worktrees = ctx.s.mirrors.prune(lambda label: _in_use(ctx, label))
    reaped.metrics_files = _dead_metrics_files()
    if reaped.runs or reaped.worktrees or reaped.metrics_files:
        log.info("reaper: closed runs %s, removed %d worktrees and %d metrics files of dead processes",
                 reaped.runs, len(reaped.worktrees), len(reaped.metrics_files))
    return reaped


def _retried(ctx: JobContext, run: Run) -> bool:
    """Whether a later run builds the same commit: its own status (pending, then its verdict)
    is the commit's, and a dead run's error must not be written over it."""
    return any(other.id > run.id and other.kind == run.kind and other.sha == run.sha
               for other in ctx.runs.for_merge_request(run.forge, run.repository, run.number))


def _in_use(ctx: JobContext, label: str) -> bool:
    run_id = run_of_label(label)
    if run_id is None:
        return True  # not one of ours to judge
    run = ctx.runs.get(run_id)
    return run is not None and run.status in LIVE


def _dead_metrics_files() -> list[Path]:
    """prometheus_client's per-process files whose process is gone (this machine's directory)."""
    directory = multiprocess_dir()
    removed: list[Path] = []
    if directory is None:
        return removed
    for path in sorted(Path(directory).glob("*.db")):
        found = _METRICS_FILE.search(path.name)
        if found is None or _alive(int(found.group(1))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
