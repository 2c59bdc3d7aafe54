"""The state store: snapshots, environments and their history (SQLAlchemy Core).

A SQLite file by default, a PostgreSQL URL for a server. It is the source of truth for what exists
in the warehouse and which environment points where. The schema is versioned: each migration is a
step in `MIGRATIONS`, applied once, in order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from runner.errors import EnvError, StateError

metadata = sa.MetaData()

schema_version = sa.Table(
    "sluice_schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)

snapshots = sa.Table(
    "sluice_snapshots", metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("physical_schema", sa.String(255), nullable=False),
    sa.Column("physical_table", sa.String(255), nullable=False),
    sa.Column("materialized", sa.String(16), nullable=False),
    sa.Column("data_version", sa.String(64), nullable=False),
    sa.Column("canonical", sa.Text, nullable=False),
    sa.Column("parents", sa.Text, nullable=False),
    sa.Column("columns", sa.Text, nullable=False),
    sa.Column("reads_physical", sa.Text, nullable=False),
    sa.Column("reused_from", sa.String(64)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("build_seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("last_referenced_at", sa.Float, nullable=False),
    sa.Column("dropped_at", sa.Float),
)

environments = sa.Table(
    "sluice_environments", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),
)

environment_models = sa.Table(
    "sluice_environment_models", metadata,
    sa.Column("environment", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, index=True),
)

environment_history = sa.Table(
    "sluice_environment_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("environment", sa.String(64), nullable=False, index=True),
    sa.Column("action", sa.String(16), nullable=False),  # plan | promote | rollback | drop
    sa.Column("source", sa.String(64)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("before", sa.Text, nullable=False),
    sa.Column("after", sa.Text, nullable=False),
    sa.Column("rolled_back", sa.Boolean, nullable=False, default=False),
)

# The bot's durable work: deliveries received, runs, locks and each MR's report comment.
events = sa.Table(
    "sluice_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("forge", sa.String(16), nullable=False),
    sa.Column("delivery_id", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("repository", sa.String(255)),
    sa.Column("number", sa.Integer),
    sa.Column("event", sa.Text),  # the normalised event (bot.events JSON); NULL when ignored
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("dispatched_at", sa.Float),  # handed to the broker
    sa.Column("done_at", sa.Float),  # a worker finished with it
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.UniqueConstraint("forge", "delivery_id", name="uq_sluice_events_delivery"),
)

runs = sa.Table(
    "sluice_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Integer),
    sa.Column("forge", sa.String(16), nullable=False),
    sa.Column("repository", sa.String(255), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("sha", sa.String(64)),
    sa.Column("kind", sa.String(32), nullable=False),  # pipeline | promote | drop | command
    sa.Column("environment", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),  # queued running success failed superseded error
    sa.Column("summary", sa.Text, nullable=False, default=""),
    sa.Column("report", sa.Text, nullable=False, default=""),
    sa.Column("log", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("policy", sa.Text),  # the effective policy of the run (JSON); added by migration 4
    sa.Index("ix_sluice_runs_mr", "forge", "repository", "number"),
)

locks = sa.Table(
    "sluice_locks", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("note", sa.String(255), nullable=False, default=""),
    sa.Column("since", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),  # NULL: held until released
)

comments = sa.Table(
    "sluice_comments", metadata,
    sa.Column("forge", sa.String(16), primary_key=True),
    sa.Column("repository", sa.String(255), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("comment_id", sa.BigInteger, nullable=False),
    sa.Column("history", sa.Text, nullable=False, default=""),  # one line per run
)

# What each source looked like when a snapshot reading it was built: the report's drift check.
source_states = sa.Table(
    "sluice_source_states", metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(255), primary_key=True),
    sa.Column("state", sa.String(128), nullable=False),
    sa.Column("observed_at", sa.Float, nullable=False),
)

# Who did what, when: promotions, approvals, overrides, locks (see runner/audit.py).
audit = sa.Table(
    "sluice_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("forge", sa.String(16)),
    sa.Column("repository", sa.String(255)),
    sa.Column("number", sa.Integer),
    sa.Column("sha", sa.String(64)),
    sa.Column("environment", sa.String(64)),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),
    sa.Index("ix_sluice_audit_mr", "forge", "repository", "number"),
)

MIGRATION_LOCK = 7_215_813_001  # PostgreSQL advisory lock key held while migrating

# Each migration creates what it introduced; later issues append steps here.
MIGRATIONS: list[Callable[[Connection], None]] = [
    lambda conn: metadata.create_all(
        conn, tables=[snapshots, environments, environment_models, environment_history]),
    lambda conn: metadata.create_all(conn, tables=[events, runs, locks, comments]),
    lambda conn: metadata.create_all(conn, tables=[source_states]),
    lambda conn: _migration_4(conn),
]


def _migration_4(conn: Connection) -> None:
    metadata.create_all(conn, tables=[audit])
    _add_column(conn, runs, "policy")


def _add_column(conn: Connection, table: sa.Table, name: str) -> None:
    """Add a column a later version introduced (a store created since already has it)."""
    column = table.c[name]
    try:
        with conn.begin_nested():
            conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {name} "
                                 f"{column.type.compile(dialect=conn.dialect)}"))
    except SQLAlchemyError:
        pass  # already there


@dataclass(frozen=True)
class SnapshotRecord:
    fingerprint: str
    name: str
    kind: str
    physical_schema: str
    physical_table: str
    materialized: str
    data_version: str
    canonical: str
    parents: Mapping[str, str]
    columns: tuple[str, ...]
    reads_physical: tuple[str, ...] = ()
    reused_from: str | None = None
    created_at: float = 0.0
    build_seconds: float = 0.0
    last_referenced_at: float = 0.0

    @property
    def physical(self) -> str:
        return f"{self.physical_schema}.{self.physical_table}"


@dataclass(frozen=True)
class EnvironmentRecord:
    name: str
    created_at: float
    updated_at: float
    expires_at: float | None
    models: Mapping[str, str] = field(default_factory=dict)  # model name -> fingerprint


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    environment: str
    action: str
    source: str | None
    created_at: float
    before: Mapping[str, str]
    after: Mapping[str, str]
    rolled_back: bool


class StateStore:
    """`namespace` keeps one repository's environments apart from another's in a shared store:
    a PostgreSQL schema of that name, or a SQLite file beside the main one."""

    def __init__(self, url: str, namespace: str | None = None):
        self.url = url
        kwargs: dict[str, Any] = {}
        try:
            if url.startswith("sqlite"):
                kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
                parsed = sa.engine.make_url(url)
                database = parsed.database
                if database and database != ":memory:":
                    if namespace:
                        path = Path(database)
                        database = str(path.with_name(f"{path.stem}__{namespace}{path.suffix}"))
                        url = parsed.set(database=database).render_as_string(hide_password=False)
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url, future=True, **kwargs)
            if url.startswith("sqlite"):
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            elif namespace:
                with self.engine.begin() as conn:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                    conn.execute(sa.schema.CreateSchema(namespace, if_not_exists=True))
                self.engine = self.engine.execution_options(schema_translate_map={None: namespace})
            self._migrate()
        except (SQLAlchemyError, OSError, ImportError) as exc:
            detail = (str(exc).strip().splitlines() or [""])[0]
            raise StateError(f"cannot open the state store: {_redact(url)}: {exc.__class__.__name__}: "
                             f"{detail}") from None

    def close(self) -> None:
        self.engine.dispose()

    # -- schema ---------------------------------------------------------------------------------

    def _migrate(self) -> None:
        """Bring the schema up to date. Processes starting together (gunicorn workers, several
        workers) take turns: an advisory lock on PostgreSQL, the database lock on SQLite."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            elif conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            schema_version.create(conn, checkfirst=True)
            current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
            if current > len(MIGRATIONS):
                raise StateError(f"the state store is at schema version {current}, newer than this "
                                 f"Sluice understands ({len(MIGRATIONS)}); upgrade Sluice")
            for version in range(current + 1, len(MIGRATIONS) + 1):
                MIGRATIONS[version - 1](conn)
                conn.execute(schema_version.insert().values(version=version, applied_at=time.time()))

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
            models = dict(conn.execute(
                sa.select(environment_models.c.name, environment_models.c.fingerprint)
                .where(environment_models.c.environment == name)).all())
        return EnvironmentRecord(row.name, row.created_at, row.updated_at, row.expires_at, models)

    def environments(self) -> list[EnvironmentRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(environments).order_by(environments.c.name)).all()
            models: dict[str, dict[str, str]] = {}
            for env, model, fp in conn.execute(sa.select(environment_models)):
                models.setdefault(env, {})[model] = fp
        return [EnvironmentRecord(r.name, r.created_at, r.updated_at, r.expires_at, models.get(r.name, {}))
                for r in rows]

    def set_environment(self, name: str, models: Mapping[str, str], action: str,
                        source: str | None = None,
                        apply: Callable[[], None] | None = None) -> int:
        """Record that `name` now points at these snapshots, and run `apply` (the warehouse
        change) inside the same state transaction: if `apply` fails, the state is unchanged."""
        now = time.time()
        with self.engine.begin() as conn:
            existing = conn.execute(sa.select(environments.c.name).where(
                environments.c.name == name)).first()
            before = dict(conn.execute(
                sa.select(environment_models.c.name, environment_models.c.fingerprint)
                .where(environment_models.c.environment == name)).all())
            if existing is None:
                conn.execute(environments.insert().values(name=name, created_at=now, updated_at=now,
                                                          expires_at=None))
            else:
                conn.execute(environments.update().where(environments.c.name == name)
                             .values(updated_at=now, expires_at=None))
            conn.execute(environment_models.delete().where(environment_models.c.environment == name))
            if models:
                conn.execute(environment_models.insert(), [
                    {"environment": name, "name": model, "fingerprint": fp} for model, fp in models.items()])
            result = conn.execute(environment_history.insert().values(
                environment=name, action=action, source=source, created_at=now,
                before=json.dumps(before, sort_keys=True), after=json.dumps(dict(models), sort_keys=True),
                rolled_back=False))
            touched = set(before.values()) | set(models.values())
            if touched:
                conn.execute(snapshots.update().where(snapshots.c.fingerprint.in_(list(touched)))
                             .values(last_referenced_at=now))
            if apply is not None:
                apply()
            key = result.inserted_primary_key
            return int(key[0]) if key else 0

    def history(self, name: str) -> list[HistoryEntry]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(environment_history)
                                .where(environment_history.c.environment == name)
                                .order_by(environment_history.c.id.desc())).all()
        return [HistoryEntry(r.id, r.environment, r.action, r.source, r.created_at,
                             json.loads(r.before), json.loads(r.after), bool(r.rolled_back)) for r in rows]

    def mark_rolled_back(self, entry_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(environment_history.update().where(environment_history.c.id == entry_id)
                         .values(rolled_back=True))

    def delete_environment(self, name: str, apply: Callable[[], None] | None = None) -> None:
        now = time.time()
        with self.engine.begin() as conn:
            before = dict(conn.execute(
                sa.select(environment_models.c.name, environment_models.c.fingerprint)
                .where(environment_models.c.environment == name)).all())
            found = conn.execute(environments.delete().where(environments.c.name == name)).rowcount
            if not found:
                raise EnvError(f"there is no environment {name!r}; `sluice env list` shows them")
            conn.execute(environment_models.delete().where(environment_models.c.environment == name))
            conn.execute(environment_history.insert().values(
                environment=name, action="drop", source=None, created_at=now,
                before=json.dumps(before, sort_keys=True), after="{}", rolled_back=False))
            if before:
                conn.execute(snapshots.update().where(snapshots.c.fingerprint.in_(list(before.values())))
                             .values(last_referenced_at=now))
            if apply is not None:
                apply()

    def mark_expiry(self, name: str, at: float) -> None:
        with self.engine.begin() as conn:
            found = conn.execute(environments.update().where(environments.c.name == name)
                                 .values(expires_at=at)).rowcount
        if not found:
            raise EnvError(f"there is no environment {name!r}")

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
        return {source: state for source, state in rows}

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
