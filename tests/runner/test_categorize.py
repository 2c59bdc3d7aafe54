"""Categorising a direct change (`runner.plan.categorize`) by column lineage through CTEs and
subqueries: which output columns' full lineage changed.

The rules a reviewer relies on:
- an edit inside a CTE or subquery changes only the output columns that flow from what it edited;
- an edit to what decides the rows of a scope (WHERE, JOIN, GROUP BY, HAVING, QUALIFY, DISTINCT,
  LIMIT) changes every column that flows from that scope, and when those rows reach the model's
  rows, every column;
- a column added anywhere that surfaces in the output is a non-breaking add; a rename is a remove
  and an add.
"""

from __future__ import annotations

import pytest

from runner.engines.base import Engine
from runner.lineage.model import ALL
from runner.pipeline import run_pipeline
from runner.plan.categorize import ColumnChange, categorize
from runner.plan.definition import Action, Change
from runner.project.parsing import parse_query
from runner.state.store import StateStore
from tests.support.repos import Shop

UPSTREAM: dict[str, tuple[str, ...] | None] = {
    "raw.orders": ("id", "customer_id", "amount", "status", "created_at"),
    "raw.customers": ("id", "name", "email"),
    "raw.payments": ("id", "order_id", "method", "amount"),
}

# A model as dbt projects write them: import CTEs, logical CTEs, a final CTE and `select *`.
DBT_CHAIN = """
with orders as (
    select * from raw.orders
),

customers as (
    select * from raw.customers
),

order_totals as (
    select
        customer_id,
        count(*) as order_count,
        sum(amount) as lifetime_value
    from orders
    where status != 'cancelled'
    group by customer_id
),

final as (
    select
        customers.id as customer_id,
        customers.name,
        upper(customers.email) as email,
        coalesce(order_totals.order_count, 0) as order_count,
        coalesce(order_totals.lifetime_value, 0) as lifetime_value
    from customers
    left join order_totals on customers.id = order_totals.customer_id
)

select * from final
"""


def resolve(parts: tuple[str, ...]) -> str | None:
    return ".".join(parts) if len(parts) == 2 else None


def canonical(sql: str) -> str:
    return parse_query(sql, "duckdb", "models/m.sql").canonical


def change(old: str, new: str, upstream: dict[str, tuple[str, ...] | None] | None = None) -> ColumnChange:
    return categorize(canonical(old), canonical(new), "duckdb", None, None, resolve,
                      UPSTREAM if upstream is None else upstream)


def edited(sql: str, old: str, new: str) -> str:
    assert old in sql, old
    return sql.replace(old, new, 1)


EVERY = frozenset({ALL})


# -- the dbt shape ----------------------------------------------------------------------------------


def test_an_edit_in_a_logical_cte_changes_only_the_output_columns_it_reaches():
    result = change(DBT_CHAIN, edited(DBT_CHAIN, "sum(amount) as lifetime_value",
                                      "sum(amount * 0.9) as lifetime_value"))

    assert result == ColumnChange(changed=frozenset({"lifetime_value"}))


def test_an_edit_in_the_final_cte_under_select_star_changes_only_that_column():
    result = change(DBT_CHAIN, edited(DBT_CHAIN, "upper(customers.email)", "lower(customers.email)"))

    assert result == ColumnChange(changed=frozenset({"email"}))


def test_a_filter_edit_in_a_cte_changes_every_column_that_flows_from_it():
    result = change(DBT_CHAIN, edited(DBT_CHAIN, "where status != 'cancelled'",
                                      "where status not in ('cancelled', 'returned')"))

    # order_totals' rows decide the join's rows, and so every row of the model.
    assert result.everything


def test_a_grouping_edit_in_a_cte_changes_everything_of_that_flow():
    result = change(DBT_CHAIN, edited(DBT_CHAIN, "group by customer_id", "group by customer_id, status"))

    assert result.everything


def test_a_column_added_in_a_cte_that_surfaces_is_a_non_breaking_add():
    new = edited(DBT_CHAIN, "        coalesce(order_totals.lifetime_value, 0) as lifetime_value\n",
                 "        coalesce(order_totals.lifetime_value, 0) as lifetime_value,\n"
                 "        customers.name is not null as named\n")

    result = change(DBT_CHAIN, new)

    assert result == ColumnChange(added=frozenset({"named"}))
    assert result.additive_only


