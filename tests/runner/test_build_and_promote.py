"""Building snapshots, testing them, and moving environments (`runner.build`, `runner.datatests`,
`runner.environments`, through `run_pipeline`).

- every snapshot is one physical object, `sluice__<schema>.<name>__<10 hex of its fingerprint>`;
- an environment is a schema of views per model schema (`<schema>` for production,
  `<schema>__<env>` otherwise), each `SELECT * FROM` a physical object: nothing is copied;
- a build that fails or is killed leaves nothing behind under a snapshot's name and no record;
- moving an environment (plan, promote, rollback, drop) happens all at once or not at all;
- failing data tests are reported with their rows, and hold back a protected environment.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runner.engines.base import Engine
from runner.engines.duckdb import DuckDBEngine
from runner.environments import drop, promote, rollback
from runner.errors import EnvError, SluiceError
from runner.pipeline import RunResult, plan_environment, run_pipeline
from runner.state.store import StateStore
from tests.support.paths import REPO
from tests.support.repos import Shop
from tests.support.warehouses import env_views, physical_objects, rows

ORDERS = "models/marts/orders.sql"
CUSTOMERS = "models/marts/customers.sql"
STG_ORDERS = "models/staging/stg_orders.sql"
REVENUE = "models/marts/revenue_by_day.sql"
NEW_AMOUNT = ("p.total_amount as amount", "p.total_amount - p.coupon_amount as amount")
PHYSICAL = re.compile(r"^sluice__(?P<schema>[a-z_]+)\.(?P<name>[a-z_]+)__(?P<prefix>[0-9a-f]{10})$")


def build_prod(shop: Shop, state: StateStore, warehouse: Engine) -> RunResult:
    result = run_pipeline(shop.load(), state, warehouse, "prod")
    assert result.ok and result.held_back is None
    return result


def contents(warehouse: Engine, environment: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every view of an environment with its rows, sorted, floats rounded."""
    out = {}
    for name in env_views(warehouse, environment):
        schema, table = name.split(".")
        if environment != "prod":
            schema = f"{schema}__{environment}"
        out[name] = sorted((tuple(round(v, 6) if isinstance(v, float) else v for v in row)
                            for row in rows(warehouse, f"select * from {schema}.{table}")), key=repr)
    return out


def total(warehouse: Engine, sql: str) -> float:
    return float(rows(warehouse, sql)[0][0])


# -- naming and zero copy -------------------------------------------------------------------------


