"""The state store's tables and their migrations, and the one way any family of tables in the
store is versioned and migrated (the bot's own records use it too).

Each family has a version table and a list of migrations, applied once each, in order, by one
process at a time: an advisory lock on PostgreSQL, the database lock on SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from runner.errors import StateError

Migration = Callable[[Connection], None]


@dataclass(frozen=True)
class Schema:
    """A family of tables: `version_table` records which of `migrations` have run."""

    name: str
    metadata: sa.MetaData
    version_table: sa.Table
    migrations: Sequence[Migration]
    lock_key: int  # PostgreSQL advisory lock key held while migrating


def version_table(name: str, metadata: sa.MetaData) -> sa.Table:
    return sa.Table(name, metadata,
                    sa.Column("version", sa.Integer, primary_key=True),
                    sa.Column("applied_at", sa.Float, nullable=False))


def migrate(conn: Connection, schema: Schema) -> None:
    """Bring `schema` up to date inside the caller's transaction. Processes starting together
    (gunicorn workers, several workers) take turns."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": schema.lock_key})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    schema.version_table.create(conn, checkfirst=True)
    current = conn.execute(sa.select(sa.func.max(schema.version_table.c.version))).scalar() or 0
    if current > len(schema.migrations):
        raise StateError(f"the state store's {schema.name} tables are at schema version {current}, "
                         f"newer than this Sluice understands ({len(schema.migrations)}); upgrade Sluice")
    for version in range(current + 1, len(schema.migrations) + 1):
        schema.migrations[version - 1](conn)
        conn.execute(schema.version_table.insert().values(version=version, applied_at=time.time()))


def add_column(conn: Connection, table: sa.Table, name: str) -> None:
    """Add a column a later version introduced (a store created since already has it)."""
    column = table.c[name]
    try:
        with conn.begin_nested():
            conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {name} "
                                 f"{column.type.compile(dialect=conn.dialect)}"))
    except SQLAlchemyError:
        pass  # already there


metadata = sa.MetaData()
schema_version = version_table("sluice_schema_version", metadata)

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
    # The namespace its views were made in (NULL: none, as every environment before version 9),
    # so an environment keeps its names whatever the repository's namespace becomes.
    sa.Column("namespace", sa.String(32)),
    # How the last run that built this environment ended (passed | tests_failed | build_failed;
    # NULL: not known), the commit it built and why: `sluice promote` into a protected environment
    # refuses a source that did not pass.
    sa.Column("verdict", sa.String(16)),
    sa.Column("verdict_detail", sa.String(255)),
    sa.Column("verdict_commit", sa.String(64)),
    sa.Column("verdict_at", sa.Float),
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
    # A change is recorded pending before the warehouse moves, done once it has (NULL: done, from
    # before changes had a status), abandoned when the warehouse refused it. See changes.py.
    sa.Column("status", sa.String(16)),
    sa.Column("rolls_back", sa.Integer),  # a rollback: the id of the change it undoes
    sa.Column("finished_at", sa.Float),
    sa.Column("commit", sa.String(64)),  # the commit whose project the environment then showed
    # What asked for the change, when it must happen once however often it is asked (a bot
    # command's event: `event:42`); added in version 10.
    sa.Column("cause", sa.String(64)),
)

locks = sa.Table(
    "sluice_locks", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("note", sa.String(255), nullable=False, default=""),  # why it is held
    sa.Column("since", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),  # NULL: held until released
    sa.Column("release_hint", sa.String(255)),  # what to do to release it (added in version 5)
    sa.Column("renewed_at", sa.Float),  # the holder's last heartbeat (added in version 5)
)

# The data tests an environment's version was tested with, by definition fingerprint: a test
# production has not seen is new or changed, and runs in a merge request whatever the data did.
environment_tests = sa.Table(
    "sluice_environment_tests", metadata,
    sa.Column("environment", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), primary_key=True),
)

# What each source looked like when a snapshot reading it was built: the report's drift check.
source_states = sa.Table(
    "sluice_source_states", metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(255), primary_key=True),
    sa.Column("state", sa.String(128), nullable=False),
    sa.Column("observed_at", sa.Float, nullable=False),
)


# Which repository's production writes each schema of a warehouse: two repositories may not
# both write one (their views would replace each other's). Read in the main store, shared by
# every repository of the installation.
schema_claims = sa.Table(
    "sluice_schema_claims", metadata,
    sa.Column("warehouse", sa.String(255), primary_key=True),
    sa.Column("schema", sa.String(255), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
)


def _add_columns(conn: Connection, table: sa.Table, *names: str) -> None:
    for name in names:
        add_column(conn, table, name)


# Numbered as they always were: versions 2 and 4 also created the bot's tables, which now have a
# family of their own (bot/records/schema.py), so here they create what is left.
MIGRATIONS: list[Migration] = [
    lambda conn: metadata.create_all(
        conn, tables=[snapshots, environments, environment_models, environment_history]),
    lambda conn: metadata.create_all(conn, tables=[locks]),
    lambda conn: metadata.create_all(conn, tables=[source_states]),
    lambda conn: None,
    lambda conn: _add_columns(conn, locks, "release_hint", "renewed_at"),
    lambda conn: metadata.create_all(conn, tables=[environment_tests]),
    lambda conn: _rekey(conn),
    lambda conn: _changes_have_a_status(conn),
    lambda conn: _namespaces(conn),
    lambda conn: add_column(conn, environment_history, "cause"),
]


def _rekey(conn: Connection) -> None:
    # Deferred: the migration uses the tables above (runner.state.rekey imports this module).
    from runner.state.rekey import rekey

    rekey(conn)


def _changes_have_a_status(conn: Connection) -> None:
    for column in ("status", "rolls_back", "finished_at", "commit"):
        add_column(conn, environment_history, column)


def _namespaces(conn: Connection) -> None:
    """Version 9: repositories get namespaces. Existing environments keep the names they have
    (their `namespace` stays NULL: none), existing snapshots keep their recorded physical names,
    so nothing is renamed or orphaned; only what is made from now on carries a namespace."""
    _add_columns(conn, environments, "namespace", "verdict", "verdict_detail", "verdict_commit",
                 "verdict_at")
    metadata.create_all(conn, tables=[schema_claims])


STATE = Schema("state", metadata, schema_version, MIGRATIONS, lock_key=7_215_813_001)
