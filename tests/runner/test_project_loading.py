"""Loading a data project from disk (`runner.project.load_project`).

Every problem a user can make in `sluice.yml`, a models YAML file, a model, a seed or a singular
test is a `ProjectError` whose text starts with the offending file, relative to the project root,
and the line where there is one (`models/marts/orders.sql:3: ...`).
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from runner.errors import ProjectError
from runner.project.loader import load_project
from runner.project.nodes import Project
from tests.support.paths import DEMO

ORDERS_SQL = "models/marts/orders.sql"
SCHEMA_YML = "models/schema.yml"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A fresh copy of the demo project, free to break."""
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    return root


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    """A project with only a `sluice.yml`; tests add the files they need."""
    root = tmp_path / "tiny"
    root.mkdir()
    write(root, "sluice.yml", "name: tiny\n")
    return root


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load_error(root: Path, **kwargs: object) -> ProjectError:
    with pytest.raises(ProjectError) as info:
        load_project(root, **kwargs)  # type: ignore[arg-type]
    return info.value


def assert_names(error: ProjectError, file: str, line: int | None = None) -> None:
    """The message starts with `file:line: ` (or `file: ` when no line is known)."""
    where = file if line is None else f"{file}:{line}"
    assert str(error).startswith(f"{where}: "), str(error)
    assert error.file == file
    if line is not None:
        assert error.line == line


# --- sluice.yml -------------------------------------------------------------------------------------


def test_sluice_yml_syntax_error_names_the_file_and_line(shop: Path):
    write(shop, "sluice.yml", """
        name: shop
        dialect: duckdb
          warehouse: default
    """)

    error = load_error(shop)

    assert_names(error, "sluice.yml", 3)
    assert "invalid YAML" in str(error)


def test_sluice_yml_unclosed_list_is_a_syntax_error_in_that_file(shop: Path):
    write(shop, "sluice.yml", """
        name: shop
        paths:
          models: [models
    """)

    error = load_error(shop)

    assert error.file == "sluice.yml"
    assert "invalid YAML" in str(error)


def test_sluice_yml_duplicate_key_names_the_line_of_the_repeat(shop: Path):
    write(shop, "sluice.yml", """
        name: shop
        dialect: duckdb
        name: other
    """)

    error = load_error(shop)

    assert_names(error, "sluice.yml", 3)
    assert 'duplicate key "name"' in str(error)


def test_sluice_yml_unknown_key_names_the_key_and_its_line(shop: Path):
    write(shop, "sluice.yml", """
        name: shop
        dialect: duckdb
        warehose: default
    """)

    error = load_error(shop)

    assert_names(error, "sluice.yml", 3)
    assert "unknown key 'warehose'" in str(error)
    assert "warehouse" in str(error)  # the list of keys shows the intended one


def test_sluice_yml_unknown_nested_key_names_its_own_line(shop: Path):
    write(shop, "sluice.yml", """
        name: shop
        build:
          threads: 4
          thread: 2
    """)

    error = load_error(shop)

    assert_names(error, "sluice.yml", 4)
    assert "unknown key 'thread'" in str(error)


def test_sluice_yml_unsupported_dialect_names_its_line(shop: Path):
    write(shop, "sluice.yml", """
        name: shop
        dialect: mysql
    """)

    error = load_error(shop)

    assert_names(error, "sluice.yml", 2)
    assert "dialect 'mysql' is not supported" in str(error)


def test_sluice_yml_without_a_name_is_rejected(shop: Path):
    write(shop, "sluice.yml", "dialect: duckdb\n")

    error = load_error(shop)

    assert_names(error, "sluice.yml", 1)
    assert "'name' is required" in str(error)


# --- models YAML files ------------------------------------------------------------------------------


def test_models_yaml_syntax_error_names_the_file_and_line(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            description: Orders
           columns: []
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 4)
    assert "invalid YAML" in str(error)


def test_models_yaml_duplicate_key_names_the_line_of_the_repeat(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            description: first
            description: second
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 4)
    assert 'duplicate key "description"' in str(error)


def test_models_yaml_unknown_key_in_a_model_entry_names_its_line(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            descripton: typo
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 3)
    assert "unknown key 'descripton' in model 'marts.orders'" in str(error)


