"""dbt projects run unchanged (issue 13): a repository with dbt_project.yml is compiled by dbt-core
in a child process without secrets, and planned, built, tested and promoted as a plain project.

The project is tests/fixtures/dbt/shop, written for these tests: project macros and a local
package's macro and generic test, vars, config blocks, `__` names, a custom schema, an ephemeral
and an incremental model, a source, seeds with column_types, severities and thresholds, `where`
and `limit`, a singular test and an exposure. Each dbt compile takes seconds, so a module shares
its compiles.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.engines.base import Engine
from runner.engines.duckdb import DuckDBEngine
from runner.engines.postgres import PostgresEngine
from runner.environments import promote
from runner.errors import ProjectError
from runner.pipeline import plan_environment, run_pipeline
from runner.plan.definition import Action, Change
from runner.project.dbt import DbtOptions
from runner.project.dbt.mapping import BUILT_IN_FULL
from runner.project.loader import load_project
from runner.project.nodes import Project
from runner.project.selectors import select
from runner.state.store import StateStore
from tests.support.paths import REPO
from tests.support.warehouses import fresh_database, rows

SHOP = REPO / "tests" / "fixtures" / "dbt" / "shop"
MODELS = {"main.stg_app__customers", "main.stg_app__orders", "main.stg_app__payments",
          "main.stg_app__events", "main_mart.orders", "main_mart.customers", "main_mart.daily_revenue"}
SEEDS = {"main.raw_customers", "main.raw_orders", "main.raw_payments"}


def copy_shop(folder: Path) -> Path:
    root = folder / "shop"
    shutil.copytree(SHOP, root, ignore=shutil.ignore_patterns("dbt_packages", "target", "logs"))
    return root


def add_events(engine: Engine) -> None:
    """The source the project reads in place (`source('app', 'events')` is `ext.events`)."""
    with engine.transaction() as cursor:
        cursor.execute("create schema if not exists ext")
        cursor.execute("create table ext.events as select * from (values (1), (1), (2)) as t(customer_id)")


class Shop:
    def __init__(self, root: Path, cache: Path, options: DbtOptions | None = None):
        self.root, self.cache, self.options = root, cache, options

    def load(self) -> Project:
        return load_project(self.root, cache_dir=self.cache, dbt=self.options)

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Shop, Project]]:
    folder = tmp_path_factory.mktemp("dbt")
    os.environ["SHOP_REGION"] = "leaked-from-the-worker"  # the compile must not see it
    try:
        the_shop = Shop(copy_shop(folder), folder / "cache")
        yield the_shop, the_shop.load()
    finally:
        os.environ.pop("SHOP_REGION", None)


def test_each_dbt_node_becomes_the_model_seed_source_test_or_exposure_it_is(
        shop: tuple[Shop, Project]) -> None:
    _, project = shop
    assert set(project.models) == MODELS  # the ephemeral model is no model: it is inlined
    assert set(project.seeds) == SEEDS
    assert set(project.sources) == {"ext.events"}
    assert project.models["main_mart.orders"].depends_on == ("main.stg_app__orders",
                                                             "main.stg_app__payments")
    assert project.models["main_mart.orders"].unique_key == ("order_id",)
    assert "finance" in project.models["main_mart.orders"].tags
    assert project.models["main.stg_app__orders"].materialized == "view"
    assert project.models["main_mart.daily_revenue"].notes == (BUILT_IN_FULL,)
    assert project.seeds["main.raw_payments"].column_types == (("amount", "bigint"),)
    assert [e.depends_on for e in project.exposures] == [("main_mart.customers", "main_mart.daily_revenue")]
    orders = project.models["main_mart.orders"].canonical
    assert "__dbt__cte__payments_by_order" in orders  # ephemeral, inlined as dbt does
    assert "ROUND(" in project.models["main.stg_app__payments"].canonical.upper()  # package macro
    assert "is_returned" in orders and "1 + 0.2" in orders  # project macros, var()
    assert "memory" not in orders  # relation names rewritten to Sluice names
    # Compiled incremental SQL as for a first run: is_incremental() is false.
    assert "MAX(ORDER_DATE)" not in project.models["main_mart.daily_revenue"].canonical.upper()
    tests = {t.name: t for t in project.tests}
    assert len(tests) == 12
    accepted = "accepted_values_stg_app__orders_status__placed__shipped__completed__returned"
    assert tests[accepted].severity == "warn"
    at_most = next(t for t in tests.values() if t.name.startswith("at_most"))
    assert (at_most.warn_if, at_most.error_if) == (">0", ">5")
    assert next(t for t in tests.values() if t.name.startswith("not_null_customers")).limit == 10
    assert any(t.name.startswith("shop_utils_is_positive") for t in tests.values())  # package test


def test_dbt_selectors_pick_nodes_of_a_dbt_project(shop: tuple[Shop, Project]) -> None:
    _, project = shop
    assert select(project, ["tag:finance"]) == {"main_mart.orders"}
    assert select(project, ["config.materialized:incremental"]) == {"main_mart.daily_revenue"}
    assert select(project, ["+main_mart.orders"]) >= {"main_mart.orders", "main.stg_app__orders",
                                                      "main.stg_app__payments", "main.raw_orders"}
    assert "main_mart.customers" in select(project, ["main.stg_app__orders+"])
    assert select(project, ["path:models/marts"], exclude=["tag:finance"]) == {
        "main_mart.customers", "main_mart.daily_revenue"}


def test_env_var_sees_only_what_the_server_allows(shop: tuple[Shop, Project]) -> None:
    _, project = shop
    assert "leaked" not in project.models["main.stg_app__customers"].canonical
    assert "'none' AS region" in project.models["main.stg_app__customers"].canonical


def test_a_dbt_project_builds_tests_and_promotes_like_a_plain_one(
        shop: tuple[Shop, Project], tmp_path: Path) -> None:
    the_shop, project = shop
    engine = DuckDBEngine(tmp_path / "warehouse.duckdb")
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        add_events(engine)
        result = run_pipeline(project, state, engine, "prod")
        assert result.ok and result.built == len(MODELS) + len(SEEDS)
        assert {r.test.name.split("_")[0] for r in result.tests.warned} == {"accepted", "at"}
        assert not result.tests.failed
        assert rows(engine, "select order_id, amount, is_completed from main_mart.orders "
                    "order by order_id")[:2] == [(1, 10.0, True), (2, 30.0, False)]
        assert rows(engine, "select typeof(amount) from main.raw_payments limit 1") == [("BIGINT",)]
        assert rows(engine, "select customer_id, events from main_mart.customers order by 1")[:2] == [
            (1, 2), (2, 1)]

        # A branch: only what changed is built; the rest is read zero-copy from production.
        again = plan_environment(project, state, "mr_1")
        assert not again.to_build
        the_shop.edit("models/marts/customers.sql", "coalesce(events.events, 0) as events",
                      "coalesce(events.events, 0) as events, 1 as marker")
        changed = the_shop.load()
        branch = run_pipeline(changed, state, engine, "mr_1")
        assert branch.ok and branch.built == 1
        assert rows(engine, "select max(marker) from main_mart__mr_1.customers") == [(1,)]
        promote(engine, state, source="mr_1", target="prod")
        assert rows(engine, "select max(marker) from main_mart.customers") == [(1,)]
    finally:
        the_shop.edit("models/marts/customers.sql", "coalesce(events.events, 0) as events, 1 as marker",
                      "coalesce(events.events, 0) as events")
        engine.close()
        state.close()


def test_a_macro_change_is_a_change_to_exactly_the_models_it_touches(
        shop: tuple[Shop, Project], tmp_path: Path) -> None:
    the_shop, project = shop
    engine = DuckDBEngine(tmp_path / "warehouse.duckdb")
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        add_events(engine)
        assert run_pipeline(project, state, engine, "prod").ok
        # status_flags is used by orders only; a new macro is used by nothing.
        the_shop.edit("macros/status_flags.sql", "as is_{{ status }}", "as was_{{ status }}")
        (the_shop.root / "macros" / "unused.sql").write_text("{% macro unused() %}1{% endmacro %}\n")
        plan = plan_environment(the_shop.load(), state, "mr_2", against="prod")
        changes = {n.name: n.change for n in plan.nodes if n.change is not Change.UNCHANGED}
        assert changes == {"main_mart.orders": Change.DIRECT, "main_mart.customers": Change.INDIRECT,
                           "main_mart.daily_revenue": Change.INDIRECT}
        assert {n.name for n in plan.nodes if n.action is Action.REUSE} >= SEEDS | {"main.stg_app__orders"}
    finally:
        the_shop.edit("macros/status_flags.sql", "as was_{{ status }}", "as is_{{ status }}")
        (the_shop.root / "macros" / "unused.sql").unlink(missing_ok=True)
        engine.close()
        state.close()


def test_an_unchanged_project_is_not_compiled_again(shop: tuple[Shop, Project]) -> None:
    the_shop, project = shop
    manifests = sorted((the_shop.cache / "dbt").glob("work-*/target/manifest.json"))
    assert manifests
    before = [m.stat().st_mtime_ns for m in manifests]
    assert the_shop.load().models == project.models
    assert [m.stat().st_mtime_ns for m in manifests] == before  # dbt did not run
    assert not (the_shop.root / "target").exists() and not (the_shop.root / "logs").exists()


def test_a_local_package_outside_the_repository_is_refused(tmp_path: Path) -> None:
    root = copy_shop(tmp_path)
    (root / "packages.yml").write_text("packages:\n  - local: ../../elsewhere\n")
    with pytest.raises(ProjectError) as caught:
        load_project(root, cache_dir=tmp_path / "cache")
    assert str(caught.value) == "packages.yml:2: local package '../../elsewhere' is outside the repository"


@pytest.mark.slow
def test_a_dbt_project_on_postgres_with_allowlisted_env_and_vars(tmp_path: Path) -> None:
    root = copy_shop(tmp_path)
    (root / "sluice.yml").write_text("dialect: postgres\n")
    with fresh_database() as url:
        # Introspection (is_incremental(), run_query) goes through the connection the server gives.
        options = DbtOptions(env={"SHOP_REGION": "eu"}, vars={"vat_rate": 0.25}, warehouse_url=url)
        project = load_project(root, cache_dir=tmp_path / "cache", dbt=options)
        assert "'eu' AS region" in project.models["main.stg_app__customers"].canonical
        engine = PostgresEngine(url)
        state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        try:
            add_events(engine)
            result = run_pipeline(project, state, engine, "prod")
            assert result.ok, result.build.failed or [r.error for r in result.tests.failed]
            assert len(result.tests.warned) == 2
            vat = "select amount_with_vat from main_mart.orders where order_id = 1"
            assert rows(engine, vat) == [(12.5,)]
            assert rows(engine, "select data_type from information_schema.columns where "
                        "table_name like 'raw_payments%' and column_name = 'amount' limit 1") == [("bigint",)]
        finally:
            engine.close()
            state.close()


def test_a_hub_package_without_network_is_one_line_naming_packages_yml(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text("name: hub\nversion: '1.0'\nconfig-version: 2\nprofile: hub\n")
    (root / "models" / "a.sql").write_text("select 1 as a\n")
    (root / "packages.yml").write_text("packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n")
    with pytest.raises(ProjectError) as caught:
        load_project(root, cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith("packages.yml:2: package 'dbt-labs/dbt_utils' could not be installed")
    assert "\n" not in message
