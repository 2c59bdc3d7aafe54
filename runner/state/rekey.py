"""State schema version 7: snapshots move to fingerprint version 2 (the model's name counts)
without rebuilding anything that is unchanged.

Every snapshot record holds what the new recipe needs (name, canonical SQL, materialization,
its parents' data versions), so each one is re-keyed in place, parents first: its physical table
keeps its name, and environments, history and source states follow. What cannot be kept is what
version 1 got wrong: two models with the same SQL and parents shared one record and one table.
The model that did not own the record points at a fingerprint that does not exist now, so its
next plan builds it a table of its own; the migration logs which models and what that costs.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runner.plan.fingerprint import model_version, seed_version
from runner.state.schema import environment_history, environment_models, snapshots, source_states

log = logging.getLogger("sluice.state")


def rekey(conn: Connection) -> None:
    rows = {row.fingerprint: row for row in conn.execute(sa.select(snapshots))}
    if not rows:
        return
    fingerprints, versions = _new_keys(rows)

    def moved(name: str, old: str) -> str:
        row = rows.get(old)
        if row is None:
            return old  # long gone: nothing points at a table for it
        if row.name == name:
            return fingerprints[old]
        # Version 1 let `name` share another model's snapshot: it gets one of its own, built on
        # its next plan (this fingerprint has no record).
        return _fingerprint(name, row, versions)

    shared: dict[str, float] = {}
    for env, name, old in conn.execute(sa.select(environment_models)).all():
        new = moved(str(name), str(old))
        if new != old:
            conn.execute(environment_models.update().where(environment_models.c.environment == env,
                                                           environment_models.c.name == name)
                         .values(fingerprint=new))
        if old in rows and rows[old].name != name:
            shared[f"{env}: {name}"] = float(rows[old].build_seconds or 0.0)
    # The columns this version had (later migrations add more).
    history = sa.select(environment_history.c.id, environment_history.c.before, environment_history.c.after)
    for entry in conn.execute(history).all():
        before = {n: moved(n, fp) for n, fp in json.loads(entry.before).items()}
        after = {n: moved(n, fp) for n, fp in json.loads(entry.after).items()}
        conn.execute(environment_history.update().where(environment_history.c.id == entry.id).values(
            before=json.dumps(before, sort_keys=True), after=json.dumps(after, sort_keys=True)))
    for old, row in rows.items():
        parents = {dep: versions.get(version, version) for dep, version in json.loads(row.parents).items()}
        conn.execute(snapshots.update().where(snapshots.c.fingerprint == old).values(
            fingerprint=fingerprints[old], data_version=versions.get(row.data_version, row.data_version),
            parents=json.dumps(parents, sort_keys=True),
            reused_from=fingerprints.get(row.reused_from, row.reused_from) if row.reused_from else None))
        conn.execute(source_states.update().where(source_states.c.fingerprint == old)
                     .values(fingerprint=fingerprints[old]))
    if shared:
        log.warning("fingerprints now include the model's name: %d model(s) shared another model's "
                    "table and are rebuilt on their next plan, with what reads them (about %.1f s of "
                    "building for those models): %s",
                    len(shared), sum(shared.values()), ", ".join(sorted(shared)))


def _new_keys(rows: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Old fingerprint -> new, and old data version -> new, parents before children."""
    fingerprints: dict[str, str] = {}
    versions: dict[str, str] = {}
    known_versions = {row.data_version for row in rows.values()}
    todo = dict(rows)
    while todo:
        ready = [fp for fp, row in todo.items() if _resolved(row, versions, known_versions)]
        if not ready:  # cannot happen (versions form no cycle); keep the rest as they are
            fingerprints.update({fp: fp for fp in todo})
            break
        for fp in ready:
            row = todo.pop(fp)
            fingerprints[fp] = _fingerprint(row.name, row, versions)
            if row.data_version == fp:  # built: its data version is its fingerprint
                versions[fp] = fingerprints[fp]
    for row in rows.values():  # a zero-copy record shows its original's data
        versions.setdefault(row.data_version, row.data_version)
    return fingerprints, versions


def _resolved(row: Any, versions: dict[str, str], known: set[str]) -> bool:
    parents = json.loads(row.parents).values()
    return all(v in versions or v not in known for v in parents) and (
        row.data_version == row.fingerprint or row.data_version in versions
        or row.data_version not in known)


def _fingerprint(name: str, row: Any, versions: dict[str, str]) -> str:
    if row.kind == "seed":
        return seed_version(name, row.canonical)
    parents = {dep: versions.get(version, version) for dep, version in json.loads(row.parents).items()}
    return model_version(name, row.canonical, row.materialized, (), parents)