def test_models_yaml_unknown_top_level_key_names_its_line(shop: Path):
    write(shop, SCHEMA_YML, """
        models: []
        model: []
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 2)
    assert "unknown key 'model'" in str(error)


def test_models_yaml_unknown_column_key_names_its_line(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            columns:
              - name: order_id
                test: [unique]
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 5)
    assert "unknown key 'test'" in str(error)


def test_yaml_file_in_a_subfolder_is_named_by_its_own_path(shop: Path):
    write(shop, "models/staging/staging.yaml", """
        sources:
          - name: ext
            tabels: []
    """)

    error = load_error(shop)

    assert_names(error, "models/staging/staging.yaml", 3)
    assert "unknown key 'tabels'" in str(error)


# --- one SELECT per model ---------------------------------------------------------------------------


def test_model_with_two_statements_names_the_file_and_the_second_statement(shop: Path):
    write(shop, ORDERS_SQL, """
        select 1 as a;

        select 2 as b
    """)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 3)
    assert "2 statements" in str(error)


def test_model_with_a_trailing_semicolon_is_one_statement(shop: Path):
    write(shop, ORDERS_SQL, "select order_id from staging.stg_orders;\n")

    project = load_project(shop)

    assert project.models["marts.orders"].depends_on == ("staging.stg_orders",)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("create table marts.orders as select 1 as a\n", "CREATE"),
        ("create view marts.orders_v as select 1 as a\n", "CREATE"),
        ("drop table raw.raw_orders\n", "DROP"),
        ("alter table raw.raw_orders add column x int\n", "ALTER"),
    ],
    ids=["create-table", "create-view", "drop", "alter"],
)
def test_model_with_ddl_names_the_file_and_the_statement(shop: Path, sql: str, kind: str):
    write(shop, ORDERS_SQL, "-- a model that writes\n" + sql)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 2)
    assert f"found {kind}" in str(error)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("insert into raw.raw_orders select * from raw.raw_orders\n", "INSERT"),
        ("delete from raw.raw_orders\n", "DELETE"),
        ("update raw.raw_orders set status = 'x'\n", "UPDATE"),
    ],
    ids=["insert", "delete", "update"],
)
def test_model_with_dml_names_the_file_and_the_statement(shop: Path, sql: str, kind: str):
    write(shop, ORDERS_SQL, sql)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 1)
    assert f"found {kind}" in str(error)


def test_dml_hidden_in_a_cte_is_rejected(shop: Path):
    write(shop, ORDERS_SQL, """
        with gone as (delete from raw.raw_orders returning *)
        select * from gone
    """)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 1)
    assert "DELETE is not allowed inside a model" in str(error)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("ATTACH 'other.duckdb' AS other\n", "ATTACH"),
        ("PRAGMA enable_profiling\n", "PRAGMA"),
        ("SET threads = 1\n", "SET"),
        ("COPY raw.raw_orders TO '/tmp/orders.csv'\n", "COPY"),
        ("INSTALL httpfs\n", "INSTALL"),
    ],
    ids=["attach", "pragma", "set", "copy", "install"],
)
def test_model_that_configures_the_warehouse_names_the_file(shop: Path, sql: str, kind: str):
    write(shop, ORDERS_SQL, sql)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 1)
    assert f"found {kind}" in str(error)


def test_table_function_read_csv_names_the_file_and_line(shop: Path):
    write(shop, ORDERS_SQL, """
        select *
        from read_csv('/etc/passwd')
    """)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 2)
    assert "table function" in str(error)
    assert "READ_CSV('/etc/passwd')" in str(error)


def test_table_function_in_a_join_names_its_line(shop: Path):
    write(shop, ORDERS_SQL, """
        select o.order_id
        from staging.stg_orders as o
        join read_csv_auto('/etc/passwd') as p on true
    """)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 3)
    assert "table function" in str(error)


def test_table_function_in_a_scalar_subquery_is_rejected(shop: Path):
    write(shop, ORDERS_SQL, "select (select count(*) from read_csv('/etc/passwd')) as n\n")

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 1)
    assert "table function" in str(error)


def test_reading_a_file_path_as_a_table_is_rejected(shop: Path):
    write(shop, ORDERS_SQL, """
        select *
        from '/etc/passwd'
    """)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 2)
    assert "'/etc/passwd' is not a model, a seed or a declared source" in str(error)


def test_sql_syntax_error_names_the_file_and_line(shop: Path):
    write(shop, ORDERS_SQL, """
        select order_id
        from staging.stg_orders
        whre order_id = 1
    """)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 3)
    assert "SQL syntax error" in str(error)


@pytest.mark.parametrize("text", ["", "\n  \n", "-- nothing here yet\n"], ids=["empty", "blank", "comment"])
def test_empty_model_file_names_the_file(shop: Path, text: str):
    (shop / ORDERS_SQL).write_text(text)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL)
    assert "holds no SQL query" in str(error)


def test_singular_test_with_ddl_names_the_test_file(shop: Path):
    write(shop, "tests/drop_it.sql", "drop table marts.orders\n")

    error = load_error(shop)

    assert_names(error, "tests/drop_it.sql", 1)
    assert "found DROP" in str(error)


# --- references -------------------------------------------------------------------------------------


def test_reference_to_an_unknown_table_names_the_file_and_the_line_of_the_reference(shop: Path):
    write(shop, ORDERS_SQL, """
        select o.order_id
        from staging.stg_orders as o

        left join staging.stg_refunds as r on o.order_id = r.order_id
    """)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 4)
    assert "table 'staging.stg_refunds' is not a model, a seed or a declared source" in str(error)


def test_unqualified_unknown_table_names_the_line(shop: Path):
    write(shop, ORDERS_SQL, """
        select order_id

        from refunds
    """)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 3)
    assert "table 'refunds'" in str(error)


def test_three_part_name_is_unknown(shop: Path):
    write(shop, ORDERS_SQL, "select id\nfrom other_db.raw.raw_orders\n")

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 2)
    assert "table 'other_db.raw.raw_orders'" in str(error)


def test_unknown_table_in_a_singular_test_names_the_test_file(shop: Path):
    write(shop, "tests/no_refunds.sql", """
        select *
        from marts.refunds
    """)

    error = load_error(shop)

    assert_names(error, "tests/no_refunds.sql", 2)
    assert "table 'marts.refunds'" in str(error)


def test_ambiguous_unqualified_reference_lists_the_candidates(shop: Path):
    # raw.raw_orders (the seed) and marts.raw_orders (a model) share the table name.
    write(shop, "models/marts/raw_orders.sql", "select id from raw.raw_orders\n")
    write(shop, ORDERS_SQL, """
        select id

        from raw_orders
    """)

    error = load_error(shop)

    assert_names(error, ORDERS_SQL, 3)
    assert "table 'raw_orders' is ambiguous: write one of marts.raw_orders, raw.raw_orders" in str(error)


# --- cycles -----------------------------------------------------------------------------------------


def test_dependency_cycle_prints_the_cycle(empty: Path):
    write(empty, "models/a.sql", "select x from main.b\n")
    write(empty, "models/b.sql", "select x from main.a\n")

    error = load_error(empty)

    assert error.file in ("models/a.sql", "models/b.sql")
    assert str(error).startswith(f"{error.file}: ")
    assert "dependency cycle:" in str(error)
    assert "main.a -> main.b -> main.a" in str(error) or "main.b -> main.a -> main.b" in str(error)


def test_three_model_cycle_follows_the_reads(empty: Path):
    write(empty, "models/a.sql", "select x from main.c\n")
    write(empty, "models/b.sql", "select x from main.a\n")
    write(empty, "models/c.sql", "select x from b\n")

    error = load_error(empty)

    # each model reads the next: a reads c, c reads b, b reads a
    cycle = str(error).split("dependency cycle: ", 1)[1].split(" (", 1)[0]
    assert cycle in ("main.a -> main.c -> main.b -> main.a", "main.c -> main.b -> main.a -> main.c",
                     "main.b -> main.a -> main.c -> main.b")
    first = cycle.split(" -> ")[0].split(".")[1]
    assert_names(error, f"models/{first}.sql")


def test_model_reading_itself_is_a_cycle(empty: Path):
    write(empty, "models/a.sql", "select x from main.a\n")

    error = load_error(empty)

    assert_names(error, "models/a.sql")
    assert "dependency cycle: main.a -> main.a" in str(error)


def test_staging_reading_a_mart_closes_a_cycle_in_the_demo(shop: Path):
    write(shop, "models/staging/stg_orders.sql", "select order_id from marts.orders\n")

    error = load_error(shop)

    assert "dependency cycle:" in str(error)
    assert ("marts.orders -> staging.stg_orders -> marts.orders" in str(error)
            or "staging.stg_orders -> marts.orders -> staging.stg_orders" in str(error))


# --- duplicate names --------------------------------------------------------------------------------


def test_model_files_differing_only_in_case_are_a_duplicate(shop: Path):
    write(shop, "models/marts/Orders.sql", "select 1 as a\n")

    error = load_error(shop)

    assert_names(error, ORDERS_SQL)
    assert "duplicate model name 'marts.orders'" in str(error)
    assert "models/marts/Orders.sql" in str(error)


def test_model_in_the_default_schema_folder_and_at_the_top_are_a_duplicate(empty: Path):
    write(empty, "models/a.sql", "select 1 as x\n")
    write(empty, "models/main/a.sql", "select 2 as x\n")

    error = load_error(empty)

    assert_names(error, "models/main/a.sql")
    assert "duplicate model name 'main.a': also defined in models/a.sql" in str(error)


def test_seed_and_model_with_the_same_name_are_a_duplicate(shop: Path):
    write(shop, "models/raw/raw_orders.sql", "select 1 as id\n")

    error = load_error(shop)

    assert_names(error, "seeds/raw_orders.csv")
    assert "seed 'raw.raw_orders' has the same name as the model in models/raw/raw_orders.sql" in str(error)


def test_source_with_the_name_of_a_model_is_a_duplicate(shop: Path):
    write(shop, "models/sources.yml", """
        sources:
          - name: marts
            tables:
              - name: orders
    """)

    error = load_error(shop)

    assert error.file == "models/sources.yml"
    assert "source table 'marts.orders'" in str(error)


def test_models_entry_described_twice_names_both_places(shop: Path):
    write(shop, "models/marts/marts.yml", """
        models:
          - name: marts.orders
            description: again
    """)

    error = load_error(shop)

    # whichever file is read second is the one reported, pointing at the other
    assert "model 'marts.orders' is described twice" in str(error)
    assert {error.file, str(error).split("(also at ")[1].split(":")[0]} == {
        "models/marts/marts.yml", SCHEMA_YML}


# --- YAML entries -----------------------------------------------------------------------------------


def test_models_entry_naming_no_model_file_names_its_line(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
          - name: ordres
            description: a typo
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 3)
    assert "models entry 'ordres' matches no model file under models/" in str(error)


def test_models_entry_naming_a_seed_matches_no_model_file(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: raw_orders
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 2)
    assert "models entry 'raw_orders' matches no model file" in str(error)


def test_models_entry_matching_two_models_says_it_is_ambiguous(shop: Path):
    write(shop, "models/marts/stg_orders.sql", "select order_id from staging.stg_orders\n")

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 9)  # `- name: stg_orders` in the demo's schema.yml
    assert "ambiguous" in str(error)
    assert "marts.stg_orders" in str(error) and "staging.stg_orders" in str(error)


def test_unknown_test_name_names_the_line(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            columns:
              - name: order_id
                tests:
                  - unique
                  - not_nul
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 5)
    assert "unknown test 'not_nul' on marts.orders.order_id" in str(error)


def test_unknown_test_with_arguments_names_its_own_line(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            columns:
              - name: amount
                tests:
                  - not_null
                  - between:
                      min: 0
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 7)
    assert "unknown test 'between'" in str(error)


def test_bad_materialized_names_the_line(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            materialized: incremental
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 3)
    assert "materialized 'incremental' is not supported; use one of: table, view" in str(error)


def test_bad_materialized_under_config_names_the_line(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            config:
              materialized: ephemeral
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 4)
    assert "materialized 'ephemeral'" in str(error)


@pytest.mark.parametrize(
    "arguments", ["quote: true", "values: []"], ids=["no-values", "empty-values"]
)
def test_accepted_values_without_values_names_the_line(shop: Path, arguments: str):
    write(shop, SCHEMA_YML, f"""
        models:
          - name: orders
            columns:
              - name: status
                tests:
                  - accepted_values:
                      {arguments}
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 7)
    assert "accepted_values on marts.orders.status needs 'values'" in str(error)


