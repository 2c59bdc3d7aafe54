"""A state store as Sluice wrote it before fingerprints named their model (recipe version 1),
made from one written now: the old recipe, kept here only to test the migration that moves
stores from it (runner/state/rekey.py). Two models that version 1 gave one fingerprint end up
with one snapshot record, as they had then."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa

from runner.state.schema import (
    environment_history,
    environment_models,
    schema_version,
    snapshots,
    source_states,
)
from runner.state.store import StateStore

REKEY_VERSION = 7  # the state schema version that moves snapshots to recipe version 2


def _hash(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _v1(row: Any, parents: dict[str, str]) -> str:
    if row.kind == "seed":
        return _hash({"v": 1, "kind": "seed", "content": row.canonical})
    return _hash({"v": 1, "kind": "model", "sql": row.canonical, "materialized": row.materialized,
                  "upstream": sorted(parents.items())})


def downgrade_to_v1(state: StateStore) -> dict[str, str]:
    """Rewrite `state` as version 1 left it; returns new fingerprint -> old."""
    with state.engine.begin() as conn:
        rows = {row.fingerprint: row for row in conn.execute(sa.select(snapshots))}
        old: dict[str, str] = {}
        todo = dict(rows)
        while todo:
            for fp, row in list(todo.items()):
                parents = json.loads(row.parents)
                if any(v in rows and v not in old for v in parents.values()):
                    continue
                if row.data_version != fp and row.data_version in rows and row.data_version not in old:
                    continue
                old[fp] = _v1(row, {d: old.get(v, v) for d, v in parents.items()})
                del todo[fp]
        seen: set[str] = set()
        for fp, row in rows.items():
            parents = {d: old.get(v, v) for d, v in json.loads(row.parents).items()}
            conn.execute(snapshots.delete().where(snapshots.c.fingerprint == fp))
            if old[fp] in seen:
                continue  # version 1 kept one record for both models
            seen.add(old[fp])
            values = dict(row._mapping)
            values.update(fingerprint=old[fp], data_version=old.get(row.data_version, row.data_version),
                          parents=json.dumps(parents, sort_keys=True),
                          reused_from=old.get(row.reused_from) if row.reused_from else None)
            conn.execute(snapshots.insert().values(**values))
            conn.execute(source_states.update().where(source_states.c.fingerprint == fp)
                         .values(fingerprint=old[fp]))
        for env, name, fp in conn.execute(sa.select(environment_models)).all():
            conn.execute(environment_models.update().where(environment_models.c.environment == env,
                                                           environment_models.c.name == name)
                         .values(fingerprint=old.get(fp, fp)))
        for entry in conn.execute(sa.select(environment_history)).all():
            conn.execute(environment_history.update().where(environment_history.c.id == entry.id).values(
                before=json.dumps({n: old.get(f, f) for n, f in json.loads(entry.before).items()}),
                after=json.dumps({n: old.get(f, f) for n, f in json.loads(entry.after).items()})))
        conn.execute(schema_version.delete().where(schema_version.c.version >= REKEY_VERSION))
    return old