def test_a_column_added_in_a_cte_that_does_not_surface_changes_nothing():
    new = edited(DBT_CHAIN, "sum(amount) as lifetime_value",
                 "sum(amount) as lifetime_value,\n        max(created_at) as last_order_at")

    assert change(DBT_CHAIN, new).is_empty


def test_a_renamed_column_is_removed_and_added():
    new = edited(DBT_CHAIN, "customers.name,", "customers.name as full_name,")

    assert change(DBT_CHAIN, new) == ColumnChange(added=frozenset({"full_name"}),
                                                  removed=frozenset({"name"}))


def test_renaming_a_cte_changes_nothing():
    new = DBT_CHAIN.replace("order_totals", "totals_per_customer")

    assert change(DBT_CHAIN, new).is_empty


def test_an_import_cte_that_selects_star_expands_into_the_upstream_columns():
    old = "with orders as (select * from raw.orders) select * from orders"
    new = "with orders as (select *, amount * 2 as double_amount from raw.orders) select * from orders"

    assert change(old, new) == ColumnChange(added=frozenset({"double_amount"}))


def test_a_star_on_a_table_of_unknown_columns_counts_as_one_column_reading_all_of_it():
    old = "with orders as (select * from raw.orders) select * from orders"
    new = "with orders as (select * from raw.orders where amount > 0) select * from orders"

    assert change(old, new, upstream={}).everything
    assert change(old, old.replace("with orders", "with o").replace("from orders", "from o"),
                  upstream={}).is_empty


# -- subqueries -------------------------------------------------------------------------------------

NESTED = """
select id, status, total
from (
    select id, status, amount * 2 as total
    from (select id, lower(status) as status, amount from raw.orders where amount > 0) as cleaned
) as doubled
"""


def test_an_edit_in_a_nested_subquery_changes_only_the_columns_it_reaches():
    assert change(NESTED, edited(NESTED, "lower(status)", "upper(status)")) == ColumnChange(
        changed=frozenset({"status"}))
    assert change(NESTED, edited(NESTED, "amount * 2", "amount * 3")) == ColumnChange(
        changed=frozenset({"total"}))


def test_a_filter_edit_in_a_nested_subquery_changes_everything():
    assert change(NESTED, edited(NESTED, "amount > 0", "amount > 10")).everything


def test_a_scalar_subquery_edit_changes_only_the_column_it_computes():
    old = """
    with big as (select customer_id, amount from raw.orders where amount > 100)
    select c.id, c.name,
           (select count(*) from big where big.customer_id = c.id) as big_orders
    from raw.customers as c
    """

    # Even a filter: `big` decides only the values of big_orders, never which customers exist.
    assert change(old, edited(old, "amount > 100", "amount > 500")) == ColumnChange(
        changed=frozenset({"big_orders"}))


def test_a_filter_on_a_subquery_in_where_changes_everything():
    old = ("select id, amount from raw.orders "
           "where customer_id in (select id from raw.customers where name > 'a')")

    assert change(old, edited(old, "name > 'a'", "name > 'b'")).everything


# -- a CTE used twice -------------------------------------------------------------------------------

TWICE = """
with o as (select id, customer_id, lower(status) as status, amount from raw.orders)
select cur.id, cur.status, prev.amount as previous_amount
from o as cur
left join o as prev on prev.id = cur.id - 1 and prev.customer_id = cur.customer_id
"""


def test_a_cte_read_twice_changes_the_columns_each_read_takes_from_it():
    assert change(TWICE, edited(TWICE, "lower(status)", "upper(status)")) == ColumnChange(
        changed=frozenset({"status"}))
    assert change(TWICE, edited(TWICE, "amount from raw.orders", "amount * 2 as amount from raw.orders")
                  ) == ColumnChange(changed=frozenset({"previous_amount"}))


def test_reading_a_column_from_the_other_read_of_a_cte_changes_it():
    assert change(TWICE, edited(TWICE, "cur.status", "prev.status")) == ColumnChange(
        changed=frozenset({"status"}))
    assert change(TWICE, TWICE.replace("cur", "this_one")).is_empty


def test_swapping_the_roles_of_a_table_read_twice_changes_everything():
    old = "select a.id, b.amount from raw.orders as a join raw.orders as b on a.id = b.customer_id"
    new = "select a.id, b.amount from raw.orders as a join raw.orders as b on b.id = a.customer_id"

    assert change(old, new).everything


def test_a_cte_read_twice_whose_join_key_changes_changes_everything():
    new = edited(TWICE, "select id, customer_id,", "select id, coalesce(customer_id, 0) as customer_id,")

    assert change(TWICE, new).everything


