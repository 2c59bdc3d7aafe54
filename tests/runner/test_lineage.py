"""Column-level lineage of one model (`runner.lineage.model_lineage`).

For every output column: which upstream columns its values come from; for the model as a whole:
which upstream columns decide the set of rows. The planner relies on it to prove a downstream model
unaffected by a change, so whenever lineage cannot be traced it must answer conservatively.
"""

from __future__ import annotations

from runner.lineage.model import ALL, ColumnLineage, model_lineage
from runner.project.parsing import parse_query

ORDERS = "raw.orders"
CUSTOMERS = "raw.customers"
UPSTREAM: dict[str, tuple[str, ...] | None] = {
    ORDERS: ("id", "customer_id", "amount", "status", "created_at"),
    CUSTOMERS: ("id", "name", "email"),
}


def resolve(parts: tuple[str, ...]) -> str | None:
    """Every two-part name is a known table; anything else is not."""
    return ".".join(parts) if len(parts) == 2 else None


def lineage(sql: str, upstream: dict[str, tuple[str, ...] | None] | None = None) -> ColumnLineage:
    """Lineage of `sql` as the loader stores it: canonical text from `parse_query`."""
    canonical = parse_query(sql, "duckdb", "models/m.sql").canonical
    return model_lineage(canonical, "duckdb", resolve, UPSTREAM if upstream is None else upstream)


