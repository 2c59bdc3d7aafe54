"""The janitor (`runner.janitor`): drops expired environments, and physical objects that no
environment has pointed at for longer than the TTL; never anything Sluice did not create, and never
an object a kept physical view still reads.

Time moves forward through `now=`, so a week passes in no time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from runner.engines.base import Engine
from runner.environments import promote, rollback
from runner.errors import EnvError, SluiceError
from runner.janitor import parse_duration, run_janitor
from runner.pipeline import run_pipeline
from runner.state.store import StateStore
from tests.support.repos import Shop
from tests.support.warehouses import env_views, physical_objects, rows, views_sql

DAY = 86400.0
WEEK = 7 * DAY


@pytest.mark.parametrize("text, seconds", [
    ("7d", WEEK), ("12h", 12 * 3600), ("30m", 1800), ("90s", 90), ("2w", 2 * WEEK),
    (" 1.5h ", 5400), ("0d", 0),
])
def test_parse_duration_reads_a_number_and_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "7 days", "-1d", "7y", "1h30m", "seven days"])
def test_parse_duration_refuses_anything_else(text: str) -> None:
    with pytest.raises(SluiceError, match="duration"):
        parse_duration(text)


@dataclass
class Promoted:
    """Production built, then `amount` changed in mr_1 and promoted: production's previous
    orders and revenue_by_day objects are no longer referenced by any environment."""

    old_orders: str
    old_revenue: str
    counts_view: str  # the physical VIEW order_status_counts kept: it reads old_orders
    at: float


def promoted(shop: Shop, state: StateStore, warehouse: Engine) -> Promoted:
    first = run_pipeline(shop.load(), state, warehouse, "prod")
    assert first.ok
    shop.edit("models/marts/orders.sql", "p.total_amount as amount",
              "p.total_amount - p.coupon_amount as amount")
    mr = run_pipeline(shop.load(), state, warehouse, "mr_1")
    assert mr.ok
    promote(warehouse, state, "mr_1", "prod")
    counts = mr.plan.node("marts.order_status_counts")
    assert counts.materialized == "view" and counts.physical == first.plan.node(counts.name).physical
    return Promoted(old_orders=first.plan.node("marts.orders").physical,
                    old_revenue=first.plan.node("marts.revenue_by_day").physical,
                    counts_view=counts.physical, at=time.time())


def referenced_physical(state: StateStore) -> set[str]:
    live = state.snapshots()
    return {live[fp].physical for fp in state.referenced_fingerprints()}


def every_view_reads(warehouse: Engine, environment: str) -> None:
    for name in env_views(warehouse, environment):
        schema, table = name.split(".")
        schema = schema if environment == "prod" else f"{schema}__{environment}"
        rows(warehouse, f"select count(*) from {schema}.{table}")


def test_nothing_is_dropped_within_the_ttl(shop: Shop, state: StateStore, warehouse: Engine) -> None:
    world = promoted(shop, state, warehouse)
    objects = physical_objects(warehouse)

    report = run_janitor(warehouse, state, parse_duration("7d"), now=world.at + 6 * DAY)

    assert report.objects == [] and report.environments == []
    assert physical_objects(warehouse) == objects


def test_unreferenced_objects_older_than_the_ttl_are_dropped_and_referenced_ones_kept(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    world = promoted(shop, state, warehouse)
    referenced = referenced_physical(state)
    assert world.old_revenue not in referenced
    dropped_fingerprints = {fp for fp, rec in state.snapshots().items() if rec.physical == world.old_revenue}

    report = run_janitor(warehouse, state, WEEK, now=world.at + 8 * DAY)

    assert report.objects == [world.old_revenue]
    assert world.old_revenue not in physical_objects(warehouse)
    assert referenced <= physical_objects(warehouse)
    assert not set(state.snapshots()) & dropped_fingerprints
    every_view_reads(warehouse, "prod")
    every_view_reads(warehouse, "mr_1")
    # A second pass finds nothing more to do.
    assert run_janitor(warehouse, state, WEEK, now=world.at + 8 * DAY).objects == []
    # Production's previous revenue_by_day is gone: rolling back to it is refused, and nothing moves.
    views = env_views(warehouse, "prod")
    with pytest.raises(EnvError, match=r"marts\.revenue_by_day"):
        rollback(warehouse, state, "prod")
    assert env_views(warehouse, "prod") == views


def test_a_table_that_a_kept_physical_view_reads_is_never_dropped(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    world = promoted(shop, state, warehouse)
    # No environment points at the old orders table, but production's order_status_counts is a
    # physical view, reused as it was, that still reads it.
    assert world.old_orders not in referenced_physical(state)
    assert world.counts_view in referenced_physical(state)
    assert world.old_orders in view_sql(warehouse, world.counts_view)
    before = rows(warehouse, "select * from marts.order_status_counts order by status")

    report = run_janitor(warehouse, state, WEEK, now=world.at + 30 * DAY)

    assert world.old_orders in report.kept_for_views
    assert world.old_orders not in report.objects
    assert world.old_orders in physical_objects(warehouse)
    assert rows(warehouse, "select * from marts.order_status_counts order by status") == before


def view_sql(warehouse: Engine, physical: str) -> str:
    schema, name = physical.split(".")
    [sql] = [sql for s, n, sql in rows(warehouse, views_sql(warehouse)) if s == schema and n == name]
    return str(sql).replace('"', "")


def test_the_janitor_never_touches_objects_it_did_not_create(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    world = promoted(shop, state, warehouse)
    with warehouse.cursor() as cursor:
        # In a schema of Sluice's, one even named like a snapshot of revenue_by_day; and elsewhere.
        cursor.execute("create table sluice__marts.hand_made as select 1 as x")
        cursor.execute("create table sluice__marts.revenue_by_day__0123456789 as select 2 as x")
        cursor.execute("create schema analytics")
        cursor.execute("create table analytics.keep_me as select 3 as x")
        cursor.execute("create view analytics.keep_me_too as select * from analytics.keep_me")
        cursor.execute("create schema if not exists scratchpad")
        cursor.execute("create table scratchpad.scratch as select 4 as x")

    report = run_janitor(warehouse, state, 0, now=world.at + 365 * DAY)

    assert report.objects == [world.old_revenue]
    assert rows(warehouse, "select x from sluice__marts.hand_made") == [(1,)]
    assert rows(warehouse, "select x from sluice__marts.revenue_by_day__0123456789") == [(2,)]
    assert rows(warehouse, "select x from analytics.keep_me_too") == [(3,)]
    assert rows(warehouse, "select x from scratchpad.scratch") == [(4,)]


def test_expired_environments_are_dropped_with_what_only_they_used(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    world = promoted(shop, state, warehouse)
    shop.edit("models/marts/customers.sql", "    c.email,\n",
              "    c.email,\n    split_part(c.email, '@', 2) as email_domain,\n")
    mr_2 = run_pipeline(shop.load(), state, warehouse, "mr_2")
    only_mr_2 = mr_2.plan.node("marts.customers").physical
    prod_views = env_views(warehouse, "prod")
    state.mark_expiry("mr_2", world.at + DAY)
    state.mark_expiry("mr_1", world.at + 30 * DAY)

    report = run_janitor(warehouse, state, WEEK, now=world.at + 8 * DAY)

    assert report.environments == ["mr_2"]
    assert state.environment("mr_2") is None
    assert env_views(warehouse, "mr_2") == {}
    assert not [s for s in warehouse.schemas() if s.endswith("__mr_2")]
    # Its own snapshot went with it (unreferenced for a week); what others use stayed.
    assert set(report.objects) == {only_mr_2, world.old_revenue}
    assert only_mr_2 not in physical_objects(warehouse)
    assert referenced_physical(state) <= physical_objects(warehouse)
    # mr_1 has not expired yet; production never expires.
    assert state.environment("mr_1") is not None
    assert env_views(warehouse, "prod") == prod_views
    every_view_reads(warehouse, "prod")


def test_a_dry_run_reports_without_dropping(shop: Shop, state: StateStore, warehouse: Engine) -> None:
    world = promoted(shop, state, warehouse)
    state.mark_expiry("mr_1", world.at)
    objects, snapshots = physical_objects(warehouse), set(state.snapshots())

    report = run_janitor(warehouse, state, WEEK, now=world.at + 8 * DAY, dry_run=True)

    assert report.environments == ["mr_1"] and report.objects == [world.old_revenue]
    assert physical_objects(warehouse) == objects
    assert set(state.snapshots()) == snapshots
    assert state.environment("mr_1") is not None