# -- the final select, as before ----------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param("select id, amount from raw.orders", "select id, amount * 2 as amount from raw.orders",
                 ColumnChange(changed=frozenset({"amount"})), id="one expression"),
    pytest.param("select id from raw.orders", "select id, amount from raw.orders",
                 ColumnChange(added=frozenset({"amount"})), id="added"),
    pytest.param("select id, amount from raw.orders", "select id from raw.orders",
                 ColumnChange(removed=frozenset({"amount"})), id="removed"),
    pytest.param("select id from raw.orders", "select id from raw.orders where amount > 0",
                 ColumnChange(changed=EVERY), id="where"),
    pytest.param("select o.id from raw.orders as o left join raw.customers as c on o.customer_id = c.id",
                 "select o.id from raw.orders as o join raw.customers as c on o.customer_id = c.id",
                 ColumnChange(changed=EVERY), id="join"),
    pytest.param("select status from raw.orders", "select distinct status from raw.orders",
                 ColumnChange(changed=EVERY), id="distinct"),
    pytest.param("select id from raw.orders order by id limit 5",
                 "select id from raw.orders order by id limit 6",
                 ColumnChange(changed=EVERY), id="limit"),
    pytest.param("select distinct status from raw.orders",
                 "select distinct upper(status) as status from raw.orders",
                 ColumnChange(changed=EVERY), id="distinct expression"),
    pytest.param("select amount from raw.orders", "select sum(amount) as amount from raw.orders",
                 ColumnChange(changed=EVERY), id="aggregate without group by"),
    pytest.param("select id, amount from raw.orders union all select id, amount from raw.payments",
                 "select id, amount from raw.orders union all select id, amount * 2 from raw.payments",
                 ColumnChange(changed=frozenset({"amount"})), id="union all branch"),
    pytest.param("select id, amount from raw.orders union select id, amount from raw.payments",
                 "select id, amount from raw.orders union select id, amount * 2 from raw.payments",
                 ColumnChange(changed=EVERY), id="union distinct branch"),
    pytest.param("select id, amount, row_number() over (order by amount) as n from raw.orders",
                 "select id, amount, row_number() over (order by amount desc) as n from raw.orders",
                 ColumnChange(changed=frozenset({"n"})), id="window"),
    pytest.param("select id, amount from raw.orders qualify row_number() over (partition by id) = 1",
                 "select id, amount from raw.orders qualify row_number() over (partition by id) = 2",
                 ColumnChange(changed=EVERY), id="qualify"),
])
def test_the_final_select(old: str, new: str, expected: ColumnChange):
    assert change(old, new) == expected


def test_unknown_columns_in_a_join_count_as_reading_every_source():
    old = "select name, amount from raw.orders join raw.customers on true"
    new = "select name, amount * 2 as amount from raw.orders join raw.customers on true"

    assert change(old, new, upstream={}) == ColumnChange(changed=frozenset({"amount"}))


def test_a_query_that_cannot_be_traced_falls_back_to_comparing_the_final_select():
    # A recursive CTE: traced conservatively, it still tells one column's edit from a filter's.
    old = ("with recursive n(i) as (select 1 union all select i + 1 from n where i < 5) "
           "select i, i * 2 as d from n")
    assert change(old, edited(old, "i * 2", "i * 3")) == ColumnChange(changed=frozenset({"d"}))
    assert change(old, edited(old, "i < 5", "i < 6")).everything


# -- through the planner: only readers of the changed column break -----------------------------------------


def test_an_edit_in_a_cte_rebuilds_only_the_downstream_models_that_read_its_column(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    assert run_pipeline(shop.load(), state, warehouse, "prod").ok
    # Inside marts.orders' `payments` CTE; it reaches only the output column `amount`.
    shop.edit("models/marts/orders.sql", "sum(amount) as total_amount",
              "sum(case when payment_method = 'coupon' then 0 else amount end) as total_amount")

    result = run_pipeline(shop.load(), state, warehouse, "mr_1")

    orders = result.plan.node("marts.orders")
    assert orders.change is Change.DIRECT
    assert orders.columns.changed == {"amount"}
    assert orders.category == "breaking (amount)"
    assert orders.affects == ("marts.revenue_by_day",)
    counts = result.plan.node("marts.order_status_counts")
    assert counts.action is Action.REUSE
    assert counts.reason == "reads none of the changed columns: amount"
    assert sorted(result.build.built) == ["marts.orders", "marts.revenue_by_day"]
