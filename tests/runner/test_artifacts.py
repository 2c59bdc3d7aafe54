"""dbt-shaped artifacts of an environment (`runner.artifacts`): manifest.json, run_results.json and
catalog.json as tools that read dbt's artifacts (Recce, Datafold, `dbt docs`) load them.

Each file is checked against dbt's own published JSON schema (from dbt-core's artifact classes,
the schema the `dbt_schema_version` URL names) and parsed by those classes, then read for the
fields those tools use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from click.testing import CliRunner
from dbt.artifacts.schemas.catalog import CatalogArtifact
from dbt.artifacts.schemas.manifest import WritableManifest
from dbt.artifacts.schemas.run import RunResultsArtifact

from bot.broker import DramatiqDispatcher, declare_actor, make_broker, queue_name
from bot.cli.main import main
from bot.config import ServerConfig
from bot.forges.gitlab import GitLabConfig
from bot.records.runs import RunLog, RunStatus
from bot.web.app import create_app
from runner.artifacts import write_artifacts
from runner.engines.base import Engine
from runner.pipeline import RunResult, run_pipeline
from runner.state.store import StateStore
from tests.support.repos import Shop

CLASSES = {"manifest.json": WritableManifest, "run_results.json": RunResultsArtifact,
           "catalog.json": CatalogArtifact}
VERSIONS = {"manifest.json": "https://schemas.getdbt.com/dbt/manifest/v12.json",
            "run_results.json": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "catalog.json": "https://schemas.getdbt.com/dbt/catalog/v1.json"}

SOURCES_YML = """
sources:
  - name: landing
    tables:
      - name: events
        columns:
          - name: id
          - name: kind
