"""`/diff --where "<predicate>"` (`runner.review.predicate.parse_predicate`): the text comes from a merge
request comment, so only one plain condition over the model's columns may reach the warehouse.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlglot import exp

from runner.engines.base import Engine
from runner.engines.duckdb import DuckDBEngine
from runner.naming import table
from runner.pipeline import run_pipeline
from runner.project.loader import load_project
from runner.review.compare import compare
from runner.review.predicate import PredicateError, parse_predicate
from runner.state.store import StateStore
from tests.support.repos import Shop

COLUMNS = ("id", "status", "amount", "ordered_on", "Email")


def where(text: str) -> str:
    return parse_predicate(text, COLUMNS, "duckdb").sql(dialect="duckdb")


@pytest.mark.parametrize(("text", "sql"), [
    ("status = 'paid' AND amount > 10", "\"status\" = 'paid' AND \"amount\" > 10"),
    ("NOT (amount BETWEEN -5 AND 5) OR status IS NULL",
     "NOT (\"amount\" BETWEEN -5 AND 5) OR \"status\" IS NULL"),
    ("status IN ('paid', 'new')", "\"status\" IN ('paid', 'new')"),
    ("lower(EMAIL) LIKE '%@example.com'", "LOWER(\"Email\") LIKE '%@example.com'"),
    ("date_trunc('month', ordered_on) = DATE '2024-01-01'",
     "DATE_TRUNC('MONTH', \"ordered_on\") = CAST('2024-01-01' AS DATE)"),
    ("coalesce(amount, 0) <> round(abs(amount), 1)",
     "COALESCE(\"amount\", 0) <> ROUND(ABS(\"amount\"), 1)"),
    ("try_cast(status AS INTEGER) IS NOT NULL", "NOT TRY_CAST(\"status\" AS INT) IS NULL"),
    ("length(upper(status)) > 3 -- trailing comment", "LENGTH(UPPER(\"status\")) > 3"),
    ("id = 1;", "\"id\" = 1"),
])
def test_accepted_conditions_come_back_with_quoted_columns(text: str, sql: str) -> None:
    assert where(text) == sql


@pytest.mark.parametrize(("text", "message"), [
    ("id IN (SELECT id FROM other)", "`IN` takes a list of values"),
    ("amount > (SELECT max(amount) FROM orders)", "subqueries are not allowed"),
    ("EXISTS (SELECT 1)", "subqueries are not allowed"),
    ("1=1; drop table t", "not several statements: refusing `DROP TABLE t`"),
    ("drop table t", "not a statement: `DROP TABLE t`"),
    ("SELECT * FROM orders", "not a query"),
    ("nope = 1", "unknown column `nope`"),
    ("read_csv('x') IS NOT NULL", "function `read_csv` is not allowed"),
    ("status = getenv('HOME')", "function `getenv` is not allowed"),
    ("t.status = 'paid'", "`t.status` names a table"),
    ("* IS NOT NULL", "`*` is not allowed"),
    ("id IN (1, amount)", "literal values"),
    ("amount", "must be a condition"),
    ("CAST(id AS STRUCT(a INT)) IS NULL", "casting to `STRUCT(a INT)` is not allowed"),
    ("id = ?", "parameters are not allowed"),
    ("status = 'a' UNION SELECT 'b'", "not a query"),
    ("id = 1 AND", "not valid SQL"),
    ("", "needs a condition"),
])
def test_hostile_or_wrong_predicates_are_refused_naming_the_part(text: str, message: str) -> None:
    with pytest.raises(PredicateError, match=re.escape(message)):
        parse_predicate(text, COLUMNS, "duckdb")


def test_an_accepted_predicate_filters_rows_in_the_warehouse(tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb")
    with engine.cursor() as cursor:
        cursor.execute("CREATE TABLE orders (id INTEGER, status VARCHAR, amount DECIMAL(10,2))")
        cursor.execute("INSERT INTO orders VALUES (1, 'paid', 5), (2, 'PAID', 50), (3, 'new', 500)")
    condition = parse_predicate("upper(status) = 'PAID' AND amount BETWEEN 1 AND 100",
                                ["id", "status", "amount"], "duckdb")

    _, rows = engine.fetch(exp.select("id").from_(table("main", "orders")).where(condition).order_by("id"))

    assert rows == [(1,), (2,)]
    engine.close()


def test_diff_where_is_held_to_the_allowlist_the_project_was_loaded_with(shop: Shop, state: StateStore,
                                                                        warehouse: Engine) -> None:
    """A function the server's policy adds (`sql_allowlist`) passes in `/diff --where` as it does in
    models; without it, it is refused there too."""
    assert run_pipeline(shop.load(), state, warehouse, "prod").ok
    shop.edit("models/marts/orders.sql", "p.total_amount as amount", "p.total_amount * 2 as amount")
    assert run_pipeline(shop.load(), state, warehouse, "mr_1", against="prod").ok
    condition = "version() <> '' and amount > 0"

    with pytest.raises(PredicateError, match="version"):
        compare(shop.load(), state, warehouse, "prod", "mr_1", "marts.orders", where=condition)
    widened = load_project(shop.root, sql_allowlist=("version",))
    [found] = compare(widened, state, warehouse, "prod", "mr_1", "marts.orders", where=condition)
    assert found.diff is not None and found.diff.changed > 0
