"""Hostile SQL in a merge request, as an attacker would write it: model and singular-test bodies
that try to read files, reach the network, read the environment or settings, load extensions,
touch sequences and large objects, call other databases, sleep, or hide a second statement; and
`--where` predicates that try the same. On DuckDB and on the real PostgreSQL server, each is
refused at load with one line naming the file and the line, no traceback, and nothing runs: no file
is written and production's views (definitions compared byte for byte) and physical objects are
exactly as they were.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ProjectError
from runner.project.loader import load_project
from runner.project.nodes import Names
from runner.review.predicate import PredicateError, parse_predicate
from runner.safety import check_sql
from tests.support.hostile import Production

MODEL = "models/marts/evil.sql"
TEST = "tests/evil.sql"
SENTINEL = "/tmp/sluice-hostile-sentinel"  # what a write would create; it must never exist

# (id, file, body, line of the refused construct, words the one-line refusal holds: `a|b` for
# either, where PostgreSQL's grammar already refuses what DuckDB's would parse)
CASES: list[tuple[str, str, str, int, str]] = [
    # files
    ("read_csv in FROM", MODEL, "select *\nfrom read_csv('/etc/passwd')\n", 2, "read_csv"),
    ("read_csv_auto in a JOIN", MODEL, "select o.order_id\nfrom staging.stg_orders as o\n"
     "join read_csv_auto('/etc/passwd') as p on true\n", 3, "read_csv_auto"),
    ("read_text in LATERAL", MODEL, "select t.*\nfrom staging.stg_orders as o,\n"
     "lateral read_text('/proc/self/environ') as t\n", 3, "read_text"),
    ("read_blob in an EXISTS", MODEL, "select order_id from staging.stg_orders\n"
     "where exists (select 1 from read_blob('/etc/shadow'))\n", 2, "read_blob"),
    ("glob in a CTE", MODEL, "with files as (\n  select * from glob('/*')\n)\nselect * from files\n",
     2, "glob"),
    ("read_parquet in the select list", MODEL, "select\n  (select count(*) from "
     "read_parquet('/var/lib/x.parquet')) as n\n", 2, "read_parquet"),
    ("a quoted path as a table", MODEL, "select *\nfrom '/etc/passwd'\n", 2, "/etc/passwd"),
    ("a double-quoted path as a table", MODEL, 'select *\nfrom "/proc/self/environ"\n', 2,
     "/proc/self/environ"),
    ("a csv file name as a table", MODEL, 'select *\nfrom "secrets.csv"\n', 2, "secrets.csv"),
    ("SUMMARIZE of a table", MODEL, "select *\nfrom (summarize staging.stg_orders)\n", 2,
     "summarize|syntax error"),
    ("pg_read_file", MODEL, "select\n  pg_read_file('/etc/passwd') as p\n", 2, "pg_read_file"),
    ("pg_read_binary_file", MODEL, "select\n  pg_read_binary_file('global/pg_control') as p\n", 2,
     "pg_read_binary_file"),
    ("pg_ls_dir in FROM", MODEL, "select *\nfrom pg_ls_dir('/')\n", 2, "pg_ls_dir"),
    ("pg_stat_file", MODEL, "select\n  pg_stat_file('postgresql.conf') as s\n", 2, "pg_stat_file"),
    ("COPY to a file", MODEL, f"copy (select 1) to '{SENTINEL}'\n", 1, "copy"),
    # large objects
    ("lo_import", MODEL, "select\n  lo_import('/etc/passwd') as oid\n", 2, "lo_import"),
    ("lo_export", MODEL, f"select\n  lo_export(1, '{SENTINEL}') as n\n", 2, "lo_export"),
    ("lo_get", MODEL, "select\n  lo_get(16384) as b\n", 2, "lo_get"),
    # network and other databases
    ("read_parquet of a URL", MODEL, "select *\nfrom read_parquet('https://example.com/x.parquet')\n",
     2, "read_parquet"),
    ("dblink", MODEL, "select *\nfrom dblink('host=127.0.0.1', 'select 1') as t(a int)\n", 2,
     "dblink"),
    ("dblink_exec", MODEL, "select\n  dblink_exec('host=127.0.0.1', 'drop table x') as r\n", 2,
     "dblink_exec"),
    ("postgres_scan", MODEL, "select *\nfrom postgres_scan('host=127.0.0.1', 'public', 'secrets')\n",
     2, "postgres_scan"),
    ("ATTACH", MODEL, "attach 'host=127.0.0.1 dbname=postgres' as pg\n", 1, "attach|syntax error"),
    ("a catalog-qualified table", MODEL, "select *\nfrom other_db.marts.orders\n", 2,
     "other_db.marts.orders"),
    ("query() of SQL text", MODEL, "select *\nfrom query('select * from duckdb_secrets()')\n", 2,
     "query"),
    ("query_to_xml", MODEL, "select\n  query_to_xml('select * from pg_authid', true, true, '') as x\n",
     2, "query_to_xml"),
    # the environment and settings
    ("getenv", MODEL, "select\n  getenv('SLUICE_GITLAB_TOKEN') as token\n", 2, "getenv"),
    ("a quoted getenv", MODEL, 'select\n  "getenv"(\'HOME\') as home\n', 2, "getenv"),
    ("getenv in mixed case", MODEL, "select\n  GeTeNv('HOME') as home\n", 2, "getenv"),
    ("getenv in a scalar subquery", MODEL, "select\n  (select getenv('HOME')) as home\n", 2, "getenv"),
    ("current_setting", MODEL, "select\n  current_setting('data_directory') as d\n", 2,
     "current_setting"),
    ("set_config", MODEL, "select\n  set_config('search_path', 'evil', false) as s\n", 2,
     "set_config"),
    ("current_user", MODEL, "select 1 as one,\n  current_user as who\n", 2, "current_user"),
    ("version()", MODEL, "select\n  version() as v\n", 2, "version"),
    ("duckdb_settings()", MODEL, "select *\nfrom duckdb_settings()\n", 2, "duckdb_settings"),
    ("SET", MODEL, "set search_path = 'evil'\n", 1, "set"),
    ("PRAGMA", MODEL, "pragma enable_external_access\n", 1, "pragma"),
    # extensions
    ("INSTALL", MODEL, "install httpfs\n", 1, "install|must be a select query"),
    ("LOAD", MODEL, "load httpfs\n", 1, "load"),
    # sequences
    ("nextval", MODEL, "select\n  nextval('sluice_seq') as n\n", 2, "nextval"),
    ("setval", MODEL, "select\n  setval('sluice_seq', 1) as n\n", 2, "setval"),
    # sleeps and bombs
    ("pg_sleep", MODEL, "select\n  pg_sleep(60) as s\n", 2, "pg_sleep"),
    ("a recursive CTE without a stop", MODEL, "with recursive r as (\n  select 1 as n\n  union all\n"
     "  select n + 1 from r\n)\nselect * from r\n", 1, "recursive cte r"),
    # the catalog
    ("information_schema", MODEL, "select table_name\nfrom information_schema.tables\n", 2,
     "information_schema.tables"),
    ("pg_catalog.pg_authid", MODEL, "select *\nfrom pg_catalog.pg_authid\n", 2, "pg_authid"),
    ('"main"."duckdb_secrets"', MODEL, 'select *\nfrom "main"."duckdb_secrets"\n', 2, "duckdb_secrets"),
    ("a regclass cast", MODEL, "select 1 as one,\n  'pg_authid'::regclass as r\n", 2, "regclass"),
    # quoting and qualification tricks
    ("pg_catalog.pg_read_file", MODEL, "select\n  pg_catalog.pg_read_file('/etc/passwd') as p\n", 2,
     "pg_read_file"),
    ('"PG_CATALOG"."pg_ls_dir"', MODEL, 'select *\nfrom "pg_catalog"."pg_ls_dir"(\'/\')\n', 2,
     "pg_ls_dir"),
    ("a function of some schema", MODEL, "select\n  public.lower('X') as x\n", 2, "public.lower"),
    ("getenv as a method call", MODEL, "select\n  'HOME'.getenv() as home\n", 2, "getenv"),
    ("getenv inside a lambda", MODEL, "select\n  list_transform([1], x -> getenv('HOME')) as h\n", 2,
     "getenv|list_transform"),
    ("getenv inside a struct", MODEL, "select\n  {'k': getenv('HOME')} as h\n", 2,
     "getenv|syntax error"),
    ("an unknown function", MODEL, "select\n  my_udf(order_id) as x\nfrom staging.stg_orders\n", 2,
     "my_udf"),
    # statements
    ("two statements", MODEL, "select 1 as x;\ndrop table marts.orders\n", 2, "statements"),
    ("a statement after a comment", MODEL, "select 1 as x -- harmless\n;\n/* and then */ "
     "delete from marts.orders\n", 3, "statements"),
    ("CREATE TABLE AS", MODEL, "create table marts.evil as\nselect 1 as x\n", 1, "create"),
    ("SELECT INTO", MODEL, "select 1 as x\ninto marts.evil\n", 2, "into"),
    ("FOR UPDATE", MODEL, "select order_id\nfrom staging.stg_orders\nfor update\n", 1, "lock"),
    # singular tests: the same check
    ("test: getenv", TEST, "select getenv('HOME') as leak\nfrom marts.orders\n", 1, "getenv"),
    ("test: read_text", TEST, "select content\nfrom read_text('/proc/self/environ')\n", 2, "read_text"),
    ("test: pg_read_file", TEST, "select *\nfrom marts.orders\nwhere pg_read_file('/etc/passwd') "
     "is not null\n", 3, "pg_read_file"),
    ("test: current_setting", TEST, "select\n  current_setting('server_version') as v\n", 2,
     "current_setting"),
    ("test: lo_import", TEST, "select\n  lo_import('/etc/passwd') as oid\n", 2, "lo_import"),
    ("test: a path as a table", TEST, "select *\nfrom '/etc/passwd'\n", 2, "/etc/passwd"),
    ("test: information_schema", TEST, "select *\nfrom information_schema.columns\n", 2,
     "information_schema.columns"),
    ("test: two statements", TEST, "select * from marts.orders where amount < 0;\n"
     "drop table marts.orders\n", 2, "statements"),
    ("test: nextval", TEST, "select\n  nextval('sluice_seq') as n\n", 2, "nextval"),
]


@pytest.mark.parametrize(("file", "body", "line", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_sql_is_refused_at_load_and_nothing_runs(production: Production, file: str,
                                                        body: str, line: int, words: str) -> None:
    root = production.shop("case")
    (root / file).write_text(body)
    before = production.look()

    with pytest.raises(ProjectError) as caught:
        load_project(root)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{file}:{line}: "), message
    assert any(word in message.lower() for word in words.split("|")), message

    result = production.sluice(root, "plan", "mr_1")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: {message}"]
    assert "Traceback" not in result.output

    assert production.look() == before
    assert not Path(SENTINEL).exists()


# (id, predicate, words the refusal holds)
PREDICATES: list[tuple[str, str, str]] = [
    ("getenv", "status = getenv('HOME')", "getenv"),
    ("a quoted getenv", "status = \"getenv\"('HOME')", "getenv"),
    ("pg_read_file", "pg_read_file('/etc/passwd') is not null", "pg_read_file"),
    ("pg_catalog.pg_read_file", "pg_catalog.pg_read_file('/etc/passwd') is not null", "pg_read_file"),
    ("current_setting", "status = current_setting('data_directory')", "current_setting"),
    ("nextval", "order_id = nextval('sluice_seq')", "nextval"),
    ("lo_import", "order_id = lo_import('/etc/passwd')", "lo_import"),
    ("pg_sleep", "pg_sleep(60) is null", "pg_sleep"),
    ("read_csv", "read_csv('/etc/passwd') is not null", "read_csv"),
    ("a subquery", "order_id in (select order_id from information_schema.tables)", "in"),
    ("two statements", "status = 'paid'; drop table marts.orders", "several statements"),
    ("a comment hiding a statement", "status = 'paid' /* */; delete from marts.orders",
     "several statements"),
]


@pytest.mark.parametrize(("where", "words"), [p[1:] for p in PREDICATES], ids=[p[0] for p in PREDICATES])
def test_hostile_where_predicates_are_refused_and_nothing_runs(production: Production, where: str,
                                                               words: str) -> None:
    columns = ["order_id", "customer_id", "order_date", "status", "amount"]
    with pytest.raises(PredicateError) as caught:
        parse_predicate(where, columns, production.dialect)
    assert "\n" not in str(caught.value) and words in str(caught.value).lower()
    before = production.look()

    result = production.sluice(production.shop("where"), "diff", "prod", "prod", "marts.orders",
                               "--where", where)

    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: {caught.value}"]
    assert production.look() == before


# Custom generic tests are rendered to one query per use; the rendered text goes through the same
# public check as a model (dbt's compiled SQL does too), with the line of the YAML that uses it.
RENDERED: list[tuple[str, str, str]] = [
    ("reads a file", "select * from marts.orders where order_id not in (select * from "
     "read_csv('/etc/passwd'))", "read_csv"),
    ("reads the environment", "select getenv('HOME') as leak from marts.orders", "getenv"),
    ("two statements", "select * from marts.orders; drop table marts.orders", "statements"),
    ("reads the catalog", "select * from pg_catalog.pg_shadow", "pg_shadow"),
]


@pytest.mark.parametrize(("sql", "words"), [r[1:] for r in RENDERED], ids=[r[0] for r in RENDERED])
@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
def test_a_rendered_generic_test_goes_through_the_same_check(dialect: str, sql: str,
                                                             words: str) -> None:
    names = Names.of({"marts.orders": None}, {}, {})
    refusals = check_sql(sql, dialect, names, "models/schema.yml", line_offset=11)
    assert refusals and words in refusals[0].message.lower()
    assert str(refusals[0]).startswith("models/schema.yml:12: ")