def refs(*pairs: tuple[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(pairs)


def o(column: str) -> tuple[str, str]:
    return (ORDERS, column)


def c(column: str) -> tuple[str, str]:
    return (CUSTOMERS, column)


# --- output columns and where their values come from ----------------------------------------------


def test_each_output_column_comes_from_the_upstream_columns_in_its_expression():
    result = lineage("select id, amount * 2 as double_amount, upper(status) as s from raw.orders")

    assert result.outputs == ("id", "double_amount", "s")
    assert result.columns == {
        "id": refs(o("id")),
        "double_amount": refs(o("amount")),
        "s": refs(o("status")),
    }
    assert result.rows == frozenset()
    assert result.star_tables == frozenset()


def test_a_constant_output_reads_no_upstream_column():
    result = lineage("select id, 'x' as kind from raw.orders")

    assert result.columns["kind"] == frozenset()


def test_renaming_through_a_cte_keeps_the_upstream_column():
    result = lineage(
        """
        with paid as (select id, amount from raw.orders)
        select id as order_id, amount as paid_amount from paid
        """
    )

    assert result.outputs == ("order_id", "paid_amount")
    assert result.columns == {"order_id": refs(o("id")), "paid_amount": refs(o("amount"))}


def test_a_cte_filter_decides_the_rows_of_the_model():
    result = lineage(
        """
        with placed as (select id, amount from raw.orders where status = 'placed')
        select id, amount from placed
        """
    )

    assert result.columns == {"id": refs(o("id")), "amount": refs(o("amount"))}
    assert result.rows == refs(o("status"))


def test_cte_chain_traces_back_to_the_base_table():
    result = lineage(
        """
        with a as (select id, amount from raw.orders),
             b as (select id, amount + 1 as amount_plus_one from a)
        select id, amount_plus_one from b
        """
    )

    assert result.columns == {"id": refs(o("id")), "amount_plus_one": refs(o("amount"))}


def test_join_outputs_come_from_their_own_table_and_the_join_keys_decide_rows():
    result = lineage(
        """
        select o.id, c.name
        from raw.orders as o
        join raw.customers as c on o.customer_id = c.id
        """
    )

    assert result.columns == {"id": refs(o("id")), "name": refs(c("name"))}
    assert result.rows == refs(o("customer_id"), c("id"))


def test_join_using_decides_rows_by_the_shared_column_of_both_tables():
    result = lineage("select o.amount, c.name from raw.orders as o join raw.customers as c using (id)")

    assert result.columns == {"amount": refs(o("amount")), "name": refs(c("name"))}
    assert result.rows == refs(o("id"), c("id"))


def test_aggregate_output_reads_its_argument_and_group_by_decides_rows():
    result = lineage(
        "select customer_id, sum(amount) as total, max(created_at) as last_at "
        "from raw.orders group by customer_id"
    )

    assert result.columns == {
        "customer_id": refs(o("customer_id")),
        "total": refs(o("amount")),
        "last_at": refs(o("created_at")),
    }
    assert result.rows == refs(o("customer_id"))


def test_aggregate_filter_clause_counts_for_the_aggregate_not_for_rows():
    result = lineage(
        "select customer_id, sum(amount) filter (where status = 'paid') as paid "
        "from raw.orders group by customer_id"
    )

    assert result.columns["paid"] == refs(o("amount"), o("status"))
    assert result.rows == refs(o("customer_id"))


def test_count_star_reads_no_column_and_is_not_a_star_select():
    result = lineage("select count(*) as n from raw.orders")

    assert result.outputs == ("n",)
    assert result.columns == {"n": frozenset()}
    assert result.star_tables == frozenset()


def test_window_function_reads_its_partition_and_order_columns_without_deciding_rows():
    result = lineage(
        "select id, row_number() over (partition by customer_id order by created_at) as rn, "
        "sum(amount) over (partition by customer_id) as customer_total from raw.orders"
    )

    assert result.columns == {
        "id": refs(o("id")),
        "rn": refs(o("customer_id"), o("created_at")),
        "customer_total": refs(o("amount"), o("customer_id")),
    }
    assert result.rows == frozenset()


def test_union_all_output_reads_the_matching_column_of_every_branch_and_decides_no_rows():
    result = lineage("select id, amount from raw.orders union all select id, 0 from raw.customers")

    assert result.outputs == ("id", "amount")
    assert result.columns == {"id": refs(o("id"), c("id")), "amount": refs(o("amount"))}
    assert result.rows == frozenset()


def test_union_deduplicates_so_every_output_column_decides_rows():
    result = lineage("select id, amount from raw.orders union select id, 0 from raw.customers")

    assert result.columns == {"id": refs(o("id"), c("id")), "amount": refs(o("amount"))}
    assert result.rows == refs(o("id"), c("id"), o("amount"))


def test_union_all_keeps_the_filters_of_each_branch_as_row_deciding():
    result = lineage(
        "select id from raw.orders where status = 'x' "
        "union all select id from raw.customers where email is not null"
    )

    assert result.rows == refs(o("status"), c("email"))


# --- subqueries -------------------------------------------------------------------------------------


def test_in_subquery_in_where_decides_rows_with_everything_it_reads():
    result = lineage(
        "select id from raw.orders "
        "where customer_id in (select id from raw.customers where email like '%@shop.test')"
    )

    assert result.columns == {"id": refs(o("id"))}
    assert result.rows == refs(o("customer_id"), c("id"), c("email"))


def test_correlated_exists_decides_rows():
    result = lineage(
        "select o.id from raw.orders as o "
        "where exists (select 1 from raw.customers as c where c.id = o.customer_id)"
    )

    assert result.columns == {"id": refs(o("id"))}
    assert result.rows == refs(o("customer_id"), c("id"))


def test_scalar_subquery_in_the_select_list_counts_for_its_own_output_only():
    result = lineage("select id, (select max(name) from raw.customers) as top_name from raw.orders")

    assert result.columns == {"id": refs(o("id")), "top_name": refs(c("name"))}
    assert result.rows == frozenset()


def test_correlated_scalar_subquery_reads_the_correlation_columns():
    result = lineage(
        "select o.id, (select c.name from raw.customers as c where c.id = o.customer_id) as name "
        "from raw.orders as o"
    )

    assert result.columns["name"] == refs(c("name"), c("id"), o("customer_id"))
    assert result.rows == frozenset()


def test_derived_table_in_from_passes_its_columns_and_filters_through():
    result = lineage(
        "select t.id, t.amount from (select id, amount from raw.orders where status = 'x') as t"
    )

    assert result.columns == {"id": refs(o("id")), "amount": refs(o("amount"))}
    assert result.rows == refs(o("status"))


# --- SELECT * ---------------------------------------------------------------------------------------


def test_select_star_expands_to_the_known_upstream_columns():
    result = lineage("select * from raw.orders")

    assert result.outputs == ("id", "customer_id", "amount", "status", "created_at")
    assert result.columns["amount"] == refs(o("amount"))
    assert result.columns["created_at"] == refs(o("created_at"))
    assert result.star_tables == frozenset({ORDERS})


def test_select_star_exclude_leaves_out_the_excluded_column():
    result = lineage("select * exclude (amount) from raw.orders")

    assert result.outputs == ("id", "customer_id", "status", "created_at")
    assert result.star_tables == frozenset({ORDERS})


def test_qualified_star_expands_only_its_table():
    result = lineage(
        "select o.*, c.name from raw.orders as o join raw.customers as c on o.customer_id = c.id"
    )

    assert result.outputs == ("id", "customer_id", "amount", "status", "created_at", "name")
    assert result.columns["status"] == refs(o("status"))
    assert result.columns["name"] == refs(c("name"))
    assert ORDERS in result.star_tables


def test_star_tables_holds_only_the_tables_read_with_a_star():
    result = lineage(
        "select o.*, c.name from raw.orders as o join raw.customers as c on o.customer_id = c.id"
    )

    assert result.star_tables == frozenset({ORDERS})


def test_star_through_a_cte_expands_to_the_known_upstream_columns():
    result = lineage("with a as (select * from raw.orders) select id, amount from a")

    assert result.columns == {"id": refs(o("id")), "amount": refs(o("amount"))}
    assert result.star_tables == frozenset({ORDERS})


# --- row-deciding columns ---------------------------------------------------------------------------


def test_where_columns_decide_rows_but_are_not_output_values():
    result = lineage("select id, amount from raw.orders where status <> 'returned'")

    assert result.columns == {"id": refs(o("id")), "amount": refs(o("amount"))}
    assert result.rows == refs(o("status"))


def test_where_on_a_select_alias_decides_rows_by_the_aliased_column():
    result = lineage("select id, amount as a from raw.orders where a > 0")

    assert result.rows == refs(o("amount"))


def test_having_decides_rows():
    result = lineage(
        "select customer_id, count(*) as n from raw.orders group by customer_id "
        "having max(amount) > 100"
    )

    assert result.columns == {"customer_id": refs(o("customer_id")), "n": frozenset()}
    assert result.rows == refs(o("customer_id"), o("amount"))


def test_group_by_position_decides_rows_by_that_column():
    result = lineage("select status, count(*) as n from raw.orders group by 1")

    assert result.rows == refs(o("status"))


def test_group_by_all_decides_rows_by_the_non_aggregated_columns():
    result = lineage("select status, count(*) as n from raw.orders group by all")

    assert result.rows == refs(o("status"))


def test_distinct_makes_every_output_column_decide_rows():
    result = lineage("select distinct status, customer_id from raw.orders")

    assert result.rows == refs(o("status"), o("customer_id"))


def test_distinct_on_with_order_by_reads_the_ordering_column():
    result = lineage(
        "select distinct on (customer_id) customer_id, amount from raw.orders "
        "order by customer_id, created_at"
    )

    assert (ORDERS, "created_at") in result.rows | result.columns["amount"]


def test_qualify_decides_rows():
    result = lineage(
        "select id, amount from raw.orders "
        "qualify row_number() over (partition by customer_id order by created_at desc) = 1"
    )

    assert result.columns == {"id": refs(o("id")), "amount": refs(o("amount"))}
    assert result.rows == refs(o("customer_id"), o("created_at"))


def test_order_by_without_limit_does_not_decide_rows():
    result = lineage("select id, amount from raw.orders order by created_at")

    assert result.rows == frozenset()


def test_order_by_with_limit_decides_rows():
    result = lineage("select id, amount from raw.orders order by created_at limit 10")

    assert result.rows == refs(o("created_at"))


def test_order_by_with_offset_decides_rows():
    result = lineage("select id, amount from raw.orders order by created_at offset 10")

    assert result.rows == refs(o("created_at"))


def test_order_by_a_selected_column_with_limit_decides_rows():
    result = lineage("select id, amount from raw.orders order by amount desc limit 3")

    assert result.rows == refs(o("amount"))


def test_order_by_position_with_limit_decides_rows():
    result = lineage("select id, amount from raw.orders order by 2 desc limit 3")

    assert result.rows == refs(o("amount"))


def test_top_n_cte_decides_the_rows_of_the_model():
    result = lineage(
        "with top3 as (select id, amount from raw.orders order by amount desc limit 3) "
        "select id from top3"
    )

    assert result.rows == refs(o("amount"))


def test_order_by_with_limit_on_a_union_all_decides_rows():
    result = lineage(
        "select id from raw.orders union all select id from raw.customers order by id limit 1"
    )

    assert result.rows == refs(o("id"), c("id"))


# --- affected outputs -------------------------------------------------------------------------------

REVENUE_BY_DAY = """
select
    order_date,
    count(*) as orders,
    sum(amount) as revenue
from marts.orders
where status <> 'returned'
group by order_date
"""
MARTS_ORDERS = {"marts.orders": ("order_id", "customer_id", "order_date", "status", "amount")}


def test_changing_amount_affects_only_outputs_computed_from_amount():
    result = lineage(REVENUE_BY_DAY, MARTS_ORDERS)

    assert result.affected_outputs({"marts.orders": frozenset({"amount"})}) == {"revenue"}


def test_changing_a_where_column_affects_every_output():
    result = lineage(REVENUE_BY_DAY, MARTS_ORDERS)

    assert result.affected_outputs({"marts.orders": frozenset({"status"})}) == {
        "order_date", "orders", "revenue"
    }


def test_changing_a_group_by_column_affects_every_output():
    result = lineage(REVENUE_BY_DAY, MARTS_ORDERS)

    assert result.affected_outputs({"marts.orders": frozenset({"order_date"})}) == {
        "order_date", "orders", "revenue"
    }


def test_changing_amount_affects_every_output_when_amount_is_filtered_on():
    result = lineage("select id, status, amount from raw.orders where amount > 0")

    assert result.affected_outputs({ORDERS: frozenset({"amount"})}) == {"id", "status", "amount"}


def test_changing_a_column_the_model_does_not_read_affects_nothing():
    result = lineage(REVENUE_BY_DAY, MARTS_ORDERS)

    assert result.affected_outputs({"marts.orders": frozenset({"customer_id"})}) == frozenset()
    assert result.affected_outputs({"marts.customers": frozenset({"order_date"})}) == frozenset()


def test_changing_every_column_of_a_table_affects_every_output_reading_it():
    result = lineage("select o.id, c.name from raw.orders as o left join raw.customers as c "
                     "on o.customer_id = c.id")

    assert result.affected_outputs({ORDERS: frozenset({ALL})}) == {"id", "name"}


def test_changing_a_column_of_the_joined_table_affects_only_its_outputs():
    result = lineage("select o.id, o.amount, c.name, c.email from raw.orders as o "
                     "left join raw.customers as c on o.customer_id = c.id")

    assert result.affected_outputs({CUSTOMERS: frozenset({"email"})}) == {"email"}


def test_reads_of_lists_every_column_read_from_a_table():
    result = lineage(REVENUE_BY_DAY, MARTS_ORDERS)

    assert result.reads_of("marts.orders") == {"order_date", "amount", "status"}
    assert result.reads_of("marts.customers") == frozenset()


# --- unknown upstream columns: the conservative answer ----------------------------------------------


def test_unqualified_column_with_a_single_table_is_traced_without_known_columns():
    result = lineage("select id, amount from raw.orders where status = 'x'", {})

    assert result.columns == {"id": refs(o("id")), "amount": refs(o("amount"))}
    assert result.rows == refs(o("status"))


def test_ambiguous_column_with_unknown_upstream_columns_counts_as_reading_every_table():
    result = lineage(
        "select o.id, name from raw.orders as o join raw.customers as c on o.customer_id = c.id", {}
    )

    assert result.columns["id"] == refs(o("id"))
    assert result.columns["name"] == refs(o(ALL), c(ALL))
    assert result.affected_outputs({ORDERS: frozenset({"status"})}) == {"name"}
    assert result.affected_outputs({CUSTOMERS: frozenset({"email"})}) == {"name"}


def test_known_columns_of_one_table_resolve_an_unqualified_column_to_it():
    result = lineage(
        "select id, name from raw.orders as o join raw.customers as c on o.customer_id = c.id",
        {ORDERS: UPSTREAM[ORDERS], CUSTOMERS: None},
    )

    assert result.columns["id"] == refs(o("id"))
    assert result.columns["name"] == refs(o(ALL), c(ALL))


def test_column_of_an_unknown_alias_falls_back_to_reading_everything():
    result = lineage("select o.nope from raw.orders as o")

    assert result.outputs == ("nope",)
    assert result.columns == {"nope": refs(o(ALL))}
    assert result.rows == refs(o(ALL))
    assert result.affected_outputs({ORDERS: frozenset({"amount"})}) == {"nope"}


def test_select_star_with_unknown_columns_is_affected_by_any_upstream_change():
    result = lineage("select * from raw.orders", {})

    assert result.star_tables == frozenset({ORDERS})
    assert result.affected_outputs({ORDERS: frozenset({"amount"})}) == set(result.outputs)
    assert result.affected_outputs({ORDERS: frozenset({"amount"})}) != frozenset()


def test_columns_from_a_star_cte_with_unknown_columns_read_the_base_table():
    result = lineage("with a as (select * from raw.orders) select id, amount from a", {})

    assert result.affected_outputs({ORDERS: frozenset({"amount"})}) >= {"amount"}
