"""Warehouse engines as fixtures: one test run against a DuckDB file and against a fresh database
on the real PostgreSQL server, with helpers that look into either warehouse the same way.

tests/conftest.py loads it as a plugin; a test asks for `any_warehouse` (both engines, one test
each), `pg_warehouse` or `duck_warehouse`, and imports the helpers from here. (PYTEST_DONT_REWRITE:
test modules import its helpers before pytest loads it as a plugin, and it asserts nothing.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runner.engines.base import Engine
from runner.engines.duckdb import DuckDBEngine
from runner.engines.postgres import PostgresEngine

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_WAREHOUSE = "postgresql://postgres@127.0.0.1:5432/{database}"
ENGINES = ["duckdb", "postgres"]


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped (connections and all) afterwards."""
    database = f"sluice_wh_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        yield PG_WAREHOUSE.format(database=database)
    finally:
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@contextmanager
def fresh_login_database() -> Iterator[tuple[str, str]]:
    """A new, empty database and a login role without superuser that may create schemas in it and
    roles (Sluice's build role): (URL as that login, the login), as a production warehouse's
    shipped defaults expect (merge-request builds refuse a superuser login)."""
    login = f"sluice_login_{uuid.uuid4().hex[:8]}"
    try:
        with fresh_database() as url:
            database = url.rsplit("/", 1)[1]
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(f'CREATE ROLE "{login}" LOGIN CREATEROLE')
                admin.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{login}"')
            yield url.replace("postgresql://postgres@", f"postgresql://{login}@"), login
    finally:  # the database is gone by now: nothing depends on the role any more
        with psycopg.connect(PG_SERVER, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{login}"')


@pytest.fixture
def pg_warehouse_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture
def pg_warehouse(pg_warehouse_url: str) -> Iterator[PostgresEngine]:
    engine = PostgresEngine(pg_warehouse_url)
    yield engine
    engine.close()


@pytest.fixture
def duck_warehouse(tmp_path: Path) -> Iterator[DuckDBEngine]:
    engine = DuckDBEngine(tmp_path / "warehouse.duckdb")
    yield engine
    engine.close()


@pytest.fixture(params=ENGINES)
def any_warehouse(request: pytest.FixtureRequest) -> Engine:
    """The same test against a DuckDB file and a fresh PostgreSQL database."""
    engine: Engine = request.getfixturevalue(f"{'duck' if request.param == 'duckdb' else 'pg'}_warehouse")
    return engine


# -- looking into a warehouse ---------------------------------------------------------------------


def is_postgres(engine: Engine) -> bool:
    return engine.dialect == "postgres"


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.cursor() as cursor:
        _, result = cursor.fetch(sql)
    return result


def run(engine: Engine, *statements: str) -> None:
    with engine.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def numbers(engine: Engine, n: int) -> str:
    """A FROM clause of the integers 0 .. n-1 as column `i`, in the engine's SQL."""
    return f"generate_series(0, {n - 1}) AS r(i)" if is_postgres(engine) else f"range({n}) AS r(i)"


def views_sql(engine: Engine) -> str:
    """A query for (schema, view, definition) of every view in the warehouse."""
    if engine.dialect == "postgres":
        return ("select schemaname, viewname, definition from pg_views "
                "where schemaname not in ('pg_catalog', 'information_schema')")
    return "select schema_name, view_name, sql from duckdb_views() where not internal"


def view_reads(engine: Engine) -> dict[str, frozenset[str]]:
    """`schema.view` -> the relations it reads, for every view in the warehouse."""
    return engine.view_reads()


def env_views(engine: Engine, environment: str) -> dict[str, str]:
    """`schema.table` -> the physical object its view reads, for one environment's views."""
    out: dict[str, str] = {}
    for view, reads in view_reads(engine).items():
        schema, name = view.split(".", 1)
        if schema.startswith("sluice__") or len(reads) != 1:
            continue
        [target] = reads
        if not target.startswith("sluice__"):
            continue
        if environment == "prod" and "__" not in schema:
            out[view] = target
        elif schema.endswith(f"__{environment}"):
            out[f"{schema.removesuffix(f'__{environment}')}.{name}"] = target
    return out


def physical_objects(engine: Engine) -> set[str]:
    """Every object in Sluice's physical schemas, as `schema.name`."""
    return {f"{o.schema}.{o.name}" for o in engine.objects() if o.schema.startswith("sluice__")}


def plain(value: Any) -> Any:
    """A value as both engines agree on it: floats rounded, decimals as floats, dates as text."""
    if isinstance(value, float):
        return round(value, 6)
    if hasattr(value, "is_finite") and hasattr(value, "quantize"):  # Decimal
        return round(float(value), 6)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def contents(engine: Engine, environment: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every view of an environment with its rows, sorted, values made comparable across engines."""
    out = {}
    for name in env_views(engine, environment):
        schema, table = name.split(".")
        if environment != "prod":
            schema = f"{schema}__{environment}"
        found = rows(engine, f'select * from "{schema}"."{table}"')
        out[name] = sorted((tuple(plain(v) for v in row) for row in found), key=repr)
    return out


def drop_behind_sluices_back(engine: Engine, physical: str) -> None:
    """Drop a physical table as someone with warehouse access might (PostgreSQL: with the views
    that read it, which it would otherwise refuse)."""
    cascade = " cascade" if is_postgres(engine) else ""
    run(engine, f"drop table {physical}{cascade}")

