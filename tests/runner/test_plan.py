"""Planning changes to a project (`runner.plan.make_plan`, through `plan_environment` and
`run_pipeline`): what changed, whether it breaks anything downstream, and what is built or reused.

The rules a reviewer relies on:
- only a change to what a model computes counts: whitespace, comments, keyword case, descriptions
  and tests never rebuild anything;
- a change that only adds columns is non-breaking, and downstream models that do not select `*`
  keep their physical tables;
- a change to one column's expression rebuilds only the downstream models that read that column;
- a change to which rows exist (WHERE, JOIN) is breaking for everything downstream;
- a downstream model reading a column the change removes stops the plan before anything is built.
"""

from __future__ import annotations

import pytest

from runner.engines.base import Engine
from runner.errors import PlanError
from runner.naming import physical_name
from runner.pipeline import RunResult, plan_environment, run_pipeline
from runner.plan.builder import make_plan
from runner.plan.definition import Action, Change
from runner.state.store import StateStore
from tests.support.repos import Shop
from tests.support.warehouses import env_views, physical_objects, rows

ORDERS = "models/marts/orders.sql"
CUSTOMERS = "models/marts/customers.sql"
STG_ORDERS = "models/staging/stg_orders.sql"
REVENUE = "models/marts/revenue_by_day.sql"
SCHEMA_YML = "models/schema.yml"

ALL_NODES = {
    "raw.raw_customers", "raw.raw_orders", "raw.raw_payments",
    "staging.stg_customers", "staging.stg_orders", "staging.stg_payments",
    "marts.customers", "marts.orders", "marts.customer_segments", "marts.order_status_counts",
    "marts.revenue_by_day",
}


def build_prod(shop: Shop, state: StateStore, warehouse: Engine) -> RunResult:
    result = run_pipeline(shop.load(), state, warehouse, "prod")
    assert result.ok and result.held_back is None
    return result


def prod_physical(state: StateStore) -> dict[str, str]:
    """Model -> the physical object production reads for it."""
    prod = state.environment("prod")
    assert prod is not None
    snapshots = state.snapshots(fingerprints=prod.models.values())
    return {name: snapshots[fp].physical for name, fp in prod.models.items()}


def remove_customer_segments(shop: Shop) -> None:
    """Delete the model's file and its entry, the last one, in models/schema.yml."""
    shop.remove("models/marts/customer_segments.sql")
    head, entry = shop.read(SCHEMA_YML).split("  - name: customer_segments\n")
    assert "\n  - name:" not in entry
    shop.write(SCHEMA_YML, head)


# -- first plan, no-op ----------------------------------------------------------------------------


def test_the_first_plan_on_an_empty_state_adds_and_builds_everything(shop: Shop, state: StateStore) -> None:
    project = shop.load()
    pure = make_plan(project, "prod", None, base={}, known={})
    planned = plan_environment(project, state, "prod")

    for plan in (pure, planned):
        assert {n.name for n in plan.nodes} == ALL_NODES
        assert all(n.change is Change.ADDED and n.action is Action.BUILD for n in plan.nodes)
        assert plan.base is None and not plan.is_noop
        # Build order: every node comes after what it reads.
        position = {n.name: i for i, n in enumerate(plan.nodes)}
        for name, parents in project.dag.parents.items():
            assert all(position[p] < position[name] for p in parents)
    assert [(n.name, n.fingerprint) for n in pure.nodes] == [(n.name, n.fingerprint) for n in planned.nodes]
    orders = planned.node("marts.orders")
    assert orders.physical == f"sluice__marts.{physical_name('orders', orders.fingerprint)}"


