"""The `sluice` command line, driven as a user would: real project folders, git repositories,
DuckDB files and state stores; output and exit codes checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import duckdb
import pytest

from bot.cli.options import default_environment
from tests.support.cli import demo_copy, edit, sluice


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return demo_copy(tmp_path)


def query(root: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(root / ".sluice" / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_every_command_has_help():
    for command in (["--help"], ["init", "--help"], ["plan", "--help"], ["promote", "--help"],
                    ["rollback", "--help"], ["env", "--help"], ["env", "list", "--help"],
                    ["env", "show", "--help"], ["env", "drop", "--help"], ["test", "--help"],
                    ["janitor", "--help"], ["demo", "--help"]):
        result = sluice(*command)
        assert result.exit_code == 0, command
        assert "Usage:" in result.output


def test_init_writes_a_project_that_plans(tmp_path: Path):
    root = tmp_path / "new"
    result = sluice("init", str(root))
    assert result.exit_code == 0, result.output
    assert "git init -b main" in result.output and "sluice init --git" in result.output
    assert "name: new" in (root / "sluice.yml").read_text()
    assert (root / "models" / "staging" / "stg_users.sql").is_file()

    result = sluice("plan", "prod", "--project", str(root))
    assert result.exit_code == 0, result.output
    assert query(root, "select count(*) from staging.stg_users") == [(3,)]


def test_init_refuses_to_overwrite_a_project(shop: Path):
    result = sluice("init", str(shop))
    assert result.exit_code == 2
    assert "already exists" in result.output


def test_plan_builds_prod_then_is_a_no_op(shop: Path):
    first = sluice("plan", "prod", "--project", str(shop))
    assert first.exit_code == 0, first.output
    assert "11 to build" in first.output
    assert "tests: 18 passed, 0 failed" in first.output
    assert query(shop, "select count(*) from marts.orders") == [(500,)]

    second = sluice("plan", "prod", "--project", str(shop))
    assert second.exit_code == 0
    assert "no changes against prod; nothing to build" in second.output


def test_dry_run_changes_nothing(shop: Path):
    result = sluice("plan", "prod", "--project", str(shop), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "11 to build" in result.output
    assert query(shop, "select count(*) from information_schema.tables "
                       "where table_schema like 'sluice__%'") == [(0,)]


def test_branch_plan_reuses_and_markdown_report(shop: Path):
    assert sluice("plan", "prod", "--project", str(shop)).exit_code == 0
    edit(shop / "models/marts/orders.sql", "p.total_amount as amount",
         "p.total_amount - p.coupon_amount as amount")
    result = sluice("plan", "mr_7", "--project", str(shop), "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert "<!-- sluice-report -->" in result.output
    assert "| `marts.orders` | directly modified | breaking (amount) | build |" in result.output
    assert "reads none of the changed columns: amount" in result.output
    # The branch environment reads production's tables for everything it did not change.
    assert query(shop, "select count(*) from staging__mr_7.stg_orders") == [(500,)]


def test_promote_and_rollback(shop: Path):
    assert sluice("plan", "prod", "--project", str(shop)).exit_code == 0
    before = query(shop, "select sum(amount) from marts.orders")
    edit(shop / "models/marts/orders.sql", "p.total_amount as amount", "p.total_amount * 2 as amount")
    assert sluice("plan", "mr_1", "--project", str(shop)).exit_code == 0

    promoted = sluice("promote", "mr_1", "prod", "--project", str(shop))
    assert promoted.exit_code == 0, promoted.output
    assert "0 rebuilt" in promoted.output
    doubled = query(shop, "select sum(amount) from marts.orders")
    assert doubled[0][0] == pytest.approx(2 * before[0][0])

    rolled = sluice("rollback", "prod", "--project", str(shop))
    assert rolled.exit_code == 0, rolled.output
    assert query(shop, "select sum(amount) from marts.orders") == before


def test_env_list_show_drop(shop: Path):
    assert sluice("plan", "prod", "--project", str(shop)).exit_code == 0
    assert sluice("plan", "staging", "--project", str(shop)).exit_code == 0
    listed = sluice("env", "list", "--project", str(shop))
    assert "prod" in listed.output and "staging" in listed.output
    shown = sluice("env", "show", "staging", "--project", str(shop))
    assert "marts.orders" in shown.output and "sluice__marts.orders__" in shown.output
    dropped = sluice("env", "drop", "staging", "--project", str(shop))
    assert dropped.exit_code == 0
    assert query(shop, "select count(*) from information_schema.schemata where schema_name in "
                       "('raw__staging', 'staging__staging', 'marts__staging')") == [(0,)]
    assert query(shop, "select count(*) from marts.orders") == [(500,)]
    missing = sluice("env", "show", "staging", "--project", str(shop))
    assert missing.exit_code == 2
    assert "there is no environment 'staging'" in missing.output


def test_test_command_reports_failures(shop: Path):
    assert sluice("plan", "prod", "--project", str(shop)).exit_code == 0
    assert sluice("test", "prod", "--project", str(shop)).exit_code == 0
    # A new rule the data does not meet: the test command fails and names the test.
    edit(shop / "models/schema.yml", "values: [placed, shipped, completed, return_pending, returned]",
         "values: [placed, shipped, completed]")
    result = sluice("test", "prod", "--project", str(shop))
    assert result.exit_code == 1
    assert "accepted_values(staging.stg_orders.status)" in result.output


def test_failing_test_holds_production_back(shop: Path):
    (shop / "tests" / "no_orders_at_all.sql").write_text("select * from marts.orders\n")
    result = sluice("plan", "prod", "--project", str(shop))
    assert result.exit_code == 1
    assert "FAIL no_orders_at_all" in result.output
    assert "not deployed" in result.output
    prod_views = "select count(*) from information_schema.tables where table_schema = 'marts'"
    assert query(shop, prod_views) == [(0,)]


def test_project_errors_are_one_message_without_traceback(shop: Path):
    (shop / "models" / "marts" / "broken.sql").write_text("select 1;\ndrop table marts.orders\n")
    result = sluice("plan", "prod", "--project", str(shop))
    assert result.exit_code == 2
    assert "models/marts/broken.sql" in result.output
    assert "Traceback" not in result.output


def test_janitor_ttl_and_bad_duration(shop: Path):
    assert sluice("plan", "prod", "--project", str(shop)).exit_code == 0
    kept = sluice("janitor", "--ttl", "7d", "--project", str(shop))
    assert kept.exit_code == 0 and "dropped 0 environments, 0 physical objects" in kept.output
    bad = sluice("janitor", "--ttl", "soon", "--project", str(shop))
    assert bad.exit_code == 2
    assert "cannot read the duration 'soon'" in bad.output


def test_default_environment_follows_the_git_branch(shop: Path):
    subprocess.run(["git", "init", "-q", "-b", "feature/Order-Amounts", str(shop)], check=True)
    assert default_environment(shop) == "feature_order_amounts"
    assert default_environment(shop.parent) == "dev"


def test_demo_runs_the_whole_flow(tmp_path: Path):
    result = sluice("demo", "--dir", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    assert "<!-- sluice-report -->" in result.output
    assert "prod already matches main: nothing to build" in result.output
    assert "3. Promote mr_1 -> prod" in result.output


def test_diff_between_environments(shop: Path):
    assert sluice("plan", "prod", "--project", str(shop)).exit_code == 0
    edit(shop / "models/marts/orders.sql", "p.total_amount as amount", "p.total_amount * 2 as amount")
    assert sluice("plan", "mr_3", "--project", str(shop)).exit_code == 0
    text = sluice("diff", "prod", "mr_3", "--project", str(shop))
    assert text.exit_code == 0, text.output
    assert "marts.orders" in text.output and "amount" in text.output
    markdown = sluice("diff", "prod", "mr_3", "marts.orders", "--project", str(shop), "--format",
                      "markdown", "--where", "status = 'returned'", "--limit", "1")
    assert "**Data diff of `marts.orders`**" in markdown.output
    assert "where `status = 'returned'`" in markdown.output
    assert markdown.output.count("→ `order_id=") == 1
    data = json.loads(sluice("diff", "prod", "mr_3", "orders", "--project", str(shop),
                             "--format", "json").output)
    assert data[0]["name"] == "marts.orders" and data[0]["diff"]["changed"] > 0
    assert data[0]["diff"]["changed"] + data[0]["diff"]["unchanged"] == 500


@pytest.mark.parametrize("where", ["1=1; drop table marts.orders", "(select 1) = 1",
                                   "read_csv('/etc/passwd') is not null", "nope > 1"])
def test_diff_refuses_hostile_predicates(shop: Path, where: str):
    assert sluice("plan", "prod", "--project", str(shop)).exit_code == 0
    assert sluice("plan", "mr_4", "--project", str(shop)).exit_code == 0
    result = sluice("diff", "prod", "mr_4", "marts.orders", "--project", str(shop), "--where", where)
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output
    assert query(shop, "select count(*) from marts.orders") == [(500,)]


def test_lineage_command(shop: Path):
    result = sluice("lineage", "marts.orders.amount", "--project", str(shop))
    assert result.exit_code == 0
    assert "marts.revenue_by_day" in result.output and "revenue" in result.output
    markdown = sluice("lineage", "marts.orders", "--project", str(shop), "--format", "markdown")
    assert "```mermaid" in markdown.output
    data = json.loads(sluice("lineage", "stg_payments.amount", "--project", str(shop),
                             "--format", "json").output)
    assert ["marts.orders", "amount"] in data["downstream"]


def test_promotions_and_rollbacks_are_audited(shop: Path):
    assert sluice("plan", "prod", "--project", str(shop)).exit_code == 0
    edit(shop / "models/marts/orders.sql", "p.total_amount as amount", "p.total_amount * 3 as amount")
    assert sluice("plan", "mr_5", "--project", str(shop)).exit_code == 0
    assert sluice("promote", "mr_5", "prod", "--project", str(shop)).exit_code == 0
    assert sluice("rollback", "prod", "--project", str(shop)).exit_code == 0
    entries = json.loads(sluice("audit", "--project", str(shop), "--env", "prod", "--format", "json").output)
    assert [e["action"] for e in entries] == ["rollback", "promote"]
    assert entries[1]["detail"]["source"] == "mr_5" and entries[1]["detail"]["moved"] == 2  # orders, revenue
    text = sluice("audit", "--project", str(shop), "--action", "promote")
    assert "promote" in text.output and "rollback" not in text.output
