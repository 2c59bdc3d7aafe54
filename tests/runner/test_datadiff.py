"""The data diff (`runner.review.datadiff.diff_relations`): what a change does to a table's rows.

Each test arranges two versions of a table with known differences in a real DuckDB file and
asserts the exact counts, per-column statistics, key problems and samples a report would show.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.engines.duckdb import DuckDBEngine
from runner.errors import SluiceError
from runner.naming import table
from runner.review.datadiff import DataDiff, DiffCaps, diff_relations
from runner.review.predicate import parse_predicate

BEFORE = table("prod", "orders")
AFTER = table("mr", "orders")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[DuckDBEngine]:
    engine = DuckDBEngine(tmp_path / "warehouse.duckdb")
    run(engine, "CREATE SCHEMA prod", "CREATE SCHEMA mr")
    yield engine
    engine.close()


def run(engine: DuckDBEngine, *statements: str) -> None:
    with engine.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def orders(engine: DuckDBEngine, before_rows: str, after_rows: str,
           columns: str = "id INTEGER, status VARCHAR, amount DECIMAL(10,2)") -> None:
    run(engine,
        f"CREATE TABLE prod.orders ({columns})", f"INSERT INTO prod.orders VALUES {before_rows}",
        f"CREATE TABLE mr.orders ({columns})", f"INSERT INTO mr.orders VALUES {after_rows}")


def diff(engine: DuckDBEngine, **options: Any) -> DataDiff:
    return diff_relations(engine, BEFORE, AFTER, **options)


def changed_by_column(result: DataDiff) -> dict[str, int]:
    return {c.name: c.changed for c in result.columns}


# -- with a key ---------------------------------------------------------------------------------


def test_keyed_diff_counts_added_removed_changed_and_each_column(engine: DuckDBEngine) -> None:
    orders(engine,
           "(1, 'paid', 10), (2, 'paid', 20), (3, 'new', NULL), (4, NULL, 40), (5, 'new', 50), "
           "(6, NULL, NULL), (7, 'paid', 70)",
           # 1 same; 2 amount; 3 NULL -> value; 4 NULL -> NULL (same); 5 value -> NULL;
           # 6 NULL, NULL the same; 7 removed; 8 and 9 added
           "(1, 'paid', 10), (2, 'paid', 21), (3, 'new', 30), (4, NULL, 40), (5, NULL, 50), "
           "(6, NULL, NULL), (8, 'new', 80), (9, 'new', 90)")

    result = diff(engine, key=["id"])

    assert (result.rows_before, result.rows_after) == (7, 8)
    assert (result.added, result.removed, result.changed, result.unchanged) == (2, 1, 3, 3)
    assert changed_by_column(result) == {"status": 1, "amount": 2}
    assert {c.name: c.share for c in result.columns} == {"status": pytest.approx(1 / 6),
                                                          "amount": pytest.approx(2 / 6)}
    assert result.key == ("id",) and not result.key_problems
    assert not (result.sampled or result.truncated)
    assert result.sample_rate == 1.0
    assert not result.schema.changed
    assert result.before == "prod.orders" and result.after == "mr.orders"


def test_samples_show_changed_added_and_removed_rows_with_pii_masked(engine: DuckDBEngine) -> None:
    orders(engine,
           "(1, 'a@x.io', 'paid', 10), (2, 'b@x.io', 'paid', 20), (3, NULL, 'new', 30), "
           "(4, 'd@x.io', 'new', 40)",
           "(1, 'a@x.io', 'paid', 10), (2, 'b@x.io', 'paid', 25), (3, NULL, 'paid', 30), "
           "(5, 'e@x.io', 'new', 50)",
           columns="id INTEGER, email VARCHAR, status VARCHAR, amount DECIMAL(10,2)")

    result = diff(engine, key=["id"], pii=["EMAIL"], caps=DiffCaps(samples=5))

    changed, added, removed = result.samples[:2], result.samples[2], result.samples[3]
    assert len(result.samples) == 4
    assert [(b["id"], a["id"]) for b, a in changed if b and a] == [(2, 2), (3, 3)]
    before_2, after_2 = changed[0]
    assert before_2 is not None and after_2 is not None
    assert before_2["email"] == after_2["email"] == "***"
    assert (before_2["amount"], after_2["amount"]) == (20, 25)
    assert changed[1][0] is not None and changed[1][0]["email"] is None  # a NULL stays NULL
    assert added[0] is None and added[1] is not None and added[1]["id"] == 5
    assert added[1] == {"id": 5, "email": "***", "status": "new", "amount": 50}
    assert removed[1] is None and removed[0] is not None and removed[0]["id"] == 4
    assert "d@x.io" not in repr(result) and "e@x.io" not in repr(result)


def test_a_pii_key_is_masked_in_samples_too(engine: DuckDBEngine) -> None:
    orders(engine, "('a@x.io', 1)", "('a@x.io', 2)", columns="email VARCHAR, visits INTEGER")

    result = diff(engine, key=["email"], pii=["email"])

    assert result.changed == 1
    assert result.samples == (({"email": "***", "visits": 1}, {"email": "***", "visits": 2}),)


def test_samples_can_be_turned_off(engine: DuckDBEngine) -> None:
    orders(engine, "(1, 'a', 1), (2, 'b', 2)", "(1, 'a', 9), (3, 'c', 3)")

    result = diff(engine, key=["id"], caps=DiffCaps(samples=0))

    assert (result.added, result.removed, result.changed) == (1, 1, 1)
    assert result.samples == ()


def test_duplicate_keys_are_counted_on_each_side(engine: DuckDBEngine) -> None:
    orders(engine,
           # before: 2 twice (matched), 7 three times (removed only)
           "(1, 'a', 1), (2, 'a', 2), (2, 'b', 2), (7, 'x', 7), (7, 'y', 7), (7, 'z', 7)",
           # after: 1 twice (matched), 9 twice (added only), 10 twice (added only)
           "(1, 'a', 1), (1, 'b', 1), (2, 'a', 2), (9, 'n', 9), (9, 'n', 9), (10, 'm', 1), (10, 'm', 1)")

    result = diff(engine, key=["id"])

    assert (result.duplicate_keys_before, result.duplicate_keys_after) == (2, 3)
    assert result.key_problems


def test_duplicates_only_among_unmatched_keys_are_found(engine: DuckDBEngine) -> None:
    orders(engine, "(1, 'a', 1), (5, 'a', 5), (5, 'a', 5)", "(1, 'a', 1), (6, 'a', 6), (6, 'b', 6)")

    result = diff(engine, key=["id"])

    assert (result.duplicate_keys_before, result.duplicate_keys_after) == (1, 1)
    assert (result.added, result.removed, result.unchanged) == (2, 2, 1)


def test_null_keys_are_counted_and_left_out_of_the_comparison(engine: DuckDBEngine) -> None:
    orders(engine, "(1, 'a', 1), (NULL, 'a', 2), (NULL, 'b', 3)", "(1, 'a', 1), (NULL, 'a', 2)")

    result = diff(engine, key=["id"])

    assert (result.null_keys_before, result.null_keys_after) == (2, 1)
    assert (result.rows_before, result.rows_after) == (3, 2)
    assert (result.added, result.removed, result.changed, result.unchanged) == (0, 0, 0, 1)
    assert result.duplicate_keys_before == 0 and result.key_problems


def test_composite_key(engine: DuckDBEngine) -> None:
    orders(engine,
           "(1, 'eu', 10), (1, 'us', 11), (2, 'eu', 20), (3, 'eu', 30)",
           "(1, 'eu', 10), (1, 'us', 12), (2, 'us', 20), (3, 'eu', 30), (3, 'eu', 31)",
           columns="id INTEGER, region VARCHAR, amount INTEGER")

    result = diff(engine, key=["id", "region"])

    assert (result.added, result.removed) == (1, 1)  # (2, us) added, (2, eu) removed
    assert (result.duplicate_keys_before, result.duplicate_keys_after) == (0, 1)  # (3, eu) twice
    assert changed_by_column(result) == {"amount": 2}  # (1, us); and (3, eu) 30 -> 31 of the pair
    added = [a for b, a in result.samples if b is None]
    assert added == [{"id": 2, "region": "us", "amount": 20}]


def test_type_changes_are_reported_and_compared_where_comparable(engine: DuckDBEngine) -> None:
    run(engine,
        "CREATE TABLE prod.orders "
        "(id INTEGER, code INTEGER, price DECIMAL(10,2), note VARCHAR, gone INTEGER)",
        "INSERT INTO prod.orders VALUES (1, 7, 1.50, 'x', 0), (2, 8, 2.25, 'y', 0), (3, 9, 3.00, 'z', 0)",
        "CREATE TABLE mr.orders "
        "(id INTEGER, code VARCHAR, price DECIMAL(10,3), note VARCHAR, extra INTEGER)",
        # code: '7' equals 7 as text, '08' does not; price: 1.500 = 1.50, 2.251 <> 2.25
        "INSERT INTO mr.orders VALUES "
        "(1, '7', 1.500, 'x', 1), (2, '08', 2.251, 'y', 1), (3, '9', 3.000, 'z', 1)")

    result = diff(engine, key=["id"])

    assert result.schema.added == ("extra",) and result.schema.removed == ("gone",)
    assert result.schema.retyped == (("code", "INTEGER", "VARCHAR"),
                                     ("price", "DECIMAL(10,2)", "DECIMAL(10,3)"))
    assert changed_by_column(result) == {"code": 1, "price": 1, "note": 0}
    assert (result.changed, result.unchanged) == (1, 2)


def test_a_key_whose_type_changed_still_joins(engine: DuckDBEngine) -> None:
    run(engine,
        "CREATE TABLE prod.orders (id INTEGER, amount INTEGER)",
        "INSERT INTO prod.orders VALUES (1, 10), (2, 20)",
        "CREATE TABLE mr.orders (id VARCHAR, amount INTEGER)",
        "INSERT INTO mr.orders VALUES ('1', 10), ('2', 21), ('3', 30)")

    result = diff(engine, key=["id"])

    assert (result.added, result.removed, result.changed, result.unchanged) == (1, 0, 1, 1)


def test_environment_views_are_diffed_like_tables(engine: DuckDBEngine) -> None:
    run(engine,
        "CREATE SCHEMA sluice__mart",
        "CREATE TABLE sluice__mart.orders__aaaa AS SELECT * FROM (VALUES (1, 10), (2, 20)) v(id, amount)",
        "CREATE TABLE sluice__mart.orders__bbbb AS SELECT * FROM (VALUES (1, 10), (2, 25)) v(id, amount)",
        "CREATE VIEW prod.orders AS SELECT * FROM sluice__mart.orders__aaaa",
        "CREATE VIEW mr.orders AS SELECT * FROM sluice__mart.orders__bbbb")

    result = diff(engine, key=["id"])

    assert (result.changed, result.unchanged) == (1, 1)
    assert changed_by_column(result) == {"amount": 1}


def test_a_key_alone_still_finds_added_and_removed_rows(engine: DuckDBEngine) -> None:
    orders(engine, "(1), (2)", "(2), (3)", columns="id INTEGER")

    result = diff(engine, key=["id"])

    assert (result.added, result.removed, result.changed, result.unchanged) == (1, 1, 0, 1)
    assert result.columns == ()
    assert result.samples == ((None, {"id": 3}), ({"id": 1}, None))


def test_columns_restrict_what_is_compared(engine: DuckDBEngine) -> None:
    orders(engine, "(1, 'a', 1), (2, 'b', 2)", "(1, 'A', 1), (2, 'b', 3)")

    result = diff(engine, key=["id"], columns=["Status"])

    assert changed_by_column(result) == {"status": 1}
    assert (result.changed, result.unchanged) == (1, 1)
    assert all(set(row) == {"id", "status"} for pair in result.samples for row in pair if row)


def test_where_filters_both_sides(engine: DuckDBEngine) -> None:
    orders(engine, "(1, 'paid', 1), (2, 'new', 2), (3, 'paid', 3)",
           "(1, 'paid', 5), (2, 'new', 9), (4, 'new', 4)")
    where = parse_predicate("status = 'paid' OR amount > 8", ["id", "status", "amount"], "duckdb")

    result = diff(engine, key=["id"], where=where)

    # before: 1, 3 match; after: 1, 2 match -> 1 changed, 2 added, 3 removed
    assert (result.rows_before, result.rows_after) == (2, 2)
    assert (result.added, result.removed, result.changed, result.unchanged) == (1, 1, 1, 0)


def test_user_mistakes_are_errors_that_name_the_column(engine: DuckDBEngine) -> None:
    orders(engine, "(1, 'a', 1)", "(1, 'a', 1)")
    run(engine, "ALTER TABLE mr.orders ADD COLUMN extra INTEGER")

    with pytest.raises(SluiceError, match=r"key column `nope` is in neither relation"):
        diff(engine, key=["nope"])
    with pytest.raises(SluiceError, match=r"column `extra` is only in mr\.orders"):
        diff(engine, key=["id"], columns=["extra"])
    with pytest.raises(SluiceError, match=r"column in the filter `extra`"):
        diff(engine, key=["id"], where=parse_predicate("extra = 1", ["extra"], "duckdb"))


def test_odd_identifiers_reach_sql_quoted(engine: DuckDBEngine) -> None:
    run(engine,
        'CREATE SCHEMA "my ""schema"""',
        'CREATE TABLE "my ""schema"""."t; drop" ("Id" INTEGER, "a ""b""" VARCHAR, "select" INTEGER)',
        'INSERT INTO "my ""schema"""."t; drop" VALUES (1, \'x\', 1), (2, \'y\', 2)',
        'CREATE TABLE prod.t ("Id" INTEGER, "a ""b""" VARCHAR, "select" INTEGER)',
        "INSERT INTO prod.t VALUES (1, 'x', 1), (2, 'z', 2)")
    where = parse_predicate('"select" >= 1', ['Id', 'a "b"', "select"], "duckdb")

    result = diff_relations(engine, table("prod", "t"), table('my "schema"', "t; drop"), key=["Id"],
                            where=where, pii=['a "b"'])

    assert changed_by_column(result) == {'a "b"': 1, "select": 0}
    assert result.samples[0][1] == {"Id": 2, 'a "b"': "***", "select": 2}


