"""The engine's sandbox, tested below the static checks (defence in depth: a hole in the check is
still closed at the warehouse). Statements are handed to the engine as the build step would,
without going through the loader that would refuse them first.

- DuckDB: no file or network access, no extensions, configuration locked, memory and threads as
  the server says, a build timeout that interrupts a runaway query; seeds still load;
- PostgreSQL: a superuser connection is refused for merge-request builds unless allowed; builds
  run as a least-privilege role that reads only declared sources and creates only in Sluice's
  schemas, with a build timeout, lock and idle timeouts and a pinned search_path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import sqlglot
from sqlglot import exp

from runner.engines import open_engine
from runner.engines.duckdb import DuckDBEngine
from runner.engines.postgres import PostgresEngine
from runner.engines.sandbox import UNTRUSTED, Sandbox
from runner.errors import SluiceError, WarehouseError
from runner.naming import table
from runner.pipeline import run_pipeline
from runner.state.store import StateStore
from tests.support.repos import Shop
from tests.support.warehouses import (
    fresh_login_database,
    physical_objects,
    rows,
    run,
)

TARGET = table("sluice__marts", "probe__0123456789")


def query(sql: str, dialect: str) -> exp.Query:
    parsed = sqlglot.parse_one(sql, read=dialect)
    assert isinstance(parsed, exp.Query)
    return parsed


# -- DuckDB -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    "select * from read_text('/proc/self/environ')",
    "select * from read_csv('/etc/passwd')",
    "select * from glob('/*')",
    "select * from 'https://example.invalid/x.csv'",
    "select content from read_blob('/etc/hostname')",
])
def test_duckdb_project_sql_reads_no_file_and_no_network(tmp_path: Path, sql: str) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb", UNTRUSTED)
    try:
        engine.ensure_schemas({"sluice__marts"})
        with pytest.raises(WarehouseError) as refused:
            engine.build(TARGET, query(sql, "duckdb"), "table")
        assert "disabled by configuration" in refused.value.message
        assert "\n" not in str(refused.value)
        assert physical_objects(engine) == set()
    finally:
        engine.close()


@pytest.mark.parametrize("statement", [
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "SET memory_limit = '100GB'",
    "SET allowed_directories = ['/']",
    "INSTALL httpfs",
    "LOAD httpfs",
    "ATTACH '/tmp/elsewhere.duckdb' AS elsewhere",
])
def test_duckdb_the_sandbox_cannot_be_loosened_from_inside(tmp_path: Path, statement: str) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb", Sandbox(memory_limit="1GB", threads=2))
    try:
        with pytest.raises(WarehouseError):
            run(engine, statement)
        settings = rows(engine, "select current_setting('enable_external_access'), "
                        "current_setting('lock_configuration'), current_setting('threads'), "
                        "current_setting('autoload_known_extensions')")
        assert settings == [(False, True, 2, False)]
        assert not Path("/tmp/elsewhere.duckdb").exists()
    finally:
        engine.close()


def test_duckdb_a_second_engine_on_the_same_file_shares_the_locked_sandbox(tmp_path: Path) -> None:
    first = DuckDBEngine(tmp_path / "w.duckdb")
    second = DuckDBEngine(tmp_path / "w.duckdb")
    try:
        assert rows(second, "select current_setting('lock_configuration')") == [(True,)]
    finally:
        second.close()
        first.close()


def test_duckdb_a_build_over_its_timeout_is_interrupted_with_one_line(tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb", Sandbox(build_timeout=0.5))
    try:
        engine.ensure_schemas({"sluice__marts"})
        runaway = "with recursive r(i) as (select 1 union all select i + 1 from r) select count(*) from r"
        started = time.perf_counter()
        with pytest.raises(WarehouseError) as stopped:
            engine.build(TARGET, query(runaway, "duckdb"), "table")
        assert time.perf_counter() - started < 5
        assert stopped.value.message == ("stopped after 0.5 s, the build timeout; the server setting "
                                         "build_timeout raises it")
        assert physical_objects(engine) == set()
        assert rows(engine, "select 1") == [(1,)]  # the connection is usable afterwards
    finally:
        engine.close()


def test_duckdb_seeds_load_in_the_sandbox_and_leave_no_staged_file(
        shop: Shop, state: StateStore, tmp_path: Path) -> None:
    engine = open_engine(f"duckdb:///{tmp_path / 'w.duckdb'}", UNTRUSTED)
    try:
        result = run_pipeline(shop.load(), state, engine, "prod")
        assert result.ok, result.build.failed
        assert rows(engine, "select count(*) from raw.raw_orders")[0][0] > 0
        assert list((tmp_path / ".w.duckdb.seeds").iterdir()) == []
    finally:
        engine.close()


# -- PostgreSQL -------------------------------------------------------------------------------


@contextmanager
def warehouse_with_login() -> Iterator[tuple[str, str]]:
    """A fresh database with a source `shop.customers`, a table nobody declared (`hr.salaries`),
    and a login role without superuser that may create schemas and read (and pass on) the
    source: (URL as that role, the role)."""
    with fresh_login_database() as (url, login):
        admin_url = url.replace(f"postgresql://{login}@", "postgresql://postgres@")
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("CREATE SCHEMA shop; CREATE TABLE shop.customers (id int, name text)")
            admin.execute("INSERT INTO shop.customers VALUES (1, 'ada'), (2, 'bob')")
            admin.execute("CREATE SCHEMA hr; CREATE TABLE hr.salaries (name text, pay int)")
            admin.execute("INSERT INTO hr.salaries VALUES ('ada', 100)")
            admin.execute(f'GRANT USAGE ON SCHEMA shop, hr TO "{login}" WITH GRANT OPTION')
            admin.execute(f'GRANT SELECT ON shop.customers TO "{login}" WITH GRANT OPTION')
            admin.execute(f'GRANT SELECT ON hr.salaries TO "{login}"')  # readable, not passed on
        yield url, login


def test_postgres_a_superuser_connection_is_refused_for_merge_request_builds(pg_warehouse_url: str) -> None:
    with pytest.raises(SluiceError) as refused:
        open_engine(pg_warehouse_url, UNTRUSTED)
    assert "superuser" in refused.value.message and "allow_superuser: true" in refused.value.message
    assert "\n" not in refused.value.message
    allowed = open_engine(pg_warehouse_url, Sandbox(untrusted=True, allow_superuser=True))
    allowed.close()
    trusted = open_engine(pg_warehouse_url)  # a laptop's own SQL: no refusal
    trusted.close()


def test_postgres_the_build_role_reads_only_declared_sources_and_creates_only_in_sluices_schemas() -> None:
    with warehouse_with_login() as (url, _):
        engine = open_engine(url, Sandbox(untrusted=True, build_timeout=1.0))
        assert isinstance(engine, PostgresEngine)
        try:
            engine.grant_reads({"sluice__marts"}, [table("shop", "customers")])
            engine.build(TARGET, query("select id, name, current_user as who, "
                                       "current_setting('search_path') as path from shop.customers",
                                       "postgres"), "table")
            built = rows(engine, f'select distinct who, path from "sluice__marts"."{TARGET.name}"')
            assert built == [("sluice_build", "pg_catalog, pg_temp")]

            # A read the check missed: refused by the warehouse, although the login may read it.
            secret = table("sluice__marts", "secret__0123456789")
            with pytest.raises(WarehouseError, match=r"permission denied for (schema hr|table salaries)"):
                engine.build(secret, query("select * from hr.salaries", "postgres"), "table")
            # Creating outside Sluice's schemas: refused.
            with pytest.raises(WarehouseError, match="permission denied for schema"):
                engine.build(table("shop", "planted"), query("select 1 as x", "postgres"), "table")
            # A sleep beyond the build timeout: one line naming the setting.
            with pytest.raises(WarehouseError) as stopped:
                engine.build(table("sluice__marts", "slow__0123456789"),
                             query("select 1 as x from pg_sleep(5)", "postgres"), "table")
            assert stopped.value.message == ("stopped after 1 s, the build timeout; the server setting "
                                             "build_timeout raises it")
            assert physical_objects(engine) == {f"sluice__marts.{TARGET.name}"}
            assert rows(engine, "select count(*) from pg_tables where schemaname = 'shop'") == [(1,)]
        finally:
            engine.close()


def test_postgres_a_configured_build_role_must_exist(pg_warehouse_url: str) -> None:
    engine = open_engine(pg_warehouse_url, Sandbox(build_role="nobody_such_role"))
    try:
        with pytest.raises(SluiceError, match="the build_role 'nobody_such_role' does not exist"):
            engine.grant_reads({"sluice__marts"}, [])
    finally:
        engine.close()
