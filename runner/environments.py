"""Environments: schemas of views pointing at snapshots. Pointing, promotion, rollback, dropping.

Every change follows the state store's change protocol (`runner.state.changes`): recorded pending,
the warehouse's views moved in one warehouse transaction, then marked done. Changes of one
environment take turns (a short lease in the state store, renewed while its holder lives), and
each first settles what an earlier, interrupted change left pending from the warehouse's actual
views. So the views are all-old or all-new, and the state store ends up saying which.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from sqlglot import exp

from runner.engines.base import Engine
from runner.errors import EnvError, WarehouseError
from runner.naming import PRODUCTION, check_environment_name, environment_schema, table
from runner.state.locks import Locks
from runner.state.records import HistoryEntry, SnapshotRecord
from runner.state.store import StateStore

CHANGE_LEASE = 30.0  # seconds a dead changer's turn lasts (renewed every third while it lives)
CHANGE_WAIT = 120.0  # seconds a change waits for another change of the same environment


@dataclass(frozen=True)
class Repoint:
    environment: str
    changed: tuple[str, ...]  # views created or moved
    dropped: tuple[str, ...]  # views removed
    unchanged: int


def point(engine: Engine, state: StateStore, environment: str, mapping: Mapping[str, str],
          action: str, source: str | None = None, commit: str | None = None) -> Repoint:
    """Make `environment`'s views match `mapping` (model -> fingerprint), in one transaction.
    `commit`: the commit whose project the mapping comes from, when known."""
    check_environment_name(environment)
    with changing(engine, state, environment):
        return _point(engine, state, environment, mapping, action, source, commit=commit)


def promote(engine: Engine, state: StateStore, source: str, target: str) -> Repoint:
    """Point `target` at `source`'s snapshots; nothing is rebuilt."""
    if source == target:
        raise EnvError(f"cannot promote {source} onto itself")
    record = state.environment(source)
    if record is None:
        raise EnvError(f"there is no environment {source!r} to promote; `sluice env list` shows them")
    history = state.history(source)
    commit = history[0].commit if history else None
    result = point(engine, state, target, record.models, action="promote", source=source, commit=commit)
    state.set_environment_tests(target, state.environment_tests(source))  # what they were tested with
    return result


def rollback(engine: Engine, state: StateStore, environment: str) -> Repoint:
    """Point `environment` back at the snapshots it had before its last change: exactly one step."""
    check_environment_name(environment)
    with changing(engine, state, environment):
        history = state.history(environment)
        for i, entry in enumerate(history):
            if entry.action in ("promote", "plan") and not entry.rolled_back:
                if not entry.before:
                    raise NothingToRollBack(environment, created=True)
                # The commit the environment showed before `entry`: the newest earlier change's.
                commit = next((e.commit for e in history[i + 1:] if e.after == entry.before), None)
                return _point(engine, state, environment, entry.before, "rollback",
                              source=f"#{entry.id}", rolls_back=entry.id, commit=commit)
            if entry.action == "drop":
                break
    raise NothingToRollBack(environment, created=state.environment(environment) is not None)


def drop(engine: Engine, state: StateStore, environment: str) -> Repoint:
    """Remove the environment's views and schemas; physical tables stay for the janitor."""
    if environment == PRODUCTION:
        raise EnvError("production cannot be dropped")
    check_environment_name(environment)
    with changing(engine, state, environment):
        record = state.environment(environment)
        if record is None:
            raise EnvError(f"there is no environment {environment!r}; `sluice env list` shows them")
        names = list(record.models)
        change = state.changes.begin(environment, {}, "drop")
        with _settled_on_failure(state, change), engine.transaction() as cursor:
            for name in names:
                engine.drop(cursor, _view(name, environment), "view")
        state.changes.finish(change.id)
    _drop_empty_schemas(engine, {_view(n, environment).db for n in names})
    return Repoint(environment, (), tuple(names), 0)


