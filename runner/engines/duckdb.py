"""DuckDB, the embedded default warehouse: one file, one writer process, many threads.

Project SQL runs in a sandbox: the database is opened without external access (no files, no
network, no extensions installed or loaded) and its configuration is locked, so a model cannot
read `/proc/self/environ` even if a check above missed the function that would. Seeds, which
Sluice reads itself, are staged in a folder of Sluice's own: the only one DuckDB may read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from runner.engines.base import Cursor, Engine, TimeLimit, WarehouseObject, temporary
from runner.engines.sandbox import TRUSTED, Sandbox, timed_out
from runner.errors import SluiceError, WarehouseError


class _DuckCursor:
    def __init__(self, connection: duckdb.DuckDBPyConnection):
        self.connection = connection

    def execute(self, sql: str) -> None:
        try:
            self.connection.execute(sql)
        except duckdb.Error as exc:
            raise WarehouseError(_first_line(exc)) from exc

    def fetch(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        try:
            result = self.connection.execute(sql)
            names = [d[0] for d in result.description or []]
            return names, result.fetchall()
        except duckdb.Error as exc:
            raise WarehouseError(_first_line(exc)) from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DuckDBEngine(Engine):
    dialect = "duckdb"
    single_writer = True
    list_types = True

    def __init__(self, path: Path | str, sandbox: Sandbox = TRUSTED):
        self.path = str(path)
        self.sandbox = sandbox
        self.build_timeout = sandbox.build_timeout
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Beside the file, so that every engine this process opens on it shares the folder
            # (they share one DuckDB instance, whose allowed folders are fixed once locked).
            self.stage = Path(self.path).resolve().parent / f".{Path(self.path).name}.seeds"
            self.stage.mkdir(mode=0o700, exist_ok=True)
            self._own_stage = False
        else:
            self.stage, self._own_stage = Path(tempfile.mkdtemp(prefix="sluice-seeds-")), True
        try:
            self._root = duckdb.connect(self.path)
            self._lock_down()
        except duckdb.Error as exc:
            raise SluiceError(f"cannot open the DuckDB warehouse {self.path}: {_first_line(exc)}") from None
        self._local = threading.local()
        self._lock = threading.Lock()

    def _lock_down(self) -> None:
        """The sandbox, once per DuckDB instance (a second engine on the same file in this
        process shares the first one's instance, already locked)."""
        [(locked,)] = self._root.execute("SELECT current_setting('lock_configuration')").fetchall()
        if locked:
            return
        folder = exp.Literal.string(f"{self.stage}{os.sep}")
        settings: list[tuple[str, exp.Expr]] = [
            ("allowed_directories", exp.Array(expressions=[folder])),
            ("enable_external_access", exp.false()),
            ("autoinstall_known_extensions", exp.false()),
            ("autoload_known_extensions", exp.false()),
            ("memory_limit", exp.Literal.string(self.sandbox.memory_limit)),
            ("threads", exp.Literal.number(self.sandbox.threads)),
            ("lock_configuration", exp.true()),  # last: nothing after it can loosen the others
        ]
        for name, value in settings:
            self._root.execute(f"SET {name} = {value.sql(dialect=self.dialect)}")

    @classmethod
    def dbt_target(cls, url: str | None) -> dict[str, Any] | None:
        # An empty in-memory database: compiling reads nothing of the warehouse, writes nothing,
        # and takes no turn on the file's one writer.
        return {"type": "duckdb", "path": ":memory:", "database": "memory"}

    @classmethod
    def from_url(cls, url: str, sandbox: Sandbox = TRUSTED) -> DuckDBEngine:
        """`duckdb:///relative/file.duckdb`, `duckdb:////absolute/file.duckdb` (as SQLAlchemy's
        SQLite URLs), or `duckdb://` for an in-memory warehouse."""
        prefix = "duckdb:///"
        path = url[len(prefix):] if url.startswith(prefix) else ""
        return cls(path or ":memory:", sandbox)

    def _connection(self) -> duckdb.DuckDBPyConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            with self._lock:
                connection = self._root.cursor()
            self._local.connection = connection
        return connection

    @contextmanager
    def cursor(self) -> Iterator[Cursor]:
        yield _DuckCursor(self._connection())

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        connection = self._connection()
        connection.execute("BEGIN TRANSACTION")
        try:
            yield _DuckCursor(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def objects(self, schemas: Sequence[str] | None = None) -> list[WarehouseObject]:
        query = (
            exp.select("table_schema", "table_name", "table_type")
            .from_("information_schema.tables")
            .where(exp.column("table_catalog").eq(exp.func("current_database")))
        )
        if schemas is not None:
            query = query.where(exp.column("table_schema").isin(*[exp.Literal.string(s) for s in schemas]))
        with self.cursor() as cursor:
            _, rows = cursor.fetch(self.sql(query))
        return [WarehouseObject(s, n, "view" if t == "VIEW" else "table") for s, n, t in rows]

    def schemas(self) -> set[str]:
        query = exp.select("schema_name").from_("information_schema.schemata").where(
            exp.column("catalog_name").eq(exp.func("current_database")))
        with self.cursor() as cursor:
            _, rows = cursor.fetch(self.sql(query))
        return {r[0] for r in rows}

    def view_reads(self, schemas: Sequence[str] | None = None) -> dict[str, frozenset[str]]:
        query = (exp.select("schema_name", "view_name", "sql").from_("duckdb_views()")
                 .where(exp.not_(exp.column("internal")))
                 .where(exp.column("database_name").eq(exp.func("current_database"))))
        if schemas is not None:
            query = query.where(exp.column("schema_name").isin(*[exp.Literal.string(s) for s in schemas]))
        _, rows = self.fetch(query)
        found: dict[str, frozenset[str]] = {}
        for schema, name, sql in rows:
            created = sqlglot.parse_one(sql, read=self.dialect)
            body = created.expression if isinstance(created, exp.Create) else created
            reads = (f"{table.db or schema}.{table.name}" for table in body.find_all(exp.Table))
            found[f"{schema}.{name}"] = frozenset(reads)
        return found

    def column_types(self, target: exp.Table) -> list[tuple[str, str]]:
        # DESCRIBE reads views and attached catalogs alike, and fails loudly on a missing relation.
        described = exp.Describe(this=exp.select(exp.Star()).from_(target.copy()))
        with self.cursor() as cursor:
            _, rows = cursor.fetch(self.sql(described))
        return [(str(row[0]), str(row[1])) for row in rows]

    @contextmanager
    def time_limit(self, seconds: float | None) -> Iterator[TimeLimit]:
        connection = self._connection()
        with self.interrupting(seconds, connection.interrupt) as limit:
            yield limit

    def hash_values(self, values: Sequence[exp.Expr]) -> exp.Expr | None:
        return exp.func("hash", *values)

    def build(self, target: exp.Table, query: exp.Query, materialized: str) -> None:
        """As `Engine.build`, stopped by the build timeout."""
        kind = "VIEW" if materialized == "view" else "TABLE"
        temp = temporary(target)
        with self.transaction() as cursor:
            self._timed(cursor, self.sql(exp.Create(this=temp, kind=kind, expression=query)))
            self.swap_in(cursor, temp, target, kind)

    def _timed(self, cursor: Cursor, sql: str) -> None:
        seconds = self.build_timeout
        with self.time_limit(seconds) as limit:
            try:
                cursor.execute(sql)
            except WarehouseError:
                if limit.expired and seconds is not None:
                    raise WarehouseError(timed_out(seconds)) from None
                raise

    def load_seed(self, target: exp.Table, path: Path) -> None:
        """Read with DuckDB's own type inference, from the stage folder (see `readable`)."""
        with self.readable(path) as staged:
            self.build(target, self.load_csv_sql(target, staged), "table")

    @contextmanager
    def readable(self, path: Path) -> Iterator[Path]:
        """The file copied into the stage folder, the only one the sandbox may read; removed after."""
        staged = self.stage / f"{uuid.uuid4().hex}.csv"
        try:
            shutil.copyfile(path, staged)
        except OSError as exc:
            raise WarehouseError(f"cannot read the seed {path.name}: {exc.strerror or exc}") from None
        try:
            yield staged
        finally:
            with contextlib.suppress(OSError):
                staged.unlink()

    def load_csv_sql(self, target: exp.Table, path: Path) -> exp.Query:
        reader = exp.Anonymous(this="read_csv", expressions=[
            exp.Literal.string(str(path)),
            exp.EQ(this=exp.column("header"), expression=exp.true()),
        ])
        return exp.select(exp.Star()).from_(exp.Table(this=reader))

    def relation_state(self, target: exp.Table) -> str | None:
        relation = target.copy()
        relation.set("alias", exp.TableAlias(this=exp.to_identifier("t")))
        row_hash = exp.Anonymous(this="hash", expressions=[exp.column("t")])
        query = exp.select(exp.func("count", exp.Star()), exp.func("sum", row_hash)).from_(relation)
        _, rows = self.fetch(query)
        count, total = rows[0]
        return f"{count}:{total}"

    def close(self) -> None:
        self._root.close()
        if self._own_stage:
            shutil.rmtree(self.stage, ignore_errors=True)
