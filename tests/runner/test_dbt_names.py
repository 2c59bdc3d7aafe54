"""Names as dbt projects write them, in plain projects too: model, seed and source table names
with `__` (`stg_app__users`), and sources by three-part names (`database.schema.table`). Schemas
keep single underscores: `__` separates a schema from an environment's suffix (`staging__mr_1`)."""

from __future__ import annotations

import pytest

from runner.artifacts import database_name
from runner.engines.base import Engine
from runner.errors import ProjectError
from runner.janitor import run_janitor
from runner.lineage.project import resolve_target, trace
from runner.pipeline import run_pipeline
from runner.plan.definition import Action, Change
from runner.state.store import StateStore
from tests.support.repos import Shop
from tests.support.warehouses import env_views, rows


def add_app_users(shop: Shop) -> None:
    shop.write("seeds/raw_app__users.csv", "id,name\n1,ada\n2,grace\n")
    shop.write("models/staging/stg_app__users.sql",
               "select id as user_id, name from raw.raw_app__users\n")
    shop.write("models/marts/app__user_names.sql",
               "select user_id, upper(name) as name from stg_app__users\n")


def test_names_with_double_underscores_build_plan_and_promote(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    add_app_users(shop)
    prod = run_pipeline(shop.load(), state, warehouse, "prod")
    assert prod.ok, (prod.build.failed, [r.error for r in prod.tests.failed])
    users = prod.plan.node("staging.stg_app__users")
    assert users.physical_schema == "sluice__staging"
    assert users.physical_table == f"stg_app__users__{users.fingerprint[:10]}"
    assert rows(warehouse, "select user_id, name from marts.app__user_names order by 1") == [
        (1, "ADA"), (2, "GRACE")]

    shop.edit("models/staging/stg_app__users.sql", "name from", "name || '!' as name from")
    result = run_pipeline(shop.load(), state, warehouse, "mr_1")

    assert result.plan.node("staging.stg_app__users").change is Change.DIRECT
    assert result.plan.node("marts.app__user_names").action is Action.BUILD
    assert result.plan.node("marts.orders").action is Action.REUSE
    assert "staging.stg_app__users" in env_views(warehouse, "mr_1")
    assert rows(warehouse, "select name from marts__mr_1.app__user_names order by user_id") == [
        ("ADA!",), ("GRACE!",)]
    # Nothing mistakes one table for another's version: the janitor keeps everything referenced.
    run_janitor(warehouse, state, ttl_seconds=0)
    assert rows(warehouse, "select count(*) from marts.app__user_names") == [(2,)]
    assert rows(warehouse, "select count(*) from marts__mr_1.app__user_names") == [(2,)]


def test_lineage_reads_names_with_double_underscores(shop: Shop) -> None:
    add_app_users(shop)
    project = shop.load()

    assert resolve_target(project, "stg_app__users.name") == ("staging.stg_app__users", "name")
    found = trace(project, "staging.stg_app__users", "name")
    assert ("raw.raw_app__users", "name") in found.upstream
    assert ("marts.app__user_names", "name") in found.downstream


def test_a_source_with_a_database_is_read_by_its_three_part_name(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    database = database_name(warehouse)
    with warehouse.transaction() as cursor:
        cursor.execute("create schema if not exists landing")
        cursor.execute("create table landing.app__events (id integer, kind varchar(20))")
        cursor.execute("insert into landing.app__events values (1, 'click'), (2, 'view')")
    shop.write("models/sources.yml", f"""
sources:
  - name: landing
    database: {database}
    tables:
      - name: app__events
""")
    shop.write("models/marts/events.sql", f"select id, kind from {database}.landing.app__events\n")
    shop.write("models/marts/event_kinds.sql",
               "select kind, count(*) as n from landing.app__events group by kind\n")
    project = shop.load()
    assert project.models["marts.events"].depends_on == ()
    assert project.resolve((database, "landing", "app__events")) == "landing.app__events"
    assert project.resolve(("elsewhere", "landing", "app__events")) is None

    result = run_pipeline(project, state, warehouse, "prod")

    assert result.ok, result.build.failed
    assert rows(warehouse, "select count(*) from marts.events") == [(2,)]
    assert rows(warehouse, "select sum(n) from marts.event_kinds") == [(2,)]


def test_an_undeclared_database_is_an_unknown_table(shop: Shop) -> None:
    shop.write("models/sources.yml", "sources:\n  - name: landing\n    database: lake\n"
                                     "    tables:\n      - name: events\n")
    shop.write("models/marts/events.sql", "select id from other.landing.events\n")

    with pytest.raises(ProjectError) as caught:
        shop.load()

    assert "'other.landing.events' is not a model, a seed or a declared source" in str(caught.value)
    assert caught.value.file == "models/marts/events.sql"
