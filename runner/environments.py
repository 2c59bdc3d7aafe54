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
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from sqlglot import exp

from runner.engines.base import Engine
from runner.errors import EnvError, WarehouseError
from runner.naming import PRODUCTION, check_environment_name, environment_schema, table
from runner.state.claims import SchemaClaims
from runner.state.locks import Locks
from runner.state.records import EnvironmentRecord, HistoryEntry, SnapshotRecord
from runner.state.store import StateStore

CHANGE_LEASE = 30.0  # seconds a dead changer's turn lasts (renewed every third while it lives)
CHANGE_WAIT = 120.0  # seconds a change waits for another change of the same environment


@dataclass(frozen=True)
class Move:
    """One view that moved: which, and from which snapshot's object to which (None: the view did
    not exist before, or exists no more)."""

    model: str
    view: str  # as the warehouse names it: `marts__mr_7.orders`
    before: str | None
    after: str | None


@dataclass(frozen=True)
class Repoint:
    environment: str
    changed: tuple[str, ...]  # views created or moved
    dropped: tuple[str, ...]  # views removed
    unchanged: int
    moves: tuple[Move, ...] = ()  # what actually moved, view by view (the audit log's words)
    earlier: bool = False  # made before, for the same cause: this call changed nothing


@dataclass(frozen=True)
class RollbackPlan:
    """Where a rollback takes an environment: `mapping`, the version after change `to` (or, for
    one step, before the change it undoes), undoing `undone` (newest first)."""

    environment: str
    mapping: dict[str, str]
    to: int | None  # the change whose version it returns to (None: the one before `undone[0]`)
    undone: tuple[int, ...]
    commit: str | None
    already_rolled_back: bool  # the environment's last change was a rollback: this goes further

    @property
    def further(self) -> bool:
        """More than one step back from the environment's newest version (worth asking)."""
        return len(self.undone) > 1 or self.already_rolled_back


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
    state.set_verdict(target, state.verdict(source))  # and how that went
    return result


def moves_between(state: StateStore, environment: str, before: Mapping[str, str],
                  after: Mapping[str, str]) -> tuple[Move, ...]:
    """The views that read another object between two versions of an environment (however many
    changes it took to get from one to the other), from which snapshot's object to which. A new
    version that reuses the old one's table moved nothing."""
    names = sorted(n for n in set(before) | set(after) if before.get(n) != after.get(n))
    snapshots = state.snapshots(fingerprints=[fp for n in names
                                              for fp in (before.get(n), after.get(n)) if fp])
    sides = {n: (_physical(snapshots, before.get(n)), _physical(snapshots, after.get(n))) for n in names}
    names = [n for n in names if sides[n][0] != sides[n][1]]
    views = _views(state, names, environment)
    return tuple(Move(n, _dotted(views[n]), *sides[n]) for n in names)


def rollback(engine: Engine, state: StateStore, environment: str, to: int | None = None,
             expect: RollbackPlan | None = None, cause: str | None = None) -> Repoint:
    """Point `environment` back at the snapshots it had before its last change (exactly one
    step), or with `to` at the version change #`to` made. With `expect` (what the caller showed
    and was agreed to), refuse when the environment changed since. With `cause` (what asked,
    `event:42`), a rollback that cause already made is not made again: asked twice, it goes
    back one step, not two; the result is that earlier rollback's, marked `earlier`."""
    check_environment_name(environment)
    with changing(engine, state, environment):
        done = state.changes.caused(environment, cause) if cause is not None else None
        if done is not None:
            return _made(state, done)
        plan = plan_rollback(state, environment, to)
        if expect is not None and (plan.undone, plan.mapping) != (expect.undone, expect.mapping):
            raise EnvError(f"{environment} changed while you were asked; look again and retry")
        result = _point(engine, state, environment, plan.mapping, "rollback",
                        source=f"#{plan.to if plan.to is not None else plan.undone[0]}",
                        rolls_back=plan.undone[0], commit=plan.commit, cause=cause)
        for entry_id in plan.undone[1:]:
            state.mark_rolled_back(entry_id)
        state.set_verdict(environment, None)  # the version it shows now was not this run's
        return result


def _made(state: StateStore, change: HistoryEntry) -> Repoint:
    """What a done change did, as the call that made it returned it."""
    moves = moves_between(state, change.environment, change.before, change.after)
    return Repoint(change.environment, tuple(m.model for m in moves if m.after is not None),
                   tuple(m.model for m in moves if m.after is None),
                   len(change.after) - sum(1 for m in moves if m.after is not None), moves, earlier=True)


