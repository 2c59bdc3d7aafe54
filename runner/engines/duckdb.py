"""DuckDB, the embedded default warehouse: one file, one writer process, many threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from runner.engines.base import Cursor, Engine, TimeLimit, WarehouseObject
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

    def __init__(self, path: Path | str):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._root = duckdb.connect(self.path)
        except duckdb.Error as exc:
            raise SluiceError(f"cannot open the DuckDB warehouse {self.path}: {_first_line(exc)}") from None
        self._local = threading.local()
        self._lock = threading.Lock()

    @classmethod
    def dbt_target(cls, url: str | None) -> dict[str, Any] | None:
        # An empty in-memory database: compiling reads nothing of the warehouse, writes nothing,
        # and takes no turn on the file's one writer.
        return {"type": "duckdb", "path": ":memory:", "database": "memory"}

    @classmethod
    def from_url(cls, url: str) -> DuckDBEngine:
        """`duckdb:///relative/file.duckdb`, `duckdb:////absolute/file.duckdb` (as SQLAlchemy's
        SQLite URLs), or `duckdb://` for an in-memory warehouse."""
        prefix = "duckdb:///"
        path = url[len(prefix):] if url.startswith(prefix) else ""
        return cls(path or ":memory:")

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
