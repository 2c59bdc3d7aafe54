"""Column lineage across models: through CTEs, joins, aggregates, window functions, `*` and
unions, over a chain of four models."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import SluiceError
from runner.lineage.project import resolve_target, trace
from runner.project.loader import load_project

MODELS = {
    # seeds: raw.orders(id, customer_id, amount, status), raw.refunds(id, order_id, amount)
    "staging/stg_orders.sql": """
        with cleaned as (select id as order_id, customer_id, amount, status from raw.orders)
        select * from cleaned where status <> 'test'
    """,
    "staging/stg_money.sql": """
        select order_id, amount as money, 'sale' as kind from staging.stg_orders
        union all
        select order_id, -amount as money, 'refund' as kind from raw.refunds
    """,
    "marts/customer_value.sql": """
        select o.customer_id,
               sum(m.money) as lifetime_value,
               count(*) as events,
               rank() over (order by sum(m.money) desc) as value_rank
        from staging.stg_orders as o
        join staging.stg_money as m on m.order_id = o.order_id
        group by o.customer_id
    """,
    "marts/top_customers.sql": """
        select customer_id, value_rank from marts.customer_value where value_rank <= 10
    """,
}


@pytest.fixture
def project(tmp_path: Path):
    (tmp_path / "sluice.yml").write_text("name: t\n")
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "orders.csv").write_text("id,customer_id,amount,status\n1,1,10,ok\n")
    (tmp_path / "seeds" / "refunds.csv").write_text("id,order_id,amount\n1,1,5\n")
    for rel, sql in MODELS.items():
        path = tmp_path / "models" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql)
    return load_project(tmp_path)


def test_a_column_traced_upstream_through_union_cte_and_star(project):
    found = trace(project, "marts.customer_value", "lifetime_value")
    assert ("staging.stg_money", "money") in found.upstream
    assert ("staging.stg_orders", "amount") in found.upstream  # through the union's first branch
    assert ("raw.refunds", "amount") in found.upstream  # and its second
    assert ("raw.orders", "amount") in found.upstream  # through `*` and the CTE
    assert ("raw.orders", "status") in found.upstream  # the WHERE decides which rows count
    assert ("raw.orders", "id") in found.upstream  # the join key decides the rows too


def test_a_column_traced_downstream_through_aggregate_and_window(project):
    found = trace(project, "raw.orders", "amount")
    assert set(found.downstream) >= {
        ("staging.stg_orders", "amount"),
        ("staging.stg_money", "money"),
        ("marts.customer_value", "lifetime_value"),
        ("marts.customer_value", "value_rank"),  # the window orders by the sum
        ("marts.top_customers", "value_rank"),
        ("marts.top_customers", "customer_id"),  # its WHERE reads value_rank: every row may change
    }
    assert ("marts.customer_value", "events") not in found.downstream


def test_a_column_nobody_reads_reaches_nothing(project):
    found = trace(project, "raw.refunds", "id")
    assert found.downstream == ()


def test_model_level_lineage_and_unknown_names(project):
    found = trace(project, *resolve_target(project, "customer_value"))
    assert found.upstream_models == ("raw.orders", "raw.refunds", "staging.stg_money", "staging.stg_orders")
    assert found.downstream_models == ("marts.top_customers",)
    with pytest.raises(SluiceError, match="has no column 'nope'"):
        trace(project, "marts.customer_value", "nope")
    with pytest.raises(SluiceError, match="is not a model, seed or source"):
        resolve_target(project, "marts.nothing_here")