def plan_rollback(state: StateStore, environment: str, to: int | None = None) -> RollbackPlan:
    """What a rollback would do, without doing it: one step back, or to change #`to`."""
    history = state.history(environment)
    last_was_rollback = bool(history) and history[0].action == "rollback"
    undoable: list[HistoryEntry] = []  # promotions and plans not undone yet, newest first
    for i, entry in enumerate(history):
        if to is not None and entry.id == to:
            if not undoable:
                raise EnvError(f"{environment} already shows change #{to}'s version: nothing to roll back")
            return RollbackPlan(environment, dict(entry.after), to, tuple(e.id for e in undoable),
                                entry.commit, last_was_rollback)
        if entry.action == "drop":
            break
        if entry.action in ("promote", "plan") and not entry.rolled_back:
            if to is None:
                if not entry.before:
                    raise NothingToRollBack(environment, created=True)
                # The commit the environment showed before `entry`: the newest earlier change's.
                commit = next((e.commit for e in history[i + 1:] if e.after == entry.before), None)
                return RollbackPlan(environment, dict(entry.before), None, (entry.id,), commit,
                                    last_was_rollback)
            undoable.append(entry)
    if to is not None:
        raise EnvError(f"{environment} has no change #{to} to go back to (since it was last created); "
                       f"`sluice env show {environment}` lists its changes")
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
        views = _views(state, names, environment)
        physical = state.snapshots(fingerprints=record.models.values())
        change = state.changes.begin(environment, {}, "drop")
        with _settled_on_failure(state, change), engine.transaction() as cursor:
            for name in names:
                engine.drop(cursor, views[name], "view")
        state.changes.finish(change.id)
    _drop_empty_schemas(engine, {view.db for view in views.values()})
    moves = tuple(Move(name, _dotted(views[name]), _physical(physical, record.models[name]), None)
                  for name in sorted(names))
    return Repoint(environment, (), tuple(names), 0, moves)


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
        views = _views(state, models, environment)
        reads = engine.view_reads(sorted({view.db for view in views.values()}))
        shown: dict[str, str] = {}  # model -> the fingerprint its view shows
        telling: dict[str, str] = {}  # models whose two sides differ -> "after" | "before"
        for name in models:
            view = views[name]
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
           commit: str | None = None, cause: str | None = None) -> Repoint:
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
    views = _views(state, set(changed) | set(dropped), environment, record)
    if environment == PRODUCTION and state.layout.owner and engine.location:
        # Production's views have the plain names consumers read: no other repository's
        # production may write these schemas (all it shows, so none stays unclaimed).
        SchemaClaims(state).claim(engine.location, {name.split(".", 1)[0] for name in mapping}
                                  | {views[name].db for name in views}, state.layout.owner)
    change = state.changes.begin(environment, mapping, action, source, rolls_back, commit, cause)
    with _settled_on_failure(state, change), engine.transaction() as cursor:
        engine.point_views(cursor, [
            (views[name], table(snapshots[mapping[name]].physical_schema,
                                snapshots[mapping[name]].physical_table))
            for name in changed])
        for name in dropped:
            engine.drop(cursor, views[name], "view")
    state.changes.finish(change.id)
    if dropped and environment != PRODUCTION:
        _drop_empty_schemas(engine, {views[n].db for n in dropped})
    moves = tuple(Move(name, _dotted(views[name]),
                       _physical(snapshots, current.get(name)), _physical(snapshots, mapping.get(name)))
                  for name in sorted(views))
    return Repoint(environment, tuple(changed), tuple(dropped), len(mapping) - len(changed), moves)


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


def view_namespace(state: StateStore, environment: str,
                   record: EnvironmentRecord | Literal[False] | None = False) -> str:
    """The namespace `environment`'s views are named in: the one it was made in (none, for an
    environment from before namespaces), or the repository's for one not made yet. `record`:
    the environment's record when the caller has read it already."""
    record = state.environment(environment) if record is False else record
    return record.namespace if record is not None else state.layout.namespace


def view_of(state: StateStore, name: str, environment: str) -> str:
    """Where model `name`'s view of `environment` is in the warehouse: `marts__mr_7.orders`."""
    return _dotted(_views(state, [name], environment)[name])


def _views(state: StateStore, names: Iterable[str], environment: str,
           record: EnvironmentRecord | Literal[False] | None = False) -> dict[str, exp.Table]:
    namespace = view_namespace(state, environment, record)
    views = {}
    for name in names:
        schema, name_in_schema = name.split(".", 1)
        views[name] = table(environment_schema(schema, environment, namespace), name_in_schema)
    return views


def _dotted(view: exp.Table) -> str:
    return f"{view.db}.{view.name}"


def _physical(snapshots: Mapping[str, SnapshotRecord], fingerprint: str | None) -> str | None:
    record = snapshots.get(fingerprint) if fingerprint is not None else None
    return record.physical if record is not None else fingerprint


def _drop_empty_schemas(engine: Engine, schemas: set[str]) -> None:
    with engine.transaction() as cursor:
        for schema in sorted(schemas):
            engine.drop_schema_if_empty(cursor, schema)