def test_accepted_values_as_a_bare_name_needs_values(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            columns:
              - name: status
                tests: [accepted_values]
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 5)
    assert "needs 'values'" in str(error)


def test_relationships_without_to_names_the_line(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            columns:
              - name: customer_id
                tests:
                  - relationships:
                      field: customer_id
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 7)
    assert "relationships on marts.orders.customer_id needs 'to'" in str(error)


def test_relationships_without_field_is_rejected(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            columns:
              - name: customer_id
                tests:
                  - relationships:
                      to: marts.customers
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 7)
    assert "'field'" in str(error)


def test_relationships_to_an_unknown_model_names_the_target(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            columns:
              - name: customer_id
                tests:
                  - relationships:
                      to: marts.clients
                      field: customer_id
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 7)
    assert "'marts.clients'" in str(error)


def test_model_level_tests_are_rejected_with_their_line(shop: Path):
    write(shop, SCHEMA_YML, """
        models:
          - name: orders
            tests: [unique]
    """)

    error = load_error(shop)

    assert_names(error, SCHEMA_YML, 3)
    assert "model-level tests are not supported" in str(error)


# --- names ------------------------------------------------------------------------------------------


def test_folder_with_a_double_underscore_is_an_invalid_schema(shop: Path):
    write(shop, "models/my__marts/totals.sql", "select 1 as a\n")

    error = load_error(shop)

    assert_names(error, "models/my__marts/totals.sql")
    assert "schema (the folder under models/) 'my__marts' is not a valid name" in str(error)