# -- without a key ------------------------------------------------------------------------------


def test_without_a_key_rows_are_compared_as_multisets(engine: DuckDBEngine) -> None:
    orders(engine,
           "(1, 'a', 1), (1, 'a', 1), (1, 'a', 1), (2, NULL, 2), (3, 'c', 3)",
           # one copy of (1, a, 1) gone; (2, NULL, 2) the same (NULLs are equal); (3, c, 3) changed
           "(1, 'a', 1), (1, 'a', 1), (2, NULL, 2), (3, 'c', 4), (4, 'd', 4)")

    result = diff(engine, pii=["status"])

    assert result.key == ()
    assert (result.rows_before, result.rows_after) == (5, 5)
    assert (result.added, result.removed, result.changed, result.unchanged) == (2, 2, 0, 3)
    assert result.columns == ()
    added = sorted(a["id"] for b, a in result.samples if b is None and a)
    removed = sorted(b["id"] for b, a in result.samples if a is None and b)
    assert (added, removed) == ([3, 4], [1, 3])
    assert {row["status"] for pair in result.samples for row in pair if row} == {"***"}


def test_without_a_key_columns_and_where_apply(engine: DuckDBEngine) -> None:
    orders(engine, "(1, 'a', 1), (2, 'b', 2), (3, 'c', 3)", "(1, 'a', 9), (2, 'x', 2), (3, 'c', 3)")
    where = parse_predicate("id <= 2", ["id", "status", "amount"], "duckdb")

    result = diff(engine, columns=["id", "amount"], where=where)

    assert (result.rows_before, result.added, result.removed, result.unchanged) == (2, 1, 1, 1)