def test_physical_objects_and_environment_views_follow_the_naming_scheme(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    result = build_prod(shop, state, warehouse)
    run_pipeline(shop.load(), state, warehouse, "mr_1")

    expected = {}
    for node in result.plan.nodes:
        match = PHYSICAL.match(node.physical)
        assert match, node.physical
        assert f"{match['schema']}.{match['name']}" == node.name
        assert node.fingerprint.startswith(match["prefix"])
        expected[node.name] = node.physical
    assert physical_objects(warehouse) == set(expected.values())
    assert env_views(warehouse, "prod") == expected  # marts.orders -> sluice__marts.orders__<hex>
    assert env_views(warehouse, "mr_1") == expected  # marts__mr_1.orders -> the same object
    assert {"marts", "staging", "raw", "marts__mr_1", "staging__mr_1", "raw__mr_1"} <= warehouse.schemas()


def test_a_new_environment_reads_production_objects_for_every_unchanged_model(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    prod = env_views(warehouse, "prod")
    before = physical_objects(warehouse)
    shop.edit(ORDERS, *NEW_AMOUNT)

    result = run_pipeline(shop.load(), state, warehouse, "mr_1")

    built = set(result.build.built)
    assert built == {"marts.orders", "marts.revenue_by_day"}
    mr = env_views(warehouse, "mr_1")
    assert set(mr) == set(prod)
    for name in prod:
        if name in built:
            assert mr[name] != prod[name]
        else:
            assert mr[name] == prod[name], name  # zero copy: the very same physical object
    # Only the rebuilt models added objects to the warehouse.
    assert physical_objects(warehouse) - before == {mr[name] for name in built}
    # The state agrees with the warehouse.
    record = state.environment("mr_1")
    assert record is not None
    snapshots = state.snapshots(fingerprints=record.models.values())
    assert {name: snapshots[fp].physical for name, fp in record.models.items()} == mr
    assert (rows(warehouse, "select * from staging__mr_1.stg_orders order by order_id")
            == rows(warehouse, "select * from staging.stg_orders order by order_id"))


def test_concurrent_builds_give_the_same_result_as_one_thread(shop: Shop, tmp_path: Path) -> None:
    outcome = {}
    for threads in (1, 4):
        state = StateStore(f"sqlite:///{tmp_path / f'state-{threads}.db'}")
        warehouse = DuckDBEngine(tmp_path / f"warehouse-{threads}.duckdb")
        try:
            result = run_pipeline(shop.load(), state, warehouse, "prod", threads=threads)
            assert result.ok
            outcome[threads] = (result.plan.mapping, sorted(result.build.built),
                                physical_objects(warehouse), env_views(warehouse, "prod"),
                                contents(warehouse, "prod"), len(result.tests.results))
        finally:
            warehouse.close()
            state.close()
    assert outcome[1] == outcome[4]


# -- failed and killed builds ---------------------------------------------------------------------


def break_orders(shop: Shop) -> None:
    """`amount` now fails at runtime ('completed' is no integer); customers changes too, cleanly."""
    shop.edit(ORDERS, "p.total_amount as amount", "p.total_amount + cast(o.status as integer) as amount")
    shop.edit(CUSTOMERS, "    c.email,\n", "    c.email,\n    split_part(c.email, '@', 2) as email_domain,\n")


def test_a_failed_build_skips_its_downstream_and_leaves_the_environment_unchanged(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    run_pipeline(shop.load(), state, warehouse, "mr_1")
    views = env_views(warehouse, "mr_1")
    record = state.environment("mr_1")
    history = state.history("mr_1")
    break_orders(shop)

    result = run_pipeline(shop.load(), state, warehouse, "mr_1")

    assert not result.ok
    assert list(result.build.failed) == ["marts.orders"]
    assert "marts.orders failed to build" in result.build.failed["marts.orders"]
    assert result.build.skipped == ["marts.revenue_by_day"]  # it reads amount: not attempted
    assert result.build.built == ["marts.customers"]  # independent work still finished
    assert result.held_back == "a model failed to build"
    assert result.tests.results == [] and result.repoint is None
    # The environment did not move, in the warehouse or in the state.
    assert env_views(warehouse, "mr_1") == views
    assert state.environment("mr_1") == record
    assert len(state.history("mr_1")) == len(history)
    # Nothing exists or is recorded under the failed or skipped snapshots' names.
    for name in ("marts.orders", "marts.revenue_by_day"):
        node = result.plan.node(name)
        assert node.physical not in physical_objects(warehouse)
        assert state.snapshots(fingerprints=[node.fingerprint]) == {}
    assert not [o for o in physical_objects(warehouse) if "__tmp_" in o]


def test_a_failed_build_names_the_model_file(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    break_orders(shop)

    result = run_pipeline(shop.load(), state, warehouse, "mr_1")

    assert "models/marts/orders.sql" in result.build.failed["marts.orders"]


SLOW_MODEL = """\
select count(*) as pairs, sum((a.i * b.j) % 7) as checksum
from (select unnest(generate_series(1, n)) as i from ext.spin) as a
cross join (select unnest(generate_series(1, n)) as j from ext.spin) as b
"""
SPIN_SOURCE = """\
sources:
  - name: ext
    tables:
      - name: spin
        columns:
          - name: n
"""


def test_a_build_killed_midway_leaves_nothing_behind_and_the_next_run_builds_it(
        shop: Shop, tmp_path: Path) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    warehouse_path = tmp_path / "warehouse.duckdb"
    marker = tmp_path / "started"
    state, warehouse = StateStore(state_url), DuckDBEngine(warehouse_path)
    build_prod(shop, state, warehouse)
    # marts.slow cross-joins n rows with n rows of a source read in place; n = 1e6 never ends.
    with warehouse.cursor() as cursor:
        cursor.execute("create schema ext")
        cursor.execute("create table ext.spin as select 1000000::bigint as n")
    shop.write("models/sources.yml", SPIN_SOURCE)
    shop.write("models/marts/slow.sql", SLOW_MODEL)
    slow = plan_environment(shop.load(), state, "dev").node("marts.slow")
    warehouse.close()
    state.close()

    with open(tmp_path / "crash.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "support" / "crash_build.py"), str(shop.root), state_url,
             str(warehouse_path), "dev", "marts.slow", str(marker)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, (tmp_path / "crash.log").read_text()
            assert time.monotonic() < deadline, "the build never started"
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the CREATE TABLE ... AS SELECT
        assert process.poll() is None, "the slow build finished before it could be killed"
        assert marker.read_text() == slow.physical
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    state, warehouse = StateStore(state_url), DuckDBEngine(warehouse_path)
    try:
        objects = physical_objects(warehouse)
        assert slow.physical not in objects
        assert not [o for o in objects if "__tmp_" in o]
        assert state.snapshots(names=["marts.slow"]) == {}
        assert state.environment("dev") is None

        with warehouse.cursor() as cursor:
            cursor.execute("update ext.spin set n = 100")
        result = run_pipeline(shop.load(), state, warehouse, "dev")

        assert result.ok and result.build.built == ["marts.slow"]
        assert result.plan.node("marts.slow").physical == slow.physical  # the same snapshot
        assert slow.physical in physical_objects(warehouse)
        assert rows(warehouse, "select pairs from marts__dev.slow") == [(10000,)]
        assert set(state.snapshots(names=["marts.slow"])) == {slow.fingerprint}
    finally:
        warehouse.close()
        state.close()


def test_an_object_a_lost_state_never_recorded_is_replaced_by_the_next_build(
        shop: Shop, tmp_path: Path, warehouse: Engine) -> None:
    first = StateStore(f"sqlite:///{tmp_path / 'first.db'}")
    build_prod(shop, first, warehouse)
    first.close()
    objects = physical_objects(warehouse)
    # A second state store knows nothing of what the first built: every target already exists.
    second = StateStore(f"sqlite:///{tmp_path / 'second.db'}")
    try:
        result = build_prod(shop, second, warehouse)
        assert len(result.build.built) == len(objects)
        assert physical_objects(warehouse) == objects
        assert rows(warehouse, "select count(*) from marts.orders") == [(500,)]
    finally:
        second.close()


# -- promotion, rollback, drop ---------------------------------------------------------------------


def test_promoting_a_merge_request_rebuilds_nothing_and_production_serves_its_data(
        git_shop: Shop, pg_state: StateStore, warehouse: Engine) -> None:
    shop, state = git_shop, pg_state
    build_prod(shop, state, warehouse)
    old_revenue = total(warehouse, "select sum(revenue) from marts.revenue_by_day")
    shop.git("checkout", "-q", "-b", "mr_1")
    shop.edit(ORDERS, *NEW_AMOUNT)
    shop.commit("amount excludes coupons")
    run_pipeline(shop.load(), state, warehouse, "mr_1")
    new_revenue = total(warehouse, "select sum(revenue) from marts__mr_1.revenue_by_day")
    assert new_revenue < old_revenue
    objects = physical_objects(warehouse)

    repoint = promote(warehouse, state, "mr_1", "prod")

    assert set(repoint.changed) == {"marts.orders", "marts.revenue_by_day"}
    assert physical_objects(warehouse) == objects  # nothing built
    assert env_views(warehouse, "prod") == env_views(warehouse, "mr_1")
    assert total(warehouse, "select sum(revenue) from marts.revenue_by_day") == new_revenue
    prod, mr = state.environment("prod"), state.environment("mr_1")
    assert prod is not None and mr is not None and prod.models == mr.models
    last = state.history("prod")[0]
    assert (last.action, last.source) == ("promote", "mr_1")
    # Once the branch is merged, production's pipeline has nothing left to do.
    shop.git("checkout", "-q", "main")
    shop.git("merge", "-q", "--no-edit", "mr_1")
    after = run_pipeline(shop.load(), state, warehouse, "prod")
    assert after.plan.is_noop and after.build.built == []


def test_promotion_needs_an_existing_source_other_than_the_target(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    views = env_views(warehouse, "prod")
    with pytest.raises(EnvError, match="no environment 'mr_9'"):
        promote(warehouse, state, "mr_9", "prod")
    with pytest.raises(EnvError, match="onto itself"):
        promote(warehouse, state, "prod", "prod")
    assert env_views(warehouse, "prod") == views
    assert [e.action for e in state.history("prod")] == ["plan"]


def test_a_promotion_that_fails_midway_leaves_production_unchanged(
        shop: Shop, pg_state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, pg_state, warehouse)
    shop.edit(ORDERS, *NEW_AMOUNT)
    mr = run_pipeline(shop.load(), pg_state, warehouse, "mr_1")
    views, data = env_views(warehouse, "prod"), contents(warehouse, "prod")
    record, history = pg_state.environment("prod"), pg_state.history("prod")
    # marts.orders' view moves first; then revenue_by_day's cannot: its object was dropped behind
    # Sluice's back.
    with warehouse.cursor() as cursor:
        cursor.execute(f"drop table {mr.plan.node('marts.revenue_by_day').physical} cascade")

    with pytest.raises(SluiceError, match="revenue_by_day"):
        promote(warehouse, pg_state, "mr_1", "prod")

    assert env_views(warehouse, "prod") == views
    assert contents(warehouse, "prod") == data
    assert pg_state.environment("prod") == record
    assert pg_state.history("prod") == history


def test_rollback_returns_production_to_its_previous_snapshots_without_building(
        shop: Shop, pg_state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, pg_state, warehouse)
    first = pg_state.environment("prod")
    views, data = env_views(warehouse, "prod"), contents(warehouse, "prod")
    shop.edit(ORDERS, *NEW_AMOUNT)
    run_pipeline(shop.load(), pg_state, warehouse, "mr_1")
    promote(warehouse, pg_state, "mr_1", "prod")
    assert contents(warehouse, "prod") != data
    objects = physical_objects(warehouse)

    repoint = rollback(warehouse, pg_state, "prod")

    assert set(repoint.changed) == {"marts.orders", "marts.revenue_by_day"}
    assert env_views(warehouse, "prod") == views
    assert contents(warehouse, "prod") == data
    assert physical_objects(warehouse) == objects
    record = pg_state.environment("prod")
    assert first is not None and record is not None and record.models == first.models
    undone, promotion = pg_state.history("prod")[:2]
    assert undone.action == "rollback" and promotion.action == "promote" and promotion.rolled_back
    # The promotion is undone, and production's first change created it: nothing is left.
    with pytest.raises(EnvError):
        rollback(warehouse, pg_state, "prod")
    assert env_views(warehouse, "prod") == views


def test_dropping_an_environment_removes_its_views_and_schemas_and_keeps_production(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    shop.edit(ORDERS, *NEW_AMOUNT)
    run_pipeline(shop.load(), state, warehouse, "mr_1")
    views, data = env_views(warehouse, "prod"), contents(warehouse, "prod")
    objects = physical_objects(warehouse)

    repoint = drop(warehouse, state, "mr_1")

    assert len(repoint.dropped) == len(views)
    assert env_views(warehouse, "mr_1") == {}
    assert not [s for s in warehouse.schemas() if s.endswith("__mr_1")]
    assert state.environment("mr_1") is None
    assert state.history("mr_1")[0].action == "drop"
    assert env_views(warehouse, "prod") == views and contents(warehouse, "prod") == data
    assert physical_objects(warehouse) == objects  # physical tables stay for the janitor
    with pytest.raises(EnvError):
        drop(warehouse, state, "mr_1")
    with pytest.raises(EnvError):
        drop(warehouse, state, "prod")


# -- data tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rel, old, new, test, first_failing", [
    pytest.param(ORDERS, "    o.customer_id,\n",
                 "    case when o.order_id = 5 then null else o.customer_id end as customer_id,\n",
                 "not_null(marts.orders.customer_id)", {"order_id": 5, "customer_id": None},
                 id="not_null"),
    pytest.param(ORDERS, "    o.order_id,\n", "    least(o.order_id, 3) as order_id,\n",
                 "unique(marts.orders.order_id)", {"order_id": 3, "n_records": 498}, id="unique"),
    pytest.param(STG_ORDERS, "    status\n", "    case when id = 3 then 'lost' else status end as status\n",
                 "accepted_values(staging.stg_orders.status)", {"status": "lost", "n_records": 1},
                 id="accepted_values"),
    pytest.param(ORDERS, "    o.customer_id,\n",
                 "    case when o.order_id = 1 then 999 else o.customer_id end as customer_id,\n",
                 "relationships(marts.orders.customer_id)", {"customer_id": 999}, id="relationships"),
    pytest.param(REVENUE, "sum(amount) as revenue",
                 "sum(amount) - case when order_date = date '2026-01-03' then 10000 else 0 end as revenue",
                 "assert_no_negative_revenue", {"order_date": "2026-01-03"}, id="singular"),
])
def test_a_failing_data_test_is_reported_with_its_failing_rows(
        shop: Shop, state: StateStore, warehouse: Engine, rel: str, old: str, new: str,
        test: str, first_failing: dict[str, Any]) -> None:
    build_prod(shop, state, warehouse)
    shop.edit(rel, old, new)

    result = run_pipeline(shop.load(), state, warehouse, "mr_1")

    assert result.build.ok and not result.tests.ok
    failed = {r.test.name: r for r in result.tests.failed}
    assert list(failed) == [test]
    report = failed[test]
    assert report.failures == 1 and report.error is None
    assert len(report.sample) == 1
    sample = dict(zip(report.columns, report.sample[0], strict=True))
    assert {k: str(sample[k]) if k == "order_date" else sample[k] for k in first_failing} == first_failing


def test_a_failing_test_reports_the_count_of_all_failing_rows_and_a_few_of_them(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    shop.edit(REVENUE, "sum(amount) as revenue", "sum(amount) - 1000 as revenue")

    result = run_pipeline(shop.load(), state, warehouse, "mr_1")

    [report] = result.tests.failed
    negative = rows(warehouse, "select count(*) from marts__mr_1.revenue_by_day where revenue < 0")[0][0]
    assert negative > 5
    assert report.failures == negative
    assert report.columns == ("order_date", "revenue")
    assert len(report.sample) == 5
    assert all(revenue < 0 for _, revenue in report.sample)


def test_failing_tests_hold_back_production_but_a_dev_environment_moves(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    build_prod(shop, state, warehouse)
    prod_views, prod_record = env_views(warehouse, "prod"), state.environment("prod")
    shop.edit(STG_ORDERS, "    status\n", "    case when id = 3 then 'lost' else status end as status\n")

    held = run_pipeline(shop.load(), state, warehouse, "prod")

    assert held.build.ok and not held.tests.ok
    assert held.held_back is not None and "prod" in held.held_back
    assert held.repoint is None
    assert env_views(warehouse, "prod") == prod_views
    assert state.environment("prod") == prod_record
    assert rows(warehouse, "select count(*) from staging.stg_orders where status = 'lost'") == [(0,)]

    moved = run_pipeline(shop.load(), state, warehouse, "mr_1", all_tests=True)

    assert not moved.tests.ok and moved.held_back is None
    assert moved.repoint is not None
    assert rows(warehouse, "select count(*) from staging__mr_1.stg_orders where status = 'lost'") == [(1,)]


@pytest.mark.parametrize("first", ["prod", "mr_1"])
def test_production_stays_held_back_when_the_failing_snapshots_already_exist(
        shop: Shop, state: StateStore, warehouse: Engine, first: str) -> None:
    build_prod(shop, state, warehouse)
    prod_views = env_views(warehouse, "prod")
    shop.edit(STG_ORDERS, "    status\n", "    case when id = 3 then 'lost' else status end as status\n")
    assert not run_pipeline(shop.load(), state, warehouse, first).tests.ok

    again = run_pipeline(shop.load(), state, warehouse, "prod")

    assert env_views(warehouse, "prod") == prod_views
    assert again.held_back is not None
    assert rows(warehouse, "select count(*) from staging.stg_orders where status = 'lost'") == [(0,)]


def test_by_default_tests_run_only_on_models_whose_data_changed(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    project = shop.load()
    everything = {t.name for t in project.tests}
    first = build_prod(shop, state, warehouse)
    assert {r.test.name for r in first.tests.results} == everything
    shop.edit(ORDERS, *NEW_AMOUNT)
    project = shop.load()

    changed = run_pipeline(project, state, warehouse, "mr_1")

    built = set(changed.build.built)
    assert built == {"marts.orders", "marts.revenue_by_day"}
    ran = {r.test.name for r in changed.tests.results}
    assert ran == {t.name for t in project.tests if t.model in built or built & set(t.depends_on)}
    assert {"unique(marts.orders.order_id)", "unique(marts.revenue_by_day.order_date)",
            "assert_no_negative_revenue"} <= ran
    assert not {"unique(staging.stg_orders.order_id)", "unique(marts.customers.customer_id)",
                "unique(marts.order_status_counts.status)"} & ran

    every = run_pipeline(project, state, warehouse, "mr_2", all_tests=True)
    assert every.build.built == []
    assert {r.test.name for r in every.tests.results} == everything


def test_a_new_or_changed_test_runs_whatever_its_model_s_data_did(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    """Only the tests changed: no model's data changes, yet the new and the edited test run (and
    the edited one fails), while unchanged tests of unchanged data stay out."""
    build_prod(shop, state, warehouse)
    shop.edit("models/schema.yml", "values: [placed, shipped, completed, return_pending, returned]",
              "values: [placed, shipped, completed]")  # an edited test: returns now fail it
    shop.write("tests/assert_customers_have_names.sql",
               "select customer_id from marts.customers where first_name is null\n")  # a new one
    project = shop.load()

    result = run_pipeline(project, state, warehouse, "mr_1", against="prod")

    assert result.build.built == [] and not result.plan.data_changed
    ran = {r.test.name for r in result.tests.results}
    assert ran == {"accepted_values(staging.stg_orders.status)", "assert_customers_have_names"}
    assert [r.test.name for r in result.tests.failed] == ["accepted_values(staging.stg_orders.status)"]
    # Once production has them, they are known: an unchanged rerun runs nothing.
    shop.edit("models/schema.yml", "values: [placed, shipped, completed]",
              "values: [placed, shipped, completed, return_pending, returned, lost]")
    assert run_pipeline(shop.load(), state, warehouse, "prod").ok
    assert run_pipeline(shop.load(), state, warehouse, "mr_2", against="prod").tests.results == []