def test_file_with_a_double_underscore_is_an_invalid_model_name(shop: Path):
    write(shop, "models/marts/orders__v2.sql", "select 1 as a\n")

    error = load_error(shop)

    assert_names(error, "models/marts/orders__v2.sql")
    assert "model name (the file name) 'orders__v2' is not a valid name" in str(error)


@pytest.mark.parametrize(
    ("rel", "name"),
    [
        ("models/marts/2024_orders.sql", "'2024_orders'"),
        ("models/3marts/orders.sql", "'3marts'"),
        ("models/marts/order-lines.sql", "'order-lines'"),
        ("models/marts/sluice_state.sql", "'sluice_state'"),
    ],
    ids=["digit-file", "digit-folder", "hyphen", "reserved-prefix"],
)
def test_invalid_model_names_name_the_file(shop: Path, rel: str, name: str):
    write(shop, rel, "select 1 as a\n")

    error = load_error(shop)

    assert_names(error, rel)
    assert f"{name} is not a valid name" in str(error)


def test_seed_name_starting_with_a_digit_names_the_file(shop: Path):
    write(shop, "seeds/2024_targets.csv", "month,target\n1,100\n")

    error = load_error(shop)

    assert_names(error, "seeds/2024_targets.csv")
    assert "seed name (the file name) '2024_targets' is not a valid name" in str(error)