# -- caps ---------------------------------------------------------------------------------------


def test_row_cap_diffs_a_deterministic_sample_of_keys(engine: DuckDBEngine) -> None:
    run(engine,
        "CREATE TABLE prod.orders AS SELECT i AS id, i % 7 AS amount FROM range(2000) r(i)",
        "CREATE TABLE mr.orders AS SELECT id, CASE WHEN id % 10 = 0 THEN -1 ELSE amount END AS amount "
        "FROM prod.orders")
    caps = DiffCaps(max_rows=500)

    first, second = diff(engine, key=["id"], caps=caps), diff(engine, key=["id"], caps=caps)
    full = diff(engine, key=["id"], caps=DiffCaps(max_rows=None))

    assert first.sampled and first.sample_rate == 0.25
    assert (first.rows_before, first.rows_after) == (2000, 2000)  # the whole tables' counts
    compared = first.changed + first.unchanged
    assert 250 < compared < 750  # about a quarter of the keys, the same keys on both sides
    assert (first.added, first.removed) == (0, 0)
    assert 0 < first.changed < 200
    assert (second.changed, second.unchanged) == (first.changed, first.unchanged)
    assert not full.sampled and (full.changed, full.unchanged) == (200, 1800)


def test_row_cap_samples_the_same_keys_when_the_key_was_retyped(engine: DuckDBEngine) -> None:
    run(engine,
        "CREATE TABLE prod.orders AS "
        "SELECT CAST(i AS DECIMAL(10,2)) AS id, i AS amount FROM range(1000) r(i)",
        "CREATE TABLE mr.orders AS SELECT CAST(id AS DECIMAL(12,3)) AS id, amount FROM prod.orders")

    result = diff(engine, key=["id"], caps=DiffCaps(max_rows=200))

    assert result.sampled and result.schema.retyped == (("id", "DECIMAL(10,2)", "DECIMAL(12,3)"),)
    assert (result.added, result.removed, result.changed) == (0, 0, 0)
    assert 100 < result.unchanged < 300


