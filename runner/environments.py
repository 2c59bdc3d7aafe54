"""Environments: schemas of views pointing at snapshots. Pointing, promotion, rollback, dropping.

Every change to an environment is one warehouse transaction run inside one state-store
transaction: either the views and the record both move, or neither does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlglot import exp

from runner.engines.base import Engine
from runner.errors import EnvError
from runner.naming import PRODUCTION, check_environment_name, environment_schema, table
from runner.state.records import SnapshotRecord
from runner.state.store import StateStore


@dataclass(frozen=True)
class Repoint:
    environment: str
    changed: tuple[str, ...]  # views created or moved
    dropped: tuple[str, ...]  # views removed
    unchanged: int


def point(engine: Engine, state: StateStore, environment: str, mapping: Mapping[str, str],
          action: str, source: str | None = None) -> Repoint:
    """Make `environment`'s views match `mapping` (model -> fingerprint), in one transaction."""
    check_environment_name(environment)
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

    def apply() -> None:
        with engine.transaction() as cursor:
            engine.point_views(cursor, [
                (_view(name, environment), table(snapshots[mapping[name]].physical_schema,
                                                 snapshots[mapping[name]].physical_table))
                for name in changed])
            for name in dropped:
                engine.drop(cursor, _view(name, environment), "view")

    state.set_environment(environment, mapping, action=action, source=source, apply=apply)
    if dropped and environment != PRODUCTION:
        _drop_empty_schemas(engine, {_view(n, environment).db for n in dropped})
    return Repoint(environment, tuple(changed), tuple(dropped), len(mapping) - len(changed))


def promote(engine: Engine, state: StateStore, source: str, target: str) -> Repoint:
    """Point `target` at `source`'s snapshots; nothing is rebuilt."""
    if source == target:
        raise EnvError(f"cannot promote {source} onto itself")
    record = state.environment(source)
    if record is None:
        raise EnvError(f"there is no environment {source!r} to promote; `sluice env list` shows them")
    result = point(engine, state, target, record.models, action="promote", source=source)
    state.set_environment_tests(target, state.environment_tests(source))  # what they were tested with
    return result


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


def rollback(engine: Engine, state: StateStore, environment: str) -> Repoint:
    """Point `environment` back at the snapshots it had before its last change."""
    for entry in state.history(environment):
        if entry.action in ("promote", "plan") and not entry.rolled_back:
            if not entry.before:
                raise NothingToRollBack(environment, created=True)
            result = point(engine, state, environment, entry.before, action="rollback",
                           source=f"#{entry.id}")
            state.mark_rolled_back(entry.id)
            return result
        if entry.action == "drop":
            break
    raise NothingToRollBack(environment, created=state.environment(environment) is not None)


def drop(engine: Engine, state: StateStore, environment: str) -> Repoint:
    """Remove the environment's views and schemas; physical tables stay for the janitor."""
    if environment == PRODUCTION:
        raise EnvError("production cannot be dropped")
    record = state.environment(environment)
    if record is None:
        raise EnvError(f"there is no environment {environment!r}; `sluice env list` shows them")
    names = list(record.models)

    def apply() -> None:
        with engine.transaction() as cursor:
            for name in names:
                engine.drop(cursor, _view(name, environment), "view")

    state.delete_environment(environment, apply=apply)
    _drop_empty_schemas(engine, {_view(n, environment).db for n in names})
    return Repoint(environment, (), tuple(names), 0)


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