def test_seed_with_a_repeated_header_column_names_the_first_line(shop: Path):
    write(shop, "seeds/targets.csv", "month,Month\n1,2\n")

    error = load_error(shop)

    assert_names(error, "seeds/targets.csv", 1)
    assert "repeats a column name" in str(error)


# --- the demo project -------------------------------------------------------------------------------


@pytest.fixture
def demo(shop: Path) -> Project:
    return load_project(shop)


def test_demo_loads_every_model_with_its_schema_from_the_folder(demo: Project):
    assert set(demo.models) == {
        "staging.stg_customers", "staging.stg_orders", "staging.stg_payments",
        "marts.customers", "marts.orders", "marts.customer_segments",
        "marts.order_status_counts", "marts.revenue_by_day",
    }
    orders = demo.models["marts.orders"]
    assert (orders.schema, orders.table, orders.path) == ("marts", "orders", ORDERS_SQL)


def test_demo_loads_seeds_with_their_header_columns(demo: Project):
    assert set(demo.seeds) == {"raw.raw_customers", "raw.raw_orders", "raw.raw_payments"}
    payments = demo.seeds["raw.raw_payments"]
    assert payments.path == "seeds/raw_payments.csv"
    assert payments.columns == ("id", "order_id", "payment_method", "amount")
    assert len(payments.content_hash) == 64
    assert demo.sources == {}