@contextmanager
def changing(engine: Engine, state: StateStore, environment: str) -> Iterator[None]:
    """This environment's turn to change: wait for any other change of it, then settle what an
    interrupted one left pending."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"
    with Locks(state).hold(change_lock(environment), holder, CHANGE_LEASE, reason="changing views",
                           timeout=CHANGE_WAIT) as turn:
        if turn is None:
            raise EnvError(f"another change of {environment} has been running for over "
                           f"{CHANGE_WAIT:.0f} s; try again later", transient=True)
        settle(engine, state, environment)
        yield


def shown_commit(state: StateStore, environment: str) -> str | None:
    """The commit whose project the environment shows now, when its last change recorded one."""
    history = state.history(environment)
    return history[0].commit if history else None


def change_lock(environment: str) -> str:
    return f"change:{environment}"


def settle(engine: Engine, state: StateStore, environment: str) -> list[HistoryEntry]:
    """Bring the state store level with the warehouse for every pending change of `environment`
    (call it holding the environment's turn): done when the views show its `after`, abandoned
    when they show its `before`, done as the views show it when they show a mix (views changed
    behind Sluice's back). Returns the changes it settled."""
    pending = state.changes.pending(environment)
    for change in pending:
        models = set(change.before) | set(change.after)
        snapshots = state.snapshots(fingerprints=set(change.before.values()) | set(change.after.values()))
        physical = {fp: record.physical for fp, record in snapshots.items()}
        reads = engine.view_reads(sorted({_view(name, environment).db for name in models}))
        shown: dict[str, str] = {}  # model -> the fingerprint its view shows
        telling: dict[str, str] = {}  # models whose two sides differ -> "after" | "before"
        for name in models:
            view = _view(name, environment)
            target = reads.get(f"{view.db}.{view.name}")
            old, new = change.before.get(name), change.after.get(name)
            if target is None or len(target) != 1:
                if (old is None) != (new is None):
                    telling[name] = "before" if old is None else "after"  # no view: its side
                continue
            [read] = target
            if old is not None and physical.get(old) == read:
                shown[name] = old  # when both sides read one table, what the store said stands
                if new is None or physical.get(new) != read:
                    telling[name] = "before"
            elif new is not None and physical.get(new) == read:
                shown[name] = new
                telling[name] = "after"
        sides = set(telling.values())
        if sides <= {"after"}:
            state.changes.finish(change.id)
        elif sides == {"before"}:
            state.changes.abandon(change.id)
        else:
            state.changes.finish(change.id, models=shown)
    return pending


def _point(engine: Engine, state: StateStore, environment: str, mapping: Mapping[str, str],
           action: str, source: str | None = None, rolls_back: int | None = None,
           commit: str | None = None) -> Repoint:
    record = state.environment(environment)
    current = dict(record.models) if record else {}
    snapshots = state.snapshots(fingerprints=set(mapping.values()) | set(current.values()))
    missing = sorted(name for name, fp in mapping.items() if fp not in snapshots)
    if missing:
        raise EnvError(f"cannot point {environment} at snapshots that no longer exist "
                       f"({', '.join(missing)}); re-run `sluice plan` to rebuild them")
    changed = [name for name, fp in mapping.items()
               if name not in current or current[name] not in snapshots
               or snapshots[current[name]].physical != snapshots[fp].physical]
    dropped = [name for name in current if name not in mapping]
    if record is not None and dict(mapping) == current:
        return Repoint(environment, (), (), len(mapping))  # already there: nothing to record
    change = state.changes.begin(environment, mapping, action, source, rolls_back, commit)
    with _settled_on_failure(state, change), engine.transaction() as cursor:
        engine.point_views(cursor, [
            (_view(name, environment), table(snapshots[mapping[name]].physical_schema,
                                             snapshots[mapping[name]].physical_table))
            for name in changed])
        for name in dropped:
            engine.drop(cursor, _view(name, environment), "view")
    state.changes.finish(change.id)
    if dropped and environment != PRODUCTION:
        _drop_empty_schemas(engine, {_view(n, environment).db for n in dropped})
    return Repoint(environment, tuple(changed), tuple(dropped), len(mapping) - len(changed))


@contextmanager
def _settled_on_failure(state: StateStore, change: HistoryEntry) -> Iterator[None]:
    """A warehouse step that failed for sure (the statement was refused, its transaction rolled
    back) abandons the change; one whose outcome is unknown (the connection was lost, maybe at
    COMMIT) leaves it pending for the next change to settle from the warehouse."""
    try:
        yield
    except WarehouseError as exc:
        if not exc.transient:
            state.changes.abandon(change.id)
        raise


class NothingToRollBack(EnvError):
    """The environment has no earlier version: `created` when its one change made it, else it
    does not exist (or was dropped since). The message says which, and what can be done."""

    def __init__(self, environment: str, created: bool):
        self.environment = environment
        self.created = created
        if environment == PRODUCTION:
            what = ("production has no earlier version to roll back to: its only change so far built "
                    "it. Roll back a later promotion once there is one" if created else
                    "production has not been built yet: there is nothing to roll back")
        else:
            what = (f"{environment} has no earlier version to roll back to: its only change created "
                    f"it (`sluice env drop {environment}` removes it)" if created else
                    f"{environment} has no change to roll back (it does not exist, or was dropped)")
        super().__init__(what)


def describe(state: StateStore, environment: str) -> list[tuple[str, SnapshotRecord]]:
    record = state.environment(environment)
    if record is None:
        raise EnvError(f"there is no environment {environment!r}; `sluice env list` shows them")
    snapshots = state.snapshots(fingerprints=record.models.values())
    return [(name, snapshots[fp]) for name, fp in sorted(record.models.items()) if fp in snapshots]


def _view(name: str, environment: str) -> exp.Table:
    schema, name_in_schema = name.split(".", 1)
    return table(environment_schema(schema, environment), name_in_schema)


def _drop_empty_schemas(engine: Engine, schemas: set[str]) -> None:
    with engine.transaction() as cursor:
        for schema in sorted(schemas):
            engine.drop_schema_if_empty(cursor, schema)
