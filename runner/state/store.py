"""The state store: snapshots, environments and their history (SQLAlchemy Core).

A SQLite file by default, a PostgreSQL URL for a server. It is the source of truth for what exists
in the warehouse and which environment points where. Its tables and migrations are in `schema`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from runner.errors import EnvError, StateError
from runner.naming import Layout
from runner.state.changes import EnvironmentChanges
from runner.state.records import EnvironmentRecord, HistoryEntry, SnapshotRecord, Verdict
from runner.state.schema import (
    STATE,
    Schema,
    environment_history,
    environment_models,
    environment_tests,
    environments,
    migrate,
    schema_version,
    snapshots,
    source_states,
)

STATEMENT_TIMEOUT = 30.0  # seconds a state-store statement, lock wait or connection checkout may take
IDLE_IN_TRANSACTION = 60.0  # a transaction left open by a stalled process is ended after this
CONNECTION_DEFAULTS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10,
                       "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 15000}


class StateStore:
    """`namespace` keeps one repository's environments apart from another's in a shared store:
    a PostgreSQL schema of that name, or a SQLite file beside the main one. `layout` says where
    that repository's objects live in the warehouse (its namespace there, and who it is)."""

    def __init__(self, url: str, namespace: str | None = None, *,
                 statement_timeout: float = STATEMENT_TIMEOUT, layout: Layout | None = None):
        self.url = url
        self.layout = layout or Layout()
        self._namespaced = bool(namespace)
        self._registry: StateStore | None = None
        # Stale pooled connections are found before use; no checkout waits forever.
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        try:
            if url.startswith("sqlite"):
                kwargs["connect_args"] = {"timeout": statement_timeout, "check_same_thread": False}
                parsed = sa.engine.make_url(url)
                database = parsed.database
                if database and database != ":memory:":
                    if namespace:
                        path = Path(database)
                        database = str(path.with_name(f"{path.stem}__{namespace}{path.suffix}"))
                        url = parsed.set(database=database).render_as_string(hide_password=False)
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
            if url.startswith("postgresql"):
                kwargs["pool_timeout"] = statement_timeout
                kwargs["connect_args"] = {
                    **CONNECTION_DEFAULTS,
                    "options": f"-c statement_timeout={round(statement_timeout * 1000)} "
                               f"-c lock_timeout={round(statement_timeout * 1000)} "
                               f"-c idle_in_transaction_session_timeout={round(IDLE_IN_TRANSACTION * 1000)}"}
            self.engine = sa.create_engine(url, future=True, **kwargs)
            if url.startswith("sqlite"):
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            elif namespace:
                with self.engine.begin() as conn:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": STATE.lock_key})
                    conn.execute(sa.schema.CreateSchema(namespace, if_not_exists=True))
                self.engine = self.engine.execution_options(schema_translate_map={None: namespace})
            self._migrate()
        except (SQLAlchemyError, OSError, ImportError) as exc:
            detail = (str(exc).strip().splitlines() or [""])[0]
            raise StateError(f"cannot open the state store: {_redact(url)}: {exc.__class__.__name__}: "
                             f"{detail}") from None

    def close(self) -> None:
        self.engine.dispose()
        if self._registry is not None:
            self._registry.close()

    def registry(self) -> StateStore:
        """The installation's main store, shared by every repository's namespace (this store
        itself when it has none): what must be known across repositories lives there."""
        if not self._namespaced:
            return self
        if self._registry is None:
            self._registry = StateStore(self.url)
        return self._registry

    # -- schema ---------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.engine.begin() as conn:
            migrate(conn, STATE)
        self._schemas = {STATE.name}
        self.changes = EnvironmentChanges(self.engine, self.layout.namespace)

    def ensure(self, schema: Schema) -> None:
        """Create or upgrade another family of tables in this store (once per store object)."""
        if schema.name in self._schemas:
            return
        try:
            with self.engine.begin() as conn:
                migrate(conn, schema)
        except SQLAlchemyError as exc:
            detail = (str(exc).strip().splitlines() or [""])[0]
            raise StateError(f"cannot migrate the state store's {schema.name} tables: "
                             f"{exc.__class__.__name__}: {detail}") from None
        self._schemas.add(schema.name)

    @property
    def version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- snapshots ------------------------------------------------------------------------------

    def snapshots(self, names: Iterable[str] | None = None,
                  fingerprints: Iterable[str] | None = None) -> dict[str, SnapshotRecord]:
        """Live snapshots (not dropped) by fingerprint."""
        query = sa.select(snapshots).where(snapshots.c.dropped_at.is_(None))
        if names is not None:
            query = query.where(snapshots.c.name.in_(list(names)))
        if fingerprints is not None:
            query = query.where(snapshots.c.fingerprint.in_(list(fingerprints)))
        with self.engine.connect() as conn:
            return {row.fingerprint: _snapshot(row) for row in conn.execute(query)}

    def add_snapshot(self, record: SnapshotRecord, conn: Connection | None = None) -> None:
        values = {
            "fingerprint": record.fingerprint, "name": record.name, "kind": record.kind,
            "physical_schema": record.physical_schema, "physical_table": record.physical_table,
            "materialized": record.materialized, "data_version": record.data_version,
            "canonical": record.canonical, "parents": json.dumps(dict(record.parents), sort_keys=True),
            "columns": json.dumps(list(record.columns)),
            "reads_physical": json.dumps(list(record.reads_physical)),
            "reused_from": record.reused_from, "created_at": record.created_at or time.time(),
            "build_seconds": record.build_seconds,
            "last_referenced_at": record.last_referenced_at or time.time(), "dropped_at": None,
        }
        with self._conn(conn) as c:
            # A dropped record with the same fingerprint is replaced by the rebuilt one.
            c.execute(snapshots.delete().where(snapshots.c.fingerprint == record.fingerprint))
            c.execute(snapshots.insert().values(**values))

    def mark_dropped(self, fingerprints: Iterable[str], conn: Connection | None = None) -> None:
        with self._conn(conn) as c:
            c.execute(snapshots.update().where(snapshots.c.fingerprint.in_(list(fingerprints)))
                      .values(dropped_at=time.time()))

    @contextmanager
    def _conn(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as c:
                yield c

    # -- environments ---------------------------------------------------------------------------

    def environment(self, name: str) -> EnvironmentRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(environments).where(environments.c.name == name)).first()
            if row is None:
                return None
            models: dict[str, str] = dict(conn.execute(
                sa.select(environment_models.c.name, environment_models.c.fingerprint)
                .where(environment_models.c.environment == name)).all())
        return EnvironmentRecord(row.name, row.created_at, row.updated_at, row.expires_at, models,
                                 row.namespace or "")

    def environments(self) -> list[EnvironmentRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(environments).order_by(environments.c.name)).all()
            models: dict[str, dict[str, str]] = {}
            for env, model, fp in conn.execute(sa.select(environment_models)):
                models.setdefault(str(env), {})[str(model)] = str(fp)
        return [EnvironmentRecord(r.name, r.created_at, r.updated_at, r.expires_at, models.get(r.name, {}),
                                  r.namespace or "")
                for r in rows]

    def set_environment(self, name: str, models: Mapping[str, str], action: str,
                        source: str | None = None) -> int:
        """Record that `name` points at these snapshots, with no warehouse step (the warehouse's
        views move through `runner.environments`, which follows the change protocol)."""
        change = self.changes.begin(name, models, action, source)
        self.changes.finish(change.id)
        return change.id

    def history(self, name: str) -> list[HistoryEntry]:
        return self.changes.history(name)

    def mark_rolled_back(self, entry_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(environment_history.update().where(environment_history.c.id == entry_id)
                         .values(rolled_back=True))

    def delete_environment(self, name: str) -> None:
        """Forget `name` (its views are `runner.environments.drop`'s business)."""
        change = self.changes.begin(name, {}, "drop")
        self.changes.finish(change.id)

    def mark_expiry(self, name: str, at: float) -> None:
        with self.engine.begin() as conn:
            found = conn.execute(environments.update().where(environments.c.name == name)
                                 .values(expires_at=at)).rowcount
        if not found:
            raise EnvError(f"there is no environment {name!r}")

    def verdict(self, name: str) -> Verdict | None:
        """How the last run that built `name` ended (None: not known, e.g. from before verdicts)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(environments).where(environments.c.name == name)).first()
        if row is None or row.verdict is None:
            return None
        return Verdict(row.verdict, row.verdict_detail or "", row.verdict_commit, row.verdict_at or 0.0)

    def set_verdict(self, name: str, verdict: Verdict | None) -> None:
        """Record (None: forget) how `name`'s last run ended; an environment not recorded yet
        (its first build failed) has nothing to record it on."""
        values: dict[str, object] = (
            {"verdict": None, "verdict_detail": None, "verdict_commit": None, "verdict_at": None}
            if verdict is None else
            {"verdict": verdict.outcome, "verdict_detail": verdict.detail[:255],
             "verdict_commit": verdict.commit, "verdict_at": verdict.at or time.time()})
        with self.engine.begin() as conn:
            conn.execute(environments.update().where(environments.c.name == name).values(**values))

    def environment_tests(self, name: str) -> set[str]:
        """The definition fingerprints of the tests `name`'s current version was tested with."""
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(environment_tests.c.fingerprint)
                                    .where(environment_tests.c.environment == name)).scalars())

    def set_environment_tests(self, name: str, fingerprints: Iterable[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(environment_tests.delete().where(environment_tests.c.environment == name))
            rows = [{"environment": name, "fingerprint": fp} for fp in sorted(set(fingerprints))]
            if rows:
                conn.execute(environment_tests.insert(), rows)

    def record_source_states(self, fingerprint: str, states: Mapping[str, str]) -> None:
        if not states:
            return
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(source_states.delete().where(source_states.c.fingerprint == fingerprint))
            conn.execute(source_states.insert(), [
                {"fingerprint": fingerprint, "source": source, "state": state, "observed_at": now}
                for source, state in states.items()])

    def source_states(self, fingerprint: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(source_states.c.source, source_states.c.state)
                                .where(source_states.c.fingerprint == fingerprint)).all()
        return {str(source): str(state) for source, state in rows}

    def referenced_fingerprints(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(environment_models.c.fingerprint).distinct()).scalars())


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL lets readers and the writer work at once; NORMAL sync is durable across process crashes."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _snapshot(row: Any) -> SnapshotRecord:
    return SnapshotRecord(
        fingerprint=row.fingerprint, name=row.name, kind=row.kind, physical_schema=row.physical_schema,
        physical_table=row.physical_table, materialized=row.materialized,
        data_version=row.data_version, canonical=row.canonical, parents=json.loads(row.parents),
        columns=tuple(json.loads(row.columns)), reads_physical=tuple(json.loads(row.reads_physical)),
        reused_from=row.reused_from, created_at=row.created_at, build_seconds=row.build_seconds,
        last_referenced_at=row.last_referenced_at,
    )


def _redact(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "<state url>"