"""


def add_events(shop: Shop, warehouse: Engine) -> None:
    """A source table in the warehouse and a model reading it."""
    with warehouse.transaction() as cursor:
        cursor.execute("create schema if not exists landing")
        cursor.execute("create table landing.events (id integer, kind varchar(20))")
        cursor.execute("insert into landing.events values (1, 'click'), (2, 'view')")
    shop.write("models/sources.yml", SOURCES_YML)
    shop.write("models/marts/events.sql", "select id, upper(kind) as kind from landing.events\n")


def load(folder: Path) -> dict[str, dict[str, Any]]:
    return {name: json.loads((folder / name).read_text()) for name in CLASSES}


def assert_dbt_reads(folder: Path) -> None:
    for name, cls in CLASSES.items():
        data = json.loads((folder / name).read_text())
        assert data["metadata"]["dbt_schema_version"] == VERSIONS[name]
        errors = list(jsonschema.Draft7Validator(cls.json_schema()).iter_errors(data))
        assert not errors, f"{name}: {[e.message[:200] for e in errors[:5]]}"
        cls.read_and_check_versions(str(folder / name))  # what `dbt --state` and its readers do


def build(shop: Shop, state: StateStore, warehouse: Engine, env: str) -> RunResult:
    result = run_pipeline(shop.load(), state, warehouse, env)
    assert result.build.ok, result.build.failed
    return result


def test_the_artifacts_of_an_environment_are_what_dbt_reads(
        shop: Shop, state: StateStore, warehouse: Engine, tmp_path: Path) -> None:
    add_events(shop, warehouse)
    build(shop, state, warehouse, "prod")
    shop.edit("models/marts/orders.sql", "p.gift_card_amount,",
              "p.gift_card_amount * 2 as gift_card_amount,")
    project = shop.load()
    result = build(shop, state, warehouse, "mr_7")

    paths = write_artifacts(tmp_path / "mr_7", project, result, warehouse)

    assert [p.name for p in paths] == list(CLASSES)
    assert_dbt_reads(tmp_path / "mr_7")
    files = load(tmp_path / "mr_7")
    manifest, run_results, catalog = (files[n] for n in CLASSES)
    invocation = manifest["metadata"]["invocation_id"]
    assert run_results["metadata"]["invocation_id"] == catalog["metadata"]["invocation_id"] == invocation
    assert manifest["metadata"]["generated_at"].endswith("Z")

    orders = manifest["nodes"]["model.shop.orders"]
    assert orders["resource_type"] == "model" and orders["name"] == orders["alias"] == "orders"
    assert orders["schema"] == "marts__mr_7"
    assert orders["relation_name"].endswith('"marts__mr_7"."orders"')
    assert orders["database"] and orders["relation_name"].startswith(f'"{orders["database"]}".')
    assert orders["depends_on"]["nodes"] == ["model.shop.stg_orders", "model.shop.stg_payments"]
    assert orders["config"]["materialized"] == "table"
    assert orders["original_file_path"] == "models/marts/orders.sql"
    assert orders["raw_code"] == shop.read("models/marts/orders.sql")
    assert orders["checksum"]["name"] == "sha256" and len(orders["checksum"]["checksum"]) == 64
    assert "staging__mr_7" in orders["compiled_code"] and "raw_code" in orders
    assert set(orders["columns"]) == {"order_id", "customer_id"}  # the documented ones
    assert orders["fqn"] == ["shop", "marts", "orders"]
    assert manifest["nodes"]["model.shop.order_status_counts"]["config"]["materialized"] == "view"
    assert manifest["nodes"]["model.shop.stg_customers"]["columns"]["email"]["tags"] == ["pii"]
    assert manifest["nodes"]["seed.shop.raw_orders"]["resource_type"] == "seed"

    events = manifest["nodes"]["model.shop.events"]
    assert events["depends_on"]["nodes"] == ["source.shop.landing.events"]
    assert events["sources"] == [["landing", "events"]]
    source = manifest["sources"]["source.shop.landing.events"]
    assert source["source_name"] == "landing" and source["identifier"] == "events"
    assert set(source["columns"]) == {"id", "kind"}

    unique = [n for n in manifest["nodes"].values()
              if n["resource_type"] == "test" and n["name"] == "unique_orders_order_id"]
    assert len(unique) == 1
    assert unique[0]["test_metadata"]["name"] == "unique"
    assert unique[0]["attached_node"] == "model.shop.orders"
    assert unique[0]["depends_on"]["nodes"] == ["model.shop.orders"]
    singular = [n for n in manifest["nodes"].values() if n["name"] == "assert_no_negative_revenue"]
    assert singular and singular[0]["original_file_path"] == "tests/assert_no_negative_revenue.sql"

    assert manifest["exposures"], "the demo's exposures"
    for uid, exposure in manifest["exposures"].items():
        assert manifest["parent_map"][uid] == exposure["depends_on"]["nodes"]
    assert manifest["parent_map"]["model.shop.orders"] == orders["depends_on"]["nodes"]
    assert "model.shop.orders" in manifest["child_map"]["model.shop.stg_orders"]
    assert manifest["child_map"]["source.shop.landing.events"] == ["model.shop.events"]
    assert set(manifest["parent_map"]) == set(manifest["child_map"])

    by_id = {r["unique_id"]: r for r in run_results["results"]}
    built = by_id["model.shop.orders"]
    assert built["status"] == "success" and built["execution_time"] > 0
    assert built["timing"][0]["name"] == "execute"
    assert built["relation_name"] == orders["relation_name"]
    reused = by_id["model.shop.customers"]
    assert reused["status"] == "no-op" and "zero copy" in reused["message"]
    tests = [r for r in run_results["results"] if r["unique_id"].startswith("test.")]
    assert tests and all(r["status"] == "pass" and r["failures"] == 0 for r in tests)
    assert all(r["unique_id"] in manifest["nodes"] for r in run_results["results"])

    columns = catalog["nodes"]["model.shop.orders"]["columns"]
    assert list(columns)[:2] == ["order_id", "customer_id"]
    assert [c["index"] for c in columns.values()] == list(range(1, len(columns) + 1))
    assert columns["order_id"]["type"]
    assert catalog["nodes"]["model.shop.orders"]["metadata"]["schema"] == "marts__mr_7"
    assert set(catalog["sources"]["source.shop.landing.events"]["columns"]) == {"id", "kind"}
    assert set(catalog["nodes"]) == {uid for uid in manifest["nodes"] if not uid.startswith("test.")}


def test_a_failed_build_is_an_error_with_its_message(
        shop: Shop, state: StateStore, warehouse: Engine, tmp_path: Path) -> None:
    build(shop, state, warehouse, "prod")
    shop.write("models/marts/broken.sql", "select no_such_column from marts.orders\n")
    project = shop.load()
    result = run_pipeline(project, state, warehouse, "mr_8")

    write_artifacts(tmp_path, project, result, warehouse)

    assert_dbt_reads(tmp_path)
    by_id = {r["unique_id"]: r for r in load(tmp_path)["run_results.json"]["results"]}
    assert by_id["model.shop.broken"]["status"] == "error"
    assert "no_such_column" in by_id["model.shop.broken"]["message"]
    assert by_id["model.shop.orders"]["status"] == "no-op"  # unchanged: production's table


def test_a_failing_test_is_a_fail_with_its_count(
        shop: Shop, state: StateStore, warehouse: Engine, tmp_path: Path) -> None:
    build(shop, state, warehouse, "prod")
    shop.edit("models/marts/orders.sql", "    o.order_id,\n",
              "    case when o.order_id > 3 then o.order_id end as order_id,\n")
    project = shop.load()
    result = run_pipeline(project, state, warehouse, "mr_9")

    write_artifacts(tmp_path, project, result, warehouse)

    assert_dbt_reads(tmp_path)
    results = load(tmp_path)["run_results.json"]["results"]
    failed = [r for r in results if r["status"] == "fail"]
    assert failed and all(r["failures"] > 0 and r["unique_id"].startswith("test.") for r in failed)
    assert any(".not_null_orders_order_id." in r["unique_id"] and r["failures"] == 3 for r in failed)


def test_sluice_plan_writes_them_for_the_environment(shop: Shop) -> None:
    result = CliRunner().invoke(main, ["plan", "prod", "--project", str(shop.root)],
                                catch_exceptions=False)

    assert result.exit_code == 0, result.output
    folder = shop.root / ".sluice" / "artifacts" / "prod"
    assert f"dbt artifacts: {folder}/" in result.output
    assert_dbt_reads(folder)
    assert load(folder)["manifest.json"]["nodes"]["model.shop.orders"]["schema"] == "marts"


def test_a_dry_run_writes_none(shop: Shop) -> None:
    result = CliRunner().invoke(main, ["plan", "prod", "--dry-run", "--project", str(shop.root)],
                                catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert not (shop.root / ".sluice" / "artifacts").exists()


# -- on the run page --------------------------------------------------------------------------------


def test_the_run_page_links_the_artifacts_the_run_left(tmp_path: Path, state: StateStore) -> None:
    config = ServerConfig(state_url=state.url, public_url="https://sluice.example", work_dir=tmp_path,
                          forges={"gitlab": GitLabConfig(url="https://gitlab.example.com",
                                                         webhook_secret="s")})
    broker = make_broker("redis://127.0.0.1:6379/13")  # never contacted by these pages
    dispatcher = DramatiqDispatcher(broker, declare_actor(broker, lambda event_id: None, queue_name("t")))
    client = create_app(config, state=state, dispatcher=dispatcher).test_client()
    runs = RunLog(state)
    run_id = runs.create("gitlab", "data/shop", 42, "pipeline", sha="a" * 40, environment="mr_42",
                         event_id=None)
    runs.finish(run_id, RunStatus.SUCCESS, summary="done", report="ok")
    page_path = config.run_path(run_id)  # the link the bot posts, with its token
    token = page_path.split("?token=", 1)[1]
    assert "dbt artifacts" not in client.get(page_path).get_data(as_text=True)
    folder = config.run_folder(run_id) / "mr_42"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"metadata": {}}')

    page = client.get(page_path).get_data(as_text=True)

    assert f'href="/runs/{run_id}/mr_42/manifest.json?token={token}"' in page
    assert "run_results.json" not in page  # only what exists
    served = client.get(f"/runs/{run_id}/mr_42/manifest.json?token={token}")
    assert served.status_code == 200 and served.mimetype == "application/json"
    assert served.get_json() == {"metadata": {}}
    assert client.get(f"/runs/{run_id}/mr_42/manifest.json").status_code == 404  # no token: no run
    for path in (f"/runs/{run_id}/mr_42/run_results.json?token={token}",
                 f"/runs/{run_id}/mr_42/state.db?token={token}",
                 f"/runs/{run_id}/..%2F..%2Fstate.db/manifest.json?token={token}",
                 f"/runs/{run_id + 1}/mr_42/manifest.json?token={token}"):
        assert client.get(path).status_code == 404, path
