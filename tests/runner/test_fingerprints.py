"""Snapshot identity includes the model: two models with the same SQL and parents are two tables,
and a store written by the earlier recipe moves to the new one without rebuilding anything that
is unchanged (and says what the one rebuild it cannot avoid costs)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from runner.engines.base import Engine
from runner.pipeline import run_pipeline
from runner.plan.definition import Action
from runner.review.compare import compare
from runner.state.store import StateStore
from tests.support.fingerprint_v1 import downgrade_to_v1
from tests.support.repos import Shop

TWIN = "models/marts/orders_copy.sql"


def views(state: StateStore, env: str) -> dict[str, str]:
    record = state.environment(env)
    assert record is not None
    found = state.snapshots(fingerprints=record.models.values())
    return {name: found[fp].physical for name, fp in record.models.items() if fp in found}


def test_two_models_with_the_same_sql_are_two_tables(shop: Shop, state: StateStore, warehouse: Engine):
    shop.write(TWIN, shop.read("models/marts/orders.sql"))
    result = run_pipeline(shop.load(), state, warehouse, "prod")
    assert result.ok
    orders, twin = result.plan.node("marts.orders"), result.plan.node("marts.orders_copy")
    assert orders.fingerprint != twin.fingerprint
    assert orders.physical != twin.physical and twin.physical.startswith("sluice__marts.orders_copy__")
    assert {orders.action, twin.action} == {Action.BUILD}
    # A change to one is a change to one: the other keeps its table, and `sluice diff` names each
    # model's own physical table.
    shop.edit("models/marts/orders.sql", "p.total_amount as amount", "p.total_amount * 2 as amount")
    run_pipeline(shop.load(), state, warehouse, "mr_1", against="prod")
    found = {c.name: c for c in compare(shop.load(), state, warehouse, "prod", "mr_1")}
    assert "marts.orders_copy" not in found
    assert found["marts.orders"].diff is not None
    assert found["marts.orders"].diff.before == views(state, "prod")["marts.orders"]


def test_a_store_from_the_earlier_recipe_migrates_without_rebuilding(shop: Shop, tmp_path: Path,
                                                                   warehouse: Engine):
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    state = StateStore(url)
    assert run_pipeline(shop.load(), state, warehouse, "prod").ok
    shop.edit("models/marts/orders.sql", "p.total_amount as amount",
              "p.total_amount - p.coupon_amount as amount")
    assert run_pipeline(shop.load(), state, warehouse, "mr_1", against="prod").ok
    before = {env: views(state, env) for env in ("prod", "mr_1")}
    old = downgrade_to_v1(state)
    assert set(old) != set(old.values())  # the store really holds the old keys now
    state.close()

    state = StateStore(url)  # opening it migrates it
    try:
        assert {env: views(state, env) for env in ("prod", "mr_1")} == before
        again = run_pipeline(shop.load(), state, warehouse, "mr_1", against="prod")
        assert again.build.built == [] and again.repoint is None  # nothing unchanged is rebuilt or moved
        shop.edit("models/marts/orders.sql", "p.total_amount - p.coupon_amount as amount",
                  "p.total_amount as amount")
        again = run_pipeline(shop.load(), state, warehouse, "prod")
        assert again.build.built == [] and again.plan.is_noop
        assert {env: views(state, env) for env in ("prod", "mr_1")} == before
        assert state.history("prod")[-1].after == dict(state.environment("prod").models)  # type: ignore[union-attr]
    finally:
        state.close()


def test_models_that_shared_a_table_get_their_own_and_the_migration_says_so(
        shop: Shop, tmp_path: Path, warehouse: Engine, caplog: pytest.LogCaptureFixture):
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    shop.write(TWIN, shop.read("models/marts/orders.sql"))
    state = StateStore(url)
    assert run_pipeline(shop.load(), state, warehouse, "prod").ok
    downgrade_to_v1(state)  # version 1: one record, both models' views on one table
    state.close()

    with caplog.at_level(logging.WARNING, logger="sluice.state"):
        state = StateStore(url)
    try:
        [warning] = [r.getMessage() for r in caplog.records if r.name == "sluice.state"]
        assert "1 model(s) shared another model's table" in warning and "s of building" in warning
        result = run_pipeline(shop.load(), state, warehouse, "prod")
        assert result.ok
        rebuilt = set(result.build.built)  # one of the two, and what reads it
        assert len(rebuilt & {"marts.orders", "marts.orders_copy"}) == 1
        assert rebuilt <= {"marts.orders", "marts.orders_copy", "marts.revenue_by_day",
                           "marts.order_status_counts"}
        prod = views(state, "prod")
        assert prod["marts.orders"] != prod["marts.orders_copy"]
    finally:
        state.close()
