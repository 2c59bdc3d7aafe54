"""What a warehouse engine must do for Sluice, with the SQL built as sqlglot expressions.

An engine subclass supplies connections, transactions, catalog look-ups and seed loading; the
statements themselves (create, rename, drop, point views) are generated here by sqlglot for the
engine's dialect, with every identifier quoted, never pasted into strings.
"""

from __future__ import annotations

import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from sqlglot import exp

from runner.engines.sandbox import TRUSTED, Sandbox
from runner.naming import TEMP_MARK


class Cursor(Protocol):
    """One thread's connection to the warehouse."""

    def execute(self, sql: str) -> None: ...

    def fetch(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]: ...


@dataclass(frozen=True)
class WarehouseObject:
    schema: str
    name: str
    kind: str  # "table" | "view"


@dataclass
class TimeLimit:
    """Set by `Engine.time_limit` when the time ran out and the running statement was interrupted."""

    expired: bool = False


# The role of a dbt profile that must never connect (introspection without a connection given).
DBT_NO_CONNECTION = "sluice_no_introspection"


class Engine(ABC):
    """Callers ask the capability flags, never the engine's name."""

    dialect: ClassVar[str]  # sqlglot's name for the SQL it speaks
    # One writing process at a time (a DuckDB file): jobs on it take turns through a lock.
    single_writer: ClassVar[bool] = False
    # Has list values and functions (`array_agg`, `list_distinct`, `min(x, n)`): the keyed data diff
    # answers in one pass with them, with standard aggregates otherwise.
    list_types: ClassVar[bool] = False
    # Can copy a table without reading it (zero-copy clones); none of today's engines can.
    can_clone: ClassVar[bool] = False
    # DDL inside a transaction commits or rolls back with it: promotion moves every view at once.
    transactional_ddl: ClassVar[bool] = True
    # Seconds a build (and a data test's query) may run; None: no limit.
    build_timeout: float | None = None
    location: str = ""  # which warehouse, without credentials (set by `open_engine`)

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, sandbox: Sandbox = TRUSTED) -> Engine:
        """Open the warehouse a URL of one of this engine's schemes names, holding project SQL as
        `sandbox` says."""

    @classmethod
    def dbt_target(cls, url: str | None) -> dict[str, Any] | None:
        """The dbt profile target (adapter type and connection) a dbt project compiles with,
        given the read-only connection for introspection when there is one; None: dbt projects
        are not supported on this warehouse."""
        return None

    # -- what each engine provides -------------------------------------------------------------

    @abstractmethod
    def cursor(self) -> AbstractContextManager[Cursor]:
        """A connection for the calling thread, in autocommit mode."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Cursor]:
        """A connection inside one transaction: committed on exit, rolled back on error."""

    @abstractmethod
    def objects(self, schemas: Sequence[str] | None = None) -> list[WarehouseObject]:
        """Tables and views in these schemas (all schemas when None)."""

    @abstractmethod
    def schemas(self) -> set[str]: ...

    @abstractmethod
    def view_reads(self, schemas: Sequence[str] | None = None) -> dict[str, frozenset[str]]:
        """`schema.view` -> the relations (`schema.name`) each view reads, as the warehouse's own
        catalog has them: what the views really show, whatever the state store says."""

    @abstractmethod
    def load_csv_sql(self, target: exp.Table, path: Path) -> exp.Query:
        """A query that reads a CSV file with the engine's type inference (a `readable` path)."""

    @contextmanager
    def readable(self, path: Path) -> Iterator[Path]:
        """Where `load_csv_sql` may read the file: an engine whose SQL cannot reach the file
        system (DuckDB's sandbox) stages a copy; the default reads it where it is."""
        yield path

    @abstractmethod
    def close(self) -> None: ...

    # -- statements, generated ------------------------------------------------------------------

    def sql(self, expression: exp.Expr) -> str:
        return expression.sql(dialect=self.dialect)

    def create_schema(self, cursor: Cursor, schema: str) -> None:
        node = exp.Create(this=exp.Table(db=exp.to_identifier(schema, quoted=True)), kind="SCHEMA",
                          exists=True)
        cursor.execute(self.sql(node))

    def ensure_schemas(self, schemas: set[str]) -> None:
        """Create missing schemas up front: concurrent builds must not race to create one."""
        missing = schemas - self.schemas()
        if missing:
            with self.transaction() as cursor:
                for schema in sorted(missing):
                    self.create_schema(cursor, schema)

    def build(self, target: exp.Table, query: exp.Query, materialized: str) -> None:
        """Create `target` from `query` under a temporary name, then rename it, in one transaction.

        A crash at any point leaves either nothing or the complete object under the target name.
        A target that already exists can only be the leftover of a build that finished but was
        never recorded, so it is replaced.
        """
        kind = "VIEW" if materialized == "view" else "TABLE"
        temp = temporary(target)
        with self.transaction() as cursor:
            cursor.execute(self.sql(exp.Create(this=temp, kind=kind, expression=query)))
            self.swap_in(cursor, temp, target, kind)

    def swap_in(self, cursor: Cursor, temp: exp.Table, target: exp.Table, kind: str) -> None:
        """Rename `temp` to `target` inside the caller's transaction, replacing a leftover target
        (the fingerprint covers the materialization, so a leftover is of the same kind)."""
        cursor.execute(self.sql(exp.Drop(tables=[target.copy()], kind=kind, exists=True)))
        rename = exp.Alter(this=temp.copy(), kind=kind, actions=[
            exp.AlterRename(this=exp.Table(this=exp.to_identifier(target.name, quoted=True)))])
        cursor.execute(self.sql(rename))

    def load_seed(self, target: exp.Table, path: Path) -> None:
        """Load a CSV file as the table `target`, all at once or not at all (as `build`)."""
        self.build(target, self.load_csv_sql(target, path), "table")

    def grant_reads(self, schemas: set[str], sources: Sequence[exp.Table]) -> None:
        """Before a run's builds: let the role builds run as create in `schemas` (Sluice's own) and
        read them and the declared `sources`, nothing else. Engines without roles do nothing."""
        return None

    def point_views(self, cursor: Cursor, views: Sequence[tuple[exp.Table, exp.Table]]) -> None:
        """`CREATE OR REPLACE VIEW view AS SELECT * FROM target` for each pair."""
        for schema in sorted({view.db for view, _ in views}):
            self.create_schema(cursor, schema)
        for view, target in views:
            select = exp.select(exp.Star()).from_(target.copy())
            cursor.execute(self.sql(exp.Create(this=view, kind="VIEW", replace=True, expression=select)))

    def drop(self, cursor: Cursor, target: exp.Table, kind: str) -> None:
        cursor.execute(self.sql(exp.Drop(tables=[target], kind=kind.upper(), exists=True)))

    def drop_schema_if_empty(self, cursor: Cursor, schema: str) -> None:
        if not self.objects([schema]):
            node = exp.Drop(tables=[exp.Table(db=exp.to_identifier(schema, quoted=True))], kind="SCHEMA",
                            exists=True)
            cursor.execute(self.sql(node))

    def columns(self, target: exp.Table) -> list[str]:
        query = exp.select(exp.Star()).from_(target.copy()).limit(0)
        with self.cursor() as cursor:
            names, _ = cursor.fetch(self.sql(query))
        return [n.lower() for n in names]

    def column_types(self, target: exp.Table) -> list[tuple[str, str]]:
        """(name, type) of each column of a table or view, in order, types as the catalog prints them."""
        conditions = [exp.column("table_schema").eq(exp.Literal.string(target.db)),
                      exp.column("table_name").eq(exp.Literal.string(target.name))]
        if target.catalog:
            conditions.append(exp.column("table_catalog").eq(exp.Literal.string(target.catalog)))
        query = (exp.select("column_name", "data_type").from_("information_schema.columns")
                 .where(*conditions).order_by("ordinal_position"))
        _, rows = self.fetch(query)
        return [(str(name), str(kind)) for name, kind in rows]

    def time_limit(self, seconds: float | None) -> AbstractContextManager[TimeLimit]:
        """Once `seconds` have passed in the block, interrupt the calling thread's statements until
        the block ends: they raise WarehouseError and the yielded `TimeLimit.expired` is True. Open
        it inside `transaction()`, so that the rollback runs after it and is never interrupted.
        Engines that cannot interrupt a statement let it run to its end."""
        return nullcontext(TimeLimit())

    def relation_state(self, target: exp.Table) -> str | None:
        """A cheap fingerprint of a table's contents (row count and an order-free hash of the
        rows), to tell whether a source changed; None when the engine cannot compute one."""
        return None

    @staticmethod
    @contextmanager
    def interrupting(seconds: float | None, interrupt: Callable[[], None]) -> Iterator[TimeLimit]:
        """For `time_limit`: once `seconds` pass, call `interrupt` (stop the running statement)
        until the block ends. It repeats because an interrupt only stops a statement that is
        running; the guard makes sure none reaches a statement that runs after the block."""
        limit = TimeLimit()
        if seconds is None:
            yield limit
            return
        ended = threading.Event()
        guard = threading.Lock()

        def watch() -> None:
            if ended.wait(max(seconds, 0.0)):
                return
            limit.expired = True
            while True:
                with guard:
                    if ended.is_set():
                        return
                    interrupt()
                if ended.wait(0.05):
                    return

        watcher = threading.Thread(target=watch, name="sluice-time-limit", daemon=True)
        watcher.start()
        try:
            yield limit
        finally:
            with guard:
                ended.set()
            watcher.join()

    def hash_values(self, values: Sequence[exp.Expr]) -> exp.Expr | None:
        """An unsigned integer hash of `values` (equal for equal values of equal types), for
        deterministic sampling; None when the engine has no such function."""
        return None

    def fetch(self, query: exp.Expr) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self.cursor() as cursor:
            return cursor.fetch(self.sql(query))


def temporary(target: exp.Table) -> exp.Table:
    """A fresh name beside `target` for an object built before it is renamed into place (short:
    PostgreSQL cuts names at 63 bytes)."""
    name = f"{target.name[:40]}{TEMP_MARK}{uuid.uuid4().hex[:8]}"
    return exp.Table(this=exp.to_identifier(name, quoted=True), db=target.args["db"].copy())
