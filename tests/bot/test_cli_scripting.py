"""The command line for scripts and operators: `--format json` with its stable keys, per-model
build timings, failing tests with their rows and query, `sluice diff --key`, and `--server-config`
on the bot's own state store and warehouse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result

from bot.events import Repository
from bot.worker.keys import namespace
from runner.engines.duckdb import DuckDBEngine
from runner.pipeline import run_pipeline
from runner.project.loader import load_project
from runner.state.store import StateStore
from tests.support.cli import demo_copy, edit, sluice

ORDERS = "models/marts/orders.sql"


def data(result: Result) -> object:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return demo_copy(tmp_path)


def test_plan_json_has_the_stable_keys(shop: Path):
    built = data(sluice("plan", "prod", "-p", str(shop), "--format", "json"))
    assert isinstance(built, dict)
    assert {"environment", "base", "dry_run", "ok", "held_back", "nodes", "build", "tests", "repoint",
            "timings"} <= set(built)
    assert built["environment"] == "prod" and built["ok"] is True and built["base"] is None
    orders = next(n for n in built["nodes"] if n["name"] == "marts.orders")
    assert {"kind", "change", "category", "action", "fingerprint", "physical", "reason",
            "build_seconds"} <= set(orders)
    assert orders["action"] == "build" and orders["build_seconds"] > 0
    assert built["tests"]["passed"] == 18 and built["tests"]["failed"] == 0
    assert set(built["repoint"]) == {"environment", "moved", "dropped", "unchanged"}

    edit(shop / ORDERS, "p.total_amount as amount", "-p.total_amount as amount")
    failed = data(sluice("plan", "mr_1", "-p", str(shop), "--format", "json"))
    assert isinstance(failed, dict) and failed["ok"] is False  # a test failed...
    assert failed["held_back"] is None and failed["repoint"]  # ...and mr_1, unprotected, moved
    [test] = [t for t in failed["tests"]["results"] if not t["passed"]]
    assert test["name"] == "assert_no_negative_revenue" and test["failures"] > 0
    assert test["columns"] == ["order_date", "revenue"] and len(test["sample"]) == 5
    assert "revenue < 0" in test["sql"] and "sluice__marts" in test["sql"]


def test_text_output_shows_build_times_and_a_failing_test_s_rows_and_query(shop: Path):
    first = sluice("plan", "prod", "-p", str(shop))
    assert "build time per model: " in first.output and "marts.orders " in first.output
    edit(shop / ORDERS, "p.total_amount as amount", "-p.total_amount as amount")
    result = sluice("plan", "mr_1", "-p", str(shop))
    assert result.exit_code == 1
    assert "FAIL assert_no_negative_revenue (tests/assert_no_negative_revenue.sql:1)" in result.output
    assert "order_date" in result.output and "-348.11" in result.output  # a failing row
    assert "query: SELECT order_date, revenue FROM" in result.output


def test_env_test_promote_rollback_as_json(shop: Path):
    assert sluice("plan", "prod", "-p", str(shop)).exit_code == 0
    edit(shop / ORDERS, "p.total_amount as amount", "p.total_amount - p.coupon_amount as amount")
    assert sluice("plan", "mr_1", "-p", str(shop)).exit_code == 0

    envs = data(sluice("env", "list", "-p", str(shop), "--format", "json"))
    assert isinstance(envs, list) and [e["name"] for e in envs] == ["mr_1", "prod"]
    assert set(envs[0]) == {"name", "models", "created_at", "updated_at", "expires_at"}
    shown = data(sluice("env", "show", "mr_1", "-p", str(shop), "--format", "json"))
    assert isinstance(shown, dict) and {"snapshots", "history"} <= set(shown)
    assert {"model", "physical", "fingerprint", "built_at", "build_seconds", "reused_from"} == set(
        shown["snapshots"][0])
    tested = data(sluice("test", "mr_1", "-p", str(shop), "--format", "json"))
    assert isinstance(tested, dict) and tested["environment"] == "mr_1" and tested["failed"] == 0

    promoted = data(sluice("promote", "mr_1", "prod", "-p", str(shop), "--format", "json"))
    assert isinstance(promoted, dict) and promoted["environment"] == "prod" and promoted["source"] == "mr_1"
    assert "marts.orders" in promoted["moved"] and promoted["rebuilt"] == 0
    back = data(sluice("rollback", "prod", "-p", str(shop), "--format", "json"))
    assert isinstance(back, dict) and "marts.orders" in back["moved"]


def test_diff_by_another_key(shop: Path):
    assert sluice("plan", "prod", "-p", str(shop)).exit_code == 0
    edit(shop / ORDERS, "p.total_amount as amount", "p.total_amount * 2 as amount")
    assert sluice("plan", "mr_1", "-p", str(shop)).exit_code == 0
    by_key = data(sluice("diff", "prod", "mr_1", "marts.orders", "-p", str(shop), "--format", "json",
                         "--key", "order_id,customer_id"))
    assert isinstance(by_key, list) and by_key[0]["diff"]["key"] == ["order_id", "customer_id"]
    wrong = sluice("diff", "prod", "mr_1", "marts.orders", "-p", str(shop), "--key", "nope; drop")
    assert wrong.exit_code == 2 and "has no key column nope; drop" in wrong.output


def test_server_config_works_on_the_bot_s_store_and_warehouse(shop: Path, tmp_path: Path):
    """An operator's view: `--server-config` reads the repository's namespace in the bot's state
    store and its warehouse, and writes the audit log where the bot keeps it."""
    server = tmp_path / "server"
    config = server / "server.yml"
    server.mkdir()
    config.write_text(f"state_url: sqlite:///{server / 'state.db'}\nwork_dir: {server / 'work'}\n"
                      f"warehouses:\n  default: duckdb:///{server / 'warehouse.duckdb'}\n"
                      "repositories:\n  - forge: gitlab\n    name: data/shop\n")
    # What the bot built for that repository, where it keeps it.
    state = StateStore(f"sqlite:///{server / 'state.db'}",
                       namespace=namespace(Repository("gitlab", "data/shop", "")))
    engine = DuckDBEngine(server / "warehouse.duckdb")
    assert run_pipeline(load_project(shop), state, engine, "prod").ok
    engine.close()
    state.close()

    envs = data(sluice("env", "list", "-p", str(shop), "--server-config", str(config), "--format", "json"))
    assert isinstance(envs, list) and [e["name"] for e in envs] == ["prod"]
    assert sluice("env", "list", "-p", str(shop), "--server-config", str(config), "--repository",
                  "github:acme/x").exit_code == 2
    local = data(sluice("env", "list", "-p", str(shop), "--format", "json"))
    assert local == []  # the laptop's own store is another one
    result = sluice("test", "prod", "-p", str(shop), "--server-config", str(config))
    assert result.exit_code == 0 and "18 passed, 0 failed" in result.output
    edit(shop / ORDERS, "p.total_amount as amount", "p.total_amount * 2 as amount")
    assert sluice("plan", "fix", "-p", str(shop), "--server-config", str(config)).exit_code == 0
    assert sluice("promote", "fix", "prod", "-p", str(shop), "--server-config", str(config)).exit_code == 0
    audit = data(sluice("audit", "--config", str(config), "--format", "json"))
    assert isinstance(audit, list) and audit[0]["action"] == "promote" and audit[0]["environment"] == "prod"