def test_demo_models_depend_on_the_tables_they_read(demo: Project):
    depends = {name: model.depends_on for name, model in demo.models.items()}

    assert depends == {
        "staging.stg_customers": ("raw.raw_customers",),
        "staging.stg_orders": ("raw.raw_orders",),
        "staging.stg_payments": ("raw.raw_payments",),
        "marts.customers": ("staging.stg_customers", "staging.stg_orders", "staging.stg_payments"),
        "marts.orders": ("staging.stg_orders", "staging.stg_payments"),
        "marts.customer_segments": ("marts.customers",),
        "marts.order_status_counts": ("marts.orders",),
        "marts.revenue_by_day": ("marts.orders",),
    }


def test_demo_yaml_metadata_reaches_the_models(demo: Project):
    assert demo.models["marts.order_status_counts"].materialized == "view"
    assert demo.models["marts.orders"].materialized == "table"
    assert demo.models["marts.orders"].unique_key == ("order_id",)
    assert demo.models["marts.orders"].description == "One row per order with its payments by method."
    email = {c.name: c for c in demo.models["marts.customers"].columns}["email"]
    assert email.tags == ("pii",)


def test_demo_tests_are_loaded_from_yaml_and_the_tests_folder(demo: Project):
    by_name = {t.name: t for t in demo.tests}

    assert len(demo.tests) == 18  # 17 column tests in schema.yml, 1 singular test
    assert by_name["unique(staging.stg_orders.order_id)"].line == 13
    accepted = by_name["accepted_values(staging.stg_orders.status)"]
    assert accepted.values == ("placed", "shipped", "completed", "return_pending", "returned")
    assert (accepted.file, accepted.line) == (SCHEMA_YML, 16)
    relationship = by_name["relationships(marts.orders.customer_id)"]
    assert (relationship.to, relationship.field) == ("marts.customers", "customer_id")
    assert relationship.depends_on == ("marts.customers",)
    singular = by_name["assert_no_negative_revenue"]
    assert singular.kind == "singular"
    assert singular.file == "tests/assert_no_negative_revenue.sql"
    assert singular.depends_on == ("marts.revenue_by_day",)
    assert singular.sql is not None and "-- " not in singular.sql


def test_dag_order_puts_every_node_after_what_it_reads(demo: Project):
    position = {name: i for i, name in enumerate(demo.dag.order)}

    assert set(position) == set(demo.models) | set(demo.seeds)
    for name, model in demo.models.items():
        for parent in model.depends_on:
            assert position[parent] < position[name], (parent, name)


def test_dag_order_puts_staging_before_marts(demo: Project):
    order = demo.dag.order
    last_staging = max(i for i, n in enumerate(order) if n.startswith("staging."))
    first_mart = min(i for i, n in enumerate(order) if n.startswith("marts."))

    assert last_staging < first_mart
    assert demo.dag.downstream(["staging.stg_payments"]) == {
        "marts.customers", "marts.orders", "marts.customer_segments",
        "marts.order_status_counts", "marts.revenue_by_day",
    }


def test_cte_names_are_not_treated_as_tables(demo: Project):
    orders = demo.models["marts.orders"]  # reads the CTE `payments`
    customers = demo.models["marts.customers"]  # reads `customer_orders`, `customer_payments`

    assert sorted(r.text for r in orders.refs) == ["staging.stg_orders", "staging.stg_payments"]
    assert orders.depends_on == ("staging.stg_orders", "staging.stg_payments")
    assert {r.text for r in customers.refs} == {
        "staging.stg_payments", "staging.stg_orders", "staging.stg_customers"}


