"""Warehouse engines (`runner.engines`): everything Sluice does in a warehouse, done the same way on
a DuckDB file and on a real PostgreSQL database.

- the demo shop builds, tests and points zero-copy environment views, with the same data on both;
- promotion and rollback move every view at once, or none: also when a model gained or lost
  columns and other views read production's (PostgreSQL binds a view to what it reads);
- seeds load with inferred types, data tests report failing rows, the janitor drops what is unused;
- the data diff finds the same counts on both engines;
- on PostgreSQL: builds share a pool of connections, each build has a timeout, a statement can be
  interrupted, and the URL says all of it.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from runner.engines import open_engine
from runner.engines.base import Engine
from runner.engines.duckdb import DuckDBEngine
from runner.engines.postgres import PostgresEngine
from runner.environments import promote, rollback
from runner.errors import SluiceError, WarehouseError
from runner.janitor import run_janitor
from runner.naming import table
from runner.pipeline import RunResult, run_pipeline
from runner.project.loader import load_project
from runner.review.datadiff import DataDiff, DiffCaps, diff_relations
from runner.review.predicate import parse_predicate
from runner.state.store import StateStore
from tests.support.repos import Shop
from tests.support.warehouses import (
    contents,
    drop_behind_sluices_back,
    env_views,
    fresh_database,
    is_postgres,
    numbers,
    physical_objects,
    plain,
    rows,
    run,
    view_reads,
)

ORDERS = "models/marts/orders.sql"
CUSTOMERS = "models/marts/customers.sql"
STG_ORDERS = "models/staging/stg_orders.sql"
REVENUE = "models/marts/revenue_by_day.sql"
NEW_AMOUNT = ("p.total_amount as amount", "p.total_amount - p.coupon_amount as amount")
DAY = 86400.0


def build_prod(shop: Shop, state: StateStore, engine: Engine) -> RunResult:
    result = run_pipeline(shop.load(), state, engine, "prod")
    assert result.ok and result.held_back is None, (result.build.failed, result.tests.failed)
    return result


def total(engine: Engine, sql: str) -> float:
    return float(rows(engine, sql)[0][0])


# -- building and environments -----------------------------------------------------------------


def test_a_branch_environment_reads_production_objects_for_every_unchanged_model(
        shop: Shop, state: StateStore, any_warehouse: Engine) -> None:
    engine = any_warehouse
    first = build_prod(shop, state, engine)
    prod = env_views(engine, "prod")
    assert prod == {n.name: n.physical for n in first.plan.nodes}
    assert physical_objects(engine) == set(prod.values())
    before = physical_objects(engine)
    shop.edit(ORDERS, *NEW_AMOUNT)

    result = run_pipeline(shop.load(), state, engine, "mr_1")

    assert result.ok and set(result.build.built) == {"marts.orders", "marts.revenue_by_day"}
    mr = env_views(engine, "mr_1")
    assert set(mr) == set(prod)
    for name in prod:
        assert (mr[name] != prod[name]) == (name in result.build.built), name  # zero copy
    assert physical_objects(engine) - before == {mr[name] for name in result.build.built}
    assert total(engine, "select sum(revenue) from marts__mr_1.revenue_by_day") < total(
        engine, "select sum(revenue) from marts.revenue_by_day")
    assert not [o for o in physical_objects(engine) if "__tmp_" in o]


def test_the_demo_shop_has_the_same_data_on_both_engines(
        shop: Shop, tmp_path: Path, duck_warehouse: DuckDBEngine, pg_warehouse: PostgresEngine) -> None:
    # The models are written for DuckDB; PostgreSQL runs them as sqlglot transpiles them.
    found = {}
    for engine in (duck_warehouse, pg_warehouse):
        state = StateStore(f"sqlite:///{tmp_path / f'{engine.dialect}.db'}")
        try:
            result = build_prod(shop, state, engine)
            assert len(result.tests.results) > 10
            found[engine.dialect] = (result.plan.mapping, contents(engine, "prod"))
        finally:
            state.close()
    assert found["duckdb"][0] == found["postgres"][0]  # the same snapshots
    assert found["duckdb"][1] == found["postgres"][1]
    assert len(found["postgres"][1]["marts.orders"]) == 500


def test_builds_over_the_pool_give_the_same_result_as_one_thread(shop: Shop, tmp_path: Path) -> None:
    outcome = {}
    for threads in (1, 4):
        with fresh_database() as url:
            engine = PostgresEngine(url, pool_size=3)
            state = StateStore(f"sqlite:///{tmp_path / f'state-{threads}.db'}")
            try:
                result = run_pipeline(shop.load(), state, engine, "prod", threads=threads)
                assert result.ok
                outcome[threads] = (result.plan.mapping, sorted(result.build.built), physical_objects(engine),
                                    env_views(engine, "prod"), contents(engine, "prod"))
            finally:
                state.close()
                engine.close()
    assert outcome[1] == outcome[4]


def test_an_object_a_lost_state_never_recorded_is_replaced_under_the_views_that_read_it(
        shop: Shop, tmp_path: Path, any_warehouse: Engine) -> None:
    engine = any_warehouse
    first = StateStore(f"sqlite:///{tmp_path / 'first.db'}")
    build_prod(shop, first, engine)
    first.close()
    objects, views, data = physical_objects(engine), env_views(engine, "prod"), contents(engine, "prod")
    # A second state store knows nothing of the first: every target exists, and production's
    # views (and physical views) read them; PostgreSQL would refuse to drop them under those.
    second = StateStore(f"sqlite:///{tmp_path / 'second.db'}")
    try:
        result = build_prod(shop, second, engine)
        assert len(result.build.built) == len(objects)
        assert physical_objects(engine) == objects
        assert env_views(engine, "prod") == views
        assert contents(engine, "prod") == data
    finally:
        second.close()


def test_a_failed_build_leaves_nothing_behind(shop: Shop, state: StateStore, any_warehouse: Engine) -> None:
    engine = any_warehouse
    build_prod(shop, state, engine)
    views = env_views(engine, "prod")
    shop.edit(ORDERS, "p.total_amount as amount", "p.total_amount + cast(o.status as integer) as amount")

    result = run_pipeline(shop.load(), state, engine, "mr_1")

    assert list(result.build.failed) == ["marts.orders"]
    assert result.build.skipped == ["marts.revenue_by_day"]
    assert result.plan.node("marts.orders").physical not in physical_objects(engine)
    assert not [o for o in physical_objects(engine) if "__tmp_" in o]
    assert env_views(engine, "prod") == views and env_views(engine, "mr_1") == {}


# -- promotion and rollback ---------------------------------------------------------------------


def test_promotion_and_rollback_move_production_without_building(
        shop: Shop, state: StateStore, any_warehouse: Engine) -> None:
    engine = any_warehouse
    build_prod(shop, state, engine)
    views, data = env_views(engine, "prod"), contents(engine, "prod")
    shop.edit(ORDERS, *NEW_AMOUNT)
    run_pipeline(shop.load(), state, engine, "mr_1")
    objects = physical_objects(engine)

    promoted = promote(engine, state, "mr_1", "prod")

    assert set(promoted.changed) == {"marts.orders", "marts.revenue_by_day"}
    assert env_views(engine, "prod") == env_views(engine, "mr_1")
    assert contents(engine, "prod") == contents(engine, "mr_1") != data
    assert physical_objects(engine) == objects

    rolled = rollback(engine, state, "prod")

    assert set(rolled.changed) == {"marts.orders", "marts.revenue_by_day"}
    assert env_views(engine, "prod") == views and contents(engine, "prod") == data
    assert physical_objects(engine) == objects


def test_a_promotion_that_fails_midway_leaves_production_unchanged(
        shop: Shop, state: StateStore, any_warehouse: Engine) -> None:
    engine = any_warehouse
    build_prod(shop, state, engine)
    shop.edit(ORDERS, *NEW_AMOUNT)
    mr = run_pipeline(shop.load(), state, engine, "mr_1")
    views, data = env_views(engine, "prod"), contents(engine, "prod")
    record, history = state.environment("prod"), state.history("prod")
    # orders' view moves first; revenue_by_day's cannot: its object is gone.
    drop_behind_sluices_back(engine, mr.plan.node("marts.revenue_by_day").physical)

    with pytest.raises(SluiceError, match="revenue_by_day"):
        promote(engine, state, "mr_1", "prod")

    assert env_views(engine, "prod") == views
    assert contents(engine, "prod") == data
    assert state.environment("prod") == record and state.history("prod") == history


# customers gains email_domain in the middle of its columns and loses last_name.
RESHAPE_CUSTOMERS = [("    c.last_name,\n    c.email,\n",
                      "    c.email,\n    split_part(c.email, '@', 2) as email_domain,\n")]


def reporting_views(engine: Engine, extra_column: str = "") -> None:
    """Views someone built on production (BI, exports): one on marts.customers, one on that."""
    run(engine, "create schema reporting",
        f"create view reporting.customer_emails as select customer_id, email{extra_column} "
        "from marts.customers",
        "create view reporting.shop_test_emails as select * from reporting.customer_emails "
        "where email like '%@shop.test'")


def test_a_model_that_gains_and_loses_columns_is_promoted_under_views_reading_production(
        shop: Shop, state: StateStore, any_warehouse: Engine) -> None:
    engine = any_warehouse
    build_prod(shop, state, engine)
    reporting_views(engine)
    emails = rows(engine, "select * from reporting.shop_test_emails order by customer_id")
    role = None
    if is_postgres(engine):  # privileges on the replaced view and on the views above it stay
        role = f"sluice_reader_{uuid.uuid4().hex[:8]}"
        run(engine, f"create role {role}", f"grant usage on schema marts, reporting to {role}",
            f"grant select on marts.customers, reporting.shop_test_emails to {role}")
    try:
        for old, new in RESHAPE_CUSTOMERS:
            shop.edit(CUSTOMERS, old, new)
        assert run_pipeline(shop.load(), state, engine, "mr_1").ok

        promote(engine, state, "mr_1", "prod")

        columns = engine.columns(table("marts", "customers"))
        assert "email_domain" in columns and "last_name" not in columns
        assert env_views(engine, "prod") == env_views(engine, "mr_1")
        assert rows(engine, "select * from reporting.shop_test_emails order by customer_id") == emails
        assert rows(engine, "select count(*) from marts.customers where email_domain = 'shop.test'") == [
            (len(emails),)]
        if role:
            granted = rows(engine, "select table_schema || '.' || table_name from "
                                   f"information_schema.role_table_grants where grantee = '{role}' "
                                   "order by 1")
            assert granted == [("marts.customers",), ("reporting.shop_test_emails",)]
            assert view_reads(engine)["reporting.customer_emails"] == {"marts.customers"}

        rollback(engine, state, "prod")

        assert "last_name" in engine.columns(table("marts", "customers"))
        assert rows(engine, "select * from reporting.shop_test_emails order by customer_id") == emails
    finally:
        if role:
            run(engine, f"drop owned by {role}", f"drop role {role}")


def test_a_view_reading_a_column_the_promotion_removes_stops_it_and_production_stays(
        shop: Shop, state: StateStore, pg_warehouse: PostgresEngine) -> None:
    engine = pg_warehouse
    build_prod(shop, state, engine)
    reporting_views(engine, extra_column=", last_name")
    views, record = env_views(engine, "prod"), state.environment("prod")
    for old, new in RESHAPE_CUSTOMERS:
        shop.edit(CUSTOMERS, old, new)
    assert run_pipeline(shop.load(), state, engine, "mr_1").ok

    with pytest.raises(WarehouseError, match=r"reporting\.customer_emails reads marts\.customers"):
        promote(engine, state, "mr_1", "prod")

    assert env_views(engine, "prod") == views and state.environment("prod") == record
    assert "last_name" in engine.columns(table("marts", "customers"))
    assert len(rows(engine, "select * from reporting.shop_test_emails")) > 0


# -- seeds, data tests, janitor -----------------------------------------------------------------

KINDS_CSV = (
    "ID,Price,Day,At,Flag,Note\r\n"
    '1,1.5,2026-01-02,2026-01-02 10:00:00,true,"a, b"\r\n'
    "2,2,2026-01-03,2026-01-03 11:30:00,false,\r\n"
    "3,,2026-01-04,2026-01-04 12:00:00,,plain\r\n"
)
KINDS_TYPES = {
    "duckdb": ["BIGINT", "DOUBLE", "DATE", "TIMESTAMP", "BOOLEAN", "VARCHAR"],
    "postgres": ["bigint", "double precision", "date", "timestamp without time zone", "boolean", "text"],
}
KINDS_ROWS = [
    (1, 1.5, "2026-01-02", "2026-01-02T10:00:00", True, "a, b"),
    (2, 2.0, "2026-01-03", "2026-01-03T11:30:00", False, None),
    (3, None, "2026-01-04", "2026-01-04T12:00:00", None, "plain"),
]


def test_seeds_load_with_inferred_types_and_empty_fields_as_null(
        shop: Shop, state: StateStore, any_warehouse: Engine) -> None:
    engine = any_warehouse
    shop.write("seeds/kinds.csv", KINDS_CSV)
    result = build_prod(shop, state, engine)

    kinds = table("raw", "kinds")
    assert [kind for _, kind in engine.column_types(kinds)] == KINDS_TYPES[engine.dialect]
    assert engine.columns(kinds) == ["id", "price", "day", "at", "flag", "note"]
    found = rows(engine, "select * from raw.kinds order by 1")
    assert [tuple(plain(v) for v in row) for row in found] == KINDS_ROWS
    assert rows(engine, "select count(*) from raw.raw_orders") == [(500,)]
    assert "raw.kinds" in result.build.built


def test_postgresql_reads_a_seed_as_a_query_too(tmp_path: Path, pg_warehouse: PostgresEngine) -> None:
    path = tmp_path / "kinds.csv"
    path.write_text(KINDS_CSV)
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    pg_warehouse.ensure_schemas({"raw"})

    for name, csv in (("kinds", path), ("empty", empty)):
        pg_warehouse.build(table("raw", name), pg_warehouse.load_csv_sql(table("raw", name), csv), "table")

    found = rows(pg_warehouse, "select * from raw.kinds order by 1")
    assert [tuple(plain(v) for v in row) for row in found] == KINDS_ROWS
    assert pg_warehouse.columns(table("raw", "empty")) == ["a", "b"]
    assert rows(pg_warehouse, "select count(*) from raw.empty") == [(0,)]


def test_a_broken_seed_fails_its_build_with_the_file_named(
        shop: Shop, state: StateStore, pg_warehouse: PostgresEngine) -> None:
    shop.write("seeds/broken.csv", "a,b\n1,2\n3,4,5\n")

    result = run_pipeline(shop.load(), state, pg_warehouse, "prod")

    assert list(result.build.failed) == ["raw.broken"]
    assert "broken.csv" in result.build.failed["raw.broken"]


def test_failing_data_tests_are_reported_with_their_rows(
        shop: Shop, state: StateStore, any_warehouse: Engine) -> None:
    engine = any_warehouse
    build_prod(shop, state, engine)
    shop.edit(STG_ORDERS, "    status\n", "    case when id = 3 then 'lost' else status end as status\n")
    shop.edit(REVENUE, "sum(amount) as revenue", "sum(amount) - 1000 as revenue")

    result = run_pipeline(shop.load(), state, engine, "mr_1")

    assert result.build.ok
    failed = {r.test.name: r for r in result.tests.failed}
    assert set(failed) == {"accepted_values(staging.stg_orders.status)", "assert_no_negative_revenue"}
    lost = failed["accepted_values(staging.stg_orders.status)"]
    assert (lost.failures, lost.columns, lost.sample) == (1, ("status", "n_records"), (("lost", 1),))
    negative = failed["assert_no_negative_revenue"]
    assert negative.failures == rows(engine, "select count(*) from marts__mr_1.revenue_by_day "
                                             "where revenue < 0")[0][0] > 5
    assert len(negative.sample) == 5 and all(revenue < 0 for _, revenue in negative.sample)


def test_the_janitor_drops_expired_environments_and_unused_objects(
        shop: Shop, state: StateStore, any_warehouse: Engine) -> None:
    engine = any_warehouse
    first = build_prod(shop, state, engine)
    shop.edit(ORDERS, *NEW_AMOUNT)
    run_pipeline(shop.load(), state, engine, "mr_1")
    promote(engine, state, "mr_1", "prod")
    old_revenue = first.plan.node("marts.revenue_by_day").physical
    old_orders = first.plan.node("marts.orders").physical  # a kept physical view still reads it
    state.mark_expiry("mr_1", time.time())
    data = contents(engine, "prod")

    report = run_janitor(engine, state, 7 * DAY, now=time.time() + 8 * DAY)

    assert report.environments == ["mr_1"] and report.objects == [old_revenue]
    assert old_orders in report.kept_for_views and old_orders in physical_objects(engine)
    assert old_revenue not in physical_objects(engine)
    assert env_views(engine, "mr_1") == {} and not [s for s in engine.schemas() if s.endswith("__mr_1")]
    assert contents(engine, "prod") == data


# -- the data diff ------------------------------------------------------------------------------

BEFORE, AFTER = table("prod", "orders"), table("mr", "orders")


def orders(engine: Engine, before_rows: str, after_rows: str,
           columns: str = "id INTEGER, status VARCHAR, amount DECIMAL(10,2)") -> None:
    run(engine, "CREATE SCHEMA prod", "CREATE SCHEMA mr",
        f"CREATE TABLE prod.orders ({columns})", f"INSERT INTO prod.orders VALUES {before_rows}",
        f"CREATE TABLE mr.orders ({columns})", f"INSERT INTO mr.orders VALUES {after_rows}")


def diff(engine: Engine, **options: Any) -> DataDiff:
    return diff_relations(engine, BEFORE, AFTER, **options)


def counts(result: DataDiff) -> tuple[int, ...]:
    return (result.rows_before, result.rows_after, result.added, result.removed, result.changed,
            result.unchanged)


def by_column(result: DataDiff) -> dict[str, int]:
    return {c.name: c.changed for c in result.columns}


def test_diff_counts_added_removed_changed_and_nulls(any_warehouse: Engine) -> None:
    orders(any_warehouse,
           "(1, 'paid', 10), (2, 'paid', 20), (3, 'new', NULL), (4, NULL, 40), (5, 'new', 50), "
           "(6, NULL, NULL), (7, 'paid', 70)",
           "(1, 'paid', 10), (2, 'paid', 21), (3, 'new', 30), (4, NULL, 40), (5, NULL, 50), "
           "(6, NULL, NULL), (8, 'new', 80), (9, 'new', 90)")

    result = diff(any_warehouse, key=["id"], pii=["status"])

    assert counts(result) == (7, 8, 2, 1, 3, 3)
    assert by_column(result) == {"status": 1, "amount": 2}
    assert not result.key_problems and not result.schema.changed
    changed = [(b, a) for b, a in result.samples if b and a]
    assert [(b["id"], b["amount"], a["amount"]) for b, a in changed] == [(2, 20, 21), (3, None, 30),
                                                                         (5, 50, 50)]
    assert [a["id"] for b, a in result.samples if b is None and a] == [8, 9]
    assert [b["id"] for b, a in result.samples if a is None and b] == [7]
    assert changed[2][0]["status"] == "***" and changed[2][1]["status"] is None


def test_diff_counts_duplicate_and_null_keys(any_warehouse: Engine) -> None:
    orders(any_warehouse,
           "(1, 'a', 1), (2, 'a', 2), (2, 'b', 2), (7, 'x', 7), (7, 'y', 7), (7, 'z', 7), (NULL, 'n', 0)",
           "(1, 'a', 1), (1, 'b', 1), (2, 'a', 2), (9, 'n', 9), (9, 'n', 9), (10, 'm', 1), (10, 'm', 1), "
           "(NULL, 'n', 0), (NULL, 'n', 0)")

    result = diff(any_warehouse, key=["id"])

    assert (result.duplicate_keys_before, result.duplicate_keys_after) == (2, 3)
    assert (result.null_keys_before, result.null_keys_after) == (1, 2)
    assert counts(result) == (7, 9, 4, 3, 2, 2)  # pairs: 1 x 2 and 2 x 1


def test_diff_finds_duplicates_among_unmatched_keys_only(any_warehouse: Engine) -> None:
    orders(any_warehouse, "(1, 'a', 1), (5, 'a', 5), (5, 'a', 5)", "(1, 'a', 1), (6, 'a', 6), (6, 'b', 6)")

    result = diff(any_warehouse, key=["id"])

    assert (result.duplicate_keys_before, result.duplicate_keys_after) == (1, 1)
    assert (result.added, result.removed, result.unchanged) == (2, 2, 1)


def test_diff_on_a_composite_key(any_warehouse: Engine) -> None:
    orders(any_warehouse,
           "(1, 'eu', 10), (1, 'us', 11), (2, 'eu', 20), (3, 'eu', 30)",
           "(1, 'eu', 10), (1, 'us', 12), (2, 'us', 20), (3, 'eu', 30), (3, 'eu', 31)",
           columns="id INTEGER, region VARCHAR, amount INTEGER")

    result = diff(any_warehouse, key=["id", "region"])

    assert (result.added, result.removed) == (1, 1)
    assert (result.duplicate_keys_before, result.duplicate_keys_after) == (0, 1)
    assert by_column(result) == {"amount": 2}
    assert [a for b, a in result.samples if b is None] == [{"id": 2, "region": "us", "amount": 20}]
    assert [b for b, a in result.samples if a is None] == [{"id": 2, "region": "eu", "amount": 20}]
    assert [(b["id"], b["region"]) for b, a in result.samples if a and b] == [(1, "us"), (3, "eu")]


def test_diff_reports_type_changes_and_compares_what_it_can(any_warehouse: Engine) -> None:
    engine = any_warehouse
    run(engine, "CREATE SCHEMA prod", "CREATE SCHEMA mr",
        "CREATE TABLE prod.orders "
        "(id INTEGER, code INTEGER, price DECIMAL(10,2), note VARCHAR, gone INTEGER)",
        "INSERT INTO prod.orders VALUES (1, 7, 1.50, 'x', 0), (2, 8, 2.25, 'y', 0), (3, 9, 3.00, 'z', 0)",
        "CREATE TABLE mr.orders "
        "(id VARCHAR, code VARCHAR, price DECIMAL(10,3), note VARCHAR, extra INTEGER)",
        "INSERT INTO mr.orders VALUES ('1', '7', 1.500, 'x', 1), ('2', '08', 2.251, 'y', 1), "
        "('3', '9', 3.000, 'z', 1), ('4', '1', 1, 'w', 1)")

    result = diff(engine, key=["id"])

    assert result.schema.added == ("extra",) and result.schema.removed == ("gone",)
    retyped = [(name, before.lower(), after.lower()) for name, before, after in result.schema.retyped]
    if is_postgres(engine):
        assert retyped == [("id", "integer", "character varying"), ("code", "integer", "character varying"),
                           ("price", "numeric(10,2)", "numeric(10,3)")]
    else:
        assert retyped == [("id", "integer", "varchar"), ("code", "integer", "varchar"),
                           ("price", "decimal(10,2)", "decimal(10,3)")]
    assert counts(result) == (3, 4, 1, 0, 1, 2)
    assert by_column(result) == {"code": 1, "price": 1, "note": 0}


def test_diff_without_a_key_compares_multisets(any_warehouse: Engine) -> None:
    orders(any_warehouse,
           "(1, 'a', 1), (1, 'a', 1), (1, 'a', 1), (2, NULL, 2), (3, 'c', 3)",
           "(1, 'a', 1), (1, 'a', 1), (2, NULL, 2), (3, 'c', 4), (4, 'd', 4)")

    result = diff(any_warehouse)

    assert counts(result) == (5, 5, 2, 2, 0, 3)
    assert sorted(a["id"] for b, a in result.samples if b is None and a) == [3, 4]
    assert sorted(b["id"] for b, a in result.samples if a is None and b) == [1, 3]


def test_diff_filters_and_restricts_columns(any_warehouse: Engine) -> None:
    orders(any_warehouse, "(1, 'paid', 1), (2, 'new', 2), (3, 'paid', 3)",
           "(1, 'PAID', 5), (2, 'new', 9), (4, 'new', 4)")
    where = parse_predicate("status = 'paid' OR amount > 8", ["id", "status", "amount"], "duckdb")

    result = diff(any_warehouse, key=["id"], columns=["amount"], where=where)

    # before: 1 and 3 pass the filter; after: only 2 -> 2 added, 1 and 3 removed
    assert counts(result) == (2, 1, 1, 2, 0, 0)
    assert by_column(result) == {"amount": 0}


def test_diff_over_the_row_cap_compares_the_same_sample_of_keys(any_warehouse: Engine) -> None:
    engine = any_warehouse
    run(engine, "CREATE SCHEMA prod", "CREATE SCHEMA mr",
        f"CREATE TABLE prod.orders AS SELECT i AS id, i % 7 AS amount FROM {numbers(engine, 2000)}",
        "CREATE TABLE mr.orders AS SELECT id, CASE WHEN id % 10 = 0 THEN -1 ELSE amount END AS amount "
        "FROM prod.orders")

    first = diff(engine, key=["id"], caps=DiffCaps(max_rows=500))
    again = diff(engine, key=["id"], caps=DiffCaps(max_rows=500))
    full = diff(engine, key=["id"], caps=DiffCaps(max_rows=None))

    assert first.sampled and first.sample_rate == 0.25
    assert 250 < first.changed + first.unchanged < 750 and 0 < first.changed < 200
    assert (first.added, first.removed) == (0, 0)
    assert counts(again) == counts(first)
    assert not full.sampled and (full.changed, full.unchanged) == (200, 1800)


def test_a_diff_over_its_time_cap_returns_what_it_knows(pg_warehouse: PostgresEngine) -> None:
    orders(pg_warehouse, "(1, 'a', 1)", "(1, 'a', 2)")
    run(pg_warehouse, "CREATE VIEW mr.slow AS SELECT o.* FROM mr.orders AS o, pg_sleep(5) AS s")

    started = time.perf_counter()
    result = diff_relations(pg_warehouse, BEFORE, table("mr", "slow"), key=["id"],
                            caps=DiffCaps(seconds=0.2))

    assert result.truncated and time.perf_counter() - started < 2
    assert diff(pg_warehouse, key=["id"]).changed == 1  # the connection went back to the pool usable


# -- PostgreSQL: the engine itself --------------------------------------------------------------


def test_a_build_over_its_timeout_fails_and_leaves_nothing(
        shop: Shop, state: StateStore, pg_warehouse_url: str) -> None:
    engine = open_engine(f"{pg_warehouse_url}?build_timeout=0.3")
    try:
        build_prod(shop, state, engine)
        shop.write("models/marts/slow.sql", "select s.n from (select 1 as n, pg_sleep(3)) as s\n")
        started = time.perf_counter()
        project = load_project(shop.root, sql_allowlist=("pg_sleep",))  # as a server policy may

        result = run_pipeline(project, state, engine, "mr_1")

        assert time.perf_counter() - started < 2.5
        assert "stopped after 0.3 s, the build timeout; the server setting build_timeout raises it" \
            in result.build.failed["marts.slow"]
        assert not [o for o in physical_objects(engine) if o.startswith("sluice__marts.slow")]
    finally:
        engine.close()


def test_time_limit_interrupts_the_running_statement(pg_warehouse: PostgresEngine) -> None:
    started = time.perf_counter()
    with pytest.raises(WarehouseError, match="cancel"), pg_warehouse.transaction() as cursor, \
            pg_warehouse.time_limit(0.2) as limit:
        cursor.execute("select pg_sleep(5)")
    assert limit.expired and time.perf_counter() - started < 2
    with pg_warehouse.time_limit(5) as limit:
        assert rows(pg_warehouse, "select 1") == [(1,)]
    assert not limit.expired


def test_relation_state_follows_the_contents_not_the_row_order(any_warehouse: Engine) -> None:
    engine = any_warehouse
    run(engine, "create schema s",
        "create table s.a (id integer, name varchar)", "insert into s.a values (1, 'x'), (2, 'y')",
        "create table s.b (id integer, name varchar)", "insert into s.b values (2, 'y'), (1, 'x')")
    first = engine.relation_state(table("s", "a"))

    assert first == engine.relation_state(table("s", "b")) and first is not None
    run(engine, "update s.b set name = 'z' where id = 2")
    assert engine.relation_state(table("s", "b")) != first


def test_the_warehouse_url_picks_the_engine_and_its_settings(pg_warehouse_url: str, tmp_path: Path) -> None:
    database = pg_warehouse_url.rsplit("/", 1)[1]
    engine = open_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
                         "?build_timeout=90&pool_size=2&application_name=sluice-test")
    try:
        assert isinstance(engine, PostgresEngine)
        assert engine.build_timeout == 90
        assert rows(engine, "select current_setting('application_name')") == [("sluice-test",)]
    finally:
        engine.close()
    duck = open_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    assert isinstance(duck, DuckDBEngine)
    duck.close()
    with pytest.raises(SluiceError, match=r"127\.0\.0\.1:1/nowhere") as refused:
        open_engine("postgresql://someone:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in str(refused.value)
    with pytest.raises(SluiceError, match="pool_size must be a number"):
        open_engine(f"{pg_warehouse_url}?pool_size=many")
    with pytest.raises(SluiceError, match="supported: duckdb, postgresql"):
        open_engine("mysql://x/y")


def test_a_model_name_too_long_for_postgresql_fails_its_build_instead_of_being_cut(
        shop: Shop, state: StateStore, pg_warehouse: PostgresEngine) -> None:
    # The physical name (+ __<10 hex>: 67 bytes) is Sluice's own: cut, with a hash of it all.
    fits = "orders_by_customer_and_payment_method_and_day_of_week_x"
    shop.write(f"models/marts/{fits}.sql", "select 1 as n\n")

    result = run_pipeline(shop.load(), state, pg_warehouse, "prod")

    assert f"marts.{fits}" in result.build.built and result.ok
    node = next(n for n in result.plan.nodes if n.name == f"marts.{fits}")
    assert len(node.physical_table.encode()) == 63 and node.physical_table.startswith(fits[:40])
    assert rows(pg_warehouse, f"select n from marts.{fits}") == [(1,)]
    # The view's name is the model's: it is never cut behind the user's back.
    too_long = "orders_by_customer_and_payment_method_and_day_of_week_and_region_x"  # 66 bytes
    shop.write(f"models/marts/{too_long}.sql", "select 1 as n\n")
    with pytest.raises(WarehouseError, match="63 bytes"):
        run_pipeline(shop.load(), state, pg_warehouse, "prod")


def test_two_concurrent_grants_on_one_catalog_row_are_transient(pg_warehouse_url: str) -> None:
    """Two merge requests' first builds on a fresh warehouse granted on the same schema at once;
    PostgreSQL refused the later with "tuple concurrently updated" and the build failed for good
    (the two-merges fault test's story). A race with another job is worth a retry."""
    import threading

    import psycopg

    role = f"sluice_race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_warehouse_url, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA raced")
        admin.execute(f'CREATE ROLE "{role}" NOLOGIN')
    first = psycopg.connect(pg_warehouse_url)
    engine = PostgresEngine(pg_warehouse_url)
    caught: list[BaseException] = []
    try:
        first.execute(f'GRANT USAGE ON SCHEMA raced TO "{role}"')  # holds the row until COMMIT

        def second() -> None:
            try:
                with engine.transaction() as cursor:
                    cursor.execute(f'GRANT CREATE ON SCHEMA raced TO "{role}"')
            except BaseException as exc:  # the test looks at it
                caught.append(exc)

        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.5)  # the second GRANT waits for the first transaction's row
        first.commit()
        waiter.join(timeout=30)
    finally:
        first.close()
        engine.close()
        with psycopg.connect(pg_warehouse_url, autocommit=True) as admin:
            admin.execute("DROP SCHEMA raced CASCADE")
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')
    assert caught, "PostgreSQL let both GRANTs through: the race did not happen"
    [error] = caught
    assert isinstance(error, WarehouseError) and error.transient, error
    assert "tuple concurrently updated" in str(error)
