"""Names as dbt projects write them, in plain projects too: model, seed and source table names
with `__` (`stg_app__users`). Schemas keep single underscores: `__` separates a schema from an
environment's suffix (`staging__mr_1`)."""

from __future__ import annotations

from runner.engines.base import Engine
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
