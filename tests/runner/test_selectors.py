"""dbt's selector grammar (`runner.project.selectors`) on a plain project, and `sluice plan` /
`sluice test` with `--select` / `--exclude` through the command line.

The demo shop's graph: seeds raw.raw_{customers,orders,payments} -> staging.stg_* ->
marts.orders (stg_orders, stg_payments) -> marts.order_status_counts, marts.revenue_by_day;
marts.customers (stg_customers, stg_orders, stg_payments) -> marts.customer_segments.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner.errors import SluiceError
from runner.project.loader import load_project
from runner.project.nodes import Project
from runner.project.selectors import StateChanges, select
from tests.support.cli import edit, sluice
from tests.support.paths import DEMO

SEEDS = {"raw.raw_customers", "raw.raw_orders", "raw.raw_payments"}
STAGING = {"staging.stg_customers", "staging.stg_orders", "staging.stg_payments"}
ORDERS_DOWN = {"marts.order_status_counts", "marts.revenue_by_day"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    schema = root / "models" / "schema.yml"
    text = schema.read_text()
    text = text.replace("  - name: orders\n", "  - name: orders\n    tags: [finance, daily]\n", 1)
    text = text.replace("  - name: revenue_by_day\n", "  - name: revenue_by_day\n    tags: [finance]\n", 1)
    schema.write_text(text)
    return root


@pytest.fixture
def project(root: Path) -> Project:
    return load_project(root)


def selected(project: Project, *values: str, exclude: tuple[str, ...] = (),
             state: StateChanges | None = None) -> set[str]:
    return set(select(project, values, exclude, state))


# -- the grammar ------------------------------------------------------------------------------------


def test_a_name_selects_the_model_by_table_name_full_name_or_glob(project: Project):
    assert selected(project, "orders") == {"marts.orders"}
    assert selected(project, "marts.orders") == {"marts.orders"}
    assert selected(project, "stg_*") == STAGING
    assert selected(project, "raw_orders") == {"raw.raw_orders"}  # seeds too


def test_plus_before_selects_ancestors_and_after_descendants(project: Project):
    assert selected(project, "+orders") == {"marts.orders", "staging.stg_orders",
                                            "staging.stg_payments", "raw.raw_orders",
                                            "raw.raw_payments"}
    assert selected(project, "orders+") == {"marts.orders"} | ORDERS_DOWN
    assert selected(project, "+order_status_counts+") == selected(project, "+order_status_counts")
    assert selected(project, "stg_orders+") == {"staging.stg_orders", "marts.orders", "marts.customers",
                                                "marts.customer_segments"} | ORDERS_DOWN


def test_a_number_limits_the_depth(project: Project):
    assert selected(project, "1+orders") == {"marts.orders", "staging.stg_orders", "staging.stg_payments"}
    assert selected(project, "stg_orders+1") == {"staging.stg_orders", "marts.orders", "marts.customers"}
    assert selected(project, "2+orders+1") == ({"marts.orders", "staging.stg_orders", "staging.stg_payments",
                                                "raw.raw_orders", "raw.raw_payments"} | ORDERS_DOWN)


def test_at_selects_descendants_and_everything_they_read(project: Project):
    assert selected(project, "@customers") == ({"marts.customers", "marts.customer_segments",
                                                "staging.stg_customers", "staging.stg_orders",
                                                "staging.stg_payments"} | SEEDS)


def test_methods_tag_path_config_source_and_resource_type(project: Project):
    assert selected(project, "tag:finance") == {"marts.orders", "marts.revenue_by_day"}
    assert selected(project, "tag:daily") == {"marts.orders"}
    assert selected(project, "path:models/staging") == STAGING
    assert selected(project, "path:models/staging/") == STAGING
    assert selected(project, "path:models/marts/orders.sql") == {"marts.orders"}
    assert selected(project, "path:seeds") == SEEDS
    assert selected(project, "config.materialized:view") == {"marts.order_status_counts"}
    assert selected(project, "config.materialized:table") == (
        set(project.models) - {"marts.order_status_counts"})
    assert selected(project, "resource_type:seed") == SEEDS


def test_spaces_unite_commas_intersect_and_exclude_takes_away(project: Project):
    assert selected(project, "orders customers") == {"marts.orders", "marts.customers"}
    assert selected(project, "orders", "customers") == {"marts.orders", "marts.customers"}
    assert selected(project, "tag:finance,orders+") == {"marts.orders", "marts.revenue_by_day"}
    assert selected(project, "stg_orders+", exclude=("marts.customers+",)) == (
        {"staging.stg_orders", "marts.orders"} | ORDERS_DOWN)
    assert selected(project, exclude=("path:models/marts",)) == SEEDS | STAGING


def test_state_modified_selects_what_changed_against_the_environment(project: Project):
    state = StateChanges(modified=frozenset({"staging.stg_payments"}), new=frozenset({"marts.orders"}))

    assert selected(project, "state:modified", state=state) == {"staging.stg_payments", "marts.orders"}
    assert selected(project, "state:new", state=state) == {"marts.orders"}
    assert selected(project, "state:modified+", state=state) == (
        {"staging.stg_payments", "marts.orders", "marts.customers", "marts.customer_segments"}
        | ORDERS_DOWN)
    # Only asked for when a selector uses it.
    assert selected(project, "orders", state=None) == {"marts.orders"}


@pytest.mark.parametrize(("text", "message"), [
    ("colour:red", "selector 'colour:red': unknown method 'colour'"),
    ("config:view", "selector 'config:view': unknown method 'config'"),
    ("state:changed", "selector 'state:changed': state:changed is not known"),
    ("tag:", "selector 'tag:': tag: needs a value"),
    ("orders++", "selector 'orders++' is not valid"),
    ("@+orders", "selector '@+orders': @ cannot be combined with +"),
])
def test_a_bad_selector_is_one_error_naming_it(project: Project, text: str, message: str):
    with pytest.raises(SluiceError) as caught:
        select(project, (text,), (), None)

    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


# -- through the command line ------------------------------------------------------------------------


def plan_json(root: Path, *args: str) -> dict:
    result = sluice("plan", *args, "--project", str(root), "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_plan_select_builds_only_the_selection_and_keeps_the_rest_as_production(root: Path):
    plan_json(root, "prod")
    edit(root / "models/staging/stg_orders.sql", "from raw.raw_orders", "from raw.raw_orders\nwhere 1 = 1")
    edit(root / "models/marts/customers.sql", "c.email,", "lower(c.email) as email,")

    out = plan_json(root, "mr_1", "--select", "stg_orders+", "--exclude", "customers+")

    assert out["build"]["built"] == sorted({"staging.stg_orders", "marts.orders"} | ORDERS_DOWN)
    nodes = {n["name"]: n for n in out["nodes"]}
    assert nodes["marts.customers"]["action"] == "reuse"
    assert nodes["marts.customers"]["reason"] == "not selected: as in prod"
    assert nodes["marts.customers"]["change"] == "unchanged"
    assert len(nodes) == 11  # the whole environment, the rest as production has it


def test_plan_select_state_modified_plus_is_what_changed_and_its_descendants(root: Path):
    plan_json(root, "prod")
    edit(root / "models/marts/orders.sql", "p.gift_card_amount,",
         "p.gift_card_amount * 2 as gift_card_amount,")
    edit(root / "models/marts/customers.sql", "c.email,", "lower(c.email) as email,")

    out = plan_json(root, "mr_2", "--select", "state:modified+,tag:finance")

    assert out["build"]["built"] == ["marts.orders"]
    nodes = {n["name"]: n for n in out["nodes"]}
    assert nodes["marts.customers"]["reason"] == "not selected: as in prod"


def test_plan_select_of_a_new_model_plans_what_it_reads_and_leaves_other_new_models_out(root: Path):
    out = plan_json(root, "dev", "--select", "order_status_counts")

    assert out["build"]["built"] == sorted({"marts.order_status_counts", "marts.orders",
                                            "staging.stg_orders", "staging.stg_payments",
                                            "raw.raw_orders", "raw.raw_payments"})
    assert "marts.customers" not in {n["name"] for n in out["nodes"]}
    assert out["ok"]


def test_test_select_runs_only_the_tests_of_the_selection(root: Path):
    plan_json(root, "prod")

    result = sluice("test", "prod", "--project", str(root), "--format", "json", "--select", "stg_orders")

    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert {r["model"] for r in out["results"]} == {"staging.stg_orders"}
    assert out["passed"] == len(out["results"]) > 0
    everything = json.loads(sluice("test", "prod", "--project", str(root), "--format", "json").output)
    excluded = json.loads(sluice("test", "prod", "--project", str(root), "--format", "json",
                                 "--exclude", "path:models/staging").output)
    assert excluded["passed"] < everything["passed"]
    assert not any((r["model"] or "").startswith("staging.") for r in excluded["results"])


def test_an_unknown_selector_method_is_a_one_line_error(root: Path):
    for command in (["plan", "prod", "--dry-run"], ["test", "prod"]):
        result = sluice(*command, "--project", str(root), "--select", "colour:red")

        assert result.exit_code == 2
        assert "error: selector 'colour:red': unknown method 'colour'" in result.output
        assert "Traceback" not in result.output


def test_help_describes_the_grammar():
    for command in ("plan", "test"):
        result = sluice(command, "--help")
        assert "--select" in result.output and "--exclude" in result.output
        assert "state:modified" in result.output