def test_row_cap_without_a_key_samples_whole_rows(engine: DuckDBEngine) -> None:
    run(engine,
        "CREATE TABLE prod.orders AS SELECT i % 100 AS id, 'x' AS status FROM range(1000) r(i)",
        "CREATE TABLE mr.orders AS SELECT * FROM prod.orders")

    result = diff(engine, caps=DiffCaps(max_rows=300))

    assert result.sampled and (result.added, result.removed) == (0, 0)
    assert 0 < result.unchanged < 1000 and result.unchanged % 10 == 0  # equal rows share a bucket


def test_time_cap_returns_promptly_with_what_is_known(engine: DuckDBEngine) -> None:
    run(engine,
        "CREATE TABLE prod.orders AS SELECT i AS id, i % 97 AS a, 'row ' || i AS b, i * 0.5 AS c "
        "FROM range(4000000) r(i)",
        "CREATE TABLE mr.orders AS SELECT id, CASE WHEN id % 50 = 0 THEN a + 1 ELSE a END AS a, b, c "
        "FROM prod.orders")

    started = time.perf_counter()
    result = diff(engine, key=["id"], caps=DiffCaps(seconds=0.05, max_rows=None))
    elapsed = time.perf_counter() - started

    assert result.truncated
    assert elapsed < 1.5
    assert result.changed == 0 and result.samples == ()
    # The interrupted transaction was rolled back: the warehouse is usable, a full diff works.
    quick = diff(engine, key=["id"], columns=["a"], where=parse_predicate("id < 1000", ["id"], "duckdb"))
    assert not quick.truncated and quick.changed == 20