def test_cte_named_like_a_model_shadows_it(shop: Path):
    write(shop, ORDERS_SQL, """
        with stg_orders as (select 1 as order_id)
        select order_id from stg_orders
    """)

    project = load_project(shop)

    assert project.models["marts.orders"].depends_on == ()


def test_cte_inside_a_subquery_does_not_hide_the_table_outside_it(shop: Path):
    write(shop, ORDERS_SQL, """
        select a.x, b.order_id
        from (with stg_orders as (select 1 as x) select x from stg_orders) as a
        cross join stg_orders as b
    """)

    project = load_project(shop)

    assert project.models["marts.orders"].depends_on == ("staging.stg_orders",)


def test_unqualified_references_resolve_to_the_only_table_with_that_name(shop: Path):
    write(shop, ORDERS_SQL, """
        select o.order_id, p.amount
        from stg_orders as o
        join stg_payments as p on o.order_id = p.order_id
        join raw_customers as c on true
    """)

    project = load_project(shop)

    orders = project.models["marts.orders"]
    assert orders.depends_on == ("raw.raw_customers", "staging.stg_orders", "staging.stg_payments")
    assert [(r.text, r.line) for r in orders.refs] == [
        ("stg_orders", 2), ("stg_payments", 3), ("raw_customers", 4)]
    assert project.resolve(("stg_orders",)) == "staging.stg_orders"
    assert project.resolve(("nope",)) is None


def test_identifier_case_does_not_change_the_reference(shop: Path):
    write(shop, ORDERS_SQL, "SELECT ORDER_ID FROM STAGING.STG_ORDERS\n")

    project = load_project(shop)

    assert project.models["marts.orders"].depends_on == ("staging.stg_orders",)


def test_declared_sources_are_loaded_and_readable(shop: Path):
    write(shop, "models/sources.yml", """
        sources:
          - name: ext
            tables:
              - name: events
                columns:
                  - name: id
                  - name: Kind
              - name: users
    """)
    write(shop, "models/marts/events.sql", """
        select e.id, e.kind, u.name
        from ext.events as e
        join users as u on e.user_id = u.id
    """)

    project = load_project(shop)

    assert set(project.sources) == {"ext.events", "ext.users"}
    assert project.sources["ext.events"].columns == ("id", "kind")
    assert project.sources["ext.users"].columns is None  # undeclared: ask the warehouse
    assert project.sources["ext.events"].file == "models/sources.yml"
    events = project.models["marts.events"]
    assert [r.text for r in events.refs] == ["ext.events", "users"]
    assert project.resolve(("users",)) == "ext.users"


# --- canonical SQL ----------------------------------------------------------------------------------

STG_PAYMENTS = "models/staging/stg_payments.sql"
REFORMATTED_STG_PAYMENTS = """
    /* the same query, written differently */
    SELECT
            id     AS payment_id ,
      order_id,   -- the order it pays
      payment_method,
      AMOUNT / 100.0   AS amount
    FROM raw.raw_payments   ;
"""
REFORMATTED_REVENUE = """
    SELECT order_date, COUNT(*) AS orders, SUM(amount) AS revenue FROM marts.orders
    WHERE status <> 'returned' GROUP BY order_date
"""


def test_canonical_sql_ignores_whitespace_comments_and_keyword_case(tmp_path: Path):
    first = tmp_path / "first"
    second = tmp_path / "second"
    shutil.copytree(DEMO, first)
    shutil.copytree(DEMO, second)
    write(second, STG_PAYMENTS, REFORMATTED_STG_PAYMENTS)
    write(second, "models/marts/revenue_by_day.sql", REFORMATTED_REVENUE)

    a, b = load_project(first), load_project(second)

    assert (second / STG_PAYMENTS).read_text() != (first / STG_PAYMENTS).read_text()
    assert {n: m.canonical for n, m in a.models.items()} == {n: m.canonical for n, m in b.models.items()}
    assert "--" not in a.models["staging.stg_payments"].canonical
    assert "amounts are stored in cents" not in a.models["staging.stg_payments"].canonical