def test_a_second_plan_of_the_same_project_is_a_noop(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    first = build_prod(shop, state, warehouse)
    assert sorted(first.build.built) == sorted(ALL_NODES)
    objects = physical_objects(warehouse)

    second = run_pipeline(shop.load(), state, warehouse, "prod")

    assert second.plan.is_noop
    assert second.build.built == [] and second.repoint is None
    assert all(n.change is Change.UNCHANGED and n.action is Action.REUSE for n in second.plan.nodes)
    assert physical_objects(warehouse) == objects


@pytest.mark.parametrize("rel, old, new", [
    pytest.param(REVENUE, "select\n", "\n\n   select    \n\t", id="whitespace"),
    pytest.param(REVENUE, "from marts.orders\n", "-- reads the orders mart\nfrom marts.orders /* all */\n",
                 id="comments"),
    pytest.param(REVENUE, "group by order_date", "GROUP BY order_date", id="keyword-case"),
    pytest.param(STG_ORDERS, "cast(order_date as date)", "CAST(order_date AS DATE)", id="function-case"),
])
def test_formatting_only_edits_are_a_noop(shop: Shop, state: StateStore, warehouse: Engine,
                                          rel: str, old: str, new: str) -> None:
    build_prod(shop, state, warehouse)
    shop.edit(rel, old, new)

    result = run_pipeline(shop.load(), state, warehouse, "prod")

    assert result.plan.is_noop
    assert result.build.built == []


# -- column-aware change categories ----------------------------------------------------------------


def test_adding_a_column_is_non_breaking_and_readers_that_do_not_select_star_are_reused(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    before = prod_physical(state)
    shop.edit(CUSTOMERS, "    c.email,\n", "    c.email,\n    split_part(c.email, '@', 2) as email_domain,\n")

    result = run_pipeline(shop.load(), state, warehouse, "mr_1")

    customers = result.plan.node("marts.customers")
    assert customers.change is Change.DIRECT and customers.action is Action.BUILD
    assert customers.category == "non-breaking"
    assert customers.columns.added == {"email_domain"} and not customers.columns.changed
    assert customers.affects == ()
    segments = result.plan.node("marts.customer_segments")
    assert segments.change is Change.INDIRECT and segments.action is Action.REUSE
    assert "email_domain" in segments.reason and "added" in segments.reason
    assert segments.physical == before["marts.customer_segments"]
    assert result.build.built == ["marts.customers"]
    views = env_views(warehouse, "mr_1")
    assert views["marts.customer_segments"] == before["marts.customer_segments"]
    assert rows(warehouse, "select count(*) from marts__mr_1.customers where email_domain is null") == [(0,)]


def test_adding_a_column_rebuilds_a_downstream_model_that_selects_star(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    shop.write("models/marts/orders_copy.sql", "select * from marts.orders\n")
    build_prod(shop, state, warehouse)
    shop.edit(ORDERS, "    o.status,\n", "    o.status,\n    upper(o.status) as status_label,\n")

    result = run_pipeline(shop.load(), state, warehouse, "mr_1")

    orders = result.plan.node("marts.orders")
    assert orders.category == "non-breaking" and orders.affects == ("marts.orders_copy",)
    copy = result.plan.node("marts.orders_copy")
    assert copy.change is Change.INDIRECT and copy.action is Action.BUILD
    assert sorted(result.build.built) == ["marts.orders", "marts.orders_copy"]
    for name in ("marts.order_status_counts", "marts.revenue_by_day"):
        assert result.plan.node(name).action is Action.REUSE
    assert rows(warehouse, "select distinct status_label from marts__mr_1.orders_copy "
                           "where status = 'shipped'") == [("SHIPPED",)]


def test_changing_one_column_rebuilds_only_the_models_that_read_it(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    before = prod_physical(state)
    shop.edit(ORDERS, "p.total_amount as amount", "p.total_amount - p.coupon_amount as amount")

    result = run_pipeline(shop.load(), state, warehouse, "mr_1")
    plan = result.plan

    orders = plan.node("marts.orders")
    assert orders.change is Change.DIRECT and orders.action is Action.BUILD
    assert orders.category == "breaking (amount)"
    assert orders.affects == ("marts.revenue_by_day",)
    counts = plan.node("marts.order_status_counts")
    assert counts.change is Change.INDIRECT and counts.action is Action.REUSE
    assert counts.reason == "reads none of the changed columns: amount"
    assert counts.physical == before["marts.order_status_counts"]  # the very same physical object
    revenue = plan.node("marts.revenue_by_day")
    assert revenue.change is Change.INDIRECT and revenue.action is Action.BUILD
    assert revenue.physical != before["marts.revenue_by_day"]
    assert sorted(result.build.built) == ["marts.orders", "marts.revenue_by_day"]
    # Models upstream of the change, and beside it, are untouched.
    for name in ALL_NODES - {"marts.orders", "marts.order_status_counts", "marts.revenue_by_day"}:
        assert plan.node(name).change is Change.UNCHANGED
        assert plan.node(name).physical == before[name]
    # The environment shows it: the reused view reads production's object, and its data is the same.
    views = env_views(warehouse, "mr_1")
    assert views["marts.order_status_counts"] == before["marts.order_status_counts"]
    assert (rows(warehouse, "select * from marts__mr_1.order_status_counts order by status")
            == rows(warehouse, "select * from marts.order_status_counts order by status"))
    assert (rows(warehouse, "select sum(revenue) from marts__mr_1.revenue_by_day")
            < rows(warehouse, "select sum(revenue) from marts.revenue_by_day"))


def test_changing_a_column_nobody_downstream_reads_rebuilds_only_that_model(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    before = prod_physical(state)
    shop.edit(ORDERS, "    p.gift_card_amount,\n", "    p.gift_card_amount * 2 as gift_card_amount,\n")

    result = run_pipeline(shop.load(), state, warehouse, "mr_1")
    assert result.build.ok, result.build.failed

    orders = result.plan.node("marts.orders")
    assert orders.change is Change.DIRECT
    assert orders.columns.changed == {"gift_card_amount"}
    assert orders.category == "non-breaking (nothing downstream reads gift_card_amount)"
    assert orders.affects == ()
    assert result.build.built == ["marts.orders"]
    for name in ("marts.order_status_counts", "marts.revenue_by_day"):
        node = result.plan.node(name)
        assert node.action is Action.REUSE and node.physical == before[name]
        assert "gift_card_amount" in node.reason


@pytest.mark.parametrize("rel, old, new, changed", [
    pytest.param(STG_ORDERS, "from raw.raw_orders", "from raw.raw_orders\nwhere id > 10",
                 "staging.stg_orders", id="where"),
    pytest.param(ORDERS, "left join payments as p", "inner join payments as p", "marts.orders",
                 id="join"),
])
def test_a_change_to_which_rows_exist_is_breaking_for_every_downstream_model(
        shop: Shop, state: StateStore, warehouse: Engine, rel: str, old: str, new: str,
        changed: str) -> None:
    build_prod(shop, state, warehouse)
    shop.edit(rel, old, new)
    project = shop.load()
    downstream = project.dag.downstream([changed])

    result = run_pipeline(project, state, warehouse, "mr_1")

    node = result.plan.node(changed)
    assert node.change is Change.DIRECT and node.category == "breaking"
    assert node.columns.everything
    assert set(node.affects) == set(project.dag.children[changed])
    assert set(result.build.built) == {changed} | downstream
    for name in downstream:
        assert result.plan.node(name).action is Action.BUILD


def test_removing_a_column_a_downstream_model_reads_stops_the_plan_before_any_build(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    objects = physical_objects(warehouse)
    snapshots = set(state.snapshots())
    shop.edit(ORDERS, "    o.status,\n", "")

    with pytest.raises(PlanError) as raised:
        run_pipeline(shop.load(), state, warehouse, "mr_1")

    error = raised.value
    assert error.file in ("models/marts/order_status_counts.sql", "models/marts/revenue_by_day.sql")
    assert str(error).startswith(error.file)
    assert "marts.orders.status" in error.message
    # Nothing was built or recorded, and the environment does not exist.
    assert physical_objects(warehouse) == objects
    assert set(state.snapshots()) == snapshots
    assert state.environment("mr_1") is None


def test_a_model_removed_from_the_project_is_planned_as_removed(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    remove_customer_segments(shop)

    plan = plan_environment(shop.load(), state, "prod")

    removed = plan.node("marts.customer_segments")
    assert removed.change is Change.REMOVED and removed.action is Action.DROP
    assert removed.reason
    assert plan.nodes[-1] is removed
    assert "marts.customer_segments" not in plan.mapping
    assert not plan.to_build and not plan.is_noop


def test_a_model_removed_from_the_project_leaves_the_environment(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    run_pipeline(shop.load(), state, warehouse, "mr_1")
    assert "marts.customer_segments" in env_views(warehouse, "mr_1")
    remove_customer_segments(shop)

    result = run_pipeline(shop.load(), state, warehouse, "mr_1")

    assert result.repoint is not None and result.repoint.dropped == ("marts.customer_segments",)
    assert "marts.customer_segments" not in env_views(warehouse, "mr_1")
    record = state.environment("mr_1")
    assert record is not None and "marts.customer_segments" not in record.models
    assert "marts.customer_segments" in env_views(warehouse, "prod")  # production is another matter


# -- seeds, YAML, materialization -----------------------------------------------------------------


def test_seeds_are_keyed_by_content_and_an_edited_csv_rebuilds_the_seed_and_its_downstream(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    before = prod_physical(state)
    shop.edit("seeds/raw_payments.csv", "\n1,1,bank_transfer,1543\r\n", "\n1,1,bank_transfer,91543\r\n")
    project = shop.load()

    result = run_pipeline(project, state, warehouse, "mr_1")

    seed = result.plan.node("raw.raw_payments")
    assert seed.kind == "seed" and seed.change is Change.DIRECT and seed.action is Action.BUILD
    expected = {"raw.raw_payments"} | project.dag.downstream(["raw.raw_payments"])
    assert set(result.build.built) == expected
    for name in ALL_NODES - expected:
        assert result.plan.node(name).physical == before[name]
    assert rows(warehouse, "select amount from raw__mr_1.raw_payments where id = 1") == [(91543,)]
    assert rows(warehouse, "select amount from raw.raw_payments where id = 1") == [(1543,)]

    # Putting the old content back finds the old snapshots: nothing is built.
    shop.edit("seeds/raw_payments.csv", "\n1,1,bank_transfer,91543\r\n", "\n1,1,bank_transfer,1543\r\n")
    back = run_pipeline(shop.load(), state, warehouse, "mr_2")
    assert back.build.built == []
    assert env_views(warehouse, "mr_2") == env_views(warehouse, "prod")


def test_a_description_or_test_only_yaml_edit_rebuilds_nothing(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    shop.edit(SCHEMA_YML, "description: Revenue per day, returns excluded.",
              "description: Daily revenue without returned orders, in currency units.")
    shop.edit(SCHEMA_YML, "      - name: order_date\n        tests: [unique]\n",
              "      - name: order_date\n        tests: [unique, not_null]\n        tags: [finance]\n")

    result = run_pipeline(shop.load(), state, warehouse, "prod")

    assert result.plan.is_noop
    assert result.build.built == []


def test_changing_materialization_from_table_to_view_rebuilds_the_model(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    before = prod_physical(state)
    shop.edit(SCHEMA_YML, "    unique_key: order_date\n",
              "    unique_key: order_date\n    materialized: view\n")

    result = run_pipeline(shop.load(), state, warehouse, "mr_1")

    node = result.plan.node("marts.revenue_by_day")
    assert node.change is Change.DIRECT and node.action is Action.BUILD
    assert node.materialized == "view"
    assert node.category == "non-breaking"  # the same data, stored differently
    assert result.build.built == ["marts.revenue_by_day"]
    schema, name = node.physical.split(".")
    kinds = {o.name: o.kind for o in warehouse.objects([schema])}
    assert kinds[name] == "view"
    assert before["marts.revenue_by_day"] != node.physical
    assert (rows(warehouse, "select * from marts__mr_1.revenue_by_day order by order_date")
            == rows(warehouse, "select * from marts.revenue_by_day order by order_date"))