def test_canonical_sql_changes_when_the_query_changes(tmp_path: Path):
    first = tmp_path / "first"
    second = tmp_path / "second"
    shutil.copytree(DEMO, first)
    shutil.copytree(DEMO, second)
    write(second, STG_PAYMENTS, REFORMATTED_STG_PAYMENTS.replace("100.0", "1000.0"))

    a, b = load_project(first), load_project(second)

    assert a.models["staging.stg_payments"].canonical != b.models["staging.stg_payments"].canonical
    assert a.models["staging.stg_orders"].canonical == b.models["staging.stg_orders"].canonical


# --- parse cache ------------------------------------------------------------------------------------


def test_parse_cache_gives_the_same_project_on_a_second_load(shop: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"

    first = load_project(shop, cache_dir=cache_dir)
    cache_file = cache_dir / "parse-cache.json"
    saved = cache_file.read_text()
    second = load_project(shop, cache_dir=cache_dir)

    assert second.models == first.models
    assert second.tests == first.tests
    assert second.dag.order == first.dag.order
    assert first.models == load_project(shop).models  # same as without a cache
    assert len(json.loads(saved)) == 9  # 8 models and 1 singular test
    assert cache_file.read_text() == saved  # nothing new to parse, nothing rewritten


def test_parse_cache_reparses_a_changed_file(shop: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"
    load_project(shop, cache_dir=cache_dir)

    write(shop, ORDERS_SQL, """
        select order_id, customer_id
        from staging.stg_orders
    """)
    project = load_project(shop, cache_dir=cache_dir)

    orders = project.models["marts.orders"]
    assert orders.depends_on == ("staging.stg_orders",)
    assert orders.canonical == "SELECT order_id, customer_id FROM staging.stg_orders"
    assert [(r.text, r.line) for r in orders.refs] == [("staging.stg_orders", 2)]
    assert len(json.loads((cache_dir / "parse-cache.json").read_text())) == 10


def test_parse_cache_does_not_hide_a_new_error(shop: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"
    load_project(shop, cache_dir=cache_dir)

    write(shop, ORDERS_SQL, "select 1 as a;\nselect 2 as b\n")

    error = load_error(shop, cache_dir=cache_dir)
    assert_names(error, ORDERS_SQL, 2)


def test_cached_references_are_still_checked_against_the_project(shop: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"
    load_project(shop, cache_dir=cache_dir)

    (shop / "seeds/raw_payments.csv").unlink()  # stg_payments.sql is unchanged, and cached

    error = load_error(shop, cache_dir=cache_dir)
    assert_names(error, "models/staging/stg_payments.sql", 7)
    assert "table 'raw.raw_payments' is not a model" in str(error)


def test_unreadable_parse_cache_is_ignored(shop: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "parse-cache.json").write_text('{"truncated": ')

    project = load_project(shop, cache_dir=cache_dir)

    assert project.models == load_project(shop).models
    assert len(json.loads((cache_dir / "parse-cache.json").read_text())) == 9


def test_parse_cache_that_is_not_a_json_object_is_ignored(shop: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "parse-cache.json").write_text("[]")

    project = load_project(shop, cache_dir=cache_dir)

    assert project.models == load_project(shop).models


def test_a_comment_after_the_final_semicolon_is_not_a_second_statement(tmp_path):
    import shutil as _shutil

    root = tmp_path / "shop"
    _shutil.copytree(DEMO, root)
    path = root / "models" / "marts" / "orders.sql"
    path.write_text(path.read_text() + ";\n-- reviewed by the finance team\n")
    assert "marts.orders" in load_project(root).models


@pytest.mark.parametrize("sql", [
    'select 1 as "x""; drop table marts.orders; --" from raw.raw_orders',
    'select 1 as "a/*b*/" from raw.raw_orders',
    "select 1 as \"line\nbreak\" from raw.raw_orders",
])
def test_identifiers_with_quotes_semicolons_or_comments_are_refused(tmp_path, sql):
    import shutil as _shutil

    root = tmp_path / "shop"
    _shutil.copytree(DEMO, root)
    (root / "models" / "marts" / "odd.sql").write_text(sql + "\n")
    with pytest.raises(ProjectError) as error:
        load_project(root)
    assert str(error.value).startswith("models/marts/odd.sql:") and ": identifier " in str(error.value)
